"""Verifying a deployed escrow against its sources, the way a block explorer does.

The escrow is compiled again through py-solc-x (`compile_standard`, with the `solc` of the toolchain:
nothing is downloaded) exactly as `ape run deploy` compiled it: the compiler settings of foundry.toml
(their one source of truth; ape-config.yaml repeats them) and ape-solidity's source unit names, which
ape-config.yaml defines (the project's files under `contracts/`, each dependency under
`contracts/.cache/<name>/<version>/`, remapped there; their files are read from node_modules). The
same names give the same metadata, so the CBOR metadata hash at the end of the code matches too:
Sourcify's "perfect" match. The list of sources is the compiler's own (`metadata.sources`).

The runtime bytecode is then compared with the code at the address, with the values of immutables
(the EIP-712 domain cache, set by the constructor; the compiler says where they sit) and the metadata
set aside; whether the metadata matches too is reported on its own. The standard-JSON input and the
metadata written next to the result are what Etherscan, Blockscout and Sourcify accept.
"""

from __future__ import annotations

import json
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solcx
import yaml  # type: ignore[import-untyped]
from solcx.exceptions import SolcError

from liandong.chain.deployment import PROJECT_ROOT

CONTRACT = "LiandongEscrow"
CONTRACTS = "contracts"
"""ape-config.yaml's contracts_folder."""
SOURCE = f"{CONTRACTS}/LiandongEscrow.sol"
_OUTPUTS = ["abi", "metadata", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"]


class VerificationError(Exception):
    """The sources could not be compiled, or the address holds no code."""


@dataclass(frozen=True)
class Verification:
    address: str
    matches: bool
    """The runtime code is the compiled code (immutables and metadata set aside)."""
    metadata_matches: bool
    """The metadata hash too: the very same source files, names and settings (Sourcify's perfect)."""
    compiled_size: int
    deployed_size: int


@dataclass(frozen=True)
class Build:
    """One compilation of the escrow: its standard-JSON input with every source inlined (the list
    the compiler's metadata gives), and the compiler's output for the escrow."""

    source_input: dict[str, Any]
    compiled: dict[str, Any]


def _settings(root: Path) -> tuple[dict[str, Any], Path]:
    """The compiler settings of foundry.toml (without remappings: see `_layout`), and its solc."""
    profile = tomllib.loads((root / "foundry.toml").read_text())["profile"]["default"]
    settings = {
        "optimizer": {"enabled": bool(profile["optimizer"]), "runs": int(profile["optimizer_runs"])},
        "evmVersion": profile["evm_version"],
        "viaIR": bool(profile.get("via_ir", False)),
        "metadata": {"bytecodeHash": profile.get("bytecode_hash", "ipfs")},
    }
    return settings, root / profile["solc"]


def _layout(root: Path) -> tuple[list[str], dict[str, Path]]:
    """ape-solidity's remappings, and the folder each dependency's source units name (relative to
    the base path) with the node_modules folder that holds its files."""
    config = yaml.safe_load((root / "ape-config.yaml").read_text())
    packages = {
        (dep["name"], str(dep["version"])): root
        / "node_modules"
        / dep["npm"]
        / dep.get("config_override", {}).get("contracts_folder", ".")
        for dep in config.get("dependencies", [])
        if "npm" in dep
    }
    remappings, folders = [], {}
    for entry in config.get("solidity", {}).get("import_remapping", []):
        prefix, target = entry.split("=", 1)
        package = tuple(target.split("/")[:2])
        if package not in packages:
            raise VerificationError(f"ape-config.yaml remaps {prefix} to {target}, not an npm dependency")
        remappings.append(f"{prefix}={CONTRACTS}/.cache/{target}")
        folders[f"{CONTRACTS}/.cache/{'/'.join(package)}"] = packages[package]
    return remappings, folders


def _source_tree(root: Path, tree: Path, folders: dict[str, Path]) -> None:
    """Lays out the source units under `tree` as ape-solidity names them, by symbolic links."""
    (tree / CONTRACTS).mkdir()
    for entry in (root / CONTRACTS).iterdir():
        if entry.name != ".cache":
            (tree / CONTRACTS / entry.name).symlink_to(entry)
    for unit_folder, files in folders.items():
        (tree / unit_folder).parent.mkdir(parents=True, exist_ok=True)
        (tree / unit_folder).symlink_to(files.resolve(), target_is_directory=True)


def compile_escrow(root: Path = PROJECT_ROOT) -> Build:
    """Compiles the escrow as `ape run deploy` does; the input written out inlines every source."""
    settings, solc = _settings(root)
    remappings, folders = _layout(root)
    settings = {**settings, "remappings": remappings}
    request = {
        "language": "Solidity",
        "sources": {SOURCE: {"content": (root / SOURCE).read_text()}},
        "settings": {**settings, "outputSelection": {"*": {"*": _OUTPUTS}}},
    }
    with tempfile.TemporaryDirectory(prefix="liandong-verify-") as tmp:
        tree = Path(tmp)
        _source_tree(root, tree, folders)
        try:
            output = solcx.compile_standard(
                request, base_path=tree, allow_paths=[tree, root], solc_binary=solc
            )
        except SolcError as error:
            raise VerificationError(f"compilation failed:\n{error}") from None
        except OSError as error:
            raise VerificationError(f"cannot run the compiler {solc}: {error}") from None
        compiled: dict[str, Any] | None = output.get("contracts", {}).get(SOURCE, {}).get(CONTRACT)
        if compiled is None:
            raise VerificationError(f"the compiler gave no {CONTRACT} in {SOURCE}")
        units = json.loads(compiled["metadata"])["sources"]
        sources = {unit: {"content": (tree / unit).read_text()} for unit in sorted(units)}
    source_input = {"language": "Solidity", "sources": sources, "settings": request["settings"]}
    return Build(source_input=source_input, compiled=compiled)


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
    build = compile_escrow()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "standard-json-input.json").write_text(json.dumps(build.source_input, indent=1))
        (out_dir / "metadata.json").write_text(build.compiled["metadata"])
        (out_dir / "abi.json").write_text(json.dumps(build.compiled["abi"], indent=1))
    return compare(build.compiled, deployed, address)
