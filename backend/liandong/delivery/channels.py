"""Channels that tell a buyer their keys are ready, tried in the merchant's order until one works.

Every attempt is recorded (DeliveryAttempt), failed or not: the abnormal-delivery log is made of them.
The keys themselves never travel in a notice: the buyer reads them from the order page.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from liandong.store.models import DeliveryAttempt, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryNotice:
    order_id: int
    chain_order_id: str
    email: str | None
    payer: str | None


class ChannelError(Exception):
    """A channel could not deliver the notice; the next channel takes over."""


class Channel(Protocol):
    name: str

    async def send(self, notice: DeliveryNotice) -> None: ...


class OrderEventHub:
    """In-process publish/subscribe of order events, by the escrow's order id (the WebSocket feed)."""

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

    def publish(self, chain_order_id: str, event: dict[str, Any]) -> None:
        for queue in self._subscribers.get(chain_order_id.lower(), ()):
            if queue.full():  # a stalled reader loses its oldest events, never blocks the engine
                queue.get_nowait()
            queue.put_nowait(event)


class InSiteChannel:
    """The order page: pushes "delivered" to the buyer's open page over WebSocket."""

    name = "in-site"

    def __init__(self, hub: OrderEventHub) -> None:
        self.hub = hub

    async def send(self, notice: DeliveryNotice) -> None:
        self.hub.publish(notice.chain_order_id, {"order": notice.chain_order_id, "status": "delivered"})


async def notify(channels: Sequence[Channel], notice: DeliveryNotice) -> list[DeliveryAttempt]:
    """Tries each channel in order until one succeeds; returns every attempt made."""
    attempts = []
    for channel in channels:
        started = utcnow()
        try:
            await channel.send(notice)
        except Exception as exc:  # any failure of a channel hands over to the next
            log.warning("channel %s failed for order %s: %s", channel.name, notice.order_id, exc)
            attempts.append(
                DeliveryAttempt(
                    order_id=notice.order_id,
                    channel=channel.name,
                    succeeded=False,
                    error=str(exc)[:500],
                    started_at=started,
                    finished_at=utcnow(),
                )
            )
            continue
        attempts.append(
            DeliveryAttempt(
                order_id=notice.order_id,
                channel=channel.name,
                succeeded=True,
                started_at=started,
                finished_at=utcnow(),
            )
        )
        break
    return attempts
