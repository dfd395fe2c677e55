"""The efficiency board: how long buyers waited from their payment to their keys.

Latencies are time differences, which SQLite and PostgreSQL spell differently, so they are computed
in Python over the window's delivered orders, and so are the percentiles (`core.figures`, the same
definition as the CLI's and the benchmark's) and the histogram. The board carries the shop's current
alerts too (`alerting`): the dashboard refreshes one figure, not two.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session, col, select

from liandong.core.figures import PERCENTILES, percentile
from liandong.services.stats.alerting import Alert, alerts
from liandong.services.stats.window import DEFAULT_THRESHOLD_SECONDS, rate, resolve_window, seconds_between
from liandong.store.models import ShopOrder

TARGET_SHARE = 0.99
"""The shop's goal: this share of orders gets its keys within the latency threshold."""
HISTOGRAM_EDGES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (inclusive, seconds) of the latency histogram's buckets; a last one is open-ended."""


class LatencySummary(BaseModel):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class HistogramBucket(BaseModel):
    low: float
    high: float | None
    """Inclusive upper bound in seconds; None for the last, open-ended bucket."""
    count: int


class Efficiency(BaseModel):
    since: datetime
    until: datetime
    threshold_seconds: float
    target_share: float
    payment_to_delivery: LatencySummary
    """From the block that included the payment to the keys being handed out: what the buyer waits."""
    seen_to_delivery: LatencySummary
    """From the node seeing the payment to the keys being handed out: the node's own part."""
    within_threshold: int
    share_within: float | None
    """Share of orders delivered within the threshold; None without orders."""
    alert: bool
    """The share fell under `target_share`."""
    histogram: list[HistogramBucket]
    alerts: list[Alert] = []
    """What else needs the merchant now (settlement lag, operator balance, anomalies): see
    `alerts`. Empty when all is well."""


def _summary(values: list[float]) -> LatencySummary:
    ordered = sorted(values)
    if not ordered:
        return LatencySummary(count=0, p50=None, p95=None, p99=None, max=None)
    p50, p95, p99 = (percentile(ordered, percent) for percent in PERCENTILES)
    return LatencySummary(count=len(ordered), p50=p50, p95=p95, p99=p99, max=ordered[-1])


def _histogram(values: list[float]) -> list[HistogramBucket]:
    counts = [0] * (len(HISTOGRAM_EDGES) + 1)
    for value in values:
        counts[bisect_left(HISTOGRAM_EDGES, value)] += 1
    lows = (0.0, *HISTOGRAM_EDGES)
    highs: tuple[float | None, ...] = (*HISTOGRAM_EDGES, None)
    return [
        HistogramBucket(low=low, high=high, count=n) for low, high, n in zip(lows, highs, counts, strict=True)
    ]


def efficiency(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
    *,
    settlement_lag_seconds: float = 300.0,
    balance_batches: int = 20,
) -> Efficiency:
    """Pay→delivery latency of the orders delivered in the window, with the shop's current alerts
    (`settlement_lag_seconds`, `balance_batches`: the settings of the same names)."""
    start, end = resolve_window(since, until)
    rows = session.exec(
        select(ShopOrder.block_time, ShopOrder.seen_at, ShopOrder.delivered_at).where(
            col(ShopOrder.delivered_at) >= start, col(ShopOrder.delivered_at) < end
        )
    ).all()
    paid = [seconds_between(block, delivered) for block, _, delivered in rows if block and delivered]
    node = [seconds_between(seen, delivered) for _, seen, delivered in rows if seen and delivered]
    within = sum(1 for latency in paid if latency <= threshold_seconds)
    share = rate(within, len(paid))
    return Efficiency(
        since=start,
        until=end,
        threshold_seconds=threshold_seconds,
        target_share=TARGET_SHARE,
        payment_to_delivery=_summary(paid),
        seen_to_delivery=_summary(node),
        within_threshold=within,
        share_within=share,
        alert=share is not None and share < TARGET_SHARE,
        histogram=_histogram(paid),
        alerts=alerts(
            session, settlement_lag_seconds=settlement_lag_seconds, balance_batches=balance_batches
        ),
    )
