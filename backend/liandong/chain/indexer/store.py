"""The indexer's database side: what the escrow's events do to the orders, and the checkpoint.

`IndexerStore` is the only part of the indexer that writes the database, and every one of its public
methods is one transaction: `apply` records a run of blocks' payments, deliveries and refunds and
moves the checkpoint to the run's last block in the same commit, so a crash replays at most the
blocks whose effects were not committed; `rollback_to` undoes what a reorganisation took off the
chain. Both move the checkpoint only from the block the caller built on (a conditional write that
also locks the row first): the indexer of a node that lost the lead and has not noticed yet cannot
write behind the new leader's back or move the checkpoint backwards; it gets `StaleCheckpointError`
and reads the database again. Payments are written with one statement per kind for a whole run of
blocks, so a block of a few hundred payments costs a few statements, not a few hundred. Order status
changes are announced only once committed. The confirmation policy and what a confirmed order hands
the delivery engine live here too: both are decided inside these transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, delete, insert, update
from sqlmodel import Session, col, select

from liandong.chain.escrow import EscrowEvent, OrderDelivered, OrderPaid
from liandong.chain.indexer.heads import Header
from liandong.events import OrderEvent
from liandong.store.models import ChainBlock, ChainCheckpoint, OrderStatus, Payment, ShopOrder, utcnow

log = logging.getLogger(__name__)

PAYMENT_REORGED = "payment reorged"
"""The anomaly of a delivered order whose payment a reorganisation took off the chain."""


class StaleCheckpointError(RuntimeError):
    """The checkpoint is no longer where this indexer left it (another node's indexer moved it):
    nothing was written; sync again from the checkpoint the database holds."""


@dataclass(frozen=True)
class ConfirmationPolicy:
    """How many blocks must follow a payment before its keys go out, by the order's size."""

    confirmations: int = 0
    large_order_confirmations: int = 3
    large_order_thresholds: dict[str, int] | None = None

    def required(self, token: str, amount: int) -> int:
        threshold = (self.large_order_thresholds or {}).get(token.lower())
        if threshold is not None and amount >= threshold:
            return max(self.confirmations, self.large_order_confirmations)
        return self.confirmations


@dataclass(frozen=True)
class ConfirmedOrder:
    order_id: int
    priority: int


def _now() -> datetime:
    return datetime.now(UTC)


class IndexerStore:
    """The indexer's database side: every method is one transaction."""

    def __init__(
        self,
        engine: Engine,
        chain_id: int,
        policy: ConfirmationPolicy,
        reorg_window: int,
        publish: Callable[[OrderEvent], None] | None = None,
    ) -> None:
        self.engine = engine
        self.chain_id = chain_id
        self.policy = policy
        self.reorg_window = reorg_window
        self.publish = publish
        """Hears order status changes (paid, confirmations n/N, refunded) once they are committed."""
        self._announcements: list[OrderEvent] = []
        self._awaiting_confirmations = True
        """Whether some order may still be waiting for confirmations (checked at start-up)."""

    def checkpoint(self) -> ChainCheckpoint | None:
        with Session(self.engine) as session:
            return session.get(ChainCheckpoint, self.chain_id)

    def stored_hash(self, number: int) -> str | None:
        with Session(self.engine) as session:
            block = session.get(ChainBlock, (self.chain_id, number))
            if block is not None:
                return block.hash
            checkpoint = session.get(ChainCheckpoint, self.chain_id)
            if checkpoint is not None and checkpoint.block_number == number:
                return checkpoint.block_hash
            return None

    def start_at(self, header: Header) -> None:
        """Places the first checkpoint just before the escrow's deployment block."""
        with Session(self.engine) as session:
            session.add(
                ChainCheckpoint(chain_id=self.chain_id, block_number=header.number, block_hash=header.hash)
            )
            session.commit()

    @staticmethod
    def _move_checkpoint(session: Session, chain_id: int, after: int, to: Header) -> None:
        """Moves the checkpoint from block `after` to `to`, first in its transaction (the row lock
        makes a concurrent indexer wait, then find the checkpoint moved)."""
        moved = session.connection().execute(
            update(ChainCheckpoint)
            .where(col(ChainCheckpoint.chain_id) == chain_id, col(ChainCheckpoint.block_number) == after)
            .values(block_number=to.number, block_hash=to.hash, updated_at=utcnow())
        )
        if moved.rowcount != 1:
            raise StaleCheckpointError(f"the checkpoint of chain {chain_id} moved away from block {after}")

    def apply(
        self,
        events: Sequence[EscrowEvent],
        blocks: Sequence[Header],
        after: int,
        upto: Header,
        head_number: int,
    ) -> list[ConfirmedOrder]:
        """Applies the events of the blocks after block `after` (the checkpoint) up to `upto` and
        moves the checkpoint there, in one transaction; `blocks` are the headers to remember for
        reorg detection (near the head)."""
        times = {block.number: block.timestamp for block in blocks}
        self._announcements = []  # what a failed earlier attempt noted never happened
        with Session(self.engine) as session:
            self._move_checkpoint(session, self.chain_id, after, upto)
            orders = self._orders_named(session, events)
            paid = [event for event in events if isinstance(event, OrderPaid)]
            confirmed = self._record_payments(session, paid, orders, times, upto.timestamp)
            connection = session.connection()
            for event in events:
                order = orders.get("0x" + event.order_id.hex())
                if order is None or isinstance(event, OrderPaid):
                    continue
                block = event.position.block_number
                if isinstance(event, OrderDelivered):
                    connection.execute(
                        update(ShopOrder)
                        .where(col(ShopOrder.id) == order.id, col(ShopOrder.committed_at).is_(None))
                        .values(committed_at=_now(), settled_block=block)
                    )
                    continue
                refunded = connection.execute(
                    update(ShopOrder)
                    .where(col(ShopOrder.id) == order.id, col(ShopOrder.status) != OrderStatus.REFUNDED)
                    .values(status=OrderStatus.REFUNDED, refunded_at=_now(), settled_block=block)
                )
                if refunded.rowcount:
                    self._note(order, OrderStatus.REFUNDED)
            if blocks:  # a rollback deletes blocks above the ancestor, so these are always new
                connection.execute(
                    insert(ChainBlock),
                    [
                        {
                            "chain_id": self.chain_id,
                            "number": b.number,
                            "hash": b.hash,
                            "parent_hash": b.parent_hash,
                        }
                        for b in blocks
                    ],
                )
            if any(block.number % 32 == 0 for block in blocks):  # not every block: a statement each
                connection.execute(
                    delete(ChainBlock).where(
                        col(ChainBlock.chain_id) == self.chain_id,
                        col(ChainBlock.number) < upto.number - self.reorg_window,
                    )
                )
            if self._awaiting_confirmations:
                confirmed += self._confirm_due(session, min(head_number, upto.number))
            session.commit()
        self._announce()
        return confirmed

    def _note(self, order: ShopOrder, status: OrderStatus, **details: Any) -> None:
        self._announcements.append(
            OrderEvent(order.chain_order_id, status.value, product_id=order.product_id, **details)
        )

    def _announce(self) -> None:
        announcements, self._announcements = self._announcements, []
        if self.publish is not None:
            for event in announcements:
                self.publish(event)

    def _orders_named(self, session: Session, events: Sequence[EscrowEvent]) -> dict[str, ShopOrder]:
        keys = {"0x" + event.order_id.hex() for event in events}
        if not keys:
            return {}
        found = session.exec(select(ShopOrder).where(col(ShopOrder.chain_order_id).in_(keys))).all()
        return {order.chain_order_id: order for order in found}

    def _payments_of(self, session: Session, paid: Sequence[OrderPaid]) -> dict[str, Payment]:
        if not paid:
            return {}
        keys = ["0x" + event.order_id.hex() for event in paid]
        found = session.exec(
            select(Payment).where(Payment.chain_id == self.chain_id, col(Payment.chain_order_id).in_(keys))
        ).all()
        return {payment.chain_order_id: payment for payment in found}

    @staticmethod
    def _returning_buyers(session: Session, paid: Sequence[OrderPaid]) -> set[str]:
        """Payers among `paid` who have had an order delivered before: they go first."""
        if not paid:
            return set()
        payers = {event.buyer for event in paid}
        rows = session.exec(
            select(ShopOrder.payer)
            .where(col(ShopOrder.payer).in_(payers), ShopOrder.status == OrderStatus.DELIVERED)
            .distinct()
        ).all()
        return {payer for payer in rows if payer is not None}

    def rollback_to(self, ancestor: Header, after: int) -> int:
        """Forgets everything after `ancestor` (the checkpoint being at block `after`): payments there
        become unpaid again unless delivered."""
        self._announcements = []
        with Session(self.engine) as session:
            self._move_checkpoint(session, self.chain_id, after, ancestor)
            orphaned = session.exec(
                select(Payment).where(
                    Payment.chain_id == self.chain_id, Payment.block_number > ancestor.number
                )
            ).all()
            connection = session.connection()
            for payment in orphaned:
                order = session.exec(
                    select(ShopOrder).where(ShopOrder.chain_order_id == payment.chain_order_id)
                ).first()
                if order is not None:
                    self._orphan(connection, order, ancestor.number)
                session.delete(payment)
            session.exec(
                delete(ChainBlock).where(
                    col(ChainBlock.chain_id) == self.chain_id, col(ChainBlock.number) > ancestor.number
                )
            )
            self._unsettle_after(session, ancestor.number)
            session.commit()
        self._announce()
        return len(orphaned)

    def _orphan(self, connection: Any, order: ShopOrder, ancestor: int) -> None:
        """The payment of `order` left the chain. Not delivered yet: the order is unpaid again.
        Its keys already out: it is flagged ("payment reorged") for the abnormal log and the
        alerts, never silently kept. Each change is conditional on the state it was decided on,
        so a delivery committed meanwhile is never overwritten by the rollback."""
        unpaid = connection.execute(
            update(ShopOrder)
            .where(
                col(ShopOrder.id) == order.id,
                col(ShopOrder.status).in_([OrderStatus.PAID, OrderStatus.CONFIRMED]),
            )
            .values(status=OrderStatus.QUOTED, payer=None, seen_at=None, confirmed_at=None, block_time=None)
        )
        if unpaid.rowcount:
            self._note(order, OrderStatus.QUOTED, reason="the payment's block left the chain")
            return
        flagged = connection.execute(
            update(ShopOrder)
            .where(col(ShopOrder.id) == order.id, col(ShopOrder.status) == OrderStatus.DELIVERED)
            .values(anomaly=PAYMENT_REORGED)
        )
        if flagged.rowcount:
            log.error(
                "ALERT: reorg below %s removed the payment of order %s after its keys went out",
                ancestor,
                order.id,
            )  # and the dashboard's alerts (services.stats.alerts) name it until it is dealt with
        else:
            log.warning("reorg below %s removed the payment of %s order %s", ancestor, order.status, order.id)

    def _unsettle_after(self, session: Session, block_number: int) -> None:
        """Settlements recorded in blocks that left the chain are owed again: the leader's rescan
        re-sends them (the escrow refuses a second settlement, so nothing is settled twice)."""
        connection = session.connection()
        gone = col(ShopOrder.settled_block) > block_number
        for order_id in session.exec(select(ShopOrder.id).where(gone)):
            log.warning("reorg below %s removed the on-chain settlement of order %s", block_number, order_id)
        connection.execute(
            update(ShopOrder)
            .where(gone, col(ShopOrder.status) == OrderStatus.REFUNDED)
            .values(status=OrderStatus.REFUNDING, refunded_at=None)
        )
        connection.execute(update(ShopOrder).where(gone).values(committed_at=None, settled_block=None))

    def _record_payments(
        self,
        session: Session,
        paid: Sequence[OrderPaid],
        orders: dict[str, ShopOrder],
        times: dict[int, int],
        default_time: int,
    ) -> list[ConfirmedOrder]:
        """Records a block run's payments with one statement per kind, and marks their orders paid
        (or confirmed at once when they need no confirmations)."""
        payments = self._payments_of(session, paid)
        returning = self._returning_buyers(session, paid)
        connection = session.connection()
        new_payments, order_updates, confirmed = [], [], []
        seen_at = _now()
        for event in paid:
            order_key = "0x" + event.order_id.hex()
            position = {
                "tx_hash": event.position.tx_hash,
                "block_number": event.position.block_number,
                "block_hash": event.position.block_hash,
                "log_index": event.position.log_index,
            }
            existing = payments.get(order_key)
            if existing is not None:  # re-included after a reorg: a new transaction and block
                connection.execute(
                    update(Payment)
                    .where(col(Payment.id) == existing.id)
                    .values(**position, fee_bps=event.fee_bps)
                )
            else:
                new_payments.append(
                    {
                        "chain_id": self.chain_id,
                        "chain_order_id": order_key,
                        "payer": event.buyer,
                        "token": event.token,
                        "amount": str(event.amount),
                        "fee_bps": event.fee_bps,
                        "seen_at": seen_at,
                        **position,
                    }
                )
            order = orders.get(order_key)
            if order is None:
                log.error(
                    "payment for unknown order %s in tx %s: refunding", order_key, event.position.tx_hash
                )
                session.add(_unknown_order(event))
                continue
            if order.status != OrderStatus.QUOTED:
                if order.fee_bps != event.fee_bps:  # re-included after a reorg at another fee
                    connection.execute(
                        update(ShopOrder).where(col(ShopOrder.id) == order.id).values(fee_bps=event.fee_bps)
                    )
                continue
            assert order.id is not None
            priority = event.amount.bit_length() + (256 if event.buyer in returning else 0)
            required = self.policy.required(order.token, int(order.amount))
            confirm_now = required == 0
            self._note(
                order,
                OrderStatus.CONFIRMED if confirm_now else OrderStatus.PAID,
                payer=event.buyer,
                amount=str(event.amount),
                token=event.token,
                tx_hash=event.position.tx_hash,
                confirmations=0,
                required=required,
            )
            order_updates.append(
                {
                    "target": order.id,
                    "payer_address": event.buyer,
                    "seen": seen_at,
                    "mined": datetime.fromtimestamp(
                        times.get(event.position.block_number, default_time), UTC
                    ),
                    "rank": priority,
                    "new_status": OrderStatus.CONFIRMED if confirm_now else OrderStatus.PAID,
                    "confirmed": seen_at if confirm_now else None,
                    "fee": event.fee_bps,
                }
            )
            if confirm_now:
                confirmed.append(ConfirmedOrder(order.id, priority))
            else:
                self._awaiting_confirmations = True
        if new_payments:
            connection.execute(insert(Payment), new_payments)
        if order_updates:
            connection.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id) == bindparam("target"), col(ShopOrder.status) == OrderStatus.QUOTED)
                .values(
                    payer=bindparam("payer_address"),
                    seen_at=bindparam("seen"),
                    block_time=bindparam("mined"),
                    priority=bindparam("rank"),
                    status=bindparam("new_status"),
                    confirmed_at=bindparam("confirmed"),
                    fee_bps=bindparam("fee"),
                ),
                order_updates,
            )
        return confirmed

    def _confirm_due(self, session: Session, head_number: int) -> list[ConfirmedOrder]:
        rows = session.exec(
            select(ShopOrder, Payment)
            .join(Payment, col(Payment.chain_order_id) == col(ShopOrder.chain_order_id))
            .where(ShopOrder.status == OrderStatus.PAID, Payment.chain_id == self.chain_id)
        ).all()
        self._awaiting_confirmations = any(
            head_number - payment.block_number < self.policy.required(order.token, int(order.amount))
            for order, payment in rows
        )
        confirmed = []
        connection = session.connection()
        for order, payment in rows:
            required = self.policy.required(order.token, int(order.amount))
            depth = head_number - payment.block_number
            status = order.status
            if depth >= required:
                marked = connection.execute(
                    update(ShopOrder)
                    .where(col(ShopOrder.id) == order.id, col(ShopOrder.status) == OrderStatus.PAID)
                    .values(status=OrderStatus.CONFIRMED, confirmed_at=_now())
                )
                if not marked.rowcount:
                    continue  # refunded by the merchant meanwhile
                status = OrderStatus.CONFIRMED
                assert order.id is not None
                confirmed.append(ConfirmedOrder(order.id, order.priority))
            if depth > 0:  # at depth 0 the payment's own event said "paid, 0 of N"
                self._note(order, status, confirmations=min(depth, required), required=required)
        return confirmed


def _unknown_order(event: OrderPaid) -> ShopOrder:
    """An order row for a payment the shop never quoted (e.g. a lost database), so it gets refunded."""
    return ShopOrder(
        chain_order_id="0x" + event.order_id.hex(),
        product_id=event.product_id,
        quantity=event.quantity,
        token=event.token,
        amount=str(event.amount),
        payer=event.buyer,
        status=OrderStatus.REFUNDING,
        refund_reason="payment for an order this shop has no record of",
        quote_signature="",
        quote_expiry=0,
        delivery_deadline=event.delivery_deadline,
        fee_bps=event.fee_bps,
        access_token_hash="",
        seen_at=_now(),
    )
