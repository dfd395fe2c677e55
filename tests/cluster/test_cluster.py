"""Three nodes on one PostgreSQL database: one leader, work shared, events reach every node, and
nodes killed at random moments lose nothing."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import psycopg
from liandong.chain.escrow import SETTLEMENT_TOPICS
from liandong.devtools.simulate import LocalShop, NodeProcess
from liandong.store.models import CardKey, ChainCheckpoint, Delivery, OrderStatus, Payment, ShopOrder
from sqlmodel import Session, col, func, select
from web3 import Web3
from websockets.sync.client import connect

from tests.conftest import POSTGRES_SERVER

ORDER_PAID, ORDER_DELIVERED, ORDER_REFUNDED = ("0x" + topic.hex() for topic in SETTLEMENT_TOPICS)


def start_cluster(shop: LocalShop, size: int) -> list[NodeProcess]:
    shop.start()
    for _ in range(size - 1):
        shop.start(shop.add_node())
    return shop.nodes


def leaders(shop: LocalShop) -> list[NodeProcess]:
    alive = [node for node in shop.nodes if node.process is not None]
    return [node for node in alive if (health := node.health()) is not None and health["leader"]]


def one_leader(shop: LocalShop, timeout: float) -> NodeProcess:
    found: list[NodeProcess] = shop.wait_for(
        lambda: len(found := leaders(shop)) == 1 and found, timeout, "a leader"
    )
    return found[0]


def chain_orders(shop: LocalShop, topic: str) -> Counter[str]:
    logs = shop.w3.eth.get_logs(
        {"address": Web3.to_checksum_address(shop.record.escrow), "fromBlock": 0, "topics": [topic]}
    )
    return Counter("0x" + bytes(entry["topics"][1]).hex() for entry in logs)


def test_one_leader_events_on_every_node_and_a_new_leader_when_it_dies(cluster_shop: LocalShop) -> None:
    shop = cluster_shop
    product = shop.add_product("multi", [f"M-{n:02}" for n in range(20)])
    start_cluster(shop, 3)
    leader = one_leader(shop, 15)
    follower = next(node for node in shop.nodes if node is not leader)

    issued = shop.quote(product)
    order_key = issued.order.chain_order_id
    page = connect(f"ws://127.0.0.1:{follower.api_port}/api/orders/{order_key}/events", open_timeout=5)
    page.send(json.dumps({"type": "auth", "token": issued.access_token}))  # the stream's proof
    assert json.loads(page.recv(timeout=10))["type"] == "ready"
    shop.buyer(4).pay(issued.quote, issued.signature)
    heard = [json.loads(page.recv(timeout=20))["status"] for _ in range(2)]
    page.close()
    assert heard == ["confirmed", "delivered"]  # from the leader's indexer and a worker, via NOTIFY

    killed_at = time.monotonic()
    leader.kill()
    successor = one_leader(shop, 20)
    takeover = time.monotonic() - killed_at
    print(f"leader killed; node on port {successor.api_port} led {takeover:.1f} s later")
    assert successor is not leader

    later = shop.quote(product)
    shop.buyer(5).pay(later.quote, later.signature)
    shop.wait_for(
        lambda: shop.order(later.order.chain_order_id).committed_at is not None, 30, "delivery after takeover"
    )


def pay_steadily(shop: LocalShop, quotes: list[Any], rate: float, done: threading.Event) -> None:
    buyers = [shop.buyer(index) for index in range(4, 10)]  # anvil's funded dev accounts
    start = time.monotonic()
    for n, issued in enumerate(quotes):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        buyers[n % len(buyers)].pay(issued.quote, issued.signature)
    done.set()


def paying(
    shop: LocalShop, product: int, orders: int, rate: float
) -> tuple[threading.Thread, threading.Event]:
    """`orders` quotes of `product`, paid at `rate` a second by a thread: the thread, and the event
    it sets once every quote is paid."""
    quotes = [shop.quote(product) for _ in range(orders)]
    done = threading.Event()
    payer = threading.Thread(target=pay_steadily, args=(shop, quotes, rate, done), daemon=True)
    payer.start()
    return payer, done


def settled(shop: LocalShop) -> tuple[int, int]:
    with Session(shop.engine) as session:
        rows = session.exec(
            select(ShopOrder.status, func.count())
            .where(
                ((col(ShopOrder.status) == OrderStatus.DELIVERED) & col(ShopOrder.committed_at).is_not(None))
                | (col(ShopOrder.status) == OrderStatus.REFUNDED)
            )
            .group_by(col(ShopOrder.status))
        ).all()
    counts = dict(rows)
    return counts.get(OrderStatus.DELIVERED, 0), counts.get(OrderStatus.REFUNDED, 0)


def test_killing_the_leader_and_workers_at_random_loses_nothing(cluster_shop: LocalShop) -> None:
    shop = cluster_shop
    orders, stock = 1000, 985  # the last few paid orders find no key: refunded on-chain
    product = shop.add_product("fault", [f"F-{n:05}" for n in range(stock)])
    start_cluster(shop, 3)
    one_leader(shop, 15)
    payer, done = paying(shop, product, orders, 50.0)

    chance = random.Random(20261125)  # noqa: S311 - kill timing, seeded so a failure replays
    for round_no in range(4):
        time.sleep(chance.uniform(1.0, 4.0))
        victim = (
            one_leader(shop, 20)
            if round_no % 2 == 0
            else chance.choice([node for node in shop.nodes if node not in leaders(shop)])
        )
        victim.kill()
        time.sleep(chance.uniform(0.0, 2.0))
        shop.start(victim)
    payer.join(timeout=120)
    assert done.is_set()

    shop.wait_for(lambda: sum(settled(shop)) == orders, 240, "every paid order delivered or refunded")
    delivered, refunded = settled(shop)
    assert (delivered, refunded) == (stock, orders - stock)

    paid_on_chain = chain_orders(shop, ORDER_PAID)
    delivered_on_chain = chain_orders(shop, ORDER_DELIVERED)
    refunded_on_chain = chain_orders(shop, ORDER_REFUNDED)
    assert len(paid_on_chain) == orders
    assert set(delivered_on_chain.values()) == {1}  # one on-chain record per order, never two
    assert set(refunded_on_chain.values()) == {1}
    assert not set(delivered_on_chain) & set(refunded_on_chain)
    assert set(delivered_on_chain) | set(refunded_on_chain) == set(paid_on_chain)
    with Session(shop.engine) as session:
        assert session.exec(select(func.count()).select_from(Payment)).one() == orders  # no block skipped
        keys_out = session.exec(select(func.count()).where(col(CardKey.order_id).is_not(None))).one()
        assert keys_out == stock
        assert session.exec(select(func.count(func.distinct(Delivery.card_key_id)))).one() == stock
        checkpoint = session.exec(select(ChainCheckpoint)).one()
        assert checkpoint.block_number >= shop.w3.eth.block_number - 5


def drop_connections(shop: LocalShop) -> int:
    """Ends every session of the nodes on the shop's database, as a restart of the server would."""
    assert shop.database_url is not None
    name = shop.database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_dropped_database_connections_and_a_restarted_chain_node_heal_without_help(
    cluster_shop: LocalShop,
) -> None:
    shop = cluster_shop
    orders = 200
    product = shop.add_product("heal", [f"H-{n:04}" for n in range(orders)])
    start_cluster(shop, 2)
    one_leader(shop, 15)
    payer, done = paying(shop, product, orders, 40.0)
    time.sleep(1.5)
    shop.engine.dispose()  # the test's own pool goes too, and reconnects like the nodes must
    assert drop_connections(shop) >= 4
    time.sleep(1.5)
    assert drop_connections(shop) >= 2
    payer.join(timeout=60)
    assert done.is_set()

    shop.wait_for(lambda: settled(shop) == (orders, 0), 120, "every order delivered after the drops")
    one_leader(shop, 15)
    assert set(chain_orders(shop, ORDER_DELIVERED).values()) == {1}


def rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    return shop.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def pay_all(shop: LocalShop, quotes: list[Any]) -> None:
    buyers = [shop.buyer(index) for index in range(4, 10)]  # fresh nonces: a revert resets them
    for n, issued in enumerate(quotes):
        buyers[n % len(buyers)].pay(issued.quote, issued.signature)


def test_reorgs_of_depth_one_to_five_under_load_deliver_exactly_the_canonical_payments(
    cluster_shop: LocalShop,
) -> None:
    shop = cluster_shop
    shop.extra_env["LIANDONG_CONFIRMATIONS"] = "6"  # deeper than any reorg here
    shop.nodes[0].env = shop.env()
    product = shop.add_product("reorg", [f"R-{n:04}" for n in range(400)])
    start_cluster(shop, 2)
    one_leader(shop, 15)
    orphaned: list[str] = []
    rpc(shop, "evm_setAutomine", False)  # the test decides what each block holds
    for depth in range(1, 6):
        snapshot = rpc(shop, "evm_snapshot")
        doomed = [shop.quote(product) for _ in range(depth * 4)]
        pay_all(shop, doomed)
        for _ in range(depth):  # the doomed payments, then empty blocks: `depth` blocks in all
            rpc(shop, "evm_mine")
        time.sleep(0.5)  # the nodes see the doomed blocks, under load from the other rounds
        assert rpc(shop, "evm_revert", snapshot)
        orphaned += [issued.order.chain_order_id for issued in doomed]
        kept = [shop.quote(product) for _ in range(10)]
        pay_all(shop, kept)
        for _ in range(depth + 1):  # the new branch is longer: it wins
            rpc(shop, "evm_mine")
    rpc(shop, "evm_setAutomine", True)
    for _ in range(8):
        rpc(shop, "evm_mine")
        time.sleep(0.1)

    canonical = set(chain_orders(shop, ORDER_PAID))
    assert len(canonical) == 50
    shop.wait_for(
        lambda: settled(shop) == (50, 0) and set(chain_orders(shop, ORDER_DELIVERED)) == canonical,
        120,
        "every canonical payment delivered, and recorded on the chain that won",
    )
    assert set(chain_orders(shop, ORDER_DELIVERED).values()) == {1}
    assert all(shop.order(key).status == OrderStatus.QUOTED for key in orphaned)
