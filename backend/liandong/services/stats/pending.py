"""The backlog: orders the node still owes something (confirmation, keys, settlement, refund).

Not windowed: what is owed now, as `liandong status` shows it. One count over the status index,
grouped by chain and status, so it stays cheap however many orders were delivered before; the
totals and each chain's own figures (`by_chain`, named by network) come from the same rows.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from liandong.services.stats.window import network_name
from liandong.store.models import OrderStatus, ShopOrder


class ChainBacklog(BaseModel):
    """What the node owes on one chain."""

    chain_id: int
    network: str
    awaiting_confirmations: int
    awaiting_keys: int
    deliveries_to_record: int
    refunds_to_send: int


class Backlog(BaseModel):
    """Orders the node still owes something, by what it owes."""

    awaiting_confirmations: int
    """Paid, not yet confirmed."""
    awaiting_keys: int
    """Confirmed, no key handed out yet."""
    deliveries_to_record: int
    """Delivered, the commitment not yet on-chain."""
    refunds_to_send: int
    by_chain: list[ChainBacklog] = []
    """The same per chain that owes anything, by chain id."""


def backlog(session: Session, chain_id: int | None = None) -> Backlog:
    """One grouped count, over the status index (and the settlement index for deliveries): cheap
    however many orders were delivered before. `chain_id`: that chain's only."""
    waiting = (
        col(ShopOrder.status).in_([OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.REFUNDING])
    ) | ((col(ShopOrder.status) == OrderStatus.DELIVERED) & col(ShopOrder.committed_at).is_(None))
    query = select(ShopOrder.chain_id, ShopOrder.status, func.count()).where(waiting)
    if chain_id is not None:
        query = query.where(ShopOrder.chain_id == chain_id)
    counts: defaultdict[int, dict[OrderStatus, int]] = defaultdict(dict)
    for chain, status, count in session.exec(
        query.group_by(col(ShopOrder.chain_id), col(ShopOrder.status))
    ).all():
        counts[chain][OrderStatus(status)] = count

    def owed(status: OrderStatus, chains: list[int] | None = None) -> int:
        return sum(counts[chain].get(status, 0) for chain in (counts if chains is None else chains))

    return Backlog(
        awaiting_confirmations=owed(OrderStatus.PAID),
        awaiting_keys=owed(OrderStatus.CONFIRMED),
        deliveries_to_record=owed(OrderStatus.DELIVERED),
        refunds_to_send=owed(OrderStatus.REFUNDING),
        by_chain=[
            ChainBacklog(
                chain_id=chain,
                network=network_name(chain),
                awaiting_confirmations=owed(OrderStatus.PAID, [chain]),
                awaiting_keys=owed(OrderStatus.CONFIRMED, [chain]),
                deliveries_to_record=owed(OrderStatus.DELIVERED, [chain]),
                refunds_to_send=owed(OrderStatus.REFUNDING, [chain]),
            )
            for chain in sorted(counts)
        ],
    )
