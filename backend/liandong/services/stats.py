"""The merchant dashboard's figures: delivery efficiency, sales, abnormal deliveries, stock, A/B results.

Each figure covers a time window, by default the last 24 hours. Counting and grouping run in the
database; what SQL cannot do the same way on SQLite and PostgreSQL runs in Python over the
window's rows: percentiles, time differences, and sums of token amounts, which are decimal strings
of up to 256 bits.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, case, not_
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, func, select

from liandong.store.models import (
    CardKey,
    DeliveryAttempt,
    ImportBatch,
    KeyAccess,
    MessageTemplate,
    OperatorStatus,
    OrderStatus,
    Product,
    ShopOrder,
    as_utc,
    utcnow,
)

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=366)
"""Longer windows are refused: each figure reads every order of its window."""
TARGET_SHARE = 0.99
"""The shop's goal: this share of orders gets its keys within the latency threshold."""
HISTOGRAM_EDGES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (inclusive, seconds) of the latency histogram's buckets; a last one is open-ended."""
PERCENTILES = (50, 95, 99)
REFUND_STATUSES = (OrderStatus.REFUNDING, OrderStatus.REFUNDED)


class WindowError(ValueError):
    """The time window is empty, reversed or too long."""


def resolve_window(since: datetime | None = None, until: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until) in UTC; `until` defaults to now and `since` to `DEFAULT_WINDOW` before it."""
    end = utcnow() if until is None else as_utc(until)
    start = end - DEFAULT_WINDOW if since is None else as_utc(since)
    if start >= end:
        raise WindowError("the window must start before it ends")
    if end - start > MAX_WINDOW:
        raise WindowError(f"the window may span at most {MAX_WINDOW.days} days")
    return start, end


def _seconds(start: datetime, end: datetime) -> float:
    """Seconds from `start` to `end`, never negative: clocks of the chain and the node may disagree."""
    return max(0.0, (as_utc(end) - as_utc(start)).total_seconds())


def _paid_at() -> ColumnElement[datetime]:
    """When an order was paid: its block's time, else when the node saw the payment (a payment for
    an order the shop never quoted is recorded without a block time)."""
    return func.coalesce(ShopOrder.block_time, ShopOrder.seen_at)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# ------------------------------------------------------------------ efficiency


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


class AlertKind(enum.StrEnum):
    SETTLEMENT_LAG = "settlement_lag"
    """Deliveries whose commitment is not on-chain long after the keys went out: the merchant is
    not paid for them, and past the deadline the buyer may refund them."""
    OPERATOR_BALANCE = "operator_balance"
    """The operator key cannot pay for many more settlement batches."""
    ANOMALY = "anomaly"
    """Orders in the abnormal log with an anomaly (payment reorged, settlement refused, …)."""


class Alert(BaseModel):
    kind: AlertKind
    detail: str
    count: int = 0
    """How many orders it concerns (0 for the operator balance)."""


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


def percentile(sorted_values: Sequence[float], percent: int) -> float:
    """Nearest-rank percentile: a latency some order actually had, never an interpolation."""
    rank = max(1, -(-percent * len(sorted_values) // 100))
    return sorted_values[rank - 1]


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
    threshold_seconds: float = 10.0,
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
    paid = [_seconds(block, delivered) for block, _, delivered in rows if block and delivered]
    node = [_seconds(seen, delivered) for _, seen, delivered in rows if seen and delivered]
    within = sum(1 for latency in paid if latency <= threshold_seconds)
    share = _rate(within, len(paid))
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


# ------------------------------------------------------------------ alerts


ANOMALY_ALERT_WINDOW = timedelta(days=7)
"""Anomalies of orders quoted this recently raise an alert; older ones stay in the abnormal log."""


def alerts(
    session: Session,
    *,
    settlement_lag_seconds: float = 300.0,
    balance_batches: int = 20,
    now: datetime | None = None,
) -> list[Alert]:
    """The shop's current alerts, cheap to compute on every dashboard refresh (index scans)."""
    moment = as_utc(now)
    found: list[Alert] = []
    lagging = session.exec(
        select(func.count()).where(
            ShopOrder.status == OrderStatus.DELIVERED,
            col(ShopOrder.committed_at).is_(None),
            not_(col(ShopOrder.settlement_held)),
            col(ShopOrder.delivered_at) < moment - timedelta(seconds=settlement_lag_seconds),
        )
    ).one()
    if lagging:
        found.append(
            Alert(
                kind=AlertKind.SETTLEMENT_LAG,
                detail=f"{lagging} deliveries not recorded on-chain after {settlement_lag_seconds:g} s",
                count=lagging,
            )
        )
    for status in session.exec(select(OperatorStatus)).all():
        needed = balance_batches * status.batch_gas * int(status.max_fee_per_gas)
        if int(status.balance) < needed:
            found.append(
                Alert(
                    kind=AlertKind.OPERATOR_BALANCE,
                    detail=(
                        f"operator {status.address} holds {status.balance} wei, less than the "
                        f"{needed} wei of {balance_batches} settlement batches"
                    ),
                )
            )
    anomalies = session.exec(
        select(func.count()).where(
            col(ShopOrder.anomaly).is_not(None), col(ShopOrder.created_at) >= moment - ANOMALY_ALERT_WINDOW
        )
    ).one()
    if anomalies:
        found.append(
            Alert(
                kind=AlertKind.ANOMALY,
                detail=f"{anomalies} orders need a look in the abnormal log",
                count=anomalies,
            )
        )
    return found


# ------------------------------------------------------------------ sales


class HourSales(BaseModel):
    hour: datetime
    """Start of the UTC hour."""
    orders: int
    revenue: dict[str, str]
    """Token address → amount paid, in base units (decimal string)."""


class ProductSales(BaseModel):
    product_id: int
    sku: str
    name: str
    orders: int
    units: int
    revenue: dict[str, str]


class TokenSales(BaseModel):
    token: str
    orders: int
    revenue: str
    refunded: str
    """Part of `revenue` paid for orders that are being or were refunded."""


class Sales(BaseModel):
    """Paid orders of the window (refunded ones included: see `TokenSales.refunded`)."""

    since: datetime
    until: datetime
    orders: int
    units: int
    by_hour: list[HourSales]
    by_product: list[ProductSales]
    by_token: list[TokenSales]


@dataclass
class _Tally:
    orders: int = 0
    units: int = 0
    revenue: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, token: str, amount: int, units: int) -> None:
        self.orders += 1
        self.units += units
        self.revenue[token] += amount

    def amounts(self) -> dict[str, str]:
        return {token: str(amount) for token, amount in sorted(self.revenue.items())}


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def sales(session: Session, since: datetime | None = None, until: datetime | None = None) -> Sales:
    """Orders and revenue of the orders paid in the window, by UTC hour (every hour of the window,
    empty ones too), by product and by token."""
    start, end = resolve_window(since, until)
    paid_at = _paid_at()
    rows = session.connection().execute(
        sql_select(
            paid_at,
            col(ShopOrder.product_id),
            col(Product.sku),
            col(Product.name),
            col(ShopOrder.token),
            col(ShopOrder.amount),
            col(ShopOrder.quantity),
            col(ShopOrder.status),
        )
        .join(Product, col(Product.id) == col(ShopOrder.product_id))
        .where(col(ShopOrder.status) != OrderStatus.QUOTED, paid_at >= start, paid_at < end)
    )
    total = _Tally()
    by_hour = {hour: _Tally() for hour in _hours(start, end)}
    by_product: dict[int, _Tally] = defaultdict(_Tally)
    by_token: dict[str, _Tally] = defaultdict(_Tally)
    refunded: defaultdict[str, int] = defaultdict(int)
    names: dict[int, tuple[str, str]] = {}
    for moment, product_id, sku, name, token, amount_text, quantity, status in rows:
        amount = int(amount_text)
        names[product_id] = (sku, name)
        for tally in (total, by_hour[as_utc(moment).replace(minute=0, second=0, microsecond=0)]):
            tally.add(token, amount, quantity)
        by_product[product_id].add(token, amount, quantity)
        by_token[token].add(token, amount, quantity)
        if status in REFUND_STATUSES:
            refunded[token] += amount
    return Sales(
        since=start,
        until=end,
        orders=total.orders,
        units=total.units,
        by_hour=[HourSales(hour=hour, orders=t.orders, revenue=t.amounts()) for hour, t in by_hour.items()],
        by_product=[
            ProductSales(
                product_id=product_id,
                sku=names[product_id][0],
                name=names[product_id][1],
                orders=t.orders,
                units=t.units,
                revenue=t.amounts(),
            )
            for product_id, t in sorted(by_product.items())
        ],
        by_token=[
            TokenSales(
                token=token, orders=t.orders, revenue=str(t.revenue[token]), refunded=str(refunded[token])
            )
            for token, t in sorted(by_token.items())
        ],
    )


# ------------------------------------------------------------------ abnormal deliveries


class AbnormalReason(enum.StrEnum):
    FAILED_ATTEMPT = "failed_attempt"
    """At least one channel failed to tell the buyer."""
    RETRIED = "retried"
    """More than one attempt: a failure handed over to a retry or another channel, or a resend."""
    SLOW = "slow"
    """Delivered later than the latency threshold after the payment's block."""
    REFUND = "refund"
    """No keys could be delivered (out of stock, unknown order, refunded by the merchant)."""
    ANOMALY = "anomaly"
    """Something the merchant must look at (`anomaly` says what): the payment reorged after the
    keys went out, the delivery window closed unrecorded, the escrow refuses the settlement."""


class AttemptsSummary(BaseModel):
    total: int
    failed: int
    channels: list[str]
    """Channels tried, in the order first tried."""
    last_error: str | None


class AbnormalDelivery(BaseModel):
    order: str
    """The chain's order id."""
    product_id: int
    status: OrderStatus
    paid_at: datetime
    delivered_at: datetime | None
    latency_seconds: float | None
    reasons: list[AbnormalReason]
    refund_reason: str | None
    anomaly: str | None = None
    """What went wrong beyond the notices: "payment reorged", "delivery window closed",
    "settlement skipped: …", "settlement reverts: …"."""
    attempts: AttemptsSummary


class AbnormalLog(BaseModel):
    since: datetime
    until: datetime
    total: int
    """Abnormal orders in the window; `entries` holds the newest `limit` of them."""
    entries: list[AbnormalDelivery]


@dataclass(frozen=True)
class _Candidate:
    id: int
    order: str
    product_id: int
    status: OrderStatus
    paid_at: datetime
    delivered_at: datetime | None
    latency: float | None
    refund_reason: str | None
    reasons: list[AbnormalReason]
    anomaly: str | None = None


def _reasons(
    status: OrderStatus,
    latency: float | None,
    tries: int,
    failures: int,
    threshold: float,
    anomaly: str | None = None,
) -> list[AbnormalReason]:
    checks = (
        (AbnormalReason.FAILED_ATTEMPT, failures > 0),
        (AbnormalReason.RETRIED, tries > 1),
        (AbnormalReason.SLOW, latency is not None and latency > threshold),
        (AbnormalReason.REFUND, status in REFUND_STATUSES),
        (AbnormalReason.ANOMALY, anomaly is not None),
    )
    return [reason for reason, applies in checks if applies]


def _candidates(session: Session, start: datetime, end: datetime, threshold: float) -> list[_Candidate]:
    """The window's paid orders with something wrong, newest first. Slowness needs a time difference,
    which SQLite and PostgreSQL spell differently, so it is judged here rather than in SQL."""
    paid_at = _paid_at()
    rows = session.connection().execute(
        sql_select(
            col(ShopOrder.id),
            col(ShopOrder.chain_order_id),
            col(ShopOrder.product_id),
            col(ShopOrder.status),
            paid_at,
            col(ShopOrder.block_time),
            col(ShopOrder.delivered_at),
            col(ShopOrder.refund_reason),
            col(ShopOrder.anomaly),
            func.count(col(DeliveryAttempt.id)),
            func.coalesce(func.sum(case((not_(col(DeliveryAttempt.succeeded)), 1), else_=0)), 0),
        )
        .outerjoin(DeliveryAttempt, col(DeliveryAttempt.order_id) == col(ShopOrder.id))
        .where(col(ShopOrder.status) != OrderStatus.QUOTED, paid_at >= start, paid_at < end)
        .group_by(col(ShopOrder.id))
    )
    found = []
    for order_id, order, product_id, status, paid, block, delivered, refund, anomaly, tries, failures in rows:
        latency = _seconds(block, delivered) if block and delivered else None
        reasons = _reasons(status, latency, tries, int(failures), threshold, anomaly)
        if reasons and order_id is not None:
            found.append(
                _Candidate(
                    order_id,
                    order,
                    product_id,
                    status,
                    as_utc(paid),
                    as_utc(delivered) if delivered else None,
                    latency,
                    refund,
                    reasons,
                    anomaly,
                )
            )
    found.sort(key=lambda candidate: (candidate.paid_at, candidate.id), reverse=True)
    return found


def _attempt_summaries(session: Session, order_ids: list[int]) -> dict[int, AttemptsSummary]:
    attempts = session.exec(
        select(DeliveryAttempt)
        .where(col(DeliveryAttempt.order_id).in_(order_ids))
        .order_by(col(DeliveryAttempt.started_at), col(DeliveryAttempt.id))
    ).all()
    grouped: dict[int, list[DeliveryAttempt]] = defaultdict(list)
    for attempt in attempts:
        grouped[attempt.order_id].append(attempt)
    summaries = {}
    for order_id in order_ids:
        tries = grouped.get(order_id, [])
        errors = [attempt.error for attempt in tries if not attempt.succeeded]
        summaries[order_id] = AttemptsSummary(
            total=len(tries),
            failed=len(errors),
            channels=list(dict.fromkeys(attempt.channel for attempt in tries)),
            last_error=errors[-1] if errors else None,
        )
    return summaries


def abnormal_deliveries(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    threshold_seconds: float = 10.0,
    limit: int = 100,
) -> AbnormalLog:
    """The abnormal delivery log: orders paid in the window that had failed or repeated notices,
    were delivered slowly, or are refunds; newest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start, end = resolve_window(since, until)
    candidates = _candidates(session, start, end, threshold_seconds)
    shown = candidates[:limit]
    summaries = _attempt_summaries(session, [candidate.id for candidate in shown])
    entries = [
        AbnormalDelivery(
            order=candidate.order,
            product_id=candidate.product_id,
            status=candidate.status,
            paid_at=candidate.paid_at,
            delivered_at=candidate.delivered_at,
            latency_seconds=candidate.latency,
            reasons=candidate.reasons,
            refund_reason=candidate.refund_reason,
            anomaly=candidate.anomaly,
            attempts=summaries[candidate.id],
        )
        for candidate in shown
    ]
    return AbnormalLog(since=start, until=end, total=len(candidates), entries=entries)


# ------------------------------------------------------------------ stock


class StockLevel(BaseModel):
    product_id: int
    sku: str
    name: str
    available: int
    sold: int
    total: int
    """Keys ever imported for the product."""
    low_stock_percent: int
    low: bool
    """Fewer keys available than `low_stock_percent` of `total`."""
    sold_out: bool


def stock_levels(session: Session) -> list[StockLevel]:
    """Every product's stock, by product id."""
    keys = (
        sql_select(
            col(CardKey.product_id),
            func.count().label("stored"),
            func.count(col(CardKey.order_id)).label("sold"),
        )
        .group_by(col(CardKey.product_id))
        .subquery()
    )
    batches = (
        sql_select(col(ImportBatch.product_id), func.sum(col(ImportBatch.key_count)).label("imported"))
        .group_by(col(ImportBatch.product_id))
        .subquery()
    )
    rows = session.connection().execute(
        sql_select(
            col(Product.id),
            col(Product.sku),
            col(Product.name),
            col(Product.low_stock_percent),
            func.coalesce(keys.c.stored, 0),
            func.coalesce(keys.c.sold, 0),
            func.coalesce(batches.c.imported, 0),
        )
        .outerjoin(keys, keys.c.product_id == col(Product.id))
        .outerjoin(batches, batches.c.product_id == col(Product.id))
        .order_by(col(Product.id))
    )
    levels = []
    for product_id, sku, name, percent, stored, sold, imported in rows:
        available = int(stored) - int(sold)
        levels.append(
            StockLevel(
                product_id=product_id,
                sku=sku,
                name=name,
                available=available,
                sold=int(sold),
                total=int(imported),
                low_stock_percent=percent,
                low=available * 100 < int(imported) * percent,
                sold_out=available == 0,
            )
        )
    return levels


# ------------------------------------------------------------------ backlog


class Backlog(BaseModel):
    """Orders the node still owes something, by what it owes."""

    awaiting_confirmations: int
    """Paid, not yet confirmed."""
    awaiting_keys: int
    """Confirmed, no key handed out yet."""
    deliveries_to_record: int
    """Delivered, the commitment not yet on-chain."""
    refunds_to_send: int


def backlog(session: Session) -> Backlog:
    """One grouped count, over the status index (and the settlement index for deliveries): cheap
    however many orders were delivered before."""
    waiting = (
        col(ShopOrder.status).in_([OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.REFUNDING])
    ) | ((col(ShopOrder.status) == OrderStatus.DELIVERED) & col(ShopOrder.committed_at).is_(None))
    counts = dict(
        session.exec(
            select(ShopOrder.status, func.count()).where(waiting).group_by(col(ShopOrder.status))
        ).all()
    )
    return Backlog(
        awaiting_confirmations=counts.get(OrderStatus.PAID, 0),
        awaiting_keys=counts.get(OrderStatus.CONFIRMED, 0),
        deliveries_to_record=counts.get(OrderStatus.DELIVERED, 0),
        refunds_to_send=counts.get(OrderStatus.REFUNDING, 0),
    )


# ------------------------------------------------------------------ message templates (A/B)


class TemplateResult(BaseModel):
    channel: str
    variant: str
    sent: int
    """Attempts to send this variant in the window."""
    succeeded: int
    success_rate: float | None
    orders: int
    """Orders this variant reached (a successful attempt)."""
    came_back: int
    """Of those, orders whose buyer read the keys more than once."""
    come_back_rate: float | None


@dataclass
class _VariantFigures:
    sent: int = 0
    succeeded: int = 0
    orders: int = 0
    came_back: int = 0


class TemplateResults(BaseModel):
    since: datetime
    until: datetime
    results: list[TemplateResult]


def template_results(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> TemplateResults:
    """Per (channel, variant): notices sent in the window, how many went through, and how many of
    the buyers they reached came back for their keys. Every stored template is listed, sent or not."""
    start, end = resolve_window(since, until)
    in_window = (
        col(DeliveryAttempt.variant).is_not(None),
        col(DeliveryAttempt.started_at) >= start,
        col(DeliveryAttempt.started_at) < end,
    )
    sent = session.connection().execute(
        sql_select(
            col(DeliveryAttempt.channel),
            col(DeliveryAttempt.variant),
            func.count(),
            func.sum(case((col(DeliveryAttempt.succeeded), 1), else_=0)),
        )
        .where(*in_window)
        .group_by(col(DeliveryAttempt.channel), col(DeliveryAttempt.variant))
    )
    reached = (
        sql_select(col(DeliveryAttempt.channel), col(DeliveryAttempt.variant), col(DeliveryAttempt.order_id))
        .where(*in_window, col(DeliveryAttempt.succeeded))
        .distinct()
        .subquery()
    )
    reads = (
        sql_select(col(KeyAccess.order_id), func.count().label("reads"))
        .where(col(KeyAccess.order_id).in_(sql_select(reached.c.order_id)))
        .group_by(col(KeyAccess.order_id))
        .subquery()
    )
    returns = session.connection().execute(
        sql_select(
            reached.c.channel,
            reached.c.variant,
            func.count(),
            func.sum(case((reads.c.reads > 1, 1), else_=0)),
        )
        .outerjoin(reads, reads.c.order_id == reached.c.order_id)
        .group_by(reached.c.channel, reached.c.variant)
    )
    figures: defaultdict[tuple[str, str], _VariantFigures] = defaultdict(_VariantFigures)
    for channel, variant in session.exec(select(MessageTemplate.channel, MessageTemplate.variant)):
        figures[channel, variant] = _VariantFigures()
    for channel, variant, count, ok in sent:
        figures[channel, variant].sent, figures[channel, variant].succeeded = count, int(ok)
    for channel, variant, count, back in returns:
        figures[channel, variant].orders, figures[channel, variant].came_back = count, int(back)
    results = [
        TemplateResult(
            channel=channel,
            variant=variant,
            sent=f.sent,
            succeeded=f.succeeded,
            success_rate=_rate(f.succeeded, f.sent),
            orders=f.orders,
            came_back=f.came_back,
            come_back_rate=_rate(f.came_back, f.orders),
        )
        for (channel, variant), f in sorted(figures.items())
    ]
    return TemplateResults(since=start, until=end, results=results)
