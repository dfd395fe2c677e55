"""node security: the leader's fencing epoch, nodes' vault acknowledgements, data-key generations

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02 17:00:00

- `leader_epoch`: one row; each new cluster leader increments `epoch` under the leader lock, and the
  settlement sender's writes check it (`FOR SHARE`) in their own transaction (see `cluster.py`).
- `vault_node`: which master key each running node uses, so a rotation removes the previous key
  only once every live node has reloaded (see `vault/rotation.py`).
- `datakey.generation`, `cardkey.key_generation`, `retired_data_key`: a rotation issues a new data
  key per product and re-encrypts the stock in batches; the old generation stays readable (wrapped
  by the new master key) in `retired_data_key` until no card key uses it, then it is deleted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_epoch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "vault_node",
        sa.Column("node_id", sa.String(length=200), primary_key=True),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "retired_data_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("product.id"), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.UniqueConstraint("product_id", "generation"),
    )
    with op.batch_alter_table("datakey", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("cardkey", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_generation", sa.Integer(), nullable=False, server_default="1"))
        batch_op.create_index("ix_cardkey_product_generation", ["product_id", "key_generation"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cardkey", schema=None) as batch_op:
        batch_op.drop_index("ix_cardkey_product_generation")
        batch_op.drop_column("key_generation")
    with op.batch_alter_table("datakey", schema=None) as batch_op:
        batch_op.drop_column("generation")
    op.drop_table("retired_data_key")
    op.drop_table("vault_node")
    op.drop_table("leader_epoch")
