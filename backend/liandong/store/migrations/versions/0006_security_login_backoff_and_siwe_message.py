"""security: merchant log-in backoff, the exact Sign-In with Ethereum message of each challenge

Revision ID: 0006
Revises: 0007
Create Date: 2026-12-02 17:45:00

- `merchant.failed_logins`, `merchant.locked_until`: wrong passwords in a row lock the account
  for a doubling while (per account, on every node), whatever address the guesses come from.
- `buyerchallenge.message_hash`: SHA-256 of the message the shop issued; a sign-in must sign that
  very text (a rewritten URI, domain, statement or any other line is refused).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("buyerchallenge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("buyerchallenge", schema=None) as batch_op:
        batch_op.drop_column("message_hash")
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")
