"""The merchant's orders: search, one order's timeline, on-chain refunds, resends, the live feed.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, WebSocket
from pydantic import BaseModel, Field

from liandong.api.deps import (
    WS_POLICY_VIOLATION,
    MerchantIdentity,
    Shop,
    feed_merchant,
    merchant,
    socket_slot,
    stream_events,
    ws_shop,
)
from liandong.delivery.channels import DeliveryNotice
from liandong.events import OrderEvent
from liandong.services import order_admin
from liandong.services.order_admin import AttemptView
from liandong.store.models import OrderStatus

router = APIRouter(prefix="/api/merchant", tags=["merchant: orders"])

OrdersRead = Annotated[MerchantIdentity, Depends(merchant("orders:read"))]
OrdersWrite = Annotated[MerchantIdentity, Depends(merchant("orders:write"))]


class RefundRequest(BaseModel):
    reason: str = Field(default="refunded by the merchant", min_length=1, max_length=200)


class RefundResponse(BaseModel):
    order: str
    status: str
    detail: str


@router.get("/orders")
def search_orders(
    context: Shop, _: OrdersRead, where: Annotated[order_admin.OrderFilter, Query()]
) -> order_admin.OrderPage:
    """Orders newest first, filtered by status, product, buyer wallet and time of quote."""
    with context.session() as session:
        return order_admin.list_orders(session, where)


@router.get("/orders/{order_id}", responses={404: {}})
def order_detail(order_id: str, context: Shop, _: OrdersRead) -> order_admin.OrderDetail:
    """One order with its payment, timeline, channel attempts and settlement transactions."""
    with context.session() as session:
        return order_admin.order_detail(session, order_id)


@router.post("/orders/{order_id}/refund", status_code=202, responses={404: {}, 409: {}})
def refund(order_id: str, request: RefundRequest, context: Shop, _: OrdersWrite) -> RefundResponse:
    """Refunds a paid order that was not delivered, on-chain: the escrow sends the buyer's funds back."""
    with context.session() as session:
        settlement = order_admin.begin_refund(session, order_id, request.reason)
    context.settle([settlement])
    context.hub.publish(OrderEvent(order_id, OrderStatus.REFUNDING.value))
    return RefundResponse(
        order=order_id.lower(), status="refunding", detail="the refund transaction is on its way"
    )


@router.post("/orders/{order_id}/resend", responses={404: {}, 409: {}})
async def resend(order_id: str, context: Shop, _: OrdersWrite) -> list[AttemptView]:
    """Tells the buyer again through the channels, in their order; returns the attempts made."""

    def notice() -> DeliveryNotice:
        with context.session() as session:
            return order_admin.resend_notice(session, order_id, context.settings.resolved_public_url)

    found = await asyncio.to_thread(notice)
    attempts = await context.resend([found])
    return [AttemptView.model_validate(attempt.model_dump()) for attempt in attempts]


@router.websocket("/feed")
async def feed(websocket: WebSocket) -> None:
    """The dashboard's live feed: every order status change and stock change, as small deltas."""
    context = ws_shop(websocket)
    async with socket_slot(websocket, context) as admitted:
        if not admitted:
            return
        identity = await asyncio.to_thread(feed_merchant, websocket)
        if identity is None:
            await websocket.close(code=WS_POLICY_VIOLATION, reason="log in, or pass an API token")
            return
        hub = context.hub
        await websocket.accept()
        queue = hub.subscribe_feed()
        await stream_events(websocket, queue, lambda: hub.unsubscribe_feed(queue))
