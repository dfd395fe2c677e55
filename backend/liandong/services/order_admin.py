"""The merchant's view of orders: search, one order's whole timeline, refunds and resends.

A refund is only marked here (one conditional UPDATE, so it never overtakes a delivery); the
settlement sender sends it. A resend builds the same notice the delivery engine sends.
"""

from __future__ import annotations

from datetime import datetime

from eth_utils.address import to_checksum_address
from pydantic import BaseModel, Field
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from liandong.chain.settlement import Settlement, settlement_of
from liandong.core.errors import ConflictError, NotFoundError
from liandong.delivery.channels import DeliveryNotice, delivery_notice, product_names
from liandong.services.orders import OrderFacts
from liandong.store.models import MAX_ROW_ID, ChainTx, DeliveryAttempt, OrderStatus, Payment, ShopOrder

REFUNDABLE = (OrderStatus.PAID, OrderStatus.CONFIRMED)
"""The escrow refunds only orders without a recorded delivery; a delivered order is settled."""


class OrderAdminError(ConflictError):
    """The order cannot take this action in its state."""


class OrderNotFoundError(NotFoundError, OrderAdminError):
    """No order has this id."""


class OrderFilter(BaseModel):
    status: OrderStatus | None = None
    product_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    buyer: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=MAX_ROW_ID)


class OrderSummary(OrderFacts):
    created_at: datetime
    block_time: datetime | None
    delivered_at: datetime | None


class OrderPage(BaseModel):
    total: int
    orders: list[OrderSummary]


class AttemptView(BaseModel):
    channel: str
    variant: str | None
    succeeded: bool
    error: str | None
    started_at: datetime
    finished_at: datetime


class TimelineEntry(BaseModel):
    at: datetime
    event: str


class OrderDetail(OrderSummary):
    email: str | None
    commitment: str | None
    payment_tx: str | None
    payment_block: int | None
    settlement_txs: list[str]
    timeline: list[TimelineEntry]
    attempts: list[AttemptView]


def _summary(order: ShopOrder) -> OrderSummary:
    return OrderSummary.of(order)


def list_orders(session: Session, where: OrderFilter) -> OrderPage:
    """Newest first; `total` counts every match, for paging."""
    query = select(ShopOrder)
    if where.status is not None:
        query = query.where(ShopOrder.status == where.status)
    if where.product_id is not None:
        query = query.where(ShopOrder.product_id == where.product_id)
    if where.buyer is not None:
        query = query.where(ShopOrder.payer == to_checksum_address(where.buyer))
    if where.since is not None:
        query = query.where(col(ShopOrder.created_at) >= where.since)
    if where.until is not None:
        query = query.where(col(ShopOrder.created_at) < where.until)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(ShopOrder.id).desc()).offset(where.offset).limit(where.limit)
    ).all()
    return OrderPage(total=total, orders=[_summary(order) for order in rows])


def find_order(session: Session, chain_order_id: str) -> ShopOrder:
    order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id.lower())).first()
    if order is None:
        raise OrderNotFoundError(f"no order {chain_order_id}")
    return order


def _timeline(order: ShopOrder) -> list[TimelineEntry]:
    stamps = [
        ("quoted", order.created_at),
        ("paid (block)", order.block_time),
        ("payment seen", order.seen_at),
        ("confirmed", order.confirmed_at),
        ("keys claimed", order.keys_claimed_at),
        ("delivered", order.delivered_at),
        ("delivery recorded on-chain", order.committed_at),
        ("refunded on-chain", order.refunded_at),
    ]
    return [TimelineEntry(at=at, event=event) for event, at in stamps if at is not None]


def order_detail(session: Session, chain_order_id: str) -> OrderDetail:
    order = find_order(session, chain_order_id)
    payment = session.exec(select(Payment).where(Payment.chain_order_id == order.chain_order_id)).first()
    attempts = session.exec(
        select(DeliveryAttempt).where(DeliveryAttempt.order_id == order.id).order_by(col(DeliveryAttempt.id))
    ).all()
    # order_ids is a comma-separated list: match the id as a whole element, not as a substring.
    padded = "," + col(ChainTx.order_ids) + ","
    txs = session.exec(select(ChainTx.tx_hash).where(padded.contains(f",{order.id},"))).all()
    return OrderDetail(
        **_summary(order).model_dump(),
        email=order.email,
        commitment=order.commitment,
        payment_tx=payment.tx_hash if payment else None,
        payment_block=payment.block_number if payment else None,
        settlement_txs=list(txs),
        timeline=_timeline(order),
        attempts=[AttemptView.model_validate(a.model_dump()) for a in attempts],
    )


def begin_refund(session: Session, chain_order_id: str, reason: str) -> Settlement:
    """Marks a paid, undelivered order for an on-chain refund; the settlement sender sends it.

    One conditional UPDATE (`WHERE status IN (paid, confirmed)`) decides: a delivery committed
    between reading the order and writing the refund makes the refund fail, never the reverse, so
    an order is never both delivered and refunded.
    """
    order = find_order(session, chain_order_id)
    moved = session.connection().execute(
        update(ShopOrder)
        .where(col(ShopOrder.id) == order.id, col(ShopOrder.status).in_(REFUNDABLE))
        .values(status=OrderStatus.REFUNDING, refund_reason=reason[:200])
    )
    session.commit()
    session.refresh(order)
    if moved.rowcount != 1:
        raise OrderAdminError(
            f"order {order.chain_order_id} is {order.status.value}: only paid orders not yet delivered "
            "can be refunded (the escrow refunds nothing after a recorded delivery)"
        )
    return settlement_of(order)


def resend_notice(session: Session, chain_order_id: str, public_url: str) -> DeliveryNotice:
    """The notice to send again through the channels, for a delivered order."""
    order = find_order(session, chain_order_id)
    if order.status != OrderStatus.DELIVERED:
        raise OrderAdminError(f"order {order.chain_order_id} is {order.status.value}, not delivered")
    return delivery_notice(order, product_names(session, [order.product_id])[order.product_id], public_url)
