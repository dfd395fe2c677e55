"""What a mined batch proves, on anvil with the settlement sender in-process: only the orders whose
OrderDelivered log is in the receipt are marked settled; those the escrow skipped go where their
reason says; a batch whose estimate reverts is split until the order that makes it revert is
isolated, and the others settle."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from liandong.chain.escrow import OrderTerms
from liandong.chain.settlement import Settlement, SettlementSender, order_terms
from liandong.devtools.simulate import LocalShop, dev_operator
from liandong.services.stats import abnormal_deliveries
from liandong.store.models import OrderStatus, ShopOrder, utcnow
from sqlmodel import Session

from .test_faults import _on_chain_deliveries


def _paid_and_delivered(shop: LocalShop, product: int, count: int) -> list[int]:
    """Orders paid on-chain and marked delivered in the store (no node runs here)."""
    ids = []
    for n in range(count):
        issued = shop.quote(product)
        buyer = shop.buyer(4 + n)
        shop.w3.eth.wait_for_transaction_receipt(buyer.pay(issued.quote, issued.signature))  # type: ignore[arg-type]
        with Session(shop.engine) as session:
            order = session.get(ShopOrder, issued.order.id)
            assert order is not None
            assert order.id is not None
            order.payer, order.status = buyer.account.address, OrderStatus.DELIVERED
            order.commitment, order.delivered_at = "0x" + os.urandom(32).hex(), utcnow()
            order.block_time = utcnow()
            session.add(order)
            session.commit()
            ids.append(order.id)
    return ids


def _settlements(shop: LocalShop, ids: list[int]) -> list[Settlement]:
    with Session(shop.engine) as session:
        orders = [session.get(ShopOrder, order_id) for order_id in ids]
        return [
            Settlement(o.id, o.chain_id, order_terms(o), bytes.fromhex((o.commitment or "")[2:]))
            for o in orders
            if o is not None and o.id is not None
        ]


async def _run_until(sender: SettlementSender, done: Any, seconds: float) -> None:
    running = asyncio.get_running_loop().create_task(sender.run())
    deadline = asyncio.get_running_loop().time() + seconds
    while not done() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    running.cancel()


def _sender(shop: LocalShop, cls: type[SettlementSender] = SettlementSender) -> SettlementSender:
    return cls(
        shop.engine,
        [shop.anvil.http_url],
        shop.record.chain_id,
        shop.record.escrow,
        "0x" + bytes(dev_operator().key).hex(),
        batch_interval=0.05,
    )


def _order(shop: LocalShop, order_id: int) -> ShopOrder:
    with Session(shop.engine) as session:
        order = session.get(ShopOrder, order_id)
        assert order is not None
        session.expunge(order)
        return order


def test_only_what_the_receipt_shows_is_marked_settled(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("receipt", ["R-1", "R-2", "R-3"])
    settled_before, fresh = _paid_and_delivered(shop, product, 2)
    unpaid = shop.quote(product)  # never paid: the escrow does not know it
    assert unpaid.order.id is not None
    sender = _sender(shop)
    first = _settlements(shop, [settled_before])
    sender.submit(first)
    asyncio.run(_run_until(sender, lambda: _order(shop, settled_before).committed_at, 10))
    with Session(shop.engine) as session:  # as if a previous run's record had landed unseen
        order = session.get(ShopOrder, settled_before)
        assert order is not None
        order.committed_at = order.settled_block = None
        session.add(order)
        session.commit()

    ghost = Settlement(
        unpaid.order.id,
        unpaid.order.chain_id,
        OrderTerms(
            bytes.fromhex(unpaid.order.chain_order_id[2:]), dev_operator().address, unpaid.quote.token, 1, 1
        ),
        bytes(32),
    )
    sender = _sender(shop)
    sender.submit([*first, *_settlements(shop, [fresh]), ghost])
    asyncio.run(_run_until(sender, lambda: _order(shop, fresh).committed_at, 10))

    assert _order(shop, fresh).committed_at is not None
    # Skipped as already delivered (reason 3): left to the indexer, not marked by the sender.
    assert _order(shop, settled_before).committed_at is None
    held = _order(shop, unpaid.order.id)
    assert held.settlement_held
    assert held.anomaly == "settlement skipped: unknown order"
    assert _on_chain_deliveries(shop)[_order(shop, settled_before).chain_order_id] == 1


class OneHostileOrder(SettlementSender):
    """The chain's answer to an estimate, with one order that makes every batch holding it revert
    (as a buyer contract that breaks the call would)."""

    hostile: bytes = b""

    async def _estimate(self, data: bytes) -> tuple[int | None, str]:
        if self.hostile and self.hostile in data:
            return None, "execution reverted"
        return await super()._estimate(data)


def test_a_batch_that_reverts_is_split_until_the_bad_order_is_isolated(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("split", [f"S-{n}" for n in range(5)])
    ids = _paid_and_delivered(shop, product, 5)
    bad = ids[3]
    sender = _sender(shop, OneHostileOrder)
    assert isinstance(sender, OneHostileOrder)
    sender.hostile = bytes.fromhex(_order(shop, bad).chain_order_id[2:])
    sender.submit(_settlements(shop, ids))
    good = [order_id for order_id in ids if order_id != bad]
    asyncio.run(_run_until(sender, lambda: all(_order(shop, i).committed_at for i in good), 15))

    assert all(_order(shop, i).committed_at is not None for i in good)
    held = _order(shop, bad)
    assert held.committed_at is None
    assert held.settlement_held
    assert held.anomaly is not None
    assert held.anomaly.startswith("settlement reverts")
    assert _on_chain_deliveries(shop)[held.chain_order_id] == 0
    with Session(shop.engine) as session:
        log = abnormal_deliveries(session)
    [entry] = [e for e in log.entries if e.order == held.chain_order_id]
    assert entry.anomaly == held.anomaly
