"""The shop's current alerts: what needs the merchant now, whatever the window.

Settlement lag, a short operator balance and anomalies; each is one count over an index or a row
per operator key, cheap enough for every dashboard refresh and for the leader's notifier
(`services.alerts`), which POSTs them. The two alerts about orders share one shape: a count of the
orders matching some conditions (grouped by chain, the networks named in the detail and in
`by_chain`), no alert at zero. An operator balance alert names its key's network. `chain_id` limits
the alerts to one chain (the funds panel of that chain).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, not_
from sqlmodel import Session, col, func, select

from liandong.services.stats.window import network_name
from liandong.store.models import OperatorStatus, OrderStatus, ShopOrder, as_utc


class AlertKind(enum.StrEnum):
    SETTLEMENT_LAG = "settlement_lag"
    """Deliveries whose commitment is not on-chain long after the keys went out: the merchant is
    not paid for them, and past the deadline the buyer may refund them."""
    OPERATOR_BALANCE = "operator_balance"
    """The operator key cannot pay for many more settlement batches."""
    ANOMALY = "anomaly"
    """Orders in the abnormal log with an anomaly (payment reorged, settlement refused, …)."""


class ChainCount(BaseModel):
    """The orders an alert concerns on one chain."""

    chain_id: int
    network: str
    count: int


class Alert(BaseModel):
    kind: AlertKind
    detail: str
    count: int = 0
    """How many orders it concerns (0 for the operator balance)."""
    chain_id: int | None = None
    """The chain of an operator balance alert (None for the alerts about orders: see `by_chain`)."""
    network: str | None = None
    """`chain_id`'s network name."""
    by_chain: list[ChainCount] = []
    """The orders it concerns per chain, by chain id (empty for the operator balance)."""


ANOMALY_ALERT_WINDOW = timedelta(days=7)
"""Anomalies of orders quoted this recently raise an alert; older ones stay in the abnormal log."""


def alerts(
    session: Session,
    *,
    settlement_lag_seconds: float = 300.0,
    balance_batches: int = 20,
    now: datetime | None = None,
    chain_id: int | None = None,
) -> list[Alert]:
    """The shop's current alerts, cheap to compute on every dashboard refresh (index scans);
    `chain_id`: those of that chain only."""
    moment = as_utc(now)
    on_chain = () if chain_id is None else (ShopOrder.chain_id == chain_id,)
    found = _orders_alert(
        session,
        AlertKind.SETTLEMENT_LAG,
        f"deliveries not recorded on-chain after {settlement_lag_seconds:g} s",
        ShopOrder.status == OrderStatus.DELIVERED,
        col(ShopOrder.committed_at).is_(None),
        not_(col(ShopOrder.settlement_held)),
        col(ShopOrder.delivered_at) < moment - timedelta(seconds=settlement_lag_seconds),
        *on_chain,
    )
    operators = select(OperatorStatus).order_by(col(OperatorStatus.chain_id), col(OperatorStatus.address))
    if chain_id is not None:
        operators = operators.where(OperatorStatus.chain_id == chain_id)
    for status in session.exec(operators).all():
        needed = balance_batches * status.batch_gas * int(status.max_fee_per_gas)
        if int(status.balance) < needed:
            network = network_name(status.chain_id)
            found.append(
                Alert(
                    kind=AlertKind.OPERATOR_BALANCE,
                    detail=(
                        f"operator {status.address} on {network} holds {status.balance} wei, less "
                        f"than the {needed} wei of {balance_batches} settlement batches"
                    ),
                    chain_id=status.chain_id,
                    network=network,
                )
            )
    found += _orders_alert(
        session,
        AlertKind.ANOMALY,
        "orders need a look in the abnormal log",
        col(ShopOrder.anomaly).is_not(None),
        col(ShopOrder.created_at) >= moment - ANOMALY_ALERT_WINDOW,
        *on_chain,
    )
    return found


def _orders_alert(
    session: Session, kind: AlertKind, what: str, *where: ColumnElement[bool] | bool
) -> list[Alert]:
    """The alert of `kind` about the orders matching `where` ("<count> <what> (<network> <count>,
    …)"), none without any."""
    rows = session.exec(
        select(ShopOrder.chain_id, func.count())
        .where(*where)
        .group_by(col(ShopOrder.chain_id))
        .order_by(col(ShopOrder.chain_id))
    ).all()
    chains = [ChainCount(chain_id=chain, network=network_name(chain), count=n) for chain, n in rows if n]
    count = sum(chain.count for chain in chains)
    if not count:
        return []
    networks = ", ".join(f"{chain.network} {chain.count}" for chain in chains)
    return [Alert(kind=kind, detail=f"{count} {what} ({networks})", count=count, by_chain=chains)]
