"""Handing delivered keys to their buyer, sealed to a key only the buyer's browser holds.

Two proofs open an order: the secret order token issued with the quote, or a Sign-In with
Ethereum session of the wallet that paid. Knowing an order id or an e-mail address opens nothing.
The keys leave this module only inside a box sealed to the buyer's X25519 public key, so they
are never in a response body, a proxy's log or ours in the clear.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import Engine, bindparam, exists, insert
from sqlmodel import Session, col, select

from liandong.core.errors import ConflictError, LiandongError, NotFoundError
from liandong.core.security import token_hash
from liandong.services.orders import OrderFacts
from liandong.store.db import READ_ONLY
from liandong.store.models import CardKey, Delivery, KeyAccess, OrderStatus, ShopOrder, utcnow
from liandong.vault.service import Vault
from liandong.vault.transport import SealedKeys, parse_public_key, seal_keys

MAX_WALLET_ORDERS = 200


class OrderAccessDeniedError(NotFoundError):
    """The proof does not open this order (unknown order, wrong token, another wallet): the same
    answer for "no such order" and "not yours", so that order ids cannot be probed."""

    def __init__(self, chain_order_id: str) -> None:
        super().__init__("no such order for this proof")
        self.chain_order_id = chain_order_id


class OrderState(OrderFacts):
    delivery_deadline: int
    commitment: str | None


def _reading(session: Session) -> Session:
    """`session`, its transaction begun read-only (on SQLite: not behind the write lock) unless
    it already runs one. For the buyers' reads: order pages, their acknowledgements, wallets."""
    if not session.in_transaction():
        session.connection(execution_options=READ_ONLY)
    return session


def _by_id(session: Session, chain_order_id: str) -> ShopOrder | None:
    return session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id.lower())).first()


def _token_opens(order: ShopOrder | None, chain_order_id: str, access_token: str) -> ShopOrder:
    if order is None or not hmac.compare_digest(order.access_token_hash, token_hash(access_token)):
        raise OrderAccessDeniedError(chain_order_id)
    return order


def _wallet_opens(order: ShopOrder | None, chain_order_id: str, address: str) -> ShopOrder:
    """Only the wallet that paid: a signature of any other wallet opens nothing, even its own quote."""
    if order is None or order.payer is None or order.payer.lower() != address.lower():
        raise OrderAccessDeniedError(chain_order_id)
    return order


def order_for_token(session: Session, chain_order_id: str, access_token: str) -> ShopOrder:
    return _token_opens(_by_id(_reading(session), chain_order_id), chain_order_id, access_token)


def order_for_wallet(session: Session, chain_order_id: str, address: str) -> ShopOrder:
    return _wallet_opens(_by_id(_reading(session), chain_order_id), chain_order_id, address)


def wallet_orders(session: Session, address: str) -> list[OrderState]:
    _reading(session)
    rows = session.exec(
        select(ShopOrder)
        .where(col(ShopOrder.payer) == to_checksum_address(address))
        .order_by(col(ShopOrder.id).desc())
        .limit(MAX_WALLET_ORDERS)
    ).all()
    return [order_state(order) for order in rows]


def order_state(order: ShopOrder) -> OrderState:
    return OrderState.of(order)


@dataclass(frozen=True)
class KeyRead:
    """One buyer's ask for an order's keys: the proof that opens it (its order token, or the
    signed-in wallet) and the browser's public key to seal them to."""

    order: str
    public_key: str
    order_token: str | None = None
    wallet: str | None = None

    @property
    def via(self) -> str:
        return read_via(self.order_token)


def read_via(order_token: str | None) -> str:
    """How a key read is logged (`KeyAccess.via`): opened by the order token, or by the wallet."""
    return "token" if order_token is not None else "wallet"


def _opened(read: KeyRead, found: ShopOrder | None) -> tuple[ShopOrder, bytes]:
    """The order `read`'s proof opens, delivered, and the public key to seal to; or the refusal."""
    if read.order_token is not None:
        order = _token_opens(found, read.order, read.order_token)
    else:
        order = _wallet_opens(found, read.order, read.wallet or "")
    if order.status != OrderStatus.DELIVERED or order.salt is None or order.commitment is None:
        raise OrderNotDeliveredError(f"order {order.chain_order_id} is {order.status.value}, not delivered")
    return order, parse_public_key(read.public_key)


def _ciphertexts(session: Session, order_ids: set[int]) -> dict[int, list[bytes]]:
    """The card keys handed out to each order, encrypted, in line order (`Delivery.line_no`: the
    order their commitment was computed in), for a batch of orders in one query."""
    found: dict[int, list[bytes]] = {order_id: [] for order_id in order_ids}
    if order_ids:
        rows = session.connection().execute(
            select(col(Delivery.order_id), col(CardKey.ciphertext))
            .join(CardKey, col(Delivery.card_key_id) == col(CardKey.id))
            .where(col(Delivery.order_id).in_(order_ids))
            .order_by(col(Delivery.order_id), col(Delivery.line_no))
        )
        for order_id, ciphertext in rows:
            found[order_id].append(ciphertext)
    return found


def _sealed(
    session: Session, vault: Vault, order: ShopOrder, recipient: bytes, ciphertexts: list[bytes]
) -> SealedKeys:
    keys = [vault.decrypt(session, order.product_id, ciphertext) for ciphertext in ciphertexts]
    assert order.salt is not None
    assert order.commitment is not None
    return seal_keys(keys, recipient, order.chain_order_id, order.salt, order.commitment)


def seal_orders(engine: Engine, vault: Vault, reads: list[KeyRead]) -> list[SealedKeys | LiandongError]:
    """Each read's keys sealed to its public key, or the refusal of that read (the proof opens no
    such order, not delivered, an unusable public key, a key the vault cannot open). Every read
    handed out is logged as one `KeyAccess`, all of a batch in one transaction, committed before any
    box is returned. A batch because the keys are asked for in crowds: a block's deliveries reach
    their pages at once; their orders are read in one query, their keys in another, and their
    `KeyAccess` rows written in one statement. A key is read only for an order this transaction
    sees delivered, that is after its delivery committed."""
    outcomes: list[SealedKeys | LiandongError] = []
    with Session(engine) as session:
        wanted = {read.order.lower() for read in reads}
        found = {
            order.chain_order_id: order
            for order in session.exec(select(ShopOrder).where(col(ShopOrder.chain_order_id).in_(wanted)))
        }
        opened: list[tuple[ShopOrder, bytes] | LiandongError] = []
        for read in reads:
            try:
                opened.append(_opened(read, found.get(read.order.lower())))
            except LiandongError as refused:  # this read's alone: the others still go out
                opened.append(refused)
        ciphertexts = _ciphertexts(
            session, {entry[0].id for entry in opened if not isinstance(entry, LiandongError) and entry[0].id}
        )
        accesses: list[dict[str, Any]] = []
        accessed_at = utcnow()
        for read, entry in zip(reads, opened, strict=True):
            if isinstance(entry, LiandongError):
                outcomes.append(entry)
                continue
            order, recipient = entry
            assert order.id is not None
            try:
                outcomes.append(_sealed(session, vault, order, recipient, ciphertexts[order.id]))
            except LiandongError as refused:
                outcomes.append(refused)
                continue
            accesses.append({"order_id": order.id, "via": read.via, "accessed_at": accessed_at})
        if accesses:
            session.connection().execute(insert(KeyAccess), accesses)
        session.commit()
    return outcomes


_KEYS_READ = select(
    exists().where(
        col(ShopOrder.chain_order_id) == bindparam("order"),
        col(ShopOrder.status) == OrderStatus.DELIVERED,
        col(KeyAccess.order_id) == col(ShopOrder.id),
    )
)
"""Built once, one Core query (no ORM row: this runs for every order page's acknowledgement)."""


def keys_were_read(session: Session, chain_order_id: str) -> bool:
    """The order is delivered and its sealed keys were fetched: what an order page's
    acknowledgement must be backed by before the in-site channel counts it."""
    connection = _reading(session).connection()
    return bool(connection.execute(_KEYS_READ, {"order": chain_order_id.lower()}).scalar())


class OrderNotDeliveredError(ConflictError):
    """The order has no keys yet (or never will: refunded)."""
