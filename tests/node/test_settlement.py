"""The settlement sender sends an order once, however often the node's rescan hands it over."""

from __future__ import annotations

import asyncio
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


def test_an_order_submitted_again_while_its_batch_is_being_sent_is_sent_once(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    issued = shop.quote(shop.add_product("once", ["ONCE-1"]))
    buyer = shop.buyer(4)
    buyer.pay(issued.quote, issued.signature)
    shop.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    assert issued.order.id is not None
    terms = OrderTerms(
        bytes.fromhex(issued.order.chain_order_id[2:]),
        buyer.account.address,
        issued.quote.token,
        issued.quote.amount,
        issued.quote.delivery_deadline,
    )
    sender = _sender(shop)
    asyncio.run(_submit_at_every_turn(sender, Settlement(issued.order.id, terms, bytes(32)), 1.5))
    with Session(shop.engine) as session:
        sent = session.exec(select(ChainTx)).all()
    assert [tx.order_ids for tx in sent] == [str(issued.order.id)]
