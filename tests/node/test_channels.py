"""A running node tells buyers through the merchant's channels: e-mail to a real SMTP server, and
when that server is down, a signed webhook to a real HTTP endpoint; every attempt is on record."""

from __future__ import annotations

import json
from typing import Any

import httpx
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.delivery.webhook import SIGNATURE_HEADER, verify_webhook_signature
from liandong.devtools.simulate import LocalShop
from liandong.services.merchant_auth import create_api_token, create_merchant
from liandong.store.models import DeliveryAttempt
from sqlmodel import Session, col, select

from tests.peers import Endpoint, Inbox, start_smtp

SECRET = "whsec-node-test"


def buy(shop: LocalShop, api: httpx.Client, product: int, email: str, buyer: int) -> str:
    payer = shop.buyer(buyer).account.address
    request = {"product_id": product, "token": NATIVE_COIN, "email": email, "buyer": payer}
    issued = api.post("/api/quotes", json=request)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    shop.buyer(buyer).pay(Quote.from_json(body["quote"]), bytes.fromhex(body["signature"][2:]))
    order: str = body["order"]
    return order


def attempts_of(shop: LocalShop, chain_order_id: str) -> list[tuple[str, bool]]:
    order_id = shop.order(chain_order_id).id
    with Session(shop.engine) as session:
        rows = session.exec(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.order_id == order_id)
            .order_by(col(DeliveryAttempt.id))
        ).all()
        return [(row.channel, row.succeeded) for row in rows]


def test_email_then_webhook_when_the_smtp_server_is_down(shop_factory: Any, endpoint: Endpoint) -> None:
    inbox = Inbox()
    smtp = start_smtp(inbox)
    shop = shop_factory(
        env={
            "LIANDONG_SMTP_HOST": "127.0.0.1",
            "LIANDONG_SMTP_PORT": str(smtp.port),
            "LIANDONG_SMTP_USERNAME": "shop",
            "LIANDONG_SMTP_PASSWORD": "pw",
            "LIANDONG_WEBHOOK_URL": endpoint.url,
            "LIANDONG_WEBHOOK_SECRET": SECRET,
        }
    )
    product = shop.add_product("gift-card", ["GIFT-0001", "GIFT-0002"])
    with Session(shop.engine) as session:
        merchant = create_merchant(session, "owner", "a long enough password")
        assert merchant.id is not None
        token, _ = create_api_token(
            session, merchant.id, "test", ["channels:write", "orders:read", "stats:read"]
        )
    shop.start()
    api = httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)
    merchant_headers = {"Authorization": f"Bearer {token}"}
    ordered = api.put(
        "/api/merchant/channels", json={"order": ["email", "webhook"]}, headers=merchant_headers
    )
    assert [c["name"] for c in ordered.json() if c["enabled"]] == ["email", "webhook"]

    first = buy(shop, api, product, "alice@example.com", buyer=4)
    shop.wait_for(lambda: inbox.envelopes, 20, "the e-mail")
    mail = inbox.message()
    assert mail["To"] == "alice@example.com"
    assert f"/orders/{first}" in mail.get_content()
    assert "GIFT-000" not in mail.as_string()  # the message points to the keys, never carries them
    shop.wait_for(lambda: attempts_of(shop, first) == [("email", True)], 10, "the attempt record")

    smtp.stop()  # the mail server goes down
    second = buy(shop, api, product, "bob@example.com", buyer=5)
    shop.wait_for(lambda: endpoint.requests, 30, "the webhook")
    [hook] = endpoint.requests
    verify_webhook_signature(SECRET, hook.headers[SIGNATURE_HEADER], hook.body)
    payload = json.loads(hook.body)
    assert (payload["event"], payload["order_id"]) == ("order.delivered", second)
    shop.wait_for(
        lambda: attempts_of(shop, second) == [("email", False), ("email", False), ("webhook", True)],
        10,
        "the attempts: e-mail twice, then the webhook",
    )
    abnormal = api.get("/api/merchant/stats/abnormal", headers=merchant_headers).json()["entries"]
    [entry] = [entry for entry in abnormal if entry["order"] == second]
    assert {"failed_attempt", "retried"} <= set(entry["reasons"])
    assert len(inbox.envelopes) == 1


def test_a_merchant_refund_goes_back_to_the_buyer_on_chain(shop_factory: Any) -> None:
    shop = shop_factory(confirmations=50)  # the order stays paid, waiting: the merchant refunds it
    product = shop.add_product("refundable", ["R-1"])
    with Session(shop.engine) as session:
        merchant = create_merchant(session, "owner", "a long enough password")
        assert merchant.id is not None
        token, _ = create_api_token(session, merchant.id, "test", ["orders:read", "orders:write"])
    shop.start()
    api = httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)
    buyer = shop.buyer(6)
    order = buy(shop, api, product, "carol@example.com", buyer=6)
    shop.wait_for(lambda: shop.order(order).status == "paid", 20, "the payment seen")
    balance = shop.w3.eth.get_balance(buyer.account.address)

    refund = api.post(
        f"/api/merchant/orders/{order}/refund",
        json={"reason": "customer asked"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refund.status_code == 202, refund.text
    shop.wait_for(lambda: shop.order(order).status == "refunded", 30, "the on-chain refund seen")
    assert shop.w3.eth.get_balance(buyer.account.address) == balance + int(shop.order(order).amount)
