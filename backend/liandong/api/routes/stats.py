"""The efficiency board's figures: latency, sales, the abnormal delivery log, stock, A/B results.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
`since`/`until` bound a half-open window (default: the last 24 hours; at most 366 days). A shop on
several chains gets the efficiency board, its backlog and alerts, and the sales broken down by chain
too (`by_chain`, each chain named by its network; revenue per (chain, token)).

"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from liandong.api.deps import MerchantIdentity, Shop, merchant
from liandong.services import stats

router = APIRouter(prefix="/api/merchant/stats", tags=["merchant: statistics"])

StatsRead = Annotated[MerchantIdentity, Depends(merchant("stats:read"))]
Since = Annotated[datetime | None, Query(description="Start of the window (ISO 8601; UTC if no zone).")]
Until = Annotated[datetime | None, Query(description="End of the window, excluded.")]
Threshold = Annotated[
    float | None, Query(gt=0, le=86400, description="Alert threshold in seconds (default from settings).")
]


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    return stats.resolve_window(since, until)


@router.get("/efficiency", responses={422: {}})
def efficiency(
    context: Shop, _: StatsRead, since: Since = None, until: Until = None, threshold: Threshold = None
) -> stats.Efficiency:
    """Pay→delivery p50/p95/p99, the share under the threshold (alert under 99 %), a histogram,
    the shop's alerts and backlog; the same per chain in `by_chain`."""
    start, end = _window(since, until)
    with context.session() as session:
        return stats.efficiency(
            session,
            start,
            end,
            threshold or context.settings.latency_alert_seconds,
            settlement_lag_seconds=context.settings.settlement_lag_alert_seconds,
            balance_batches=context.settings.operator_balance_alert_batches,
        )


@router.get("/sales", responses={422: {}})
def sales(context: Shop, _: StatsRead, since: Since = None, until: Until = None) -> stats.Sales:
    """Orders and revenue by hour, product, chain and (chain, token) (amounts in base units, as
    strings)."""
    start, end = _window(since, until)
    with context.session() as session:
        return stats.sales(session, start, end)


@router.get("/abnormal", responses={422: {}})
def abnormal(
    context: Shop,
    _: StatsRead,
    since: Since = None,
    until: Until = None,
    threshold: Threshold = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> stats.AbnormalLog:
    """The abnormal delivery log: failed, slow, retried deliveries and refunds, newest first."""
    start, end = _window(since, until)
    with context.session() as session:
        return stats.abnormal_deliveries(
            session, start, end, threshold or context.settings.latency_alert_seconds, limit
        )


@router.get("/stock")
def stock(context: Shop, _: StatsRead) -> list[stats.StockLevel]:
    """Keys left per product, with the low-stock and sold-out flags."""
    with context.session() as session:
        return stats.stock_levels(session)


@router.get("/templates", responses={422: {}})
def template_results(
    context: Shop, _: StatsRead, since: Since = None, until: Until = None
) -> stats.TemplateResults:
    """Per message variant: notices sent, delivery success, and how often buyers came back."""
    start, end = _window(since, until)
    with context.session() as session:
        return stats.template_results(session, start, end)
