"""block of each on-chain settlement

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 07:06:39.148105
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settled_block", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_shoporder_settled_block"), ["settled_block"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shoporder_settled_block"))
        batch_op.drop_column("settled_block")
