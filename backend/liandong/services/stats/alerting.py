"""The shop's current alerts: what needs the merchant now, whatever the window.

Settlement lag, a short operator balance and anomalies; each is one count over an index or a row
per operator key, cheap enough for every dashboard refresh and for the leader's notifier
(`services.alerts`), which POSTs them. The two alerts about orders share one shape: a count of the
orders matching some conditions, no alert at zero.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, not_
from sqlmodel import Session, col, func, select

from liandong.store.models import OperatorStatus, OrderStatus, ShopOrder, as_utc


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
    found = _orders_alert(
        session,
        AlertKind.SETTLEMENT_LAG,
        f"deliveries not recorded on-chain after {settlement_lag_seconds:g} s",
        ShopOrder.status == OrderStatus.DELIVERED,
        col(ShopOrder.committed_at).is_(None),
        not_(col(ShopOrder.settlement_held)),
        col(ShopOrder.delivered_at) < moment - timedelta(seconds=settlement_lag_seconds),
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
    found += _orders_alert(
        session,
        AlertKind.ANOMALY,
        "orders need a look in the abnormal log",
        col(ShopOrder.anomaly).is_not(None),
        col(ShopOrder.created_at) >= moment - ANOMALY_ALERT_WINDOW,
    )
    return found


def _orders_alert(
    session: Session, kind: AlertKind, what: str, *where: ColumnElement[bool] | bool
) -> list[Alert]:
    """The alert of `kind` about the orders matching `where` ("<count> <what>"), none without any."""
    count = session.exec(select(func.count()).where(*where)).one()
    return [Alert(kind=kind, detail=f"{count} {what}", count=count)] if count else []
