"""The shop's events and the hub that carries them: what the indexer, the delivery engine and the
API tell the buyer's order page and the merchant's dashboard.

Events are typed here, once (`OrderEvent`, `StockEvent`); on the hub and the wire they are their
`payload()`, a small JSON object, because a cluster's hub relays them through PostgreSQL NOTIFY and
the pages read them from a WebSocket. The hub lives at the bottom of the layers (it imports nothing
of the shop) because the indexer, the engine, the API and the cluster all publish or listen.

An order page that proved the order may also name its X25519 public key when it subscribes (a
`KeyRecipient`): the delivery engine then seals the keys to it inside the delivery transaction, logs
the read there, and the page's `delivered` event carries its own box (`publish_delivered`), so the
keys reach the buyer with the event, without a second request. Only this node's pages are
recipients: a cluster's hub has none (its events cross PostgreSQL NOTIFY, whose payloads are small
and seen by every node), and its pages fetch their keys on the event, as any page may.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class OrderEvent:
    """An order's status change, as its page and the merchant's feed receive it. Fields left `None`
    are not sent."""

    order: str
    """The order's on-chain id, `0x…`, lower case."""
    status: str
    """The `OrderStatus` value the order reached."""
    product_id: int | None = None
    payer: str | None = None
    amount: str | None = None
    """In the token's smallest unit, as a decimal string (JSON numbers lose precision)."""
    token: str | None = None
    tx_hash: str | None = None
    confirmations: int | None = None
    required: int | None = None
    awaiting: str | None = None
    """A tag policy's block tag ("safe", "finalized") the payment's block must get under."""
    blocks_left: int | None = None
    """How many blocks the `awaiting` tag's block is still below the payment's (0: reached)."""
    commitment: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", self.order.lower())

    def payload(self) -> dict[str, Any]:
        body = {name: value for name, value in asdict(self).items() if value is not None}
        return {**body, "type": "order"}


@dataclass(frozen=True, eq=False)
class KeyRecipient:
    """An order page that subscribed with its proof and its X25519 public key: the engine may seal
    the order's keys to it. Compared by identity: each subscription is its own recipient."""

    public_key: bytes
    via: str
    """How the page proved the order ("token" or "wallet"), as its key read is logged."""


@dataclass(frozen=True)
class StockEvent:
    """A product's stock went up (an import) or down (a delivery): only the merchant's feed sees it."""

    product_id: int
    change: int

    def payload(self) -> dict[str, Any]:
        return {"type": "stock", "product_id": self.product_id, "change": self.change}


class OrderEventHub:
    """In-process publish/subscribe of order events: per order (the buyer's page) and one merchant
    feed that sees every order and stock change (the dashboard). Events are small deltas.

    Topics are `order:<id>` and `merchant`, so no order id can reach the feed. Acknowledgements
    (`acknowledge`) travel the same way as events (a cluster's hub relays them to every node) but
    only wake the in-site channel's `wait_for_ack`."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._recipients: dict[str, tuple[tuple[asyncio.Queue[dict[str, Any]], KeyRecipient], ...]] = {}
        """Per order topic, the subscriptions that named a public key. Each value is a tuple,
        replaced whole on a change, so the delivery engine's thread reads it without a lock."""
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

    def subscribe(
        self, chain_order_id: str, recipient: KeyRecipient | None = None
    ) -> asyncio.Queue[dict[str, Any]]:
        """An order page's queue; with `recipient`, its `delivered` event may carry its keys."""
        topic = ORDER_TOPIC + chain_order_id.lower()
        queue = self._subscribe(topic)
        if recipient is not None:
            self._recipients[topic] = (*self._recipients.get(topic, ()), (queue, recipient))
        return queue

    def unsubscribe(self, chain_order_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        topic = ORDER_TOPIC + chain_order_id.lower()
        self._unsubscribe(topic, queue)
        kept = tuple(entry for entry in self._recipients.get(topic, ()) if entry[0] is not queue)
        if kept:
            self._recipients[topic] = kept
        else:
            self._recipients.pop(topic, None)

    def recipients(self, chain_order_id: str) -> tuple[KeyRecipient, ...]:
        """The pages of this node waiting for the order's keys (safe to call from any thread)."""
        return tuple(
            recipient for _, recipient in self._recipients.get(ORDER_TOPIC + chain_order_id.lower(), ())
        )

    def publish_delivered(self, event: OrderEvent, sealed: Mapping[KeyRecipient, dict[str, Any]]) -> None:
        """A `delivered` event; each page in `sealed` gets its own box with it (`keys`), every
        other page and the merchant feed the event alone."""
        if not sealed:
            self.publish(event)
            return
        payload = event.payload()
        topic = ORDER_TOPIC + event.order
        boxes = {
            queue: sealed[recipient]
            for queue, recipient in self._recipients.get(topic, ())
            if recipient in sealed
        }
        for queue in self._subscribers.get(topic, ()):
            box = boxes.get(queue)
            self._put_one(queue, payload if box is None else {**payload, "keys": box})
        self._put(MERCHANT_FEED, payload)

    def subscribe_feed(self) -> asyncio.Queue[dict[str, Any]]:
        return self._subscribe(MERCHANT_FEED)

    def unsubscribe_feed(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._unsubscribe(MERCHANT_FEED, queue)

    def watched(self, chain_order_id: str) -> bool:
        return bool(self._subscribers.get(ORDER_TOPIC + chain_order_id.lower()))

    def publish(self, event: OrderEvent) -> None:
        """An order's status change: to the order's pages and to the merchant feed."""
        self.deliver(event.order, event.payload())

    def publish_stock(self, event: StockEvent) -> None:
        """A change only the merchant sees (stock levels)."""
        self.deliver(None, event.payload())

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
            self._put_one(queue, event)

    @staticmethod
    def _put_one(queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
        if queue.full():  # a stalled reader loses its oldest events, never blocks the engine
            queue.get_nowait()
        queue.put_nowait(event)
