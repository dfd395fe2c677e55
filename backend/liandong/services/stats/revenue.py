"""Sales: orders and revenue of the window, by UTC hour, by product, by chain and by token.

Token amounts are decimal strings of up to 256 bits, which neither SQLite nor PostgreSQL sums the
same way, so the window's paid orders are read once and tallied in Python. A token address means
something only with its chain (the native coin is 0x0 on every chain), so revenue is broken down
per (chain, token): `by_token` has a row per pair, and the hours and products carry
`revenue_by_chain`. Their `revenue` (by token address alone) is kept for a shop on one chain.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select as sql_select
from sqlmodel import Session, col

from liandong.services.stats.window import REFUND_STATUSES, network_name, paid_in, paid_time, resolve_window
from liandong.store.models import Product, ShopOrder, as_utc

ChainAmounts = dict[int, dict[str, str]]
"""Chain id → token address → amount paid, in base units (decimal string)."""


class HourSales(BaseModel):
    hour: datetime
    """Start of the UTC hour."""
    orders: int
    revenue: dict[str, str]
    """Token address → amount paid, in base units (decimal string), summed over the chains: with
    several chains read `revenue_by_chain`."""
    orders_by_chain: dict[int, int] = {}
    """Chain id → orders paid in the hour (chains without any left out)."""
    revenue_by_chain: ChainAmounts = {}


class ProductSales(BaseModel):
    product_id: int
    sku: str
    name: str
    orders: int
    units: int
    revenue: dict[str, str]
    """As `HourSales.revenue`: summed over the chains."""
    revenue_by_chain: ChainAmounts = {}


class TokenSales(BaseModel):
    """One token on one chain."""

    chain_id: int
    network: str
    """The chain's network name ("Base"), from the chain profiles."""
    token: str
    orders: int
    revenue: str
    refunded: str
    """Part of `revenue` paid for orders that are being or were refunded."""


class ChainSales(BaseModel):
    """The window's paid orders on one chain (its revenue: the `by_token` rows of its chain)."""

    chain_id: int
    network: str
    orders: int
    units: int


class Sales(BaseModel):
    """Paid orders of the window (refunded ones included: see `TokenSales.refunded`)."""

    since: datetime
    until: datetime
    orders: int
    units: int
    by_hour: list[HourSales]
    by_product: list[ProductSales]
    by_token: list[TokenSales]
    """Per (chain, token), by chain id then token."""
    by_chain: list[ChainSales] = []
    """Per chain with orders in the window, by chain id."""


@dataclass
class _Tally:
    orders: int = 0
    units: int = 0
    revenue: defaultdict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    orders_by_chain: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, chain_id: int, token: str, amount: int, units: int) -> None:
        self.orders += 1
        self.units += units
        self.revenue[chain_id, token] += amount
        self.orders_by_chain[chain_id] += 1

    def amounts(self) -> dict[str, str]:
        """By token address, summed over the chains."""
        summed: defaultdict[str, int] = defaultdict(int)
        for (_, token), amount in self.revenue.items():
            summed[token] += amount
        return {token: str(amount) for token, amount in sorted(summed.items())}

    def by_chain(self) -> ChainAmounts:
        amounts: ChainAmounts = {}
        for (chain_id, token), amount in sorted(self.revenue.items()):
            amounts.setdefault(chain_id, {})[token] = str(amount)
        return amounts


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def sales(session: Session, since: datetime | None = None, until: datetime | None = None) -> Sales:
    """Orders and revenue of the orders paid in the window, by UTC hour (every hour of the window,
    empty ones too), by product, by chain and by (chain, token)."""
    start, end = resolve_window(since, until)
    rows = session.connection().execute(
        sql_select(
            paid_time(),
            col(ShopOrder.product_id),
            col(Product.sku),
            col(Product.name),
            col(ShopOrder.chain_id),
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
    by_chain: dict[int, _Tally] = defaultdict(_Tally)
    by_token: dict[tuple[int, str], _Tally] = defaultdict(_Tally)
    refunded: defaultdict[tuple[int, str], int] = defaultdict(int)
    names: dict[int, tuple[str, str]] = {}
    for moment, product_id, sku, name, chain_id, token, amount_text, quantity, status in rows:
        amount = int(amount_text)
        names[product_id] = (sku, name)
        hour = by_hour[as_utc(moment).replace(minute=0, second=0, microsecond=0)]
        for tally in (total, hour, by_product[product_id], by_chain[chain_id], by_token[chain_id, token]):
            tally.add(chain_id, token, amount, quantity)
        if status in REFUND_STATUSES:
            refunded[chain_id, token] += amount
    return Sales(
        since=start,
        until=end,
        orders=total.orders,
        units=total.units,
        by_hour=[
            HourSales(
                hour=hour,
                orders=t.orders,
                revenue=t.amounts(),
                orders_by_chain=dict(sorted(t.orders_by_chain.items())),
                revenue_by_chain=t.by_chain(),
            )
            for hour, t in by_hour.items()
        ],
        by_product=[
            ProductSales(
                product_id=product_id,
                sku=names[product_id][0],
                name=names[product_id][1],
                orders=t.orders,
                units=t.units,
                revenue=t.amounts(),
                revenue_by_chain=t.by_chain(),
            )
            for product_id, t in sorted(by_product.items())
        ],
        by_token=[
            TokenSales(
                chain_id=chain_id,
                network=network_name(chain_id),
                token=token,
                orders=t.orders,
                revenue=str(t.revenue[chain_id, token]),
                refunded=str(refunded[chain_id, token]),
            )
            for (chain_id, token), t in sorted(by_token.items())
        ],
        by_chain=[
            ChainSales(chain_id=chain_id, network=network_name(chain_id), orders=t.orders, units=t.units)
            for chain_id, t in sorted(by_chain.items())
        ],
    )
