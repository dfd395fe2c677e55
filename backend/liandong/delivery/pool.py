"""Per-product pools of free card-key ids, kept in memory so a hot product never waits on a scan.

A key is only ever handed out by the conditional UPDATE in `claim`, inside the caller's
transaction: the pool is a hint, the database decides. Two workers (or two nodes) that hold the
same id race on that UPDATE and exactly one wins.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import Session, col, select

from liandong.store.models import CardKey, utcnow


@dataclass
class _ProductPool:
    ids: deque[int] = field(default_factory=deque)
    loaded_up_to: int = 0
    """Highest id loaded so far; a refill reads past it, or from the start once it finds nothing."""


class KeyPool:
    def __init__(self, target: int = 512, low_water: int = 128) -> None:
        self.target = target
        self.low_water = low_water
        self._pools: dict[int, _ProductPool] = {}

    def claim(self, session: Session, product_id: int, order_id: int, count: int) -> list[int] | None:
        """Claims `count` free keys for `order_id` in `session`'s transaction; None if out of stock.

        On None the caller must roll back (a savepoint is enough): some keys may have been claimed.
        """
        pool = self._pools.setdefault(product_id, _ProductPool())
        claimed: list[int] = []
        while len(claimed) < count:
            if not pool.ids and not self._refill(session, product_id, pool):
                return None
            key_id = pool.ids.popleft()
            result = session.exec(
                update(CardKey)
                .where(col(CardKey.id) == key_id, col(CardKey.order_id).is_(None))
                .values(order_id=order_id, claimed_at=utcnow())
            )
            if result.rowcount == 1:
                claimed.append(key_id)
        return claimed

    def needs_refill(self) -> list[int]:
        return [product for product, pool in self._pools.items() if len(pool.ids) < self.low_water]

    def refill(self, session: Session, product_id: int) -> None:
        """Tops a product's pool up; run it off the hot path, after a delivery batch commits."""
        self._refill(session, product_id, self._pools.setdefault(product_id, _ProductPool()))

    def forget(self, product_id: int) -> None:
        """Drops a product's cached ids, e.g. after a rolled-back claim, so they are read afresh."""
        self._pools.pop(product_id, None)

    def _refill(self, session: Session, product_id: int, pool: _ProductPool) -> bool:
        wanted = self.target - len(pool.ids)
        for start in (pool.loaded_up_to, 0):
            ids = session.exec(
                select(CardKey.id)
                .where(
                    CardKey.product_id == product_id, col(CardKey.order_id).is_(None), col(CardKey.id) > start
                )
                .order_by(col(CardKey.id))
                .limit(wanted)
            ).all()
            known = set(pool.ids)
            fresh = [key_id for key_id in ids if key_id is not None and key_id not in known]
            if fresh:
                pool.ids.extend(fresh)
                pool.loaded_up_to = max(fresh)
                return True
        return bool(pool.ids)
