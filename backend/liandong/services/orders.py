"""Quoting orders and reading them back: the buyer-facing operations on the store."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from liandong.chain.quotes import EscrowDomain, Quote, sign_quote
from liandong.core.security import token_hash
from liandong.store.models import CardKey, Delivery, OrderStatus, Product, ProductPrice, ShopOrder
from liandong.vault.service import Vault

MAX_UINT256 = 2**256 - 1
QUOTE_TTL_SECONDS = 15 * 60
DELIVERY_WINDOW_SECONDS = 60 * 60


class OrderFacts(BaseModel):
    """What every view of an order shows, to its buyer or its merchant."""

    order: str
    status: OrderStatus
    product_id: int
    quantity: int
    token: str
    amount: str
    payer: str | None
    refund_reason: str | None

    @classmethod
    def of(cls, order: ShopOrder) -> Self:
        return cls.model_validate({**order.model_dump(), "order": order.chain_order_id})


class OrderError(Exception):
    """The request cannot become an order (unknown product, no price in that token, …)."""


class OrderAccessDeniedError(Exception):
    """The order token does not open this order."""


class SoldOutError(OrderError):
    """Not enough keys left for the quantity asked."""


def _keys_left(session: Session, product_id: int, enough: int) -> int:
    """Free keys of the product, counted only up to `enough` (a bounded scan, not a full count)."""
    free = (
        select(CardKey.id)
        .where(CardKey.product_id == product_id, col(CardKey.order_id).is_(None))
        .limit(enough)
        .subquery()
    )
    return session.exec(select(func.count()).select_from(free)).one()


@dataclass(frozen=True)
class IssuedQuote:
    order: ShopOrder
    quote: Quote
    signature: bytes
    access_token: str
    """The secret that lets its holder read the order's keys; only its hash is stored."""


def create_quote(
    session: Session,
    domain: EscrowDomain,
    operator_key: str,
    *,
    product_id: int,
    quantity: int,
    token: str,
    buyer: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    now: int | None = None,
) -> IssuedQuote:
    """Prices and signs a new order; the buyer's wallet then calls the escrow's `pay` with it.

    A product with fewer keys left than asked for is not quoted: a payment would only come back
    as a refund. Keys are not held for quotes, so a race for the last key still ends in a refund.
    """
    product = session.get(Product, product_id)
    if product is None or not product.active:
        raise OrderError(f"product {product_id} is not for sale")
    if quantity < 1:
        raise OrderError("quantity must be at least 1")
    if _keys_left(session, product_id, quantity) < quantity:
        raise SoldOutError(f"product {product_id} has fewer than {quantity} keys left")
    price = session.exec(
        select(ProductPrice).where(ProductPrice.product_id == product_id, ProductPrice.token == token)
    ).first()
    if price is None:
        raise OrderError(f"product {product_id} has no price in token {token}")
    if int(price.amount) * quantity > MAX_UINT256:
        raise OrderError("the order's amount exceeds what the escrow can hold (2**256 - 1)")
    issued_at = int(time.time()) if now is None else now
    quote = Quote(
        order_id=os.urandom(32),
        product_id=product_id,
        quantity=quantity,
        token=token,
        amount=int(price.amount) * quantity,
        buyer=buyer or "0x0000000000000000000000000000000000000000",
        expiry=issued_at + QUOTE_TTL_SECONDS,
        delivery_deadline=issued_at + QUOTE_TTL_SECONDS + DELIVERY_WINDOW_SECONDS,
    )
    signature = sign_quote(quote, domain, operator_key)
    access_token = secrets.token_urlsafe(24)
    order = ShopOrder(
        chain_order_id="0x" + quote.order_id.hex(),
        product_id=product_id,
        quantity=quantity,
        token=token,
        amount=str(quote.amount),
        buyer=buyer,
        email=email,
        phone=phone,
        quote_signature="0x" + signature.hex(),
        quote_expiry=quote.expiry,
        delivery_deadline=quote.delivery_deadline,
        access_token_hash=token_hash(access_token),
    )
    session.add(order)
    session.commit()
    session.refresh(order)
    return IssuedQuote(order, quote, signature, access_token)


@dataclass(frozen=True)
class OrderKeys:
    order: ShopOrder
    keys: list[str]
    """Plaintext card keys, in line order; empty until the order is delivered."""


def read_order(session: Session, vault: Vault, chain_order_id: str, access_token: str) -> OrderKeys:
    """The order and, once delivered, its keys, for the holder of the order's secret token."""
    order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id.lower())).first()
    if order is None or not hmac.compare_digest(order.access_token_hash, token_hash(access_token)):
        raise OrderAccessDeniedError(chain_order_id)
    keys: list[str] = []
    if order.status == OrderStatus.DELIVERED:
        rows = session.exec(
            select(CardKey)
            .join(Delivery, Delivery.card_key_id == CardKey.id)  # type: ignore[arg-type]
            .where(Delivery.order_id == order.id)
            .order_by(Delivery.line_no)  # type: ignore[arg-type]
        ).all()
        keys = [vault.decrypt(session, order.product_id, row.ciphertext) for row in rows]
    return OrderKeys(order, keys)
