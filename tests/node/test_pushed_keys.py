"""Keys pushed with the `delivered` event: an order page that proved the order and named its
X25519 key gets its own box on the stream, the read logged with the delivery; every other listener
(a page that named no key, the merchant feed) gets the event alone; a bad key is refused up front.

The attacker's moves: listen to someone's order without its token (closed before it hears
anything: tests/security), name a key on a stream opened with a wrong token (closed the same,
tested here), name a key that is no key (refused with the reason), and read a box meant for
another page (each page gets only its own, sealed to its key: the other's box does not open with
it)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.devtools.simulate import LocalShop as Shop
from liandong.store.models import KeyAccess, ShopOrder
from liandong.vault.crypto import delivery_commitment
from liandong.vault.transport import TransportError, open_sealed, order_aad
from sqlmodel import Session, col, select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def _page(shop: Shop, order: str, proof: dict[str, Any]) -> ClientConnection:
    page = connect(f"ws://127.0.0.1:{shop.api_port}/api/orders/{order}/events", open_timeout=5)
    page.send(json.dumps({"type": "auth", **proof}))
    return page


def _delivered(page: ClientConnection) -> dict[str, Any]:
    while True:
        event = json.loads(page.recv(timeout=30))
        if event.get("status") == "delivered":
            return dict(event)


def _key(private: X25519PrivateKey) -> str:
    return "0x" + private.public_key().public_bytes_raw().hex()


def _reads(shop: Shop, order: str) -> list[str]:
    with Session(shop.engine) as session:
        return list(
            session.exec(
                select(KeyAccess.via)
                .join(ShopOrder, col(ShopOrder.id) == col(KeyAccess.order_id))
                .where(ShopOrder.chain_order_id == order)
            ).all()
        )


def test_pages_that_named_their_key_get_their_own_box_with_the_delivered_event(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("pushed", ["PUSH-0001", "PUSH-0002", "PUSH-0003"])
    shop.start()
    buyer = shop.buyer(5)
    api = httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)
    asked = {"product_id": product, "quantity": 2, "token": NATIVE_COIN, "buyer": buyer.account.address}
    issued = api.post("/api/quotes", json=asked).json()
    order, token = issued["order"], issued["access_token"]

    # A key that is no key: refused with the reason, before the page hears anything.
    refused = _page(shop, order, {"token": token, "public_key": "0x" + "00" * 31})
    with pytest.raises(ConnectionClosed) as closed:
        refused.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "public_key" in closed.value.rcvd.reason

    # Mallory names her key on a stream opened with a token that is not the order's: closed before
    # she hears anything, so nothing is ever sealed to her (the reads below are Alice's and Bob's).
    mallory = _page(shop, order, {"token": "not-the-token", "public_key": _key(X25519PrivateKey.generate())})
    with pytest.raises(ConnectionClosed) as closed:
        mallory.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008

    alice, bob = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    pages = {
        "alice": _page(shop, order, {"token": token, "public_key": _key(alice)}),
        "bob": _page(shop, order, {"token": token, "public_key": _key(bob)}),
        "plain": _page(shop, order, {"token": token}),
    }
    for page in pages.values():
        assert json.loads(page.recv(timeout=10))["type"] == "ready"
    buyer.pay(Quote.from_json(issued["quote"]), bytes.fromhex(issued["signature"][2:]))
    events = {name: _delivered(page) for name, page in pages.items()}
    for page in pages.values():
        page.close()

    assert "keys" not in events["plain"]
    boxes = {name: events[name]["keys"] for name in ("alice", "bob")}
    assert boxes["alice"]["box"] != boxes["bob"]["box"]
    aad = order_aad(order)
    opened = {
        name: json.loads(open_sealed(boxes[name]["box"], private.private_bytes_raw(), aad))
        for name, private in (("alice", alice), ("bob", bob))
    }
    assert opened["alice"] == opened["bob"]
    assert sorted(opened["alice"]) == ["PUSH-0001", "PUSH-0002"]
    with pytest.raises(TransportError):  # Bob's box is Bob's: Alice's key does not open it
        open_sealed(boxes["bob"]["box"], alice.private_bytes_raw(), aad)
    salt = bytes.fromhex(boxes["alice"]["salt"][2:])
    expected = "0x" + delivery_commitment(bytes.fromhex(order[2:]), salt, opened["alice"]).hex()
    assert boxes["alice"]["commitment"] == events["alice"]["commitment"] == expected

    # Both reads logged (with the delivery, before the boxes left); the page that asked after the
    # event gets the same keys over HTTP, and that read is logged too.
    assert _reads(shop, order) == ["token", "token"]
    carol = X25519PrivateKey.generate()
    answer = api.post(
        f"/api/orders/{order}/keys", json={"public_key": _key(carol)}, headers={"X-Order-Token": token}
    ).json()
    assert json.loads(open_sealed(answer["box"], carol.private_bytes_raw(), aad)) == opened["alice"]
    assert answer["salt"] == boxes["alice"]["salt"]
    assert _reads(shop, order) == ["token", "token", "token"]
