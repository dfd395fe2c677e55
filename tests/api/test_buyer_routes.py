"""Buyers: catalogue, quotes, and keys that open only for the order's token or its paying wallet,
sealed to the browser's key."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from liandong.api.app import create_app
from liandong.chain.quotes import NATIVE_COIN
from liandong.core.errors import NotFoundError
from liandong.core.ratelimit import RateLimit
from liandong.devtools.simulate import dev_account
from liandong.services.buyer_keys import KeyRead, seal_orders
from liandong.store.models import KeyAccess, ShopOrder
from liandong.vault.crypto import delivery_commitment
from liandong.vault.transport import SealedKeys, open_sealed, order_aad
from sqlmodel import Session, select

from tests.api.conftest import Api

KEYS = ["GAME-0001-AAAA", "GAME-0002-BBBB", "GAME-0003-CCCC"]


@pytest.fixture
def merchant(api: Api) -> dict[str, str]:
    return api.merchant_token("products:read", "products:write", "keys:import", "orders:read", "orders:write")


def quote(api: Api, product_id: int, quantity: int = 1, **extra: str) -> dict[str, str]:
    response = api.client.post(
        "/api/quotes",
        json={
            "product_id": product_id,
            "quantity": quantity,
            "token": NATIVE_COIN,
            "open": "buyer" not in extra,
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def browser_key() -> tuple[X25519PrivateKey, str]:
    private = X25519PrivateKey.generate()
    raw = private.public_key().public_bytes_raw()
    return private, base64.urlsafe_b64encode(raw).decode().rstrip("=")


def open_keys(api: Api, order: str, headers: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    private, public = browser_key()
    response = api.client.post(f"/api/orders/{order}/keys", json={"public_key": public}, headers=headers)
    assert response.status_code == 200, response.text
    sealed = response.json()
    assert not any(key in response.text for key in KEYS)  # never in the clear on the wire
    keys = json.loads(open_sealed(sealed["box"], private.private_bytes_raw(), order_aad(order)))
    return keys, sealed


def sign_in(api: Api, wallet: LocalAccount) -> dict[str, str]:
    challenge = api.client.post("/api/buyer/challenge", json={"address": wallet.address}).json()
    signature = wallet.sign_message(encode_defunct(text=challenge["message"])).signature
    session = api.client.post(
        "/api/buyer/session", json={"message": challenge["message"], "signature": "0x" + signature.hex()}
    )
    assert session.status_code == 200, session.text
    return {"Authorization": f"Bearer {session.json()['token']}"}


def test_the_catalogue_shows_prices_and_stock_state_of_listed_products(
    api: Api, merchant: dict[str, str]
) -> None:
    stocked = api.add_product("stocked", [f"K-{n}" for n in range(10)], merchant)
    low = api.add_product("low", ["L-1"], merchant)
    api.client.patch(f"/api/merchant/products/{low}", json={"low_stock_percent": 100}, headers=merchant)
    sold_out = api.add_product("sold-out", [], merchant)
    hidden = api.add_product("hidden", ["H-1"], merchant)
    api.client.patch(f"/api/merchant/products/{hidden}", json={"active": False}, headers=merchant)

    listed = {p["id"]: p for p in api.client.get("/api/products").json()}
    assert set(listed) == {stocked, low, sold_out}
    assert listed[stocked]["stock"] == "in_stock"
    assert listed[sold_out]["stock"] == "sold_out"
    assert listed[stocked]["prices"] == [
        {"chain_id": 31337, "token": NATIVE_COIN, "amount": "10000000000000000"}
    ]
    assert "available" not in listed[stocked]  # buyers see a state, not the merchant's figures
    api.client.patch(f"/api/merchant/products/{low}", json={"low_stock_percent": 100}, headers=merchant)
    api.import_keys(low, ["L-2"], merchant)
    low_now = next(p for p in api.client.get("/api/products").json() if p["id"] == low)
    assert low_now["stock"] == "in_stock"  # 2 of 2 left: not under 100 %

    assert (
        api.client.post("/api/quotes", json={"product_id": hidden, "token": NATIVE_COIN}).status_code == 404
    )
    assert (
        api.client.post("/api/quotes", json={"product_id": sold_out, "token": NATIVE_COIN}).status_code == 409
    )


def test_a_quote_is_what_the_escrow_needs_and_bad_input_gets_a_clear_4xx(
    api: Api, merchant: dict[str, str]
) -> None:
    product = api.add_product("game", KEYS, merchant)
    issued = quote(api, product, quantity=2, email="buyer@example.com")
    assert issued["quote"]["amount"] == str(2 * 10**16)
    assert issued["escrow"] == api.context.domain.verifying_contract
    assert issued["order_url"] == f"http://shop.test/orders/{issued['order']}"
    for bad in (
        {"product_id": product, "token": "0x123"},
        {"product_id": product, "token": NATIVE_COIN, "quantity": 0},
        {"product_id": product, "token": NATIVE_COIN, "email": "not an address"},
        {"product_id": product, "token": NATIVE_COIN, "phone": "12345"},
        {"product_id": "one", "token": NATIVE_COIN},
    ):
        response = api.client.post("/api/quotes", json=bad)
        assert response.status_code == 422, (bad, response.text)
    other_token = "0x" + "11" * 20
    response = api.client.post("/api/quotes", json={"product_id": product, "token": other_token})
    assert response.status_code == 404
    assert "no price" in response.json()["detail"]


def test_quotes_are_rate_limited_per_client(api: Api, merchant: dict[str, str]) -> None:
    product = api.add_product("limited", KEYS, merchant)
    api.context.quote_limit = RateLimit.parse("2/minute")
    quote(api, product)
    quote(api, product)
    refused = api.client.post("/api/quotes", json={"product_id": product, "token": NATIVE_COIN})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0


def test_keys_open_with_the_order_token_sealed_and_match_the_commitment(
    api: Api, merchant: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    product = api.add_product("game", KEYS, merchant)
    issued = quote(api, product, quantity=2)
    order, token = issued["order"], {"X-Order-Token": issued["access_token"]}

    assert api.client.get(f"/api/orders/{order}").status_code == 401  # an order id alone opens nothing
    assert api.client.get(f"/api/orders/{order}", headers={"X-Order-Token": "guess"}).status_code == 404
    assert api.client.get(f"/api/orders/{order}", headers=token).json()["status"] == "quoted"
    _, public = browser_key()
    early = api.client.post(f"/api/orders/{order}/keys", json={"public_key": public}, headers=token)
    assert early.status_code == 409

    api.deliver(order, dev_account(4).address)
    keys, sealed = open_keys(api, order, token)
    assert keys == KEYS[:2]
    expected = delivery_commitment(order_aad(order), bytes.fromhex(sealed["salt"][2:]), keys)
    assert sealed["commitment"] == "0x" + expected.hex()
    bad_key = api.client.post(f"/api/orders/{order}/keys", json={"public_key": "0x1234"}, headers=token)
    assert bad_key.status_code == 422
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(key in logged for key in KEYS)


def test_a_wallet_opens_its_own_orders_and_no_one_elses(api: Api, merchant: dict[str, str]) -> None:
    product = api.add_product("game", KEYS, merchant)
    alice, bob = dev_account(4), dev_account(5)
    alices = quote(api, product)
    bobs = quote(api, product)
    api.deliver(alices["order"], alice.address)
    api.deliver(bobs["order"], bob.address)

    as_alice, as_bob = sign_in(api, alice), sign_in(api, bob)
    [listed] = api.client.get("/api/buyer/orders", headers=as_alice).json()
    assert listed["order"] == alices["order"]
    keys, _ = open_keys(api, alices["order"], as_alice)
    assert len(keys) == 1
    # Bob's valid signature, and Bob's own order token, open nothing of Alice's.
    _, public = browser_key()
    for proof in (as_bob, {"X-Order-Token": bobs["access_token"]}):
        denied = api.client.post(
            f"/api/orders/{alices['order']}/keys", json={"public_key": public}, headers=proof
        )
        assert denied.status_code == 404
        assert api.client.get(f"/api/orders/{alices['order']}", headers=proof).status_code == 404


def test_a_signed_challenge_is_accepted_once_and_only_from_its_wallet(api: Api) -> None:
    wallet: LocalAccount = Account.create()
    challenge = api.client.post("/api/buyer/challenge", json={"address": wallet.address}).json()
    forged = Account.create().sign_message(encode_defunct(text=challenge["message"])).signature
    attempt = {"message": challenge["message"], "signature": "0x" + forged.hex()}
    assert api.client.post("/api/buyer/session", json=attempt).status_code == 401
    signed = wallet.sign_message(encode_defunct(text=challenge["message"])).signature
    attempt["signature"] = "0x" + signed.hex()
    assert api.client.post("/api/buyer/session", json=attempt).status_code == 200
    replay = api.client.post("/api/buyer/session", json=attempt)
    assert replay.status_code == 401
    assert api.client.get("/api/buyer/orders").status_code == 401


def test_cors_is_closed_unless_origins_are_named(api: Api) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = api.client.options("/api/quotes", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    simple = api.client.get("/api/products", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers

    settings = api.context.settings.model_copy(update={"cors_origins": ["https://shop.example"]})
    with TestClient(create_app(dataclasses.replace(api.context, settings=settings))) as opened:
        allowed = opened.get("/api/products", headers={"Origin": "https://shop.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
        other = opened.get("/api/products", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_in_a_batch_of_key_reads_each_proof_opens_only_its_own_order(
    api: Api, merchant: dict[str, str]
) -> None:
    """Key reads asked at the same time are sealed in one transaction: Bob's token riding in the
    same batch as Alice's own read opens nothing of hers, and only the read that opened is logged."""
    product = api.add_product("game", KEYS, merchant)
    alices, bobs = quote(api, product), quote(api, product)
    api.deliver(alices["order"], dev_account(4).address)
    api.deliver(bobs["order"], dev_account(5).address)
    _, public = browser_key()
    reads = [
        KeyRead(alices["order"], public, order_token=alices["access_token"]),
        KeyRead(alices["order"], public, order_token=bobs["access_token"]),
        KeyRead(bobs["order"], public, wallet=dev_account(4).address),  # Alice's wallet, Bob's order
    ]
    opened, with_bobs_token, with_alices_wallet = seal_orders(api.context.engine, api.context.vault, reads)
    assert isinstance(opened, SealedKeys)
    assert isinstance(with_bobs_token, NotFoundError)
    assert isinstance(with_alices_wallet, NotFoundError)
    with Session(api.context.engine) as session:
        logged = session.exec(select(KeyAccess.order_id)).all()
        alice_order = session.exec(
            select(ShopOrder.id).where(ShopOrder.chain_order_id == alices["order"])
        ).one()
    assert logged == [alice_order]


def test_a_quote_for_a_chain_the_shop_does_not_serve_is_refused(api: Api, merchant: dict[str, str]) -> None:
    product = api.add_product("one-chain", ["OC-1"], merchant)
    asked = {"product_id": product, "token": NATIVE_COIN, "buyer": "0x" + "ab" * 20, "chain_id": 8453}
    answer = api.client.post("/api/quotes", json=asked)
    assert answer.status_code == 404
    assert "no payments on chain 8453" in answer.json()["detail"]
    assert api.client.get("/api/shop").json()["chains"] == [
        {"chain_id": 31337, "network": "Local chain A", "escrow": api.context.domain.verifying_contract}
    ]
