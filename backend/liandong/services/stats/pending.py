"""The backlog: orders the node still owes something (confirmation, keys, settlement, refund).

Not windowed: what is owed now, as `liandong status` shows it. One grouped count over the status
index, so it stays cheap however many orders were delivered before.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from liandong.store.models import OrderStatus, ShopOrder


class Backlog(BaseModel):
    """Orders the node still owes something, by what it owes."""

    awaiting_confirmations: int
    """Paid, not yet confirmed."""
    awaiting_keys: int
    """Confirmed, no key handed out yet."""
    deliveries_to_record: int
    """Delivered, the commitment not yet on-chain."""
    refunds_to_send: int


def backlog(session: Session) -> Backlog:
    """One grouped count, over the status index (and the settlement index for deliveries): cheap
    however many orders were delivered before."""
    waiting = (
        col(ShopOrder.status).in_([OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.REFUNDING])
    ) | ((col(ShopOrder.status) == OrderStatus.DELIVERED) & col(ShopOrder.committed_at).is_(None))
    counts = dict(
        session.exec(
            select(ShopOrder.status, func.count()).where(waiting).group_by(col(ShopOrder.status))
        ).all()
    )
    return Backlog(
        awaiting_confirmations=counts.get(OrderStatus.PAID, 0),
        awaiting_keys=counts.get(OrderStatus.CONFIRMED, 0),
        deliveries_to_record=counts.get(OrderStatus.DELIVERED, 0),
        refunds_to_send=counts.get(OrderStatus.REFUNDING, 0),
    )
