"""The efficiency board: how long buyers waited from their payment to their keys.

Latencies are time differences, which SQLite and PostgreSQL spell differently, so they are computed
in Python over the window's delivered orders, and so are the percentiles (`core.figures`, the same
definition as the CLI's and the benchmark's) and the histogram. The board carries the shop's current
alerts and backlog too (`alerting`, `pending`): the dashboard refreshes one figure, not three. Each
chain's own latencies and backlog are in `by_chain`, named by network; the totals cover them all.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session, col, select

from liandong.core.figures import PERCENTILES, percentile
from liandong.services.stats.alerting import Alert, alerts
from liandong.services.stats.pending import Backlog, ChainBacklog, backlog
from liandong.services.stats.window import (
    DEFAULT_THRESHOLD_SECONDS,
    network_name,
    rate,
    resolve_window,
    seconds_between,
)
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


class ChainEfficiency(BaseModel):
    """One chain's part of the board: its deliveries of the window and what it owes now."""

    chain_id: int
    network: str
    """The chain's network name ("Base"), from the chain profiles."""
    payment_to_delivery: LatencySummary
    seen_to_delivery: LatencySummary
    within_threshold: int
    share_within: float | None
    alert: bool
    backlog: ChainBacklog


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
    backlog: Backlog | None = None
    """What the node owes now (not windowed): see `backlog`."""
    by_chain: list[ChainEfficiency] = []
    """Per chain with deliveries in the window or a backlog, by chain id."""


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


def _chain_figures(
    chain_id: int,
    paid: list[float],
    node: list[float],
    threshold_seconds: float,
    owed: ChainBacklog | None,
) -> ChainEfficiency:
    within = sum(1 for latency in paid if latency <= threshold_seconds)
    share = rate(within, len(paid))
    network = network_name(chain_id)
    return ChainEfficiency(
        chain_id=chain_id,
        network=network,
        payment_to_delivery=_summary(paid),
        seen_to_delivery=_summary(node),
        within_threshold=within,
        share_within=share,
        alert=share is not None and share < TARGET_SHARE,
        backlog=owed
        or ChainBacklog(
            chain_id=chain_id,
            network=network,
            awaiting_confirmations=0,
            awaiting_keys=0,
            deliveries_to_record=0,
            refunds_to_send=0,
        ),
    )


def efficiency(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
    *,
    settlement_lag_seconds: float = 300.0,
    balance_batches: int = 20,
) -> Efficiency:
    """Pay→delivery latency of the orders delivered in the window, in all and per chain, with the
    shop's current alerts and backlog (`settlement_lag_seconds`, `balance_batches`: the settings of
    the same names)."""
    start, end = resolve_window(since, until)
    rows = session.exec(
        select(ShopOrder.chain_id, ShopOrder.block_time, ShopOrder.seen_at, ShopOrder.delivered_at).where(
            col(ShopOrder.delivered_at) >= start, col(ShopOrder.delivered_at) < end
        )
    ).all()
    paid: defaultdict[int, list[float]] = defaultdict(list)
    node: defaultdict[int, list[float]] = defaultdict(list)
    for chain_id, block, seen, delivered in rows:
        if block and delivered:
            paid[chain_id].append(seconds_between(block, delivered))
        if seen and delivered:
            node[chain_id].append(seconds_between(seen, delivered))
    all_paid = [latency for latencies in paid.values() for latency in latencies]
    all_node = [latency for latencies in node.values() for latency in latencies]
    within = sum(1 for latency in all_paid if latency <= threshold_seconds)
    share = rate(within, len(all_paid))
    owed = backlog(session)
    owed_by_chain = {chain.chain_id: chain for chain in owed.by_chain}
    chains = sorted({chain_id for chain_id, *_ in rows} | set(owed_by_chain))
    return Efficiency(
        since=start,
        until=end,
        threshold_seconds=threshold_seconds,
        target_share=TARGET_SHARE,
        payment_to_delivery=_summary(all_paid),
        seen_to_delivery=_summary(all_node),
        within_threshold=within,
        share_within=share,
        alert=share is not None and share < TARGET_SHARE,
        histogram=_histogram(all_paid),
        alerts=alerts(
            session, settlement_lag_seconds=settlement_lag_seconds, balance_batches=balance_batches
        ),
        backlog=owed,
        by_chain=[
            _chain_figures(
                chain_id, paid[chain_id], node[chain_id], threshold_seconds, owed_by_chain.get(chain_id)
            )
            for chain_id in chains
        ],
    )
