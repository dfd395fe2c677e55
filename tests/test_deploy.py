"""`ape run deploy` against anvil nodes started by the tests (`liandong up`: tests/cli/test_up.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.rpc import rpc_call
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def node() -> Iterator[Anvil]:
    with Anvil() as anvil:
        yield anvil


def _has_code(url: str, address: str) -> bool:
    return rpc_call(url, "eth_getCode", [address, "latest"]) not in ("0x", "0x0")


def test_deploy_writes_a_record_and_does_not_deploy_twice(node: Anvil, tmp_path: Path) -> None:
    record_path = tmp_path / "deployment.json"
    record = deploy_local_escrow(node.http_url, record_path)
    assert record.chain_id == 31337
    assert _has_code(node.http_url, record.escrow)
    assert _has_code(node.http_url, record.tokens["DUSD"])
    assert {"pay", "payWithPermit", "recordDeliveries"} <= {e.get("name") for e in record.abi}
    assert record.operator == record.owner == record.payout  # the deployer's defaults on a dev chain

    again = deploy_local_escrow(node.http_url, record_path)
    assert again.escrow == record.escrow

    forced = subprocess.run(
        [
            "ape",
            "run",
            "deploy",
            "--network",
            node.http_url,
            "--account",
            "TEST::0",
            "--force",
            "--fee-bps",
            "100",
            "--record",
            str(record_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "LiandongEscrow deployed at" in forced.stdout + forced.stderr
    redeployed = DeploymentRecord.load(record_path)
    assert redeployed.escrow != record.escrow
    assert redeployed.fee_bps == 100


def test_deploy_on_another_chain_ignores_a_stale_record(tmp_path: Path) -> None:
    record_path = tmp_path / "deployment.json"
    with Anvil() as first:
        stale = deploy_local_escrow(first.http_url, record_path)
    with Anvil() as second:
        assert not _has_code(second.http_url, stale.escrow)
        fresh = deploy_local_escrow(second.http_url, record_path)
        assert _has_code(second.http_url, fresh.escrow)
