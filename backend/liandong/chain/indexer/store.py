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
changes are announced only once committed. What a confirmed order hands the delivery engine lives
here too, and the confirmation policy (`liandong.chain.policy`) is applied here, inside these
transactions: a block count against the head, a block tag (`safe`, `finalized`) against the tagged
block the indexer read at this head, accepted only if it is on the chain this store follows (its
hash is the one stored for its height), so a payment counts as under the tag only while canonical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, insert, update
from sqlmodel import Session, col, select

from liandong.chain.escrow import EscrowEvent, OrderDelivered, OrderPaid
from liandong.chain.indexer.heads import Header
from liandong.chain.policy import ConfirmationPolicy, Requirement
from liandong.events import OrderEvent
from liandong.store.models import ChainBlock, ChainCheckpoint, OrderStatus, Payment, ShopOrder, utcnow

log = logging.getLogger(__name__)

PAYMENT_REORGED = "payment reorged"
"""The anomaly of a delivered order whose payment a reorganisation took off the chain."""


class StaleCheckpointError(RuntimeError):
    """The checkpoint is no longer where this indexer left it (another node's indexer moved it):
    nothing was written; sync again from the checkpoint the database holds."""


@dataclass(frozen=True)
class ConfirmedOrder:
    order_id: int
    priority: int


@dataclass(frozen=True)
class NamedOrder:
    """What an event's handling reads of the order it names: a few columns, not an ORM row (a
    block of a few hundred payments names a few hundred orders, twice: paid, then delivered)."""

    id: int
    chain_order_id: str
    product_id: int
    status: OrderStatus
    fee_bps: int
    token: str
    amount: str


_NAMED_COLUMNS = [
    col(ShopOrder.id),
    col(ShopOrder.chain_order_id),
    col(ShopOrder.product_id),
    col(ShopOrder.status),
    col(ShopOrder.fee_bps),
    col(ShopOrder.token),
    col(ShopOrder.amount),
]


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
        self._last_tagged: int | None = None
        """The tagged block's number at the last committed `apply`: a tag's wait is told again only
        when it moved."""

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
        tagged: Header | None = None,
    ) -> list[ConfirmedOrder]:
        """Applies the events of the blocks after block `after` (the checkpoint) up to `upto` and
        moves the checkpoint there, in one transaction; `blocks` are the headers to remember for
        reorg detection (near the head). `tagged` is the block the policy's tag named at this
        head (a tag policy's only; None: not known, so no order confirms by the tag)."""
        times = {block.number: block.timestamp for block in blocks}
        self._announcements = []  # what a failed earlier attempt noted never happened
        with Session(self.engine) as session:
            self._move_checkpoint(session, self.chain_id, after, upto)
            orders = self._orders_named(session, events)
            paid = [event for event in events if isinstance(event, OrderPaid)]
            reached = self._tag_reached(session, tagged, upto, blocks)
            confirmed = self._record_payments(session, paid, orders, times, upto.timestamp, reached)
            connection = session.connection()
            committed = []
            for event in events:
                order = orders.get("0x" + event.order_id.hex())
                if order is None or isinstance(event, OrderPaid):
                    continue
                block = event.position.block_number
                if isinstance(event, OrderDelivered):
                    committed.append({"target": order.id, "at": _now(), "block": block})
                    continue
                refunded = connection.execute(
                    update(ShopOrder)
                    .where(col(ShopOrder.id) == order.id, col(ShopOrder.status) != OrderStatus.REFUNDED)
                    .values(status=OrderStatus.REFUNDED, refunded_at=_now(), settled_block=block)
                )
                if refunded.rowcount:
                    self._note(order, OrderStatus.REFUNDED)
            if committed:  # the escrow's records of deliveries: one statement for the run
                connection.execute(
                    update(ShopOrder)
                    .where(col(ShopOrder.id) == bindparam("target"), col(ShopOrder.committed_at).is_(None))
                    .values(committed_at=bindparam("at"), settled_block=bindparam("block")),
                    committed,
                )
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
                confirmed += self._confirm_due(session, min(head_number, upto.number), reached)
            session.commit()
        if reached is not None:
            self._last_tagged = reached
        self._announce()
        return confirmed

    def _tag_reached(
        self, session: Session, tagged: Header | None, upto: Header, blocks: Sequence[Header]
    ) -> int | None:
        """The number of the policy's tagged block if payments up to it count as under the tag:
        it must be a block this store has reached (`upto`) and, where the store still remembers
        that height (near the head), the very block it followed. A provider's tag on a branch this
        store has not rolled back from yet (or not reached) confirms nothing until the next head."""
        if tagged is None or self.policy.tag is None:
            return None
        if tagged.number > upto.number:
            return None  # the provider's tag is above what this transaction applies
        followed = {block.number: block.hash for block in blocks}.get(tagged.number)
        if followed is None:
            if tagged.number == upto.number:
                followed = upto.hash
            else:
                stored = session.get(ChainBlock, (self.chain_id, tagged.number))
                followed = stored.hash if stored is not None else None
        if followed is not None and followed != tagged.hash:
            log.info(
                "the %s block %s (%s) is not the one this indexer followed (%s): waiting",
                self.policy.tag,
                tagged.number,
                tagged.hash,
                followed,
            )
            return None
        return tagged.number  # not remembered: deeper than the reorg window, final to this store

    def _progress(
        self, requirement: Requirement, depth: int, block: int, tagged: int | None
    ) -> dict[str, Any]:
        """What an order's event says about its wait: "n of N" blocks for a count; for a tag, the
        tag and how many blocks the tagged block still is below the payment's (the page turns it
        into seconds with the chain's block time), and the blocks on top a large order needs."""
        if requirement.tag is None:
            return {"confirmations": min(depth, requirement.blocks), "required": requirement.blocks}
        details: dict[str, Any] = {"awaiting": requirement.tag}
        if tagged is not None:
            details["blocks_left"] = max(0, block - tagged)
        if requirement.blocks:
            details.update(confirmations=min(depth, requirement.blocks), required=requirement.blocks)
        return details

    def _note(self, order: ShopOrder | NamedOrder, status: OrderStatus, **details: Any) -> None:
        self._announcements.append(
            OrderEvent(order.chain_order_id, status.value, product_id=order.product_id, **details)
        )

    def _announce(self) -> None:
        announcements, self._announcements = self._announcements, []
        if self.publish is not None:
            for event in announcements:
                self.publish(event)

    def _orders_named(self, session: Session, events: Sequence[EscrowEvent]) -> dict[str, NamedOrder]:
        keys = {"0x" + event.order_id.hex() for event in events}
        if not keys:
            return {}
        rows = session.connection().execute(
            select(*_NAMED_COLUMNS).where(
                col(ShopOrder.chain_order_id).in_(keys), col(ShopOrder.chain_id) == self.chain_id
            )
        )
        found = [NamedOrder(**row._mapping) for row in rows]
        return {order.chain_order_id: order for order in found}

    @staticmethod
    def _quoted_elsewhere(session: Session, order_key: str) -> bool:
        return (
            session.exec(select(ShopOrder.id).where(ShopOrder.chain_order_id == order_key)).first()
            is not None
        )

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
        # This chain's orders only: another chain's block numbers say nothing about this fork.
        gone = and_(col(ShopOrder.chain_id) == self.chain_id, col(ShopOrder.settled_block) > block_number)
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
        orders: dict[str, NamedOrder],
        times: dict[int, int],
        default_time: int,
        tagged: int | None,
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
            if order is None and self._quoted_elsewhere(session, order_key):
                # Its quote was signed for another chain's escrow, which this one should have refused.
                log.error(
                    "ALERT: payment on chain %s in tx %s for order %s, quoted for another chain: left to"
                    " the merchant",
                    self.chain_id,
                    event.position.tx_hash,
                    order_key,
                )
                continue
            if order is None:
                log.error(
                    "payment for unknown order %s in tx %s: refunding", order_key, event.position.tx_hash
                )
                session.add(_unknown_order(event, self.chain_id))
                continue
            if order.status != OrderStatus.QUOTED:
                if order.fee_bps != event.fee_bps:  # re-included after a reorg at another fee
                    connection.execute(
                        update(ShopOrder).where(col(ShopOrder.id) == order.id).values(fee_bps=event.fee_bps)
                    )
                continue
            assert order.id is not None
            priority = event.amount.bit_length() + (256 if event.buyer in returning else 0)
            requirement = self.policy.required(order.token, int(order.amount))
            confirm_now = requirement.immediate  # else `_confirm_due` decides, in this transaction
            self._note(
                order,
                OrderStatus.CONFIRMED if confirm_now else OrderStatus.PAID,
                payer=event.buyer,
                amount=str(event.amount),
                token=event.token,
                tx_hash=event.position.tx_hash,
                **self._progress(requirement, 0, event.position.block_number, tagged),
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

    def _confirm_due(self, session: Session, head_number: int, tagged: int | None) -> list[ConfirmedOrder]:
        """Confirms the paid orders whose payments now meet the policy (each a conditional UPDATE
        from PAID), and tells the others' pages how far along they are: a count's "n of N" at
        each new block, a tag's wait each time the tagged block moved (or at once, when new)."""
        rows = session.exec(
            select(ShopOrder, Payment)
            .join(Payment, col(Payment.chain_order_id) == col(ShopOrder.chain_order_id))
            .where(ShopOrder.status == OrderStatus.PAID, Payment.chain_id == self.chain_id)
        ).all()
        awaiting = False
        confirmed = []
        connection = session.connection()
        tag_moved = tagged is not None and tagged != self._last_tagged
        for order, payment in rows:
            requirement = self.policy.required(order.token, int(order.amount))
            depth = head_number - payment.block_number
            status = order.status
            if requirement.met(depth, payment.block_number, tagged):
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
            else:
                awaiting = True
            if requirement.tag is None:
                told = depth > 0  # at depth 0 the payment's own event said "paid, 0 of N"
            else:
                told = status == OrderStatus.CONFIRMED or tag_moved or bool(requirement.blocks and depth > 0)
            if told:
                self._note(order, status, **self._progress(requirement, depth, payment.block_number, tagged))
        self._awaiting_confirmations = awaiting
        return confirmed


def _unknown_order(event: OrderPaid, chain_id: int) -> ShopOrder:
    """An order row for a payment the shop never quoted (e.g. a lost database), so it gets refunded."""
    return ShopOrder(
        chain_order_id="0x" + event.order_id.hex(),
        chain_id=chain_id,
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
