"""`ape run deploy` and `liandong up` against anvil nodes started by the tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import Anvil, free_port, rpc_call
from liandong.chain.quotes import NATIVE_COIN
from liandong.simulate import DevBuyer, dev_account, quote_from_api
from web3 import Web3

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


def _start_shop(data_dir: Path, port: int, api_port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "LIANDONG_DATA_DIR": str(data_dir),
        "LIANDONG_API_PORT": str(api_port),
        "COLUMNS": "200",
    }
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


def _stop(shop: subprocess.Popen[str], signum: int = signal.SIGINT) -> int:
    shop.send_signal(signum)
    try:
        return shop.wait(timeout=20)
    finally:
        if shop.poll() is None:
            shop.kill()


def test_up_runs_the_whole_shop_and_resumes_it(tmp_path: Path) -> None:
    """`liandong up`: chain, escrow, demo catalogue, a merchant login and the node, in one command;
    a buyer's payment is delivered; Ctrl-C or SIGTERM stop it, and the next `up` resumes."""
    data_dir = tmp_path / "shop"
    port, api_port = free_port(), free_port()
    shop = _start_shop(data_dir, port, api_port)
    try:
        output = _read_until_ready(shop)
        record = DeploymentRecord.load(data_dir / "deployment.json")
        assert record.escrow in output
        assert record.tokens["DUSD"] in output
        assert f"http://127.0.0.1:{api_port}/docs" in output
        password = re.search(r"merchant / (\S+)", output)
        assert password is not None, output
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
        products = api.get("/api/products").json()
        assert len(products) == 3
        assert all(p["stock"] == "in_stock" and len(p["prices"]) == 2 for p in products)
        login = api.post("/api/merchant/login", json={"username": "merchant", "password": password.group(1)})
        assert login.status_code == 200

        issued = api.post("/api/quotes", json={"product_id": products[0]["id"], "token": NATIVE_COIN}).json()
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        DevBuyer(w3, record.escrow, dev_account(9), record.chain_id).pay(
            quote_from_api(issued["quote"]), bytes.fromhex(issued["signature"][2:])
        )
        order = issued["order"]
        headers = {"X-Order-Token": issued["access_token"]}
        deadline = time.monotonic() + 20
        while api.get(f"/api/orders/{order}", headers=headers).json()["status"] != "delivered":
            assert time.monotonic() < deadline, "the demo order was not delivered"
            time.sleep(0.1)
    finally:
        assert _stop(shop, signal.SIGTERM) == 0

    shop = _start_shop(data_dir, port, api_port)
    try:
        output = _read_until_ready(shop)
        assert "merchant / " not in output  # the login is made once
        assert DeploymentRecord.load(data_dir / "deployment.json").escrow == record.escrow
        status = httpx.get(f"http://127.0.0.1:{api_port}/api/orders/{order}", headers=headers).json()
        assert status["status"] == "delivered"  # the store and the chain both came back
        assert len(httpx.get(f"http://127.0.0.1:{api_port}/api/products").json()) == 3
    finally:
        assert _stop(shop) == 0
