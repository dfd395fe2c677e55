"""api: merchants, buyers, channels, templates

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 05:59:07.142270
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "buyerchallenge",
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "buyersession",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("buyersession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_buyersession_address"), ["address"], unique=False)

    op.create_table(
        "channelsetting",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "merchant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merchant_username"), ["username"], unique=True)

    op.create_table(
        "messagetemplate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=10000), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "variant"),
    )
    op.create_table(
        "apitoken",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_apitoken_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "merchantsession",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("merchantsession", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merchantsession_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "keyaccess",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("accessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["shoporder.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("keyaccess", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_keyaccess_order_id"), ["order_id"], unique=False)

    with op.batch_alter_table("deliveryattempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.String(length=32), nullable=True))

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("description", sa.String(length=2000), nullable=False, server_default="")
        )

    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=32), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("shoporder", schema=None) as batch_op:
        batch_op.drop_column("phone")

    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_column("description")

    with op.batch_alter_table("deliveryattempt", schema=None) as batch_op:
        batch_op.drop_column("variant")

    with op.batch_alter_table("keyaccess", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_keyaccess_order_id"))

    op.drop_table("keyaccess")
    with op.batch_alter_table("merchantsession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merchantsession_merchant_id"))

    op.drop_table("merchantsession")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_apitoken_merchant_id"))

    op.drop_table("apitoken")
    op.drop_table("messagetemplate")
    with op.batch_alter_table("merchant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merchant_username"))

    op.drop_table("merchant")
    op.drop_table("channelsetting")
    with op.batch_alter_table("buyersession", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_buyersession_address"))

    op.drop_table("buyersession")
    op.drop_table("buyerchallenge")
