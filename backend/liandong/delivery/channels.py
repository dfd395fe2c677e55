"""Channels that tell a buyer their keys are ready, tried in the merchant's order until one works.

Every attempt is recorded (DeliveryAttempt), failed or not: the abnormal-delivery log is made of them.
The keys themselves never travel in a notice: the buyer reads them from the order page.
"""

from __future__ import annotations

import asyncio
import logging
import time
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


def delivery_notice(
    order: ShopOrder, product_name: str, public_url: str, *, commitment: str | None = None
) -> DeliveryNotice:
    """The notice of a delivered order. `commitment`: the one just written, when `order` is a row
    read before the delivery's UPDATE (which leaves the ORM object's columns as they were)."""
    assert order.id is not None
    return DeliveryNotice(
        order_id=order.id,
        chain_order_id=order.chain_order_id,
        product_name=product_name,
        quantity=order.quantity,
        email=order.email,
        phone=order.phone,
        payer=order.payer,
        commitment=commitment or order.commitment,
        order_url=f"{public_url}/orders/{order.chain_order_id}",
    )


def product_names(session: Session, product_ids: Iterable[int]) -> dict[int, str]:
    rows = session.exec(select(Product.id, Product.name).where(col(Product.id).in_(list(product_ids))))
    return {product_id: name for product_id, name in rows if product_id is not None}


MERCHANT_FEED = "merchant"
"""The hub's topic for the dashboard."""
ORDER_TOPIC = "order:"
"""Prefix of an order's topic (`order:0x…`): no order id, whatever a client sends, names the feed."""
ACK = "ack"
"""An event type of the hub's own: the buyer's order page says it opened the keys. It goes to the
in-site channel waiting for it (on whichever node), never to a page or the feed."""
ACK_MEMORY_SECONDS = 600.0
"""An acknowledgement that came before the in-site channel asked still counts for this long."""
MAX_REMEMBERED_ACKS = 10_000


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
    feed that sees every order and stock change (the dashboard). Events are small deltas.

    Topics are `order:<id>` and `merchant`, so no order id can reach the feed. Acknowledgements
    (`acknowledge`) travel the same way as events (a cluster's hub relays them to every node) but
    only wake the in-site channel's `wait_for_ack`."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._acked: dict[str, float] = {}
        self._ack_waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def _subscribe(self, topic: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self._subscribers[topic].add(queue)
        return queue

    def _unsubscribe(self, topic: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[topic]

    def subscribe(self, chain_order_id: str) -> asyncio.Queue[dict[str, Any]]:
        return self._subscribe(ORDER_TOPIC + chain_order_id.lower())

    def unsubscribe(self, chain_order_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._unsubscribe(ORDER_TOPIC + chain_order_id.lower(), queue)

    def subscribe_feed(self) -> asyncio.Queue[dict[str, Any]]:
        return self._subscribe(MERCHANT_FEED)

    def unsubscribe_feed(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._unsubscribe(MERCHANT_FEED, queue)

    def watched(self, chain_order_id: str) -> bool:
        return bool(self._subscribers.get(ORDER_TOPIC + chain_order_id.lower()))

    def publish(self, chain_order_id: str, event: dict[str, Any]) -> None:
        """An order's status change: to the order's pages and to the merchant feed."""
        self.deliver(chain_order_id.lower(), {**event, "type": "order"})

    def publish_feed(self, event: dict[str, Any]) -> None:
        """A change only the merchant sees (stock levels)."""
        self.deliver(None, event)

    def acknowledge(self, chain_order_id: str) -> None:
        """The buyer's own (authenticated) order page opened the delivered keys."""
        self.deliver(chain_order_id.lower(), {"type": ACK})

    def deliver(self, order_topic: str | None, event: dict[str, Any]) -> None:
        """Hands an event to this node's subscribers; a cluster's hub relays it to every node's."""
        if event.get("type") == ACK:
            if order_topic is not None:
                self._acknowledged(order_topic.lower())
            return
        if order_topic is not None:
            self._put(ORDER_TOPIC + order_topic.lower(), event)
        self._put(MERCHANT_FEED, event)

    def _acknowledged(self, chain_order_id: str) -> None:
        self._acked.pop(chain_order_id, None)
        self._acked[chain_order_id] = time.monotonic()
        if len(self._acked) > MAX_REMEMBERED_ACKS:
            del self._acked[next(iter(self._acked))]
        for waiter in self._ack_waiters.get(chain_order_id, ()):
            waiter.set()

    async def wait_for_ack(self, chain_order_id: str, timeout: float) -> bool:
        """Whether the order's page acknowledged its keys (lately, or within `timeout` seconds)."""
        key = chain_order_id.lower()
        acked = self._acked.get(key)
        if acked is not None and time.monotonic() - acked < ACK_MEMORY_SECONDS:
            return True
        waiter = asyncio.Event()
        self._ack_waiters[key].add(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._ack_waiters[key].discard(waiter)
            if not self._ack_waiters[key]:
                del self._ack_waiters[key]

    def _put(self, topic: str, event: dict[str, Any]) -> None:
        for queue in self._subscribers.get(topic, ()):
            if queue.full():  # a stalled reader loses its oldest events, never blocks the engine
                queue.get_nowait()
            queue.put_nowait(event)


class InSiteChannel:
    """The order page: counts as delivered only when the buyer's own page, authenticated with the
    order token or the paying wallet's session, says it decrypted the keys.

    Status events go to the page whatever the channels do; this channel answers whether the buyer
    saw the keys: no page open, or no acknowledgement within `ack_seconds`, hands over to the next
    channel.
    """

    name = "in-site"

    def __init__(self, hub: OrderEventHub, ack_seconds: float = 5.0) -> None:
        self.hub = hub
        self.ack_seconds = ack_seconds

    async def send(self, notice: DeliveryNotice) -> str | None:
        if not self.hub.watched(notice.chain_order_id):
            raise ChannelError("the order page is not open")
        if not await self.hub.wait_for_ack(notice.chain_order_id, self.ack_seconds):
            raise ChannelError("the order page did not confirm that it opened the keys")
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
