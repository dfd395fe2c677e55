"""several chains: the chain of each order and of each price

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 19:00:00

- `shoporder.chain_id`: the chain an order is quoted for and paid on (indexed).
- `productprice.chain_id`: prices are per chain and token; the unique key becomes
  (product_id, chain_id, token). The table is rebuilt: SQLite cannot drop the old unnamed key.

Rows written before this revision name chain 0, which no network uses: a node adopts them for its
first chain when it starts (`runtime/chains.adopt_unassigned`), which is the only chain a shop of an
earlier revision could have served.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNASSIGNED = 0


def _price_table(name: str, *, with_chain: bool) -> None:
    columns = [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("product.id"), nullable=False),
    ]
    more: list[sa.Column[Any]] = []
    if with_chain:
        more.append(sa.Column("chain_id", sa.Integer(), nullable=False))
    more += [
        sa.Column("token", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.String(length=80), nullable=False),
    ]
    if with_chain:
        key = sa.UniqueConstraint("product_id", "chain_id", "token", name="uq_productprice_chain_token")
    else:
        key = sa.UniqueConstraint("product_id", "token", name="uq_productprice_token")
    op.create_table(name, *columns, *more, key)


def _rebuild_prices(*, with_chain: bool) -> None:
    _price_table("productprice_new", with_chain=with_chain)
    chain = f"{UNASSIGNED}, " if with_chain else ""
    chain_column = "chain_id, " if with_chain else ""
    copy = (
        f"INSERT INTO productprice_new (id, product_id, {chain_column}token, amount) "  # noqa: S608
        f"SELECT id, product_id, {chain}token, amount FROM productprice"
    )
    op.execute(copy)
    op.drop_table("productprice")
    op.rename_table("productprice_new", "productprice")
    op.create_index("ix_productprice_product_id", "productprice", ["product_id"])
    if op.get_bind().dialect.name == "postgresql":  # the new table's id sequence starts after the copied ids
        op.execute(
            "SELECT setval(pg_get_serial_sequence('productprice', 'id'), "
            "COALESCE((SELECT MAX(id) FROM productprice), 0) + 1, false)"
        )


def upgrade() -> None:
    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain_id", sa.Integer(), nullable=False, server_default=str(UNASSIGNED))
        )
        batch_op.create_index("ix_shoporder_chain_id", ["chain_id"], unique=False)
    _rebuild_prices(with_chain=True)


def downgrade() -> None:
    _rebuild_prices(with_chain=False)
    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.drop_index("ix_shoporder_chain_id")
        batch_op.drop_column("chain_id")
