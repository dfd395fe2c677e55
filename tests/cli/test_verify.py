"""`liandong verify-contract` and `ape run verify` match a fresh deployment and refuse other code, and
Sourcify's own library (lib-sourcify, tests/cli/sourcify_check.mjs) calls what they write a perfect
match: the same bytecode and the same metadata hash, at runtime and at creation."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ape import Project, compilers
from liandong.chain.deployment import PROJECT_ROOT, DeploymentRecord
from liandong.chain.verify import SOURCE
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil

from tests.cli.runner import run

pytestmark = pytest.mark.slow

SOURCIFY_CHECK = Path(__file__).with_name("sourcify_check.mjs")


@dataclass(frozen=True)
class Verified:
    anvil: Anvil
    record: DeploymentRecord
    out: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def verified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verified]:
    """One escrow deployed by `ape run deploy` on anvil, and `liandong verify-contract` run on it."""
    tmp = tmp_path_factory.mktemp("verify")
    with Anvil() as anvil:
        record = deploy_local_escrow(anvil.http_url, tmp / "deployment.json")
        out = tmp / "verification"
        args = ("--rpc", anvil.http_url, "--address", record.escrow, "--out", str(out))
        result = run(dict(os.environ), "verify-contract", *args)
        yield Verified(anvil, record, out, result)


def _sourcify(verified: Verified, address: str, *creation_tx: str) -> subprocess.CompletedProcess[str]:
    chain = (verified.anvil.http_url, str(verified.record.chain_id))
    return subprocess.run(
        ["node", str(SOURCIFY_CHECK), str(verified.out), *chain, address, *creation_tx],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_fresh_deployment_matches_with_its_metadata_hash(verified: Verified) -> None:
    assert verified.result.returncode == 0, verified.result.stdout + verified.result.stderr
    assert f"match: {verified.record.escrow}" in verified.result.stdout
    assert "and its metadata hash" in verified.result.stdout
    source_input = json.loads((verified.out / "standard-json-input.json").read_text())
    metadata = json.loads((verified.out / "metadata.json").read_text())
    assert metadata["language"] == "Solidity"
    assert source_input["settings"]["optimizer"] == {"enabled": True, "runs": 10000}
    # Every source the compiler read, and only those, inlined.
    assert set(source_input["sources"]) == set(metadata["sources"])
    assert SOURCE in source_input["sources"]
    assert all(source["content"] for source in source_input["sources"].values())


def test_the_source_layout_is_the_one_ape_deploys_with(verified: Verified) -> None:
    """The metadata hash covers the source unit names and remappings: they are ape-solidity's."""
    source_input = json.loads((verified.out / "standard-json-input.json").read_text())
    ape_inputs = compilers.solidity.get_standard_input_json(
        [PROJECT_ROOT / SOURCE], project=Project(PROJECT_ROOT)
    )
    (ape_input,) = ape_inputs.values()
    assert set(source_input["sources"]) == set(ape_input["sources"])
    assert source_input["settings"]["remappings"] == ape_input["settings"]["remappings"]


def test_sourcify_calls_it_a_perfect_match(verified: Verified) -> None:
    checked = _sourcify(verified, verified.record.escrow, verified.record.transaction_hash)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout) == {"runtimeMatch": "perfect", "creationMatch": "perfect"}

    other = _sourcify(verified, verified.record.tokens["DUSD"])
    assert other.returncode == 1
    assert "bytecode length doesn't match" in other.stderr


def test_other_code_is_refused(verified: Verified) -> None:
    refused = run(
        dict(os.environ),
        "verify-contract",
        "--rpc",
        verified.anvil.http_url,
        "--address",
        verified.record.tokens["DUSD"],
        "--out",
        str(verified.out.with_name("refused")),
    )
    assert refused.returncode == 1
    assert "MISMATCH" in refused.stderr


def _ape_verify(verified: Verified, *args: str) -> subprocess.CompletedProcess[str]:
    target = ("--network", verified.anvil.http_url, "--address", verified.record.escrow)
    return subprocess.run(
        ["ape", "run", "verify", *target, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ape_run_verify_matches_and_publishes_only_to_an_etherscan_explorer(verified: Verified) -> None:
    ape = _ape_verify(verified, "--out", str(verified.out.with_name("ape")))
    assert ape.returncode == 0, ape.stdout + ape.stderr
    assert f"match: {verified.record.escrow}; metadata matches" in ape.stdout

    # Without ape-etherscan (make setup does not install it), or on a chain it has no explorer for
    # (this one), --publish stops before compiling, and nothing goes out.
    publish = _ape_verify(verified, "--out", str(verified.out.with_name("published")), "--publish")
    assert publish.returncode != 0
    assert "ape-etherscan" in publish.stdout + publish.stderr
    assert not verified.out.with_name("published").exists()
