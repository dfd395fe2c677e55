"""Issue 12, items 9 and 12, with real node processes on PostgreSQL: a leader frozen by SIGSTOP is
replaced, and when it wakes it sends nothing and steps down; a refund asked for through a
follower's API reaches the chain at once, not at the leader's next rescan."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import LocalShop, dev_operator
from liandong.runtime.cluster import Cluster, ClusterHub, NotLeaderError
from liandong.services.merchant_auth import create_api_token, create_merchant
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainTx, OrderStatus, utcnow
from liandong.vault.tables import VAULT_NODES
from sqlalchemy import insert
from sqlmodel import Session, func, select

from tests.cluster.test_cluster import ORDER_REFUNDED, chain_orders, one_leader, start_cluster


@pytest.fixture
def shop_with(tmp_path: Path, postgres_url: str) -> Iterator[object]:
    """Makes the test's shop (one at most) with extra node settings; stops it and its chain."""
    made: list[tuple[Anvil, LocalShop]] = []

    def make(confirmations: int = 0, **env: str) -> LocalShop:
        anvil = Anvil().start()
        record = deploy_local_escrow(anvil.http_url, tmp_path / "deployment.json")
        shop = LocalShop(anvil, record, tmp_path, confirmations, extra_env=env, database_url=postgres_url)
        made.append((anvil, shop))
        return shop

    yield make
    for anvil, shop in made:
        shop.kill()
        shop.engine.dispose()
        anvil.stop()


def _sent(shop: LocalShop) -> tuple[int, int, set[tuple[int, str]]]:
    """The operator's transactions: mined count, count with the pool's, and the shop's records."""
    with Session(shop.engine) as session:
        rows = {(tx.nonce, tx.tx_hash) for tx in session.exec(select(ChainTx)).all()}
    latest = shop.w3.eth.get_transaction_count(dev_operator().address, "latest")
    pending = shop.w3.eth.get_transaction_count(dev_operator().address, "pending")
    return latest, pending, rows


@pytest.mark.slow
def test_a_leader_frozen_by_sigstop_is_replaced_and_on_waking_sends_nothing_and_steps_down(
    shop_with: object,
) -> None:
    # A lease of 3 s (the leader checks every second), and batches that wait 1.5 s in the sender,
    # so the frozen leader holds a delivery record it had not sent yet.
    shop = shop_with(  # type: ignore[operator]
        LIANDONG_LEADER_LEASE_SECONDS="3", LIANDONG_SETTLEMENT_BATCH_INTERVAL="1.5"
    )
    product = shop.add_product("fence", [f"FENCE-{n}" for n in range(10)])
    start_cluster(shop, 2)
    old = one_leader(shop, 15)
    first = shop.quote(product)
    shop.buyer(4).pay(first.quote, first.signature)
    shop.wait_for(lambda: shop.order(first.order.chain_order_id).committed_at, 20, "a first record")

    second = shop.quote(product)
    shop.buyer(4).pay(second.quote, second.signature)
    shop.wait_for(
        lambda: shop.order(second.order.chain_order_id).status == OrderStatus.DELIVERED, 20, "delivery"
    )
    assert old.process is not None
    frozen_at = time.monotonic()
    os.kill(old.process.pid, signal.SIGSTOP)
    try:
        new = one_leader(shop, 20)
        print(f"leader frozen; another led {time.monotonic() - frozen_at:.1f} s later")
        assert new is not old
        # Up to the server's idle-in-transaction timeout (30 s) when the frozen node held row locks.
        shop.wait_for(
            lambda: shop.order(second.order.chain_order_id).committed_at, 45, "the new leader's record"
        )
        shop.wait_for(lambda: (sent := _sent(shop))[0] == sent[1], 10, "the pool to empty")
        before = _sent(shop)
    finally:
        os.kill(old.process.pid, signal.SIGCONT)

    def stepped_down() -> bool:
        health = old.health()
        return health is not None and health["leader"] is False

    shop.wait_for(stepped_down, 15, "the woken leader to step down")
    time.sleep(3.0)  # two of its batch intervals: time enough to send, were it still sending
    assert _sent(shop) == before
    assert one_leader(shop, 5) is new
    assert old.process.poll() is None  # it stepped down and carries on as a follower
    with Session(shop.engine) as session:
        nonces = [tx.nonce for tx in session.exec(select(ChainTx)).all()]
    assert len(nonces) == len(set(nonces))  # no nonce was ever used twice (no replacement was due)


@pytest.mark.slow
def test_a_refund_through_a_followers_api_reaches_the_chain_without_waiting_for_the_rescan(
    shop_with: object,
) -> None:
    # The order stays paid (50 confirmations on an automining chain); the leader's rescan would
    # only find the refund after a minute.
    shop = shop_with(confirmations=50, LIANDONG_SETTLEMENT_RESCAN_SECONDS="60")  # type: ignore[operator]
    product = shop.add_product("refund", ["R-1"])
    with Session(shop.engine) as session:
        merchant = create_merchant(session, "merchant", "a long enough password 1")
        assert merchant.id is not None
        token, _ = create_api_token(session, merchant.id, "refunds", ["orders:read", "orders:write"])
    start_cluster(shop, 2)
    leader = one_leader(shop, 15)
    follower = next(node for node in shop.nodes if node is not leader)
    issued = shop.quote(product)
    order_id = issued.order.chain_order_id
    shop.buyer(5).pay(issued.quote, issued.signature)
    shop.wait_for(lambda: shop.order(order_id).status == OrderStatus.PAID, 20, "the payment")
    time.sleep(1.0)  # past the leader's first rescan, which runs when it starts leading

    asked = time.monotonic()
    answer = httpx.post(
        f"http://127.0.0.1:{follower.api_port}/api/merchant/orders/{order_id}/refund",
        json={"reason": "asked by the buyer"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    shop.wait_for(lambda: chain_orders(shop, ORDER_REFUNDED)[order_id] == 1, 15, "the refund on-chain")
    took = time.monotonic() - asked
    print(f"refund via the follower on-chain after {took:.1f} s")
    assert took < 10  # the rescan would take 60 s


def _take_lead(cluster: Cluster) -> None:
    """What `Cluster.lead` does once it holds the lock: the next epoch (the lock itself is not needed
    for the fence's part, and is released with the connection)."""

    async def take() -> None:
        async with await cluster._lock_connection() as conn:
            cluster.epoch = await cluster._next_epoch(conn)
        cluster.leading = True

    asyncio.run(take())


def _write(session: Session, node_id: str) -> None:
    session.connection().execute(
        insert(VAULT_NODES).values(node_id=node_id, master_key_id="k", seen_at=utcnow())
    )


def test_a_stale_leaders_write_commits_before_the_new_epoch_or_not_at_all(postgres_url: str) -> None:
    migrate(postgres_url)
    engine = make_engine(postgres_url)
    hub = ClusterHub(postgres_url)
    old, new = Cluster(hub, lambda _: None), Cluster(hub, lambda _: None)
    _take_lead(old)
    try:
        with Session(engine) as in_flight:
            _write(in_flight, "before")
            old.fence(in_flight)  # passes, and holds the epoch row FOR SHARE until the commit
            takeover = threading.Thread(target=_take_lead, args=(new,))
            takeover.start()
            takeover.join(0.5)
            assert takeover.is_alive()  # the new epoch waits for the old leader's write...
            in_flight.commit()
        takeover.join(5)
        assert (old.epoch, new.epoch) == (1, 2)  # ...which committed first, so the new leader sees it

        with Session(engine) as stale:
            _write(stale, "after")
            with pytest.raises(NotLeaderError):
                old.fence(stale)
            stale.rollback()
        assert not old.leading
        with Session(engine) as session:
            written = session.connection().execute(select(VAULT_NODES.c.node_id)).scalars().all()
        assert written == ["before"]
        with Session(engine) as session:
            new.fence(session)
            assert session.connection().execute(select(func.count()).select_from(VAULT_NODES)).scalar() == 1
    finally:
        engine.dispose()
