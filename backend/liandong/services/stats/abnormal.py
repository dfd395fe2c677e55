"""The abnormal delivery log: the window's paid orders with something wrong, newest first.

Failed or repeated notices, slow deliveries, refunds, anomalies. Slowness needs a time difference,
which SQLite and PostgreSQL spell differently, so the reasons are judged in Python over one grouped
query; the attempts are summarised only for the orders shown. Each entry names its chain's network.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import case, not_
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, func, select

from liandong.services.stats.window import (
    DEFAULT_THRESHOLD_SECONDS,
    REFUND_STATUSES,
    network_name,
    paid_in,
    paid_time,
    resolve_window,
    seconds_between,
)
from liandong.store.models import DeliveryAttempt, OrderStatus, ShopOrder, as_utc


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
    chain_id: int
    network: str
    """The chain's network name ("Base"), from the chain profiles."""
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
    chain_id: int
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
    rows = session.connection().execute(
        sql_select(
            col(ShopOrder.id),
            col(ShopOrder.chain_order_id),
            col(ShopOrder.chain_id),
            col(ShopOrder.product_id),
            col(ShopOrder.status),
            paid_time(),
            col(ShopOrder.block_time),
            col(ShopOrder.delivered_at),
            col(ShopOrder.refund_reason),
            col(ShopOrder.anomaly),
            func.count(col(DeliveryAttempt.id)),
            func.coalesce(func.sum(case((not_(col(DeliveryAttempt.succeeded)), 1), else_=0)), 0),
        )
        .outerjoin(DeliveryAttempt, col(DeliveryAttempt.order_id) == col(ShopOrder.id))
        .where(*paid_in(start, end))
        .group_by(col(ShopOrder.id))
    )
    found = []
    for row in rows:
        (
            order_id,
            order,
            chain_id,
            product_id,
            status,
            paid,
            block,
            delivered,
            refund,
            anomaly,
            tries,
            failures,
        ) = row
        latency = seconds_between(block, delivered) if block and delivered else None
        reasons = _reasons(status, latency, tries, int(failures), threshold, anomaly)
        if reasons and order_id is not None:
            found.append(
                _Candidate(
                    order_id,
                    order,
                    chain_id,
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
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
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
            chain_id=candidate.chain_id,
            network=network_name(candidate.chain_id),
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
