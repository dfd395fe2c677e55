"""The shop's tables.

Uniqueness in the schema does the hard work of exactly-once: one payment per (chain, order id),
one order line per card key, one delivery per order line. Amounts of tokens are kept as decimal
strings, because they exceed 64 bits and SQLite has no exact 256-bit type.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

MAX_ROW_ID = 2**63 - 1
"""Row ids are signed 64-bit in SQLite and PostgreSQL: larger input is refused before a query."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None = None) -> datetime:
    """`moment` as an aware UTC datetime (now when None). Everything the shop stores is UTC, but
    some drivers hand timestamps back naive."""
    if moment is None:
        return utcnow()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class OrderStatus(enum.StrEnum):
    QUOTED = "quoted"
    """Quote issued, not paid."""
    PAID = "paid"
    """Payment seen on-chain, waiting for its confirmations."""
    CONFIRMED = "confirmed"
    """Confirmed: keys may be handed out."""
    DELIVERED = "delivered"
    """Keys assigned and handed to the buyer; the commitment may not be on-chain yet."""
    REFUNDING = "refunding"
    """No key can be delivered (out of stock, invalid): an on-chain refund is due."""
    REFUNDED = "refunded"
    """The escrow refunded the buyer."""


class Product(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(unique=True, index=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    active: bool = True
    """Listed in the storefront; an unlisted product can be neither seen nor quoted."""
    low_stock_percent: int = 20
    """Stock is low when the keys left fall under this share of all keys ever imported."""
    created_at: datetime = Field(default_factory=utcnow)


class ProductPrice(SQLModel, table=True):
    """The price of one unit of a product in one token (`0x0…0` for the native coin) on one chain."""

    __table_args__ = (
        UniqueConstraint("product_id", "chain_id", "token", name="uq_productprice_chain_token"),
    )

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    chain_id: int
    """The chain the token is on (migration 0009)."""
    token: str = Field(max_length=42)
    amount: str = Field(max_length=80)


class DataKey(SQLModel, table=True):
    """A product's data key, wrapped (encrypted) by the master key named by `master_key_id`."""

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", unique=True)
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    master_key_id: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class ImportBatch(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    source_name: str = Field(max_length=255)
    key_count: int
    created_at: datetime = Field(default_factory=utcnow)


class CardKey(SQLModel, table=True):
    """One sellable key, encrypted with its product's data key; never stored in the clear."""

    __table_args__ = (UniqueConstraint("product_id", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    batch_id: int = Field(foreign_key="importbatch.id", index=True)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    fingerprint: str = Field(max_length=64)
    """Keyed hash of the plaintext (HMAC-SHA256), to refuse duplicates without decrypting."""
    order_id: int | None = Field(default=None, foreign_key="shoporder.id", index=True)
    claimed_at: datetime | None = None


class ShopOrder(SQLModel, table=True):
    """An order from its quote to its settlement, with the timestamps the efficiency board uses."""

    # The leader's re-scan for unsettled orders (delivered, committed_at IS NULL) runs every
    # couple of seconds: an index on both keeps it from reading every delivered order.
    __table_args__ = (Index("ix_shoporder_settlement", "status", "committed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_order_id: str = Field(unique=True, index=True, max_length=66)
    """The escrow's `orderId` (bytes32, 0x-hex): how the chain and the shop name the order."""
    chain_id: int = Field(index=True)
    """The chain the order is quoted for and paid on (migration 0009): its quote is signed for that
    chain's escrow, so no other chain's escrow accepts it."""
    product_id: int = Field(foreign_key="product.id", index=True)
    quantity: int
    token: str = Field(max_length=42)
    amount: str = Field(max_length=80)
    buyer: str | None = Field(default=None, max_length=42)
    """The only address allowed to pay, when the quote names one."""
    payer: str | None = Field(default=None, max_length=42, index=True)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)
    status: OrderStatus = Field(default=OrderStatus.QUOTED, index=True)
    priority: int = 0
    """Higher first: derived from the order's value and whether the payer bought before."""
    quote_signature: str = Field(max_length=140)
    quote_expiry: int
    delivery_deadline: int
    fee_bps: int = 0
    """The platform fee the escrow fixed at payment (`OrderPaid`): part of the terms that settle it."""
    access_token_hash: str = Field(max_length=64)
    """SHA-256 of the secret order token given with the quote, which lets its holder read the keys."""
    commitment: str | None = Field(default=None, max_length=66)
    salt: str | None = Field(default=None, max_length=66)
    refund_reason: str | None = Field(default=None, max_length=200)
    anomaly: str | None = Field(default=None, max_length=200)
    """Something the merchant must look at, shown in the abnormal log: "payment reorged" (the
    payment left the chain after the keys went out), "delivery window closed", a settlement the
    escrow refuses."""
    settlement_held: bool = False
    """The escrow refuses this order's settlement (unknown order, other terms, the call reverts):
    the rescan no longer hands it to the sender; the merchant decides (see `anomaly`)."""
    notice_due: bool = Field(default=False, index=True)
    """Delivered, the buyer not told yet: set in the delivery transaction, cleared once the
    channels ran. A restart tells the buyers of the orders still marked."""
    created_at: datetime = Field(default_factory=utcnow)
    block_time: datetime | None = None
    seen_at: datetime | None = None
    confirmed_at: datetime | None = None
    keys_claimed_at: datetime | None = None
    delivered_at: datetime | None = None
    committed_at: datetime | None = None
    refunded_at: datetime | None = None
    settled_block: int | None = Field(default=None, index=True)
    """The block of the escrow's OrderDelivered/OrderRefunded log: a reorganisation below it undoes
    the settlement in our records, and the order is settled again."""


class Payment(SQLModel, table=True):
    """The escrow's `OrderPaid` log for an order, wherever the canonical chain has it now."""

    __table_args__ = (UniqueConstraint("chain_id", "chain_order_id"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int
    chain_order_id: str = Field(max_length=66, index=True)
    payer: str = Field(max_length=42)
    token: str = Field(max_length=42)
    amount: str = Field(max_length=80)
    fee_bps: int = 0
    tx_hash: str = Field(max_length=66)
    block_number: int = Field(index=True)
    block_hash: str = Field(max_length=66)
    log_index: int
    seen_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One card key handed out for one line of an order."""

    __table_args__ = (UniqueConstraint("order_id", "line_no"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="shoporder.id", index=True)
    line_no: int
    card_key_id: int = Field(foreign_key="cardkey.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class DeliveryAttempt(SQLModel, table=True):
    """One try of one channel to tell the buyer their keys are ready."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="shoporder.id", index=True)
    channel: str = Field(max_length=32)
    variant: str | None = Field(default=None, max_length=32)
    """The message template variant sent (A/B tests), when the channel sends a message."""
    succeeded: bool
    error: str | None = Field(default=None, max_length=500)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime = Field(default_factory=utcnow)


class ChainCheckpoint(SQLModel, table=True):
    """The last block whose logs are fully applied; moves in the same transaction as their effects."""

    chain_id: int = Field(primary_key=True)
    block_number: int
    block_hash: str = Field(max_length=66)
    updated_at: datetime = Field(default_factory=utcnow)


class ChainBlock(SQLModel, table=True):
    """Hashes of recent processed blocks, to notice a reorganisation and find where it forked."""

    chain_id: int = Field(primary_key=True)
    number: int = Field(primary_key=True)
    hash: str = Field(max_length=66)
    parent_hash: str = Field(max_length=66)


class ChainTxStatus(enum.StrEnum):
    PENDING = "pending"
    MINED = "mined"
    FAILED = "failed"
    REPLACED = "replaced"


class ChainTx(SQLModel, table=True):
    """A transaction the shop sent (recording deliveries, refunding), for nonces and fee bumps."""

    id: int | None = Field(default=None, primary_key=True)
    chain_id: int
    sender: str = Field(max_length=42)
    nonce: int
    kind: str = Field(max_length=16)
    tx_hash: str = Field(max_length=66, unique=True)
    order_ids: str
    """Comma-separated `ShopOrder.id`s the transaction settles."""
    max_fee_per_gas: str = Field(max_length=80)
    raw_tx: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The signed transaction (0x-hex), written before it is sent: after a crash it is broadcast
    again as it is (same nonce, same hash), never signed anew."""
    status: ChainTxStatus = Field(default=ChainTxStatus.PENDING, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class OperatorStatus(SQLModel, table=True):
    """What the settlement sender last saw of the operator account, for the dashboard's alerts."""

    chain_id: int = Field(primary_key=True)
    address: str = Field(primary_key=True, max_length=42)
    balance: str = Field(max_length=80)
    """Wei."""
    max_fee_per_gas: str = Field(max_length=80)
    """Wei per gas the sender would pay now."""
    batch_gas: int
    """Gas of a full settlement batch (the largest seen, or an estimate before one was sent)."""
    updated_at: datetime = Field(default_factory=utcnow)


class KeyAccess(SQLModel, table=True):
    """One read of an order's keys by its buyer. More than one means the buyer came back for them,
    which is what the A/B results of the delivery messages count."""

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="shoporder.id", index=True)
    via: str = Field(max_length=16)
    """"token" (the order's secret) or "wallet" (a Sign-In with Ethereum session)."""
    accessed_at: datetime = Field(default_factory=utcnow)


class Merchant(SQLModel, table=True):
    """A dashboard login. Passwords are kept only as argon2id hashes."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=64)
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    failed_logins: int = 0
    """Wrong passwords in a row (migration 0006): past the settings' threshold the account locks."""
    locked_until: datetime | None = None
    """No password is even checked for this account before then."""


class MerchantSession(SQLModel, table=True):
    """A logged-in dashboard session; the cookie holds the token, the table only its hash."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A merchant's token for integrations: scoped, revocable, stored as a hash."""

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    """The token's first characters, shown in listings so a merchant can tell tokens apart."""
    token_hash: str = Field(unique=True, max_length=64)
    scopes: str = Field(max_length=200)
    """Space-separated scopes, e.g. "orders:read products:write"."""
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class BuyerChallenge(SQLModel, table=True):
    """A Sign-In with Ethereum nonce: issued once, accepted once, before it expires."""

    nonce: str = Field(primary_key=True, max_length=32)
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    message_hash: str | None = Field(default=None, max_length=64)
    """SHA-256 of the exact message issued (migration 0006): only that text, signed, signs in."""


class BuyerSession(SQLModel, table=True):
    """A wallet proven by a signed challenge: opens every order that wallet paid."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    address: str = Field(max_length=42, index=True)
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class ChannelSetting(SQLModel, table=True):
    """The merchant's order of delivery channels; connection details and secrets live in Settings."""

    name: str = Field(primary_key=True, max_length=32)
    position: int
    enabled: bool = True


class MessageTemplate(SQLModel, table=True):
    """A delivery message for a channel; several variants of one channel are an A/B test."""

    __table_args__ = (UniqueConstraint("channel", "variant"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    variant: str = Field(max_length=32)
    subject: str = Field(default="", max_length=200)
    body: str = Field(max_length=10000)
    weight: int = 1
    """Relative share of orders that get this variant."""
    active: bool = True
