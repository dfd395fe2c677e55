"""Stock levels: every product's keys available, sold and ever imported, and whether it runs low.

Not windowed: stock is what the vault holds now. One query: two grouped subqueries (stored and
sold keys, imported batches) joined to the products, every product listed even without keys.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, func

from liandong.store.models import CardKey, ImportBatch, Product


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
