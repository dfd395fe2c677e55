"""Quoting orders and reading them back: the buyer-facing operations on the store.

`create_quotes` prices, signs and stores orders in one go, so every quote the escrow can accept
has its row (and the hash of the buyer's access token) in the store before the buyer sees it.

It takes a batch because the API's quotes come in crowds (a flash sale): `Batched` hands every
quote asked for while the previous batch was being written to one `create_quotes` call, so a crowd
shares one transaction, one commit and one lookup of each product's terms and stock, while a lone
buyer's quote goes out at once in a batch of one. Each answer waits for its batch's commit. The
key reads (`buyer_keys.seal_orders`) come in crowds too and are batched the same way.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Integer, bindparam, insert
from sqlmodel import Session, and_, col, func, select

from liandong.chain.escrow import MIN_DELIVERY_WINDOW
from liandong.chain.quotes import EscrowDomain, Quote, sign_quote
from liandong.core.errors import ConflictError, InvalidError, LiandongError, NotFoundError
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
    chain_id: int
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


_FREE_KEYS = select(func.count()).select_from(
    select(CardKey.id)
    .where(CardKey.product_id == bindparam("product"), col(CardKey.order_id).is_(None))
    .order_by(col(CardKey.id).desc())
    .limit(bindparam("enough", type_=Integer))
    .subquery()
)
"""Free keys of a product, counted only up to `enough` (a bounded scan, not a full count).

Newest first: deliveries take the oldest keys (lowest ids), so the free ones are at the top and the
scan stops after `enough` of them, however many were sold below them (oldest first, it would step
over every sold key of the product on each quote). Built once: a quote's statements are Core
statements made at import, so a quote pays for neither building nor ORM-compiling them."""


def _keys_left(connection: Connection, product_id: int, enough: int) -> int:
    return int(connection.execute(_FREE_KEYS, {"product": product_id, "enough": enough}).scalar_one())


@dataclass(frozen=True)
class QuotedOrder:
    """The order row a quote stored, as written (status `quoted`): what its caller reads back."""

    id: int
    chain_order_id: str
    chain_id: int
    product_id: int
    quantity: int
    token: str
    amount: str
    buyer: str | None
    email: str | None
    phone: str | None
    quote_signature: str
    quote_expiry: int
    delivery_deadline: int
    status: OrderStatus = OrderStatus.QUOTED


@dataclass(frozen=True)
class IssuedQuote:
    order: QuotedOrder
    quote: Quote
    signature: bytes
    access_token: str
    """The secret that lets its holder read the order's keys; only its hash is stored."""


@dataclass(frozen=True)
class QuoteSigner:
    """What signs the quotes of one chain: its escrow's domain and the operator key it names."""

    domain: EscrowDomain
    operator_key: str


@dataclass(frozen=True)
class QuoteAsk:
    """One quote asked for: what `create_quote` takes besides the store, the domain and the key."""

    chain_id: int
    product_id: int
    quantity: int
    token: str
    buyer: str | None = None
    email: str | None = None
    phone: str | None = None
    delivery_window: int = DELIVERY_WINDOW_SECONDS
    open_quote: bool = False


@dataclass(frozen=True)
class _Terms:
    active: bool
    price: int | None
    """The unit price in the asked token; None when the product has none in it."""


_TERMS = (
    select(Product.active, ProductPrice.amount)
    .select_from(Product)
    .outerjoin(
        ProductPrice,
        and_(
            ProductPrice.product_id == Product.id,
            ProductPrice.chain_id == bindparam("chain"),
            ProductPrice.token == bindparam("token"),
        ),
    )
    .where(Product.id == bindparam("product"))
)
"""The product's listing and its price in a token on a chain, in one query."""

_INSERT_ORDERS = insert(ShopOrder).returning(col(ShopOrder.id), sort_by_parameter_order=True)
"""A batch's orders in one statement (executemany with RETURNING: each row's id, in order)."""


def _terms(connection: Connection, product_id: int, chain_id: int, token: str) -> _Terms | None:
    """The product's listing and its price in `token` on `chain_id`; None for no such product."""
    row = connection.execute(_TERMS, {"product": product_id, "chain": chain_id, "token": token}).first()
    if row is None:
        return None
    active, amount = row
    return _Terms(bool(active), None if amount is None else int(amount))


def _priced(ask: QuoteAsk, terms: _Terms | None, free: int) -> int:
    """The order's amount, or the refusal of `ask` (checked in this order); `free` is the
    product's free keys counted up to at least `ask.quantity`."""
    if terms is None or not terms.active:
        raise OrderError(f"product {ask.product_id} is not for sale")
    if ask.quantity < 1:
        raise OrderError("quantity must be at least 1")
    if free < ask.quantity:
        raise SoldOutError(f"product {ask.product_id} has fewer than {ask.quantity} keys left")
    if terms.price is None:
        raise OrderError(
            f"product {ask.product_id} has no price in token {ask.token} on chain {ask.chain_id}"
        )
    if ask.buyer is None and not ask.open_quote:
        raise BuyerRequiredError(
            "a quote names the wallet that pays it (buyer); ask for an open quote (open: true) to let "
            "any wallet pay"
        )
    if ask.buyer is not None and ask.open_quote:
        raise OrderError("an open quote names no buyer")
    if ask.delivery_window < MIN_DELIVERY_WINDOW:
        raise OrderError(f"the delivery window must be at least {MIN_DELIVERY_WINDOW} s")
    if terms.price * ask.quantity > MAX_UINT256:
        raise OrderError("the order's amount exceeds what the escrow can hold (2**256 - 1)")
    return terms.price * ask.quantity


def create_quotes(
    session: Session,
    signers: Mapping[int, QuoteSigner],
    asks: Sequence[QuoteAsk],
    *,
    now: int | None = None,
) -> list[IssuedQuote | OrderError]:
    """Prices, signs and stores the orders of `asks` in one transaction: for each ask its quote, or
    the `OrderError` that refuses it (as `create_quote` would raise it). `signers`: by chain id,
    the chains the shop takes payments on; an ask for another chain is refused.

    Each product's terms and stock are read once for the batch. Keys are not held for quotes, so
    whether a product has `quantity` keys left is the same question for every ask of the batch:
    one count up to the largest quantity asked answers them all.
    """
    issued_at = int(time.time()) if now is None else now
    connection = session.connection()
    terms: dict[tuple[int, int, str], _Terms | None] = {}
    wanted: dict[int, int] = {}
    for ask in asks:
        wanted[ask.product_id] = max(wanted.get(ask.product_id, 0), ask.quantity)
        if (ask.product_id, ask.chain_id, ask.token) not in terms:
            terms[ask.product_id, ask.chain_id, ask.token] = _terms(
                connection, ask.product_id, ask.chain_id, ask.token
            )
    free: dict[int, int] = {}
    outcomes: list[tuple[dict[str, Any], Quote, bytes, str] | OrderError] = []
    rows: list[dict[str, Any]] = []
    for ask in asks:
        signer = signers.get(ask.chain_id)
        if signer is None:
            outcomes.append(OrderError(f"this shop takes no payments on chain {ask.chain_id}"))
            continue
        found = terms[ask.product_id, ask.chain_id, ask.token]
        if found is not None and found.active and ask.product_id not in free:
            free[ask.product_id] = _keys_left(connection, ask.product_id, wanted[ask.product_id])
        try:
            amount = _priced(ask, found, free.get(ask.product_id, 0))
        except OrderError as refused:
            outcomes.append(refused)
            continue
        quote = Quote(
            order_id=os.urandom(32),
            product_id=ask.product_id,
            quantity=ask.quantity,
            token=ask.token,
            amount=amount,
            buyer=ask.buyer or "0x0000000000000000000000000000000000000000",
            expiry=issued_at + QUOTE_TTL_SECONDS,
            delivery_deadline=issued_at + QUOTE_TTL_SECONDS + ask.delivery_window,
        )
        signature = sign_quote(quote, signer.domain, signer.operator_key)
        access_token = secrets.token_urlsafe(24)
        row: dict[str, Any] = {
            "chain_order_id": "0x" + quote.order_id.hex(),
            "chain_id": ask.chain_id,
            "product_id": ask.product_id,
            "quantity": ask.quantity,
            "token": ask.token,
            "amount": str(quote.amount),
            "buyer": ask.buyer,
            "email": ask.email,
            "phone": ask.phone,
            "quote_signature": "0x" + signature.hex(),
            "quote_expiry": quote.expiry,
            "delivery_deadline": quote.delivery_deadline,
            "access_token_hash": token_hash(access_token),
        }
        rows.append(row)
        outcomes.append((row, quote, signature, access_token))
    inserted = connection.execute(_INSERT_ORDERS, rows).scalars().all() if rows else []
    ids = iter(cast("Sequence[int]", inserted))  # a primary key RETURNING gives: never None
    # Committed before any signature leaves this function: every quote the escrow can accept has
    # its row (and the hash of its access token) in the store first.
    session.commit()
    return [
        outcome if isinstance(outcome, OrderError) else _issued(next(ids), *outcome) for outcome in outcomes
    ]


def _issued(order_id: int, row: dict[str, Any], quote: Quote, signature: bytes, token: str) -> IssuedQuote:
    shown = {name: value for name, value in row.items() if name != "access_token_hash"}
    return IssuedQuote(QuotedOrder(id=order_id, **shown), quote, signature, token)


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
    ask = QuoteAsk(
        domain.chain_id, product_id, quantity, token, buyer, email, phone, delivery_window, open_quote
    )
    [outcome] = create_quotes(session, {domain.chain_id: QuoteSigner(domain, operator_key)}, [ask], now=now)
    if isinstance(outcome, OrderError):
        raise outcome
    return outcome


MAX_BATCH = 256
"""Asks written in one transaction at most; a larger crowd waits for the next batch."""

Ask = TypeVar("Ask")
Answer = TypeVar("Answer")


class Batched(Generic[Ask, Answer]):
    """Runs `write` over batches of what the API's requests ask for at the same time: whatever is
    asked while a batch is being written becomes the next one (one batch at a time, in a worker
    thread, off the event loop). `write` gives one outcome per ask, in order: its answer, or the
    error that refuses it, raised to that request alone. Used for quotes (`create_quotes`) and key
    reads (`buyer_keys.seal_orders`): both end in a commit that a crowd can share."""

    def __init__(self, write: Callable[[list[Ask]], list[Answer | LiandongError]]) -> None:
        self._write = write
        self._asked: list[tuple[Ask, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batched")
        """The batches' own thread: a batch never queues behind other work (the order pages'
        reads, their acknowledgements) in the event loop's shared executor."""

    async def __call__(self, ask: Ask) -> Answer:
        """The answer to `ask` once its batch is committed; its refusal raised."""
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._asked.append((ask, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await answer

    async def _write_all(self) -> None:
        while self._asked:
            batch, self._asked = self._asked[:MAX_BATCH], self._asked[MAX_BATCH:]
            try:
                outcomes = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._write, [ask for ask, _ in batch]
                )
            except Exception as failed:  # the store failed: every request of the batch answers it
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(failed)
                continue
            for (_, answer), outcome in zip(batch, outcomes, strict=True):
                if answer.done():  # its request is gone
                    continue
                if isinstance(outcome, LiandongError):
                    answer.set_exception(outcome)
                else:
                    answer.set_result(outcome)


def issue_quotes(
    engine: Engine, signers: Mapping[int, QuoteSigner], asks: list[QuoteAsk]
) -> list[IssuedQuote | LiandongError]:
    """`create_quotes` in a session of its own: the API's batches of quotes."""
    with Session(engine) as session:
        return list(create_quotes(session, signers, asks))
