"""The settlement sender sends an order once, however often the node's rescan hands it over, and a
term cut off in the middle of a batch leaves nothing stuck for the next one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from liandong.chain.escrow import OrderTerms
from liandong.chain.settlement import Settlement, SettlementSender
from liandong.devtools.simulate import LocalShop
from liandong.store.models import ChainTx
from sqlmodel import Session, select

from .test_batches import _sender


async def _submit_at_every_turn(sender: SettlementSender, settlement: Settlement, seconds: float) -> None:
    """The rescan submits every unsettled order every 2 s; here at every turn of the event loop, so
    it also lands while the sender is in the middle of sending that order's batch."""
    loop = asyncio.get_running_loop()
    running = loop.create_task(sender.run())
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        sender.submit([settlement])
        await asyncio.sleep(0)
    running.cancel()


def _paid_settlement(shop: LocalShop, sku: str) -> Settlement:
    issued = shop.quote(shop.add_product(sku, [f"{sku}-1"]))
    buyer = shop.buyer(4)
    buyer.pay(issued.quote, issued.signature)
    assert issued.order.id is not None
    terms = OrderTerms(
        bytes.fromhex(issued.order.chain_order_id[2:]),
        buyer.account.address,
        issued.quote.token,
        issued.quote.amount,
        issued.quote.delivery_deadline,
    )
    return Settlement(issued.order.id, terms, bytes(32))


def test_an_order_submitted_again_while_its_batch_is_being_sent_is_sent_once(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    settlement = _paid_settlement(shop, "once")
    shop.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    sender = _sender(shop)
    asyncio.run(_submit_at_every_turn(sender, settlement, 1.5))
    with Session(shop.engine) as session:
        sent = session.exec(select(ChainTx)).all()
    assert [tx.order_ids for tx in sent] == [str(settlement.order_id)]


async def _cut_off_mid_batch_then_lead_again(sender: SettlementSender, settlement: Settlement) -> None:
    """The node loses the lead while the batch's gas is being estimated (its tasks are cancelled),
    then leads again: the next term recovers, the rescan submits the order again, and it is sent."""
    first_term = asyncio.get_running_loop().create_task(sender.run())
    sender.submit([settlement])
    sender._wake.set()
    while settlement.order_id not in sender._in_flight:  # taken from the queue, not sent yet
        await asyncio.sleep(0)
    first_term.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first_term
    sender.recover()
    sender.submit([settlement])
    second_term = asyncio.get_running_loop().create_task(sender.run())
    await asyncio.sleep(1.0)
    second_term.cancel()


def test_a_term_cut_off_in_the_middle_of_a_batch_leaves_its_orders_to_the_next(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    settlement = _paid_settlement(shop, "cut")
    asyncio.run(_cut_off_mid_batch_then_lead_again(_sender(shop), settlement))
    with Session(shop.engine) as session:
        sent = session.exec(select(ChainTx)).all()
    assert [tx.order_ids for tx in sent] == [str(settlement.order_id)]
