"""Handing delivered keys to their buyer, sealed to a key only the buyer's browser holds.

Two proofs open an order: the secret order token issued with the quote, or a Sign-In with
Ethereum session of the wallet that paid. Knowing an order id or an e-mail address opens nothing.
The keys leave this module only inside a box sealed to the buyer's X25519 public key, so they
are never in a response body, a proxy's log or ours in the clear.
"""

from __future__ import annotations

import hmac
import json

from eth_utils.address import to_checksum_address
from pydantic import BaseModel
from sqlmodel import Session, col, select

from liandong.core.errors import ConflictError, NotFoundError
from liandong.core.security import token_hash
from liandong.services.orders import OrderFacts
from liandong.store.models import KeyAccess, OrderStatus, ShopOrder
from liandong.vault.service import Vault
from liandong.vault.transport import order_aad, parse_public_key, seal

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


class SealedKeys(BaseModel):
    order: str
    box: dict[str, str]
    """The keys as a JSON list, sealed to the buyer's public key (see `liandong.vault.transport`)."""
    salt: str
    """With the keys and the order id, recomputes the commitment the escrow holds."""
    commitment: str


def _by_id(session: Session, chain_order_id: str) -> ShopOrder | None:
    return session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id.lower())).first()


def order_for_token(session: Session, chain_order_id: str, access_token: str) -> ShopOrder:
    order = _by_id(session, chain_order_id)
    if order is None or not hmac.compare_digest(order.access_token_hash, token_hash(access_token)):
        raise OrderAccessDeniedError(chain_order_id)
    return order


def order_for_wallet(session: Session, chain_order_id: str, address: str) -> ShopOrder:
    """Only the wallet that paid: a signature of any other wallet opens nothing, even its own quote."""
    order = _by_id(session, chain_order_id)
    if order is None or order.payer is None or order.payer.lower() != address.lower():
        raise OrderAccessDeniedError(chain_order_id)
    return order


def wallet_orders(session: Session, address: str) -> list[OrderState]:
    rows = session.exec(
        select(ShopOrder)
        .where(col(ShopOrder.payer) == to_checksum_address(address))
        .order_by(col(ShopOrder.id).desc())
        .limit(MAX_WALLET_ORDERS)
    ).all()
    return [order_state(order) for order in rows]


def order_state(order: ShopOrder) -> OrderState:
    return OrderState.of(order)


def seal_keys(session: Session, vault: Vault, order: ShopOrder, public_key: str, via: str) -> SealedKeys:
    """The order's keys sealed to `public_key`; each call is logged as one read (`KeyAccess`)."""
    if order.status != OrderStatus.DELIVERED or order.salt is None or order.commitment is None:
        raise OrderNotDeliveredError(f"order {order.chain_order_id} is {order.status.value}, not delivered")
    recipient = parse_public_key(public_key)
    keys = vault.delivered_keys(session, order)
    box = seal(json.dumps(keys).encode(), recipient, order_aad(order.chain_order_id))
    assert order.id is not None
    session.add(KeyAccess(order_id=order.id, via=via))
    session.commit()
    return SealedKeys(
        order=order.chain_order_id, box=box.to_json(), salt=order.salt, commitment=order.commitment
    )


def keys_were_read(session: Session, chain_order_id: str) -> bool:
    """The order is delivered and its sealed keys were fetched: what an order page's
    acknowledgement must be backed by before the in-site channel counts it."""
    order = _by_id(session, chain_order_id)
    if order is None or order.status != OrderStatus.DELIVERED or order.id is None:
        return False
    read = session.exec(select(KeyAccess.id).where(KeyAccess.order_id == order.id).limit(1)).first()
    return read is not None


class OrderNotDeliveredError(ConflictError):
    """The order has no keys yet (or never will: refunded)."""
