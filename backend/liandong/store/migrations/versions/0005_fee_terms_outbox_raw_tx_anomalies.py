"""fee fixed at payment, notice outbox, signed raw settlement transactions, anomalies, operator status

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_bps", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("anomaly", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("settlement_held", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("notice_due", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index(batch_op.f("ix_shoporder_notice_due"), ["notice_due"], unique=False)
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_bps", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("chaintx", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_tx", sa.Text(), nullable=True))
    op.create_table(
        "operatorstatus",
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("balance", sa.String(length=80), nullable=False),
        sa.Column("max_fee_per_gas", sa.String(length=80), nullable=False),
        sa.Column("batch_gas", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address"),
    )


def downgrade() -> None:
    op.drop_table("operatorstatus")
    with op.batch_alter_table("chaintx", schema=None) as batch_op:
        batch_op.drop_column("raw_tx")
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_column("fee_bps")
    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shoporder_notice_due"))
        batch_op.drop_column("notice_due")
        batch_op.drop_column("settlement_held")
        batch_op.drop_column("anomaly")
        batch_op.drop_column("fee_bps")
