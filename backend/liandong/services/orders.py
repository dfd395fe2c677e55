"""Quoting orders and reading them back: the buyer-facing operations on the store.

`create_quote` prices, signs and stores an order in one go, so every quote the escrow can accept
has its row (and the hash of the buyer's access token) in the store before the buyer sees it.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from typing import Self

from pydantic import BaseModel
from sqlmodel import Session, col, func, select

from liandong.chain.escrow import MIN_DELIVERY_WINDOW
from liandong.chain.quotes import EscrowDomain, Quote, sign_quote
from liandong.core.errors import ConflictError, InvalidError, NotFoundError
from liandong.core.security import token_hash
from liandong.store.models import CardKey, OrderStatus, Product, ProductPrice, ShopOrder

MAX_UINT256 = 2**256 - 1
QUOTE_TTL_SECONDS = 15 * 60
DELIVERY_WINDOW_SECONDS = 24 * 60 * 60
"""The default of `Settings.delivery_window_seconds`: from the quote's expiry to its delivery
deadline (the escrow demands at least its MIN_DELIVERY_WINDOW, one hour)."""


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


class OrderError(NotFoundError):
    """The request cannot become an order: nothing is for sale on these terms (unknown or unlisted
    product, no price in that token, …)."""


class BuyerRequiredError(InvalidError, OrderError):
    """The request names no buyer and does not ask for an open quote."""


class SoldOutError(ConflictError, OrderError):
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
    delivery_window: int = DELIVERY_WINDOW_SECONDS,
    open_quote: bool = False,
) -> IssuedQuote:
    """Prices and signs a new order; the buyer's wallet then calls the escrow's `pay` with it.

    The quote is bound to `buyer`, the only wallet the escrow lets pay it; a quote anyone may pay
    (an integrator's) must be asked for explicitly with `open_quote`. The delivery deadline is
    `delivery_window` seconds after the quote's expiry (at least the escrow's MIN_DELIVERY_WINDOW).
    A product with fewer keys left than asked for is not quoted: a payment would only come back as a
    refund. Keys are not held for quotes, so a race for the last key still ends in a refund.
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
    if buyer is None and not open_quote:
        raise BuyerRequiredError(
            "a quote names the wallet that pays it (buyer); ask for an open quote (open: true) to let "
            "any wallet pay"
        )
    if buyer is not None and open_quote:
        raise OrderError("an open quote names no buyer")
    if delivery_window < MIN_DELIVERY_WINDOW:
        raise OrderError(f"the delivery window must be at least {MIN_DELIVERY_WINDOW} s")
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
        delivery_deadline=issued_at + QUOTE_TTL_SECONDS + delivery_window,
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
