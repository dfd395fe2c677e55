"""Faults: reorganisations, SIGKILL of the node, and a chain node that goes away and comes back."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from liandong.devtools.simulate import LocalShop
from liandong.store.models import ChainTx, ChainTxStatus, Delivery, OrderStatus, Payment, ShopOrder
from sqlmodel import Session, col, select
from web3 import Web3

from .test_delivery import ORDER_DELIVERED


def _rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    return shop.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _delivered_everything(shop: LocalShop, order_keys: list[str]) -> bool:
    orders = [shop.order(key) for key in order_keys]
    return all(o.status == OrderStatus.DELIVERED and o.committed_at is not None for o in orders)


def _on_chain_deliveries(shop: LocalShop) -> Counter[str]:
    logs = shop.w3.eth.get_logs(
        {"address": Web3.to_checksum_address(shop.record.escrow), "fromBlock": 0, "topics": [ORDER_DELIVERED]}
    )
    return Counter("0x" + bytes(entry["topics"][1]).hex() for entry in logs)


def test_reorg_before_confirmations_drops_the_payment_and_keeps_the_other(shop_factory: Any) -> None:
    shop = shop_factory(confirmations=2)
    product = shop.add_product("reorg", ["R-1", "R-2"])
    shop.start()
    gone, kept = shop.quote(product), shop.quote(product)

    snapshot = _rpc(shop, "evm_snapshot")
    shop.buyer(4).pay(gone.quote, gone.signature)
    shop.wait_for(
        lambda: shop.order(gone.order.chain_order_id).status == OrderStatus.PAID, 20, "payment seen"
    )
    assert _rpc(shop, "evm_revert", snapshot)  # the block with the payment is no longer canonical
    shop.buyer(5).pay(kept.quote, kept.signature)
    for _ in range(3):
        _rpc(shop, "evm_mine")

    shop.wait_for(lambda: _delivered_everything(shop, [kept.order.chain_order_id]), 30, "the kept order")
    assert shop.order(gone.order.chain_order_id).status == OrderStatus.QUOTED
    with Session(shop.engine) as session:
        assert (
            session.exec(select(Payment).where(Payment.chain_order_id == gone.order.chain_order_id)).first()
            is None
        )
        assert len(session.exec(select(Delivery)).all()) == 1
    assert _on_chain_deliveries(shop) == Counter({kept.order.chain_order_id: 1})


def test_sigkill_at_random_moments_delivers_each_paid_order_exactly_once(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("kill", [f"K-{n:03}" for n in range(60)])
    shop.start()
    quotes = [shop.quote(product) for _ in range(40)]
    buyers = [shop.buyer(index) for index in range(4, 10)]
    chance = random.Random(20261125)  # noqa: S311 - kill timing, seeded so a failure replays
    for round_start in range(0, len(quotes), 10):
        for offset, issued in enumerate(quotes[round_start : round_start + 10]):
            buyers[offset % len(buyers)].pay(issued.quote, issued.signature)
        # Anywhere from before the node saw the payments to after it recorded them on-chain.
        time.sleep(chance.uniform(0.0, 0.4))
        shop.kill()
        shop.start()

    keys = [issued.order.chain_order_id for issued in quotes]
    shop.wait_for(lambda: _delivered_everything(shop, keys), 60, "every order delivered and recorded")
    with Session(shop.engine) as session:
        deliveries = session.exec(select(Delivery)).all()
        orders = session.exec(select(ShopOrder)).all()
    assert len(deliveries) == len(quotes)
    assert len({d.card_key_id for d in deliveries}) == len(quotes)  # no key handed out twice
    assert Counter(d.order_id for d in deliveries) == Counter({o.id: 1 for o in orders})
    assert _on_chain_deliveries(shop) == Counter(dict.fromkeys(keys, 1))


def test_payments_made_while_the_node_was_down_are_backfilled(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("gap", [f"G-{n}" for n in range(5)])
    shop.start()
    shop.kill()
    missed = [shop.quote(product) for _ in range(3)]
    for index, issued in enumerate(missed):
        shop.buyer(4 + index).pay(issued.quote, issued.signature)
    for _ in range(5):
        _rpc(shop, "evm_mine")
    shop.start()
    keys = [issued.order.chain_order_id for issued in missed]
    shop.wait_for(lambda: _delivered_everything(shop, keys), 30, "the missed payments delivered")


def test_the_chain_node_going_away_and_back_is_survived(shop_factory: Any, tmp_path: Path) -> None:
    shop = shop_factory(chain_state=tmp_path / "chain-state.json")
    product = shop.add_product("restart", [f"S-{n}" for n in range(5)])
    shop.start()
    first = shop.quote(product)
    shop.buyer(4).pay(first.quote, first.signature)
    shop.wait_for(lambda: _delivered_everything(shop, [first.order.chain_order_id]), 20, "first delivery")

    shop.anvil.stop()  # the WebSocket drops; the node polls and reconnects with backoff
    shop.anvil.start()
    second = shop.quote(product)
    shop.buyer(5).pay(second.quote, second.signature)
    shop.wait_for(
        lambda: _delivered_everything(shop, [second.order.chain_order_id]), 60, "delivery after restart"
    )
    assert _on_chain_deliveries(shop)[second.order.chain_order_id] == 1


def test_a_stuck_settlement_is_replaced_with_a_higher_fee(shop_factory: Any) -> None:
    shop = shop_factory(stuck_seconds=1.0)
    product = shop.add_product("stuck", ["STUCK-1"])
    shop.start()
    issued = shop.quote(product)
    _rpc(shop, "evm_setAutomine", False)  # nothing is mined unless the test says so
    shop.buyer(4).pay(issued.quote, issued.signature)
    _rpc(shop, "evm_mine")
    order_key = issued.order.chain_order_id
    shop.wait_for(lambda: shop.order(order_key).status == OrderStatus.DELIVERED, 20, "delivery")

    def replaced() -> list[ChainTx] | None:
        with Session(shop.engine) as session:
            sent = session.exec(select(ChainTx).order_by(col(ChainTx.id))).all()
        return sent if len(sent) >= 2 else None

    first, bump, *_ = shop.wait_for(replaced, 20, "a replacement transaction")
    assert bump.nonce == first.nonce
    assert int(bump.max_fee_per_gas) >= int(first.max_fee_per_gas) * 125 // 100
    _rpc(shop, "evm_mine")

    def settled() -> Counter[ChainTxStatus] | None:
        with Session(shop.engine) as session:
            statuses = Counter(tx.status for tx in session.exec(select(ChainTx)).all())
        return statuses if statuses[ChainTxStatus.PENDING] == 0 else None

    statuses = shop.wait_for(settled, 20, "the sender to see one of them mined")
    assert statuses[ChainTxStatus.MINED] == 1
    assert statuses[ChainTxStatus.REPLACED] == len(replaced() or []) - 1
    assert shop.order(order_key).committed_at is not None
    assert _on_chain_deliveries(shop) == Counter({order_key: 1})


def test_a_reorg_that_drops_the_settlement_gets_it_recorded_again(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("resettle", ["S-1"])
    shop.start()
    issued = shop.quote(product)
    order_key = issued.order.chain_order_id
    _rpc(shop, "evm_setAutomine", False)
    shop.buyer(4).pay(issued.quote, issued.signature)
    _rpc(shop, "evm_mine")  # the payment's block
    shop.wait_for(lambda: shop.order(order_key).status == OrderStatus.DELIVERED, 20, "delivery")
    snapshot = _rpc(shop, "evm_snapshot")
    shop.wait_for(lambda: _rpc(shop, "txpool_status")["pending"] != "0x0", 20, "the settlement sent")
    _rpc(shop, "evm_mine")  # the settlement's block ...
    first_seen = shop.wait_for(lambda: shop.order(order_key).committed_at, 20, "the settlement seen")
    assert _rpc(shop, "evm_revert", snapshot)  # ... leaves the chain
    for _ in range(2):
        _rpc(shop, "evm_mine")
    _rpc(shop, "evm_setAutomine", True)
    # The orphaned record is forgotten, the settlement sent again and seen again, on the new chain.
    shop.wait_for(
        lambda: (seen := shop.order(order_key).committed_at) is not None and seen != first_seen,
        30,
        "the settlement recorded again",
    )
    assert _on_chain_deliveries(shop) == Counter({order_key: 1})
