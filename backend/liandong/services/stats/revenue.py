"""Sales: orders and revenue of the window, by UTC hour, by product and by token.

Token amounts are decimal strings of up to 256 bits, which neither SQLite nor PostgreSQL sums the
same way, so the window's paid orders are read once and tallied in Python.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select as sql_select
from sqlmodel import Session, col

from liandong.services.stats.window import REFUND_STATUSES, paid_in, paid_time, resolve_window
from liandong.store.models import Product, ShopOrder, as_utc


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
    rows = session.connection().execute(
        sql_select(
            paid_time(),
            col(ShopOrder.product_id),
            col(Product.sku),
            col(Product.name),
            col(ShopOrder.token),
            col(ShopOrder.amount),
            col(ShopOrder.quantity),
            col(ShopOrder.status),
        )
        .join(Product, col(Product.id) == col(ShopOrder.product_id))
        .where(*paid_in(start, end))
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
