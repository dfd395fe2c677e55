"""The settlement sender sends an order once, however often the node's rescan hands it over, and a
term cut off in the middle of a batch or a key rotation leaves nothing stuck."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from eth_account import Account
from liandong.chain import owner
from liandong.chain.escrow import ORDER_DELIVERED, OrderTerms
from liandong.chain.settlement import Settlement, SettlementSender
from liandong.devtools.simulate import LocalShop, dev_operator
from liandong.store.models import ChainTx, ChainTxStatus
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
    return Settlement(issued.order.id, issued.order.chain_id, terms, bytes(32))


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


async def _run_with_rescans(sender: SettlementSender, settlement: Settlement, seconds: float) -> None:
    """The sender runs while the node's rescan hands it the order (every 0.1 s here)."""
    loop = asyncio.get_running_loop()
    running = loop.create_task(sender.run())
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        sender.submit([settlement])
        await asyncio.sleep(0.1)
    running.cancel()


def test_after_a_key_rotation_the_old_key_s_pending_transaction_is_given_up_and_resent(
    shop_factory: Any,
) -> None:
    """The old key signed a batch the chain never saw, then the escrow's operator changed: the sender
    on the new key does not touch the old key's nonce; it gives that transaction up and sends the
    order again itself, and the escrow records it once."""
    shop: LocalShop = shop_factory()
    settlement = _paid_settlement(shop, "rotated")
    old = dev_operator()
    stranded = old.sign_transaction(  # a nonce far above the chain's: it never gets mined
        {"chainId": shop.record.chain_id, "to": shop.record.escrow, "value": 0, "gas": 30_000}
        | {"gasPrice": 10**9, "nonce": 10_000, "data": b""}
    )
    with Session(shop.engine) as session:
        session.add(
            ChainTx(
                chain_id=shop.record.chain_id,
                sender=old.address,
                nonce=10_000,
                kind="deliveries",
                tx_hash=stranded.hash.to_0x_hex(),
                order_ids=str(settlement.order_id),
                max_fee_per_gas="1",
                raw_tx=stranded.raw_transaction.to_0x_hex(),
            )
        )
        session.commit()
    new = Account.create()
    shop.w3.provider.make_request("anvil_setBalance", [new.address, hex(10**19)])  # type: ignore[arg-type]
    call = owner.set_operator(shop.record, old.address, new.address)
    signed = old.sign_transaction(
        {
            "chainId": shop.record.chain_id,
            "to": call.to,
            "data": call.data,
            "value": 0,
            "gas": 100_000,
            "gasPrice": shop.w3.eth.gas_price * 2,
            "nonce": shop.w3.eth.get_transaction_count(old.address),
        }
    )
    shop.w3.eth.wait_for_transaction_receipt(shop.w3.eth.send_raw_transaction(signed.raw_transaction))

    sender = _sender(shop)
    sender.recover()
    sender.use_key("0x" + bytes(new.key).hex())
    asyncio.run(_run_with_rescans(sender, settlement, 2.0))
    with Session(shop.engine) as session:
        sent = {(tx.sender, tx.status) for tx in session.exec(select(ChainTx)).all()}
    assert sent == {(old.address, ChainTxStatus.FAILED), (new.address, ChainTxStatus.MINED)}
    delivered = shop.w3.eth.get_logs(
        {"address": shop.record.escrow, "fromBlock": 0, "topics": ["0x" + ORDER_DELIVERED.hex()]}
    )
    assert len(delivered) == 1
