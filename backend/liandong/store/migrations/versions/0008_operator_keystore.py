"""operator keystore: hot operator keys the shop generated, encrypted by the master key

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03 14:00:00

- `operator_key`: one row per operator key `liandong escrow rotate-operator` generated for a chain,
  its private key sealed by the vault's master key (AES-GCM, bound to the chain and the address)
  and rewrapped by `liandong vault rotate`. `status` is `pending` until the escrow names the address
  as its operator, `active` while it does, `retired` after (see `vault/operator_keys.py`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("chain_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("chain_id", "address"),
    )


def downgrade() -> None:
    op.drop_table("operator_key")
