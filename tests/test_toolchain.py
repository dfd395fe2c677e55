"""The toolchain that `make setup` installs: the solc shim and one set of compiler settings."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import solcx
import yaml
from solcx.wrapper import get_solc_version

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "toolchain" / "solc.js"


def _shim(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHIM), *args], input=stdin, capture_output=True, text=True, check=False)


def _standard_json(sources: dict[str, dict[str, str]], outputs: list[str]) -> str:
    return json.dumps(
        {
            "language": "Solidity",
            "sources": sources,
            "settings": {"outputSelection": {"*": {"*": outputs}}},
        }
    )


def test_version_is_what_py_solc_x_and_forge_parse() -> None:
    result = _shim("--version")
    assert result.returncode == 0
    assert re.search(r"^Version: 0\.8\.30\+commit\.[0-9a-f]{8}", result.stdout, re.MULTILINE)


def test_imports_resolve_from_base_and_include_paths(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "Base.sol").write_text(
        'pragma solidity ^0.8.0; import "shared/Math.sol"; contract Base { function two() public pure '
        "returns (uint256) { return MathLib.one() + 1; } }"
    )
    (tmp_path / "vendor" / "shared").mkdir(parents=True)
    (tmp_path / "vendor" / "shared" / "Math.sol").write_text(
        "pragma solidity ^0.8.0; library MathLib { function one() internal pure returns (uint256) "
        "{ return 1; } }"
    )
    source = 'pragma solidity ^0.8.0; import "lib/Base.sol"; contract Top is Base {}'
    request = _standard_json({"Top.sol": {"content": source}}, ["evm.bytecode.object"])
    result = _shim(
        "--standard-json",
        "--base-path",
        str(tmp_path),
        "--include-path",
        str(tmp_path / "vendor"),
        stdin=request,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"]
    assert output["contracts"]["Top.sol"]["Top"]["evm"]["bytecode"]["object"]
    assert "lib/Base.sol" in output["sources"]


def test_missing_import_is_a_compile_error_not_a_crash(tmp_path: Path) -> None:
    request = _standard_json({"A.sol": {"content": 'import "nowhere/X.sol";'}}, ["abi"])
    result = _shim("--standard-json", "--base-path", str(tmp_path), stdin=request)
    assert result.returncode == 0
    [error] = [e for e in json.loads(result.stdout)["errors"] if e["severity"] == "error"]
    assert "File not found: nowhere/X.sol" in error["message"]


def test_output_over_64_kib_arrives_whole() -> None:
    source = (ROOT / "contracts" / "LiandongEscrow.sol").read_text()
    request = _standard_json(
        {"contracts/LiandongEscrow.sol": {"content": source}},
        ["abi", "evm.bytecode", "evm.deployedBytecode", "metadata", "storageLayout"],
    )
    result = _shim(
        "--standard-json",
        "--base-path",
        str(ROOT),
        "--include-path",
        str(ROOT / "node_modules"),
        stdin=request,
    )
    assert len(result.stdout) > 64 * 1024
    output = json.loads(result.stdout)
    assert output["contracts"]["contracts/LiandongEscrow.sol"]["LiandongEscrow"]["evm"]["deployedBytecode"]


def test_unsupported_arguments_are_refused_clearly() -> None:
    result = _shim("--bin", "A.sol")
    assert result.returncode == 1
    assert "unsupported argument --bin" in result.stderr


def test_py_solc_x_accepts_the_shim() -> None:
    assert str(get_solc_version(SHIM)) == "0.8.30"
    output = solcx.compile_standard(
        json.loads(_standard_json({"C.sol": {"content": "pragma solidity 0.8.30; contract C {}"}}, ["abi"])),
        solc_binary=SHIM,
    )
    assert output["contracts"]["C.sol"]["C"]["abi"] == []


@pytest.mark.parametrize(
    ("foundry_key", "ape_key"),
    [
        ("evm_version", "evm_version"),
        ("optimizer", "optimize"),
        ("optimizer_runs", "optimization_runs"),
        ("via_ir", "via_ir"),
    ],
)
def test_ape_and_forge_compile_with_the_same_settings(foundry_key: str, ape_key: str) -> None:
    foundry = tomllib.loads((ROOT / "foundry.toml").read_text())["profile"]["default"]
    ape = yaml.safe_load((ROOT / "ape-config.yaml").read_text())["solidity"]
    assert foundry[foundry_key] == ape[ape_key]


def test_one_compiler_version_everywhere() -> None:
    ape_version = str(yaml.safe_load((ROOT / "ape-config.yaml").read_text())["solidity"]["version"])
    npm_version = json.loads((ROOT / "package.json").read_text())["dependencies"]["solc"]
    pragmas = {
        m.group(1)
        for path in (ROOT / "contracts").rglob("*.sol")
        if ".cache" not in path.parts
        for m in [re.search(r"pragma solidity ([^;]+);", path.read_text())]
        if m
    }
    assert ape_version == npm_version
    assert pragmas == {ape_version}
