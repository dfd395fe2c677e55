"""A/B results of the message templates: per channel and variant, notices sent and delivered, and
how many of the buyers they reached came back to read their keys again.

Two grouped queries over the window's attempts (sent, and reached joined to the key reads); every
stored template is listed, sent or not, so a new variant shows before its first notice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import case
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, func, select

from liandong.services.stats.window import rate, resolve_window
from liandong.store.models import DeliveryAttempt, KeyAccess, MessageTemplate


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
            success_rate=rate(f.succeeded, f.sent),
            orders=f.orders,
            came_back=f.came_back,
            come_back_rate=rate(f.came_back, f.orders),
        )
        for (channel, variant), f in sorted(figures.items())
    ]
    return TemplateResults(since=start, until=end, results=results)
