"""Per-product pools of free card-key ids, kept in memory so a hot product never waits on a scan.

The pool only proposes ids: a key is handed out by the engine's conditional UPDATE (`… WHERE
order_id IS NULL`) inside the delivery transaction, so the database decides. Two nodes that hold
the same id race on that UPDATE and exactly one wins; the loser drops its pool and reads afresh.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from liandong.store.models import CardKey


@dataclass
class _ProductPool:
    ids: deque[int] = field(default_factory=deque)
    reserved: set[int] = field(default_factory=set)
    """Ids handed to the running batch: still free in the database until it commits."""
    loaded_up_to: int = 0
    """Highest id loaded so far; a refill reads past it, or from the start once it finds nothing."""


class KeyPool:
    def __init__(self, target: int = 512, low_water: int = 128) -> None:
        self.target = target
        self.low_water = low_water
        self._pools: dict[int, _ProductPool] = {}

    def reserve(self, session: Session, product_id: int, count: int) -> list[int] | None:
        """Takes `count` ids believed free out of the pool (reading more from `session` if needed),
        or None, taking nothing, when the product has fewer free keys than that."""
        pool = self._pools.setdefault(product_id, _ProductPool())
        while len(pool.ids) < count:
            before = len(pool.ids)
            self._refill(session, product_id, pool)
            if len(pool.ids) == before:
                return None
        taken = [pool.ids.popleft() for _ in range(count)]
        pool.reserved.update(taken)
        return taken

    def end_batch(self) -> None:
        """Forgets the running batch's reservations, once its transaction committed or rolled back."""
        for pool in self._pools.values():
            pool.reserved.clear()

    def needs_refill(self) -> list[int]:
        return [product for product, pool in self._pools.items() if len(pool.ids) < self.low_water]

    def refill(self, session: Session, product_id: int) -> None:
        """Tops a product's pool up; run it off the hot path, after a delivery batch commits."""
        self._refill(session, product_id, self._pools.setdefault(product_id, _ProductPool()))

    def forget(self, product_id: int) -> None:
        """Drops a product's cached ids, e.g. after a rolled-back claim, so they are read afresh."""
        self._pools.pop(product_id, None)

    def _refill(self, session: Session, product_id: int, pool: _ProductPool) -> bool:
        wanted = max(self.target - len(pool.ids), 1)
        for start in (pool.loaded_up_to, 0):
            ids = session.exec(
                select(CardKey.id)
                .where(
                    CardKey.product_id == product_id, col(CardKey.order_id).is_(None), col(CardKey.id) > start
                )
                .order_by(col(CardKey.id))
                .limit(wanted)
            ).all()
            known = set(pool.ids) | pool.reserved
            fresh = [key_id for key_id in ids if key_id is not None and key_id not in known]
            if fresh:
                pool.ids.extend(fresh)
                pool.loaded_up_to = max(fresh)
                return True
        return bool(pool.ids)
