"""The time window every dashboard figure covers, and the small pieces the figures share.

Each figure covers a window, by default the last 24 hours, resolved here once and the same way for
all of them. What SQL cannot do the same way on SQLite and PostgreSQL runs in Python over the
window's rows. The pieces several figures need live here: when an order was paid and which orders
were paid in the window, a time difference that clock skew cannot make negative, a rate that is
None without a whole, the latency threshold's default, and a chain's network name (figures broken
down by chain name their network, never a bare chain id).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement
from sqlmodel import col, func

from liandong.chain.profiles import load_profiles
from liandong.core.errors import InvalidError
from liandong.store.models import OrderStatus, ShopOrder, as_utc, utcnow

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=366)
"""Longer windows are refused: each figure reads every order of its window."""
REFUND_STATUSES = (OrderStatus.REFUNDING, OrderStatus.REFUNDED)
DEFAULT_THRESHOLD_SECONDS = 10.0
"""The latency threshold when none is given: slower deliveries are slow (the efficiency board, the
abnormal log); the `latency_alert_seconds` setting has the same default."""


class WindowError(InvalidError, ValueError):
    """The time window is empty, reversed, too long or out of the calendar's range."""


def resolve_window(since: datetime | None = None, until: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until) in UTC; `until` defaults to now and `since` to `DEFAULT_WINDOW` before it."""
    end = utcnow() if until is None else as_utc(until)
    try:
        start = end - DEFAULT_WINDOW if since is None else as_utc(since)
    except OverflowError:  # `until` so early that the default window would start before year 1
        raise WindowError("the window starts before the calendar does") from None
    if start >= end:
        raise WindowError("the window must start before it ends")
    if end - start > MAX_WINDOW:
        raise WindowError(f"the window may span at most {MAX_WINDOW.days} days")
    return start, end


def seconds_between(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never negative: clocks of the chain and the node may disagree."""
    return max(0.0, (as_utc(end) - as_utc(start)).total_seconds())


def paid_time() -> ColumnElement[datetime]:
    """When an order was paid: its block's time, else when the node saw the payment (a payment for
    an order the shop never quoted is recorded without a block time)."""
    return func.coalesce(ShopOrder.block_time, ShopOrder.seen_at)


def paid_in(start: datetime, end: datetime) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the orders paid in [start, end): the window of sales and the abnormal log."""
    paid_at = paid_time()
    return col(ShopOrder.status) != OrderStatus.QUOTED, paid_at >= start, paid_at < end


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def network_name(chain_id: int) -> str:
    """The chain's network as its profile names it ("Base"), else "Chain <id>" (a private chain)."""
    known = load_profiles().get(chain_id)
    return known.name if known is not None else f"Chain {chain_id}"
