"""Channels that tell a buyer their keys are ready, tried in the merchant's order until one works.

Every attempt is recorded (DeliveryAttempt), failed or not: the abnormal-delivery log is made of them.
The keys themselves never travel in a notice: the buyer reads them from the order page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlmodel import Session, col, select

from liandong.events import OrderEventHub
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


class ChannelError(Exception):
    """A channel could not deliver the notice; the next channel takes over."""

    def __init__(self, reason: str, variant: str | None = None) -> None:
        super().__init__(reason)
        self.variant = variant
        """The template variant that failed to go out, so A/B results count failures too."""


class BuyerAwayError(ChannelError):
    """The channel cannot reach this buyer now (no order page open): an expected handover to the
    next channel, recorded as an attempt like any other but logged as information, not as a
    warning, so that the channels' real failures stand out in the log."""


class Channel(Protocol):
    name: str

    async def send(self, notice: DeliveryNotice) -> str | None:
        """Delivers the notice or raises ChannelError; returns the template variant it sent."""


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
            raise BuyerAwayError("the order page is not open")
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
        level = logging.INFO if isinstance(exc, BuyerAwayError) else logging.WARNING
        log.log(level, "channel %s failed for order %s: %s", channel.name, notice.order_id, exc)
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
