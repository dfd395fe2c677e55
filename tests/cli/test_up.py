"""`liandong up` runs the whole shop in one command, serves it, and stops and resumes cleanly."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.rpc import rpc_call
from liandong.devtools.devnet import DEV_CHAIN_ID, free_port
from liandong.devtools.simulate import dev_account
from liandong.store.db import make_engine
from liandong.store.models import ChainCheckpoint
from sqlmodel import Session

from tests.cli.runner import alive, children, read_until_ready, run, start_up, stop, up_env


def _checkpoint(data_dir: Path) -> int:
    engine = make_engine(f"sqlite:///{data_dir / 'liandong.db'}")
    try:
        with Session(engine) as session:
            checkpoint = session.get(ChainCheckpoint, DEV_CHAIN_ID)
            assert checkpoint is not None
            return checkpoint.block_number
    finally:
        engine.dispose()


def _simulate(env: dict[str, str], orders: int) -> str:
    simulated = run(env, "simulate", "--buyers", "3", "--orders", str(orders), "--rate", "20")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert f"{orders} of {orders} orders delivered" in simulated.stdout
    return simulated.stdout


def test_up_serves_the_demo_shop_delivers_simulated_orders_and_resumes_after_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "shop"
    anvil_port, api_port = free_port(), free_port()
    env = up_env(data_dir, anvil_port, api_port)
    shop_url, chain_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{anvil_port}"
    shop = start_up(env)
    try:
        printed = read_until_ready(shop)
        record = DeploymentRecord.load(data_dir / "deployment.json")
        demo_wallet = dev_account(9)
        for shown in (
            f"{shop_url}/",
            f"{shop_url}/merchant",
            f"{shop_url}/docs",
            chain_url,
            record.escrow,
            record.tokens["DUSD"],
            demo_wallet.address,
            "0x" + bytes(demo_wallet.key).hex(),
        ):
            assert shown in printed, f"{shown} missing from:\n{printed}"
        password = re.search(r"merchant / (\S+)", printed)
        assert password is not None, printed
        # Only its hash is kept: the password is nowhere in the shop's files.
        stored = b"".join(path.read_bytes() for path in data_dir.iterdir() if path.is_file())
        assert password.group(1).encode() not in stored

        api = httpx.Client(base_url=shop_url, timeout=10)
        assert api.get("/healthz").json()["status"] == "ok"
        products = api.get("/api/products").json()
        assert len(products) == 3
        assert all(p["stock"] == "in_stock" for p in products)
        # In its coin and in DUSD on each of the two local chains, one node serving both.
        assert all(
            sorted(price["chain_id"] for price in p["prices"]) == [31337, 31337, 31339, 31339]
            for p in products
        )
        shop_info = api.get("/api/shop").json()
        assert [(c["chain_id"], c["network"]) for c in shop_info["chains"]] == [
            (31337, "Local chain A"),
            (31339, "Local chain B"),
        ]
        assert "Local chain B" in printed
        login = api.post("/api/merchant/login", json={"username": "merchant", "password": password.group(1)})
        assert login.status_code == 200

        assert "payment → keys" in _simulate(env, 20)
        delivered = run(env, "orders", "list", "--status", "delivered")
        assert "20 order(s)" in delivered.stdout, delivered.stdout + delivered.stderr
        status = run(env, "status")
        assert status.returncode == 0, status.stderr
        assert "delivery queue" in status.stdout
        for network, chain_id in (("Local chain A", 31337), ("Local chain B", 31339)):  # each chain's line
            line = next(line for line in status.stdout.splitlines() if network in line)
            assert f"chain {chain_id}: head " in line, status.stdout
            assert "heads over websocket" in line, status.stdout
        anvil = children(shop.pid)
        assert anvil
    finally:
        code, said = stop(shop, signal.SIGTERM)
    assert code == 0, said
    assert not any(map(alive, anvil))  # the chain stopped with the shop ...
    assert (data_dir / "anvil-state.json").is_file()  # ... and saved its state
    checkpoint = _checkpoint(data_dir)

    shop = start_up(env)
    try:
        printed = read_until_ready(shop)
        assert "merchant / " not in printed  # the login is made once
        assert DeploymentRecord.load(data_dir / "deployment.json").escrow == record.escrow
        assert int(str(rpc_call(chain_url, "eth_blockNumber")), 16) >= checkpoint  # the chain came back
        assert _checkpoint(data_dir) >= checkpoint  # and the node went on from its checkpoint
        delivered = run(env, "orders", "list", "--status", "delivered")
        assert "20 order(s)" in delivered.stdout
        _simulate(env, 5)  # the resumed shop sells
    finally:
        code, said = stop(shop)
    assert code == 0, said
