"""SIGKILL at the two moments between a commit and its effect (`LIANDONG_CRASH_AT`, see
`liandong.core.crashpoints`): a settlement signed and stored but not sent, a delivery committed but its
buyer not told. After a restart nothing is stuck and everything happens exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from liandong.core.crashpoints import ENV
from liandong.devtools.simulate import LocalShop, NodeProcess
from liandong.store.models import ChainTx, ChainTxStatus, OrderStatus
from sqlmodel import Session, select

from tests.peers import Endpoint

from .test_faults import _on_chain_deliveries


def _crashed(shop: LocalShop, node: NodeProcess) -> bool:
    return node.process is not None and node.process.poll() is not None


def _restart_without_crash_point(shop: LocalShop) -> None:
    node = shop.nodes[0]
    node.env = {key: value for key, value in node.env.items() if key != ENV}
    node.process = None
    shop.start()


def _chain_txs(shop: LocalShop) -> list[ChainTx]:
    with Session(shop.engine) as session:
        return list(session.exec(select(ChainTx)).all())


@pytest.mark.slow
def test_sigkill_between_signing_and_sending_a_settlement_broadcasts_the_stored_one(
    shop_factory: Any,
) -> None:
    shop: LocalShop = shop_factory(env={ENV: "settlement-signed"})
    product = shop.add_product("signed", [f"S-{n}" for n in range(3)])
    shop.start()
    orders = [shop.quote(product) for _ in range(2)]
    for n, issued in enumerate(orders):
        shop.buyer(4 + n).pay(issued.quote, issued.signature)
    shop.wait_for(lambda: _crashed(shop, shop.nodes[0]), 30, "the node to die after signing")

    [stored] = _chain_txs(shop)
    assert stored.status == ChainTxStatus.PENDING
    assert stored.raw_tx is not None
    assert _on_chain_deliveries(shop) == Counter()  # signed, stored, never sent

    _restart_without_crash_point(shop)
    keys = [issued.order.chain_order_id for issued in orders]
    shop.wait_for(lambda: all(shop.order(k).committed_at for k in keys), 30, "the deliveries recorded")
    shop.wait_for(
        lambda: all(tx.status != ChainTxStatus.PENDING for tx in _chain_txs(shop)), 20, "the tx finished"
    )
    sent = _chain_txs(shop)
    # The stored transaction itself went out (same hash, same nonce); nothing signed anew for it.
    assert stored.tx_hash in {tx.tx_hash for tx in sent if tx.status == ChainTxStatus.MINED}
    assert all(tx.status == ChainTxStatus.MINED for tx in sent)
    assert Counter(k for tx in sent for k in tx.order_ids.split(",")) == Counter(
        {str(shop.order(k).id): 1 for k in keys}
    )
    assert _on_chain_deliveries(shop) == Counter(dict.fromkeys(keys, 1))


@pytest.mark.slow
def test_sigkill_after_the_delivery_commit_tells_the_buyer_after_the_restart(
    shop_factory: Any, endpoint: Endpoint
) -> None:
    shop: LocalShop = shop_factory(
        env={
            ENV: "delivery-committed",
            "LIANDONG_WEBHOOK_URL": endpoint.url,
            "LIANDONG_WEBHOOK_SECRET": "whsec-crash",
            "LIANDONG_IN_SITE_ACK_SECONDS": "0",
        }
    )
    product = shop.add_product("told", ["T-1"])
    shop.start()
    issued = shop.quote(product)
    shop.buyer(4).pay(issued.quote, issued.signature)
    shop.wait_for(lambda: _crashed(shop, shop.nodes[0]), 30, "the node to die after delivering")
    key = issued.order.chain_order_id
    delivered = shop.order(key)
    assert delivered.status == OrderStatus.DELIVERED
    assert delivered.notice_due
    assert endpoint.requests == []

    _restart_without_crash_point(shop)
    shop.wait_for(lambda: endpoint.requests, 30, "the notice after the restart")
    shop.wait_for(lambda: not shop.order(key).notice_due, 10, "the notice marked done")
    [request] = endpoint.requests
    body = json.loads(request.body)
    assert body["order_id"] == key
    assert body["commitment"] == delivered.commitment is not None
