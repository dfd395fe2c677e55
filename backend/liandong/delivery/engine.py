"""The delivery engine: confirmed orders in, keys out, highest priority first.

Confirmed orders wait in a priority queue (bigger and returning buyers first). A worker takes the
best order and whatever else is waiting, up to a batch, and hands out their keys in ONE transaction:
claim the keys, write the deliveries and the commitment, mark the orders delivered. That
transaction is the moment of delivery: before it nothing happened, after it the buyer can read the
keys, so a crash anywhere delivers each order exactly once. The channels and the on-chain record
follow after the commit; both are retried from the database after a restart: the delivery
transaction marks the order "notice due" (`ShopOrder.notice_due`) and the mark is cleared only once
the channels ran, so a buyer whose notice a crash interrupted is told by the next run.

An order whose delivery deadline is nearer than `safety_margin` seconds (by the chain's clock, or
the machine's if later) is never delivered: the escrow would refuse to record the delivery after
the deadline while letting the buyer refund, so the buyer could keep both the keys and the money.
It is refunded instead ("delivery window too short").

Every status change here is a conditional UPDATE (`WHERE status = …`) whose row count is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, insert, not_, update
from sqlmodel import Session, col, func, select

from liandong.chain.indexer import ConfirmedOrder
from liandong.chain.settlement import Settlement, order_terms, settlement_of
from liandong.core.crashpoints import crash_point
from liandong.delivery.channels import (
    Channel,
    DeliveryNotice,
    delivery_notice,
    notify,
    product_names,
)
from liandong.delivery.pool import KeyPool
from liandong.events import KeyRecipient, OrderEvent, OrderEventHub, StockEvent
from liandong.store.models import (
    CardKey,
    Delivery,
    DeliveryAttempt,
    KeyAccess,
    OrderStatus,
    ShopOrder,
    utcnow,
)
from liandong.vault.crypto import delivery_commitment, new_salt
from liandong.vault.service import Vault
from liandong.vault.transport import seal_keys

log = logging.getLogger(__name__)
_JITTER = secrets.SystemRandom()
STALE_CONFIRMED = timedelta(seconds=10)
"""A confirmed order still waiting after this long is queued again by the rescan."""
STALE_NOTICE = timedelta(seconds=60)
"""A notice still due this long after its delivery is sent again by the rescan (its node died
before the channels ran): longer than any channel's retries take."""
WINDOW_TOO_SHORT = "delivery window too short"
OUT_OF_STOCK = "out of stock"
_T = TypeVar("_T")


@dataclass(frozen=True)
class BatchOutcome:
    """What one committed delivery batch did."""

    notices: list[DeliveryNotice]
    settlements: list[Settlement]
    refunding: list[str]
    """Escrow order ids of the orders that could not be delivered (out of stock, too close to
    their delivery deadline)."""
    sold: dict[int, int]
    """Keys handed out per product id."""
    sealed: dict[str, dict[KeyRecipient, dict[str, Any]]] = field(default_factory=dict)
    """Per escrow order id, the keys sealed to each of its waiting pages (`SealedKeys`' form),
    their reads logged in the batch's transaction: they go out with the `delivered` event."""


class KeyClaimConflictError(Exception):
    """Another writer took a reserved key (or an order) first; the batch is retried."""


class DeliveryEngine:
    def __init__(
        self,
        engine: Engine,
        vault: Vault,
        channels: Sequence[Channel],
        settle: Callable[[Sequence[Settlement]], None],
        *,
        hub: OrderEventHub | None = None,
        public_url: str = "",
        pool: KeyPool | None = None,
        batch_size: int = 256,
        workers: int = 4,
        shared: bool = False,
        poll_interval: float = 1.0,
        safety_margin: float = 15 * 60,
        clock: Callable[[int], float] = lambda _chain_id: time.time(),
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.channels = channels
        self.settle = settle
        self.hub = hub or OrderEventHub()
        self.public_url = public_url
        self.pool = pool or KeyPool()
        self.batch_size = batch_size
        self.workers = workers
        self.shared = shared
        """Several nodes share the database (PostgreSQL): orders and keys are claimed with
        `FOR UPDATE SKIP LOCKED`, and the local queue only wakes the workers."""
        self.poll_interval = poll_interval
        """In shared mode, how often an idle worker looks for orders no wake-up announced."""
        self.safety_margin = safety_margin
        """Seconds before its delivery deadline after which an order is refunded, not delivered."""
        self.clock = clock
        """Unix time on a chain (by id) as its escrow will judge the deadline (the node passes each
        chain's clock)."""
        self._notifying: set[int] = set()
        """Orders whose notice this process is sending now: the rescan leaves them alone."""
        self._background: set[asyncio.Task[Any]] = set()
        """Notices being sent beside the workers (held so that the tasks are not collected)."""
        self.queue: asyncio.PriorityQueue[tuple[int, int, int]] = asyncio.PriorityQueue()
        self._sequence = itertools.count()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery")
        """The batches' own thread: a batch never queues behind the API's reads in the loop's
        shared executor, and the key pool is only ever touched from this one thread."""

    def enqueue(self, orders: Sequence[ConfirmedOrder]) -> None:
        for order in orders:
            self.queue.put_nowait((-order.priority, next(self._sequence), order.order_id))

    def recover(self) -> None:
        """Queues what a previous run left: confirmed orders, settlements not yet on-chain, and
        notices due (buyers a crash left untold; with shared nodes, only those due a while)."""
        self._requeue_confirmed(utcnow())
        self.resubmit_unsettled()
        self._resend_due_notices(utcnow() - STALE_NOTICE if self.shared else utcnow())

    def rescan(self) -> None:
        """Picks up what no wake-up announced: orders confirmed a while ago and still waiting
        (their batch failed while the database was away), settlements not on-chain yet, notices
        due for a while."""
        self._requeue_confirmed(utcnow() - STALE_CONFIRMED)
        self.resubmit_unsettled()
        self._resend_due_notices(utcnow() - STALE_NOTICE)

    def due_notices(self, delivered_before: datetime) -> list[DeliveryNotice]:
        """Notices of delivered orders whose buyer was not told yet (the outbox), not being sent."""
        with Session(self.engine) as session:
            due = session.exec(
                select(ShopOrder)
                .where(
                    col(ShopOrder.notice_due),
                    ShopOrder.status == OrderStatus.DELIVERED,
                    col(ShopOrder.delivered_at) <= delivered_before,
                )
                .order_by(col(ShopOrder.id))
                .limit(500)
            ).all()
            due = [order for order in due if order.id not in self._notifying]
            names = product_names(session, {order.product_id for order in due})
            return [delivery_notice(order, names.get(order.product_id, ""), self.public_url) for order in due]

    def _resend_due_notices(self, delivered_before: datetime) -> None:
        notices = self.due_notices(delivered_before)
        if not notices:
            return
        log.warning("telling %s buyers whose notice was interrupted", len(notices))
        self._notify_in_background(notices)

    def _requeue_confirmed(self, confirmed_before: datetime) -> None:
        with Session(self.engine) as session:
            waiting = session.exec(
                select(ShopOrder.id, ShopOrder.priority).where(
                    ShopOrder.status == OrderStatus.CONFIRMED, col(ShopOrder.confirmed_at) <= confirmed_before
                )
            ).all()
        self.enqueue([ConfirmedOrder(order_id, priority) for order_id, priority in waiting if order_id])

    def resubmit_unsettled(self) -> None:
        """Hands every order the chain has not been told about yet to `settle`: deliveries of other
        nodes or of a previous run, refunds the merchant asked for. `settle` skips those in flight."""
        with Session(self.engine) as session:
            unsettled = session.exec(
                select(ShopOrder).where(
                    (col(ShopOrder.status) == OrderStatus.REFUNDING)
                    | (
                        (col(ShopOrder.status) == OrderStatus.DELIVERED)
                        & col(ShopOrder.committed_at).is_(None)
                    ),
                    not_(col(ShopOrder.settlement_held)),
                )
            ).all()
            self.settle([settlement_of(order) for order in unsettled if order.payer is not None])

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.workers):
                tasks.create_task(self._work())

    def wake(self) -> None:
        """Another node announced confirmed orders (shared mode): a worker goes to claim them."""
        self.queue.put_nowait((0, next(self._sequence), 0))

    async def _next_batch(self) -> list[int]:
        if self.shared:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.get(), self.poll_interval)
            while not self.queue.empty():
                self.queue.get_nowait()
            return []  # the claim in the database picks the orders
        batch = [(await self.queue.get())[2]]
        while len(batch) < self.batch_size and not self.queue.empty():
            batch.append(self.queue.get_nowait()[2])
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                # In the batches' one thread, so one batch at a time (SQLite has one writer anyway):
                # the transaction (its wait for the write lock included) and the keys' decryption
                # stay off the event loop, which meanwhile answers the buyers' pages and key reads.
                outcome = await self._in_writer(self.deliver, batch)
            except Exception:
                # Nothing of the batch happened; its orders stay confirmed in the database, where
                # the retry (or, if the database is gone for now, the periodic rescan) finds them.
                log.exception("delivery batch failed; retrying %s orders", len(batch))
                await asyncio.sleep(_JITTER.uniform(0.1, 0.6))  # nodes that collided retry apart
                self.enqueue([ConfirmedOrder(order_id, 0) for order_id in batch])
                continue
            if self.shared and outcome.notices:
                self.wake()  # a full batch may have left more behind
            crash_point("delivery-committed")
            try:
                self.settle(outcome.settlements)
                self._announce(outcome)
                await self._in_writer(self._refill_pools)  # the key pool's one thread, as the batches
            except Exception:
                # The batch is delivered (committed). What follows is recovered without it: the
                # leader's rescan re-sends settlements; a lost attempt record leaves a gap in the log.
                log.exception("after a delivered batch")
            # The channels run beside the workers, not in their way: an in-site channel waiting
            # for a buyer's acknowledgement must not hold up the next batch. A notice that never
            # finishes stays due in the database, where the rescan finds it.
            self._notify_in_background(outcome.notices)

    async def _in_writer(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, work, *args)

    def _notify_in_background(self, notices: Sequence[DeliveryNotice]) -> None:
        task = asyncio.get_running_loop().create_task(self._notify_logged(notices))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify_logged(self, notices: Sequence[DeliveryNotice]) -> None:
        try:
            await self.notify(notices)
        except Exception:
            log.exception("notifying %s delivered orders failed; the rescan retries", len(notices))

    def deliver(self, order_ids: Sequence[int]) -> BatchOutcome:
        """Hands out the keys of the still-confirmed orders among `order_ids`, in one transaction.

        Statements are batched (one per kind for the whole batch), so a block of a hundred payments
        costs a handful of statements, not hundreds. A key claimed meanwhile by another node fails
        the batch as a whole; it is retried with freshly read pools.
        """
        try:
            return self._deliver(order_ids)
        finally:
            self.pool.end_batch()

    def _claim_orders(self, session: Session, order_ids: Sequence[int]) -> Sequence[ShopOrder]:
        """The batch's orders: those named (one node), or, when nodes share the database, the best
        confirmed orders no other node's transaction holds."""
        query = select(ShopOrder).where(ShopOrder.status == OrderStatus.CONFIRMED)
        query = query.order_by(col(ShopOrder.priority).desc(), col(ShopOrder.id))
        if not self.shared:
            return session.exec(query.where(col(ShopOrder.id).in_(order_ids))).all()
        return session.exec(query.limit(self.batch_size).with_for_update(skip_locked=True)).all()

    def _claim_keys(self, session: Session, orders: Sequence[ShopOrder]) -> dict[int, deque[int]]:
        """Shared mode: locks, per product, as many free keys as the batch's orders need, skipping
        keys another node's batch holds. (SKIP LOCKED skips only other transactions' locks, so the
        batch asks once per product, never once per order.)"""
        needed: Counter[int] = Counter()
        for order in orders:
            needed[order.product_id] += order.quantity
        claimed: dict[int, deque[int]] = {}
        for product_id, count in needed.items():
            ids = session.exec(
                select(CardKey.id)
                .where(CardKey.product_id == product_id, col(CardKey.order_id).is_(None))
                .order_by(col(CardKey.id))
                .limit(count)
                .with_for_update(skip_locked=True)
            ).all()
            if len(ids) < count and self._free_keys(session, product_id) >= count:
                # Enough keys, but another node's batch holds some: not out of stock, try again.
                raise KeyClaimConflictError(f"keys of product {product_id} are held by another node")
            claimed[product_id] = deque(key_id for key_id in ids if key_id is not None)
        return claimed

    @staticmethod
    def _free_keys(session: Session, product_id: int) -> int:
        return session.exec(
            select(func.count()).where(CardKey.product_id == product_id, col(CardKey.order_id).is_(None))
        ).one()

    def _reserve_keys(
        self, session: Session, order: ShopOrder, claimed: dict[int, deque[int]]
    ) -> list[int] | None:
        if not self.shared:
            return self.pool.reserve(session, order.product_id, order.quantity)
        keys = claimed[order.product_id]
        if len(keys) < order.quantity:
            return None
        return [keys.popleft() for _ in range(order.quantity)]

    def _deliver(self, order_ids: Sequence[int]) -> BatchOutcome:
        with Session(self.engine) as session:
            orders = self._claim_orders(session, order_ids)
            # By the later of the chain's and the machine's clocks: the escrow judges the deadline
            # by block time, which a real chain keeps close to (and anvil can move past) ours.
            late = {o.id for o in orders if o.delivery_deadline < self.clock(o.chain_id) + self.safety_margin}
            too_late = [order for order in orders if order.id in late]
            orders = [order for order in orders if order.id not in late]
            claimed = self._claim_keys(session, orders) if self.shared else {}
            lines: dict[int, list[int]] = {}
            refunds: list[tuple[ShopOrder, str]] = [(order, WINDOW_TOO_SHORT) for order in too_late]
            for order in orders:
                assert order.id is not None
                key_ids = self._reserve_keys(session, order, claimed)
                if key_ids is None:
                    refunds.append((order, OUT_OF_STOCK))
                else:
                    lines[order.id] = key_ids
            sealed: dict[str, dict[KeyRecipient, dict[str, Any]]] = {}
            try:
                delivered = self._hand_out(session, [o for o in orders if o.id in lines], lines, sealed)
            except KeyClaimConflictError:
                for order in orders:
                    self.pool.forget(order.product_id)
                raise
            self._mark_refunding(session, refunds)
            names = product_names(session, {o.product_id for o, _ in delivered})
            # From the values written, not the ORM rows (a Core UPDATE changed them behind its back).
            notices = [
                delivery_notice(o, names[o.product_id], self.public_url, commitment="0x" + c.hex())
                for o, c in delivered
            ]
            settlements = [Settlement(o.id, o.chain_id, order_terms(o), c) for o, c in delivered if o.id]
            settlements += [
                Settlement(o.id, o.chain_id, order_terms(o), None) for o, _ in refunds if o.id and o.payer
            ]
            sold: dict[int, int] = {}
            for order, _ in delivered:
                sold[order.product_id] = sold.get(order.product_id, 0) + order.quantity
            # Read before the commit, which expires the rows: nothing may fail after it.
            outcome = BatchOutcome(notices, settlements, [o.chain_order_id for o, _ in refunds], sold, sealed)
            session.commit()
        return outcome

    @staticmethod
    def _mark_refunding(session: Session, refunds: Sequence[tuple[ShopOrder, str]]) -> None:
        """Confirmed orders that cannot be delivered become refunds, each only if still confirmed."""
        if not refunds:
            return
        for order, reason in refunds:
            log.warning("order %s: %s, refunding", order.id, reason)
        marked = session.connection().execute(
            update(ShopOrder)
            .where(col(ShopOrder.id) == bindparam("target"), col(ShopOrder.status) == OrderStatus.CONFIRMED)
            .values(status=OrderStatus.REFUNDING, refund_reason=bindparam("reason")),
            [{"target": order.id, "reason": reason} for order, reason in refunds],
        )
        if marked.rowcount != len(refunds):
            raise KeyClaimConflictError("an order left the confirmed state before its refund")

    def _hand_out(
        self,
        session: Session,
        orders: Sequence[ShopOrder],
        lines: dict[int, list[int]],
        sealed: dict[str, dict[KeyRecipient, dict[str, Any]]],
    ) -> list[tuple[ShopOrder, bytes]]:
        """Claims the reserved keys, writes the deliveries and commitments; returns each order with
        its commitment. The keys of an order whose page waits for them on this node are sealed to
        that page into `sealed`, each such read logged (`KeyAccess`) in this same transaction: a
        box exists only for a delivery that commits, and leaves only after it did."""
        if not orders:
            return []
        connection = session.connection()
        claimed_at = utcnow()
        claims = [
            {"key": key_id, "owner": order_id, "at": claimed_at}
            for order_id, key_ids in lines.items()
            for key_id in key_ids
        ]
        claimed = connection.execute(
            update(CardKey)
            .where(col(CardKey.id) == bindparam("key"), col(CardKey.order_id).is_(None))
            .values(order_id=bindparam("owner"), claimed_at=bindparam("at")),
            claims,
        )
        if claimed.rowcount != len(claims):
            raise KeyClaimConflictError(f"{len(claims) - claimed.rowcount} reserved keys were taken")
        rows = connection.execute(
            select(CardKey.id, CardKey.ciphertext).where(col(CardKey.id).in_([c["key"] for c in claims]))
        ).all()
        ciphertexts: dict[int, bytes] = dict(rows)
        delivered: list[tuple[ShopOrder, bytes]] = []
        deliveries, updates, reads = [], [], []
        for order in orders:
            assert order.id is not None
            key_ids = lines[order.id]
            plaintexts = [self.vault.decrypt(session, order.product_id, ciphertexts[k]) for k in key_ids]
            salt = new_salt()
            chain_order_id = bytes.fromhex(order.chain_order_id.removeprefix("0x"))
            commitment = delivery_commitment(chain_order_id, salt, plaintexts)
            deliveries += [
                {"order_id": order.id, "line_no": n, "card_key_id": k, "created_at": claimed_at}
                for n, k in enumerate(key_ids)
            ]
            written = {"salt_hex": "0x" + salt.hex(), "commitment_hex": "0x" + commitment.hex()}
            updates.append({"target": order.id, **written})
            delivered.append((order, commitment))
            for recipient in self.hub.recipients(order.chain_order_id):
                keys = seal_keys(
                    plaintexts,
                    recipient.public_key,
                    order.chain_order_id,
                    written["salt_hex"],
                    written["commitment_hex"],
                )
                sealed.setdefault(order.chain_order_id, {})[recipient] = keys.model_dump()
                reads.append({"order_id": order.id, "via": recipient.via, "accessed_at": claimed_at})
        connection.execute(insert(Delivery), deliveries)
        if reads:
            connection.execute(insert(KeyAccess), reads)
        delivered_at = utcnow()
        marked = connection.execute(
            update(ShopOrder)
            .where(col(ShopOrder.id) == bindparam("target"), col(ShopOrder.status) == OrderStatus.CONFIRMED)
            .values(
                status=OrderStatus.DELIVERED,
                salt=bindparam("salt_hex"),
                commitment=bindparam("commitment_hex"),
                keys_claimed_at=claimed_at,
                delivered_at=delivered_at,
                notice_due=True,
            ),
            updates,
        )
        if marked.rowcount != len(updates):
            raise KeyClaimConflictError("an order left the confirmed state during its delivery")
        return delivered

    def _announce(self, outcome: BatchOutcome) -> None:
        """Tells the order pages and the merchant feed what the committed batch did."""
        for notice in outcome.notices:
            self.hub.publish_delivered(
                OrderEvent(notice.chain_order_id, OrderStatus.DELIVERED.value, commitment=notice.commitment),
                outcome.sealed.get(notice.chain_order_id, {}),
            )
        for chain_order_id in outcome.refunding:
            self.hub.publish(OrderEvent(chain_order_id, OrderStatus.REFUNDING.value))
        for product_id, count in outcome.sold.items():
            self.hub.publish_stock(StockEvent(product_id, -count))

    async def notify(self, notices: Sequence[DeliveryNotice]) -> list[DeliveryAttempt]:
        """Tells the buyers through the channels, then records every attempt and clears the orders'
        "notice due" mark, in one transaction."""
        order_ids = {notice.order_id for notice in notices}
        self._notifying |= order_ids
        try:
            results = await asyncio.gather(*(notify(self.channels, notice) for notice in notices))
            attempts = [attempt for batch in results for attempt in batch]
            if notices:  # in a worker thread: its wait for SQLite's write lock must not stall the loop
                await self._in_writer(self._record_notices, order_ids, attempts)
        finally:
            self._notifying -= order_ids
        return attempts

    def _record_notices(self, order_ids: set[int], attempts: Sequence[DeliveryAttempt]) -> None:
        with Session(self.engine) as session:
            connection = session.connection()
            if attempts:
                rows = [attempt.model_dump(exclude={"id"}) for attempt in attempts]
                connection.execute(insert(DeliveryAttempt), rows)
            connection.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id).in_(order_ids), col(ShopOrder.notice_due))
                .values(notice_due=False)
            )
            session.commit()

    def _refill_pools(self) -> None:
        products = self.pool.needs_refill()
        if products:
            with Session(self.engine) as session:
                for product_id in products:
                    self.pool.refill(session, product_id)
