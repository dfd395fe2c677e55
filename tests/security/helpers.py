"""What the security tests share: buying, delivering, signing in, a dashboard session."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from liandong.chain.quotes import NATIVE_COIN
from liandong.services.merchant_auth import SCOPES

from tests.api.conftest import MERCHANT, PUBLIC_URL, Api

ALL_SCOPES = tuple(sorted(SCOPES))


@dataclass(frozen=True)
class Bought:
    order: str
    token: str
    """The order token (X-Order-Token), as the buyer's browser keeps it."""


def buy(api: Api, product_id: int, **extra: str) -> Bought:
    response = api.client.post(
        "/api/quotes", json={"product_id": product_id, "token": NATIVE_COIN, "open": True, **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Bought(body["order"], body["access_token"])


def product_with_keys(api: Api, sku: str, keys: list[str]) -> int:
    return api.add_product(sku, keys, api.merchant_token(*ALL_SCOPES))


def login(api: Api) -> None:
    """A dashboard session on the test client (its cookie jar), from the shop's own page."""
    answer = api.client.post(
        "/api/merchant/login",
        json={"username": MERCHANT[0], "password": MERCHANT[1]},
        headers={"Origin": PUBLIC_URL},
    )
    assert answer.status_code == 200, answer.text


def sign_in(api: Api, wallet: LocalAccount) -> str:
    """A wallet session token (Sign-In with Ethereum)."""
    challenge = api.client.post("/api/buyer/challenge", json={"address": wallet.address}).json()
    signature = wallet.sign_message(encode_defunct(text=challenge["message"])).signature
    session = api.client.post(
        "/api/buyer/session", json={"message": challenge["message"], "signature": "0x" + signature.hex()}
    )
    assert session.status_code == 200, session.text
    token: str = session.json()["token"]
    return token


def read_keys(api: Api, order: str, headers: dict[str, str]) -> None:
    public = X25519PrivateKey.generate().public_key().public_bytes_raw()
    key = base64.urlsafe_b64encode(public).decode().rstrip("=")
    answer = api.client.post(f"/api/orders/{order}/keys", json={"public_key": key}, headers=headers)
    assert answer.status_code == 200, answer.text
