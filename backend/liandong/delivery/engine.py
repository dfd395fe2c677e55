"""The delivery engine: confirmed orders in, keys out, highest priority first.

Confirmed orders wait in a priority queue (bigger and returning buyers first). A worker takes the
best order and whatever else is waiting, up to a batch, and hands out their keys in ONE transaction:
claim the keys, write the deliveries and the commitment, mark the orders delivered. That
transaction is the moment of delivery: before it nothing happened, after it the buyer can read the
keys, so a crash anywhere delivers each order exactly once. The channels and the on-chain record
follow after the commit; both are retried from the database after a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from liandong.chain.indexer import ConfirmedOrder
from liandong.chain.settlement import Settlement, settlement_of
from liandong.delivery.channels import Channel, DeliveryNotice, notify
from liandong.delivery.pool import KeyPool
from liandong.store.models import CardKey, Delivery, OrderStatus, ShopOrder, utcnow
from liandong.vault.crypto import delivery_commitment, new_salt
from liandong.vault.service import Vault

log = logging.getLogger(__name__)


class DeliveryEngine:
    def __init__(
        self,
        engine: Engine,
        vault: Vault,
        channels: Sequence[Channel],
        settle: Callable[[Sequence[Settlement]], None],
        *,
        pool: KeyPool | None = None,
        batch_size: int = 64,
        workers: int = 4,
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.channels = channels
        self.settle = settle
        self.pool = pool or KeyPool()
        self.batch_size = batch_size
        self.workers = workers
        self.queue: asyncio.PriorityQueue[tuple[int, int, int]] = asyncio.PriorityQueue()
        self._sequence = itertools.count()
        self._lock = asyncio.Lock()

    def enqueue(self, orders: Sequence[ConfirmedOrder]) -> None:
        for order in orders:
            self.queue.put_nowait((-order.priority, next(self._sequence), order.order_id))

    def recover(self) -> None:
        """Queues what a previous run left: confirmed orders, and settlements not yet on-chain."""
        with Session(self.engine) as session:
            confirmed = session.exec(select(ShopOrder).where(ShopOrder.status == OrderStatus.CONFIRMED)).all()
            self.enqueue([ConfirmedOrder(o.id, o.priority) for o in confirmed if o.id is not None])
            unsettled = session.exec(
                select(ShopOrder).where(
                    (col(ShopOrder.status) == OrderStatus.REFUNDING)
                    | (
                        (col(ShopOrder.status) == OrderStatus.DELIVERED)
                        & col(ShopOrder.committed_at).is_(None)
                    )
                )
            ).all()
            self.settle([settlement_of(order) for order in unsettled if order.payer is not None])

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for _ in range(self.workers):
                tasks.create_task(self._work())

    async def _work(self) -> None:
        while True:
            batch = [(await self.queue.get())[2]]
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait()[2])
            try:
                async with self._lock:  # one writer at a time: SQLite has one anyway
                    notices, settlements = self.deliver(batch)
            except Exception:
                log.exception("delivery batch failed; requeueing %s orders", len(batch))
                await asyncio.sleep(0.5)
                self.enqueue(self._still_confirmed(batch))
                continue
            self.settle(settlements)
            await self._notify_all(notices)
            self._refill_pools()

    def _still_confirmed(self, order_ids: Sequence[int]) -> list[ConfirmedOrder]:
        with Session(self.engine) as session:
            orders = session.exec(
                select(ShopOrder).where(
                    col(ShopOrder.id).in_(order_ids), ShopOrder.status == OrderStatus.CONFIRMED
                )
            ).all()
            return [ConfirmedOrder(o.id, o.priority) for o in orders if o.id is not None]

    def deliver(self, order_ids: Sequence[int]) -> tuple[list[DeliveryNotice], list[Settlement]]:
        """Hands out the keys of the still-confirmed orders among `order_ids`, in one transaction."""
        notices: list[DeliveryNotice] = []
        settlements: list[Settlement] = []
        with Session(self.engine) as session:
            orders = session.exec(
                select(ShopOrder)
                .where(col(ShopOrder.id).in_(order_ids), ShopOrder.status == OrderStatus.CONFIRMED)
                .order_by(col(ShopOrder.priority).desc(), col(ShopOrder.id))
            ).all()
            for order in orders:
                assert order.id is not None
                if self._deliver_one(session, order):
                    notices.append(DeliveryNotice(order.id, order.chain_order_id, order.email, order.payer))
                settlements.append(settlement_of(order))
            session.commit()
        return notices, settlements

    def _deliver_one(self, session: Session, order: ShopOrder) -> bool:
        assert order.id is not None
        savepoint = session.begin_nested()
        key_ids = self.pool.claim(session, order.product_id, order.id, order.quantity)
        if key_ids is None:
            savepoint.rollback()
            self.pool.forget(order.product_id)
            order.status, order.refund_reason = OrderStatus.REFUNDING, "out of stock"
            session.add(order)
            log.warning("order %s: out of stock, refunding", order.id)
            return False
        claimed_at = utcnow()
        keys = session.exec(
            select(CardKey).where(col(CardKey.id).in_(key_ids)).order_by(col(CardKey.id))
        ).all()
        plaintexts = [self.vault.decrypt(session, order.product_id, key.ciphertext) for key in keys]
        salt = new_salt()
        order_id = bytes.fromhex(order.chain_order_id.removeprefix("0x"))
        for line_no, key in enumerate(keys):
            assert key.id is not None
            session.add(Delivery(order_id=order.id, line_no=line_no, card_key_id=key.id))
        order.salt = "0x" + salt.hex()
        order.commitment = "0x" + delivery_commitment(order_id, salt, plaintexts).hex()
        order.status = OrderStatus.DELIVERED
        order.keys_claimed_at = claimed_at
        order.delivered_at = utcnow()
        session.add(order)
        savepoint.commit()
        return True

    async def _notify_all(self, notices: Sequence[DeliveryNotice]) -> None:
        results = await asyncio.gather(*(notify(self.channels, notice) for notice in notices))
        with Session(self.engine) as session:
            session.add_all([attempt for attempts in results for attempt in attempts])
            session.commit()

    def _refill_pools(self) -> None:
        products = self.pool.needs_refill()
        if products:
            with Session(self.engine) as session:
                for product_id in products:
                    self.pool.refill(session, product_id)
