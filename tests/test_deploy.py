"""`ape run deploy` and `liandong up` against anvil nodes started by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import Anvil, free_port, rpc_call

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


def _start_shop(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "LIANDONG_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.Popen(
        ["liandong", "up", "--port", str(port)],
        cwd=data_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until_ready(shop: subprocess.Popen[str]) -> str:
    assert shop.stdout is not None
    seen = []
    for line in shop.stdout:
        seen.append(line)
        if "Press Ctrl-C" in line:
            return "".join(seen)
    raise AssertionError("liandong up exited before it was ready:\n" + "".join(seen))


def _stop(shop: subprocess.Popen[str]) -> int:
    shop.send_signal(signal.SIGINT)
    try:
        return shop.wait(timeout=20)
    finally:
        if shop.poll() is None:
            shop.kill()


def test_up_prints_the_shop_and_resumes_its_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "shop"
    port = free_port()
    shop = _start_shop(data_dir, port)
    try:
        output = _read_until_ready(shop)
        record = DeploymentRecord.load(data_dir / "deployment.json")
        assert record.escrow in output
        assert record.tokens["DUSD"] in output
        assert f"http://127.0.0.1:{port}" in output
        assert _has_code(f"http://127.0.0.1:{port}", record.escrow)
    finally:
        assert _stop(shop) == 0

    shop = _start_shop(data_dir, port)
    try:
        output = _read_until_ready(shop)
        assert DeploymentRecord.load(data_dir / "deployment.json").escrow == record.escrow
        assert _has_code(f"http://127.0.0.1:{port}", record.escrow)
    finally:
        assert _stop(shop) == 0
