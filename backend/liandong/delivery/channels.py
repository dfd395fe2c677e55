"""Channels that tell a buyer their keys are ready, tried in the merchant's order until one works.

Every attempt is recorded (DeliveryAttempt), failed or not: the abnormal-delivery log is made of them.
The keys themselves never travel in a notice: the buyer reads them from the order page.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlmodel import Session, col, select

from liandong.store.models import DeliveryAttempt, Product, ShopOrder, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryNotice:
    """What a channel may tell the buyer: where to read the keys, never the keys."""

    order_id: int
    chain_order_id: str
    product_name: str
    quantity: int
    email: str | None
    phone: str | None
    payer: str | None
    commitment: str | None
    order_url: str


def delivery_notice(order: ShopOrder, product_name: str, public_url: str) -> DeliveryNotice:
    assert order.id is not None
    return DeliveryNotice(
        order_id=order.id,
        chain_order_id=order.chain_order_id,
        product_name=product_name,
        quantity=order.quantity,
        email=order.email,
        phone=order.phone,
        payer=order.payer,
        commitment=order.commitment,
        order_url=f"{public_url}/orders/{order.chain_order_id}",
    )


def product_names(session: Session, product_ids: Iterable[int]) -> dict[int, str]:
    rows = session.exec(select(Product.id, Product.name).where(col(Product.id).in_(list(product_ids))))
    return {product_id: name for product_id, name in rows if product_id is not None}


MERCHANT_FEED = "merchant"
"""The hub's topic for the dashboard; order topics are 0x-hex ids, so they never collide with it."""


class ChannelError(Exception):
    """A channel could not deliver the notice; the next channel takes over."""

    def __init__(self, reason: str, variant: str | None = None) -> None:
        super().__init__(reason)
        self.variant = variant
        """The template variant that failed to go out, so A/B results count failures too."""


class Channel(Protocol):
    name: str

    async def send(self, notice: DeliveryNotice) -> str | None:
        """Delivers the notice or raises ChannelError; returns the template variant it sent."""


class OrderEventHub:
    """In-process publish/subscribe of order events: per order (the buyer's page) and one merchant
    feed that sees every order and stock change (the dashboard). Events are small deltas."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)

    def subscribe(self, chain_order_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self._subscribers[chain_order_id.lower()].add(queue)
        return queue

    def unsubscribe(self, chain_order_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subscribers = self._subscribers.get(chain_order_id.lower())
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[chain_order_id.lower()]

    def subscribe_feed(self) -> asyncio.Queue[dict[str, Any]]:
        return self.subscribe(MERCHANT_FEED)

    def unsubscribe_feed(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.unsubscribe(MERCHANT_FEED, queue)

    def watched(self, chain_order_id: str) -> bool:
        return bool(self._subscribers.get(chain_order_id.lower()))

    def publish(self, chain_order_id: str, event: dict[str, Any]) -> None:
        """An order's status change: to the order's pages and to the merchant feed."""
        self.deliver(chain_order_id.lower(), {"type": "order", **event})

    def publish_feed(self, event: dict[str, Any]) -> None:
        """A change only the merchant sees (stock levels)."""
        self.deliver(None, event)

    def deliver(self, order_topic: str | None, event: dict[str, Any]) -> None:
        """Hands an event to this node's subscribers; a cluster's hub relays it to every node's."""
        if order_topic is not None:
            self._put(order_topic, event)
        self._put(MERCHANT_FEED, event)

    def _put(self, topic: str, event: dict[str, Any]) -> None:
        for queue in self._subscribers.get(topic, ()):
            if queue.full():  # a stalled reader loses its oldest events, never blocks the engine
                queue.get_nowait()
            queue.put_nowait(event)


class InSiteChannel:
    """The order page: the buyer is told when their page is open (the "delivered" push reaches it).

    Status events go to the page whatever the channels do; this channel only answers whether the
    buyer is there to see them, so that a closed page hands over to the next channel.
    """

    name = "in-site"

    def __init__(self, hub: OrderEventHub) -> None:
        self.hub = hub

    async def send(self, notice: DeliveryNotice) -> str | None:
        if not self.hub.watched(notice.chain_order_id):
            raise ChannelError("the order page is not open")
        return None


async def notify(channels: Sequence[Channel], notice: DeliveryNotice) -> list[DeliveryAttempt]:
    """Tries each channel in order until one succeeds; returns every attempt made.

    A channel with `attempts` > 1 is retried with exponential backoff (`backoff`, doubled each
    time) before the next channel takes over; every try is an attempt of its own in the log.
    """
    attempts: list[DeliveryAttempt] = []
    for channel in channels:
        tries = max(1, getattr(channel, "attempts", 1))
        delay = float(getattr(channel, "backoff", 0.5))
        for attempt_no in range(tries):
            if attempt_no:
                await asyncio.sleep(delay)
                delay *= 2
            attempt = await _attempt(channel, notice)
            attempts.append(attempt)
            if attempt.succeeded:
                return attempts
    return attempts


async def _attempt(channel: Channel, notice: DeliveryNotice) -> DeliveryAttempt:
    started = utcnow()
    try:
        variant = await channel.send(notice)
    except Exception as exc:  # any failure of a channel hands over to the next try
        log.warning("channel %s failed for order %s: %s", channel.name, notice.order_id, exc)
        return DeliveryAttempt(
            order_id=notice.order_id,
            channel=channel.name,
            variant=exc.variant if isinstance(exc, ChannelError) else None,
            succeeded=False,
            error=str(exc)[:500],
            started_at=started,
            finished_at=utcnow(),
        )
    return DeliveryAttempt(
        order_id=notice.order_id,
        channel=channel.name,
        variant=variant,
        succeeded=True,
        started_at=started,
        finished_at=utcnow(),
    )
