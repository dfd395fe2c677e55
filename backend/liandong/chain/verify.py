"""Verifying a deployed escrow against its sources, the way a block explorer does.

The sources are compiled again with the project's settings (foundry.toml is their one source of
truth), and the runtime bytecode is compared with the code at the address. Two things differ by
design and are set aside before comparing: the values of immutables (the EIP-712 domain cache, set
by the constructor; the compiler says where they sit) and the CBOR metadata at the end (its hash
covers source file names and paths, which differ between build tools). Whether the metadata matches
too is reported on its own. The standard-JSON input written next to the result is what Etherscan,
Blockscout and Sourcify accept.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liandong.chain.deployment import PROJECT_ROOT

CONTRACT = "LiandongEscrow"
SOURCE = "contracts/LiandongEscrow.sol"
_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*\s+from\s+)?["\']([^"\']+)["\']', re.MULTILINE)


class VerificationError(Exception):
    """The sources could not be compiled, or the address holds no code."""


@dataclass(frozen=True)
class Verification:
    address: str
    matches: bool
    """The runtime code is the compiled code (immutables and metadata set aside)."""
    metadata_matches: bool
    """The metadata hash too: the very same source files, names and settings."""
    compiled_size: int
    deployed_size: int


def _settings(root: Path) -> tuple[dict[str, Any], dict[str, str], str]:
    profile = tomllib.loads((root / "foundry.toml").read_text())["profile"]["default"]
    remappings = dict(entry.split("=", 1) for entry in profile.get("remappings", []))
    settings = {
        "optimizer": {"enabled": bool(profile["optimizer"]), "runs": int(profile["optimizer_runs"])},
        "evmVersion": profile["evm_version"],
        "viaIR": bool(profile.get("via_ir", False)),
        "metadata": {"bytecodeHash": profile.get("bytecode_hash", "ipfs")},
        "outputSelection": {
            "*": {
                "*": [
                    "abi",
                    "metadata",
                    "evm.deployedBytecode.object",
                    "evm.deployedBytecode.immutableReferences",
                ]
            }
        },
    }
    return settings, remappings, str(root / profile["solc"])


def _file_of(unit: str, root: Path, remappings: dict[str, str]) -> Path:
    for prefix, target in remappings.items():
        if unit.startswith(prefix):
            return root / (target + unit.removeprefix(prefix))
    return root / unit


def standard_json_input(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The escrow and every file it imports, inlined, with the project's compiler settings."""
    settings, remappings, _ = _settings(root)
    sources: dict[str, dict[str, str]] = {}
    pending = [SOURCE]
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        text = _file_of(unit, root, remappings).read_text()
        sources[unit] = {"content": text}
        for imported in _IMPORT.findall(text):
            relative = imported.startswith(".")
            pending.append(
                posixpath.normpath(posixpath.join(posixpath.dirname(unit), imported))
                if relative
                else imported
            )
    return {"language": "Solidity", "sources": dict(sorted(sources.items())), "settings": settings}


def compile_escrow(source_input: dict[str, Any], root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The compiler's output for the escrow (deployed bytecode, immutable references, metadata)."""
    _, _, solc = _settings(root)
    done = subprocess.run(
        [solc, "--standard-json"], input=json.dumps(source_input), capture_output=True, text=True, check=False
    )
    output = json.loads(done.stdout or "{}")
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e.get("severity") == "error"]
    if done.returncode != 0 or errors or SOURCE not in output.get("contracts", {}):
        raise VerificationError("compilation failed:\n" + ("\n".join(errors) or done.stderr))
    compiled: dict[str, Any] = output["contracts"][SOURCE][CONTRACT]
    return compiled


def split_metadata(code: bytes) -> tuple[bytes, bytes]:
    """(code, CBOR metadata): solc ends the runtime code with the metadata and its 2-byte length."""
    if len(code) < 2:
        return code, b""
    length = int.from_bytes(code[-2:], "big") + 2
    return (code[:-length], code[-length:]) if length <= len(code) else (code, b"")


def _mask(code: bytes, references: dict[str, list[dict[str, int]]]) -> bytes:
    masked = bytearray(code)
    for places in references.values():
        for place in places:
            masked[place["start"] : place["start"] + place["length"]] = bytes(place["length"])
    return bytes(masked)


def compare(compiled: dict[str, Any], deployed: bytes, address: str) -> Verification:
    expected = bytes.fromhex(compiled["evm"]["deployedBytecode"]["object"])
    references = compiled["evm"]["deployedBytecode"].get("immutableReferences", {})
    expected_code, expected_meta = split_metadata(_mask(expected, references))
    deployed_code, deployed_meta = split_metadata(
        _mask(deployed, references) if len(deployed) == len(expected) else deployed
    )
    return Verification(
        address=address,
        matches=expected_code == deployed_code,
        metadata_matches=expected_code == deployed_code and expected_meta == deployed_meta,
        compiled_size=len(expected),
        deployed_size=len(deployed),
    )


def verify_escrow(deployed: bytes, address: str, out_dir: Path | None = None) -> Verification:
    """Compiles, compares with `deployed` (the code at `address`), and writes what explorers take."""
    if not deployed:
        raise VerificationError(f"no code at {address}")
    source_input = standard_json_input()
    compiled = compile_escrow(source_input)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "standard-json-input.json").write_text(json.dumps(source_input, indent=1))
        (out_dir / "metadata.json").write_text(compiled["metadata"])
        (out_dir / "abi.json").write_text(json.dumps(compiled["abi"], indent=1))
    return compare(compiled, deployed, address)
