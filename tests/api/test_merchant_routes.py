"""The merchant's API: imports (all or nothing, with progress), orders, refunds, resends,
channel order, message templates and the figures of the efficiency board."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from liandong.chain.quotes import NATIVE_COIN
from liandong.devtools.simulate import dev_account
from liandong.store.models import OrderStatus, ShopOrder, utcnow
from sqlmodel import Session, select

from tests.api.conftest import Api


@pytest.fixture
def merchant(api: Api) -> dict[str, str]:
    scopes = ("products:read", "products:write", "keys:import", "orders:read", "orders:write")
    return api.merchant_token(*scopes, "stats:read", "channels:write")


ACCESS_TOKENS: dict[str, str] = {}
"""Each order's token, as its buyer's page keeps it."""


def new_order(api: Api, product_id: int) -> str:
    response = api.client.post(
        "/api/quotes", json={"product_id": product_id, "token": NATIVE_COIN, "open": True}
    )
    assert response.status_code == 201, response.text
    order: str = response.json()["order"]
    ACCESS_TOKENS[order] = response.json()["access_token"]
    return order


def stock(api: Api, product_id: int, headers: dict[str, str]) -> int:
    available: int = api.client.get(f"/api/merchant/products/{product_id}", headers=headers).json()[
        "available"
    ]
    return available


def test_a_bad_key_file_imports_nothing_and_names_the_line(api: Api, merchant: dict[str, str]) -> None:
    product = api.add_product("game", ["A-1"], merchant)
    bad = "B-1\nB-2\nB-3\x07\nB-4"
    response = api.client.post(
        f"/api/merchant/products/{product}/keys?filename=batch.txt",
        content=bad,
        headers={**merchant, "Content-Type": "text/plain"},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "line 3: control character U+0007 in key"
    assert stock(api, product, merchant) == 1
    csv = api.client.post(
        f"/api/merchant/products/{product}/keys?filename=batch.csv",
        content="id,key\n1,C-1\n2,C-2\n",
        headers={**merchant, "Content-Type": "text/csv"},
    )
    assert csv.status_code == 201, csv.text
    assert csv.json()["imported"] == 2
    missing = api.client.post("/api/merchant/products/999/keys", content="X", headers=merchant)
    assert missing.status_code == 404


def test_a_large_import_reports_progress_until_done(api: Api, merchant: dict[str, str]) -> None:
    product = api.add_product("bulk", [], merchant)
    keys = "\n".join(f"BULK-{n:06d}-{n * 7919 % 100003:05d}" for n in range(60_000))
    response = api.client.post(
        f"/api/merchant/products/{product}/keys",
        content=keys,
        headers={**merchant, "Content-Type": "text/plain"},
    )
    assert response.status_code in (201, 202)
    job = response.json()
    seen = {job["stage"]}
    deadline = time.monotonic() + 60
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        job = api.client.get(f"/api/merchant/imports/{job['id']}", headers=merchant).json()
        seen.add(job["stage"])
    assert job["state"] == "done", job
    assert job["imported"] == 60_000
    assert stock(api, product, merchant) == 60_000
    if response.status_code == 202:  # answered before the end: progress was visible meanwhile
        assert seen & {"encrypting", "storing"}


def test_orders_are_searchable_with_a_timeline_and_refundable_until_delivered(
    api: Api, merchant: dict[str, str]
) -> None:
    product = api.add_product("game", ["K-1", "K-2"], merchant)
    delivered, paid, quoted = new_order(api, product), new_order(api, product), new_order(api, product)
    api.deliver(delivered, dev_account(4).address)
    with Session(api.context.engine) as session:
        order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == paid)).one()
        order.status, order.payer = OrderStatus.CONFIRMED, dev_account(5).address
        session.add(order)
        session.commit()

    page = api.client.get("/api/merchant/orders", params={"status": "delivered"}, headers=merchant).json()
    assert [o["order"] for o in page["orders"]] == [delivered]
    by_buyer = api.client.get(
        "/api/merchant/orders", params={"buyer": dev_account(5).address}, headers=merchant
    )
    assert [o["order"] for o in by_buyer.json()["orders"]] == [paid]
    assert (
        api.client.get("/api/merchant/orders", params={"status": "lost"}, headers=merchant).status_code == 422
    )
    detail = api.client.get(f"/api/merchant/orders/{delivered}", headers=merchant).json()
    assert [entry["event"] for entry in detail["timeline"]] == ["quoted", "keys claimed", "delivered"]

    refused = api.client.post(f"/api/merchant/orders/{delivered}/refund", json={}, headers=merchant)
    assert refused.status_code == 409
    assert "only paid orders not yet delivered" in refused.json()["detail"]
    assert (
        api.client.post(f"/api/merchant/orders/{quoted}/refund", json={}, headers=merchant).status_code == 409
    )
    with api.client.websocket_connect(f"/api/orders/{paid}/events") as page_events:
        page_events.send_json({"type": "auth", "token": ACCESS_TOKENS[paid]})
        assert page_events.receive_json()["type"] == "ready"
        refund = api.client.post(
            f"/api/merchant/orders/{paid}/refund", json={"reason": "asked"}, headers=merchant
        )
        assert refund.status_code == 202
        assert page_events.receive_json()["status"] == "refunding"
    after = api.client.get(f"/api/merchant/orders/{paid}", headers=merchant).json()
    assert (after["status"], after["refund_reason"]) == ("refunding", "asked")


def test_resend_tries_the_channels_in_the_merchants_order_and_records_it(
    api: Api, merchant: dict[str, str]
) -> None:
    product = api.add_product("game", ["K-1"], merchant)
    order = new_order(api, product)
    assert api.client.post(f"/api/merchant/orders/{order}/resend", headers=merchant).status_code == 409
    api.deliver(order, dev_account(4).address)

    channels = api.client.put(
        "/api/merchant/channels", json={"order": ["email", "in-site"]}, headers=merchant
    )
    assert channels.status_code == 200
    assert [(c["name"], c["enabled"], c["configured"]) for c in channels.json()][:2] == [
        ("email", True, False),
        ("in-site", True, True),
    ]
    bad = api.client.put("/api/merchant/channels", json={"order": ["pigeon"]}, headers=merchant)
    assert bad.status_code == 422
    attempts = api.client.post(f"/api/merchant/orders/{order}/resend", headers=merchant).json()
    assert [(a["channel"], a["succeeded"], a["error"]) for a in attempts] == [
        ("in-site", False, "the order page is not open")
    ]  # e-mail is not configured here, so it is skipped
    detail = api.client.get(f"/api/merchant/orders/{order}", headers=merchant).json()
    assert [a["channel"] for a in detail["attempts"]] == ["in-site"]


def test_templates_are_checked_before_they_are_saved(api: Api, merchant: dict[str, str]) -> None:
    good = {"subject": "Ready: {{ product_name }}", "body": "Open {{ order_url }}", "weight": 3}
    saved = api.client.put("/api/merchant/templates/email/C", json=good, headers=merchant)
    assert saved.status_code == 200, saved.text
    for body in ("{{ ''.__class__.__mro__ }}", "{{ secret_key }}", "{% if %}"):
        refused = api.client.put(
            "/api/merchant/templates/email/D", json={"subject": "x", "body": body}, headers=merchant
        )
        assert refused.status_code == 422, body
    assert api.client.put("/api/merchant/templates/in-site/A", json=good, headers=merchant).status_code == 422
    listed = api.client.get("/api/merchant/templates", headers=merchant).json()
    assert {(t["channel"], t["variant"], t["built_in"]) for t in listed} >= {("email", "C", False)}
    assert api.context.templates.variants("email")[0].variant == "C"  # the node uses it at once
    assert api.client.delete("/api/merchant/templates/email/C", headers=merchant).status_code == 204
    assert api.client.delete("/api/merchant/templates/email/C", headers=merchant).status_code == 404


def test_the_board_reports_latency_sales_stock_and_the_abnormal_log(
    api: Api, merchant: dict[str, str]
) -> None:
    product = api.add_product("game", ["K-1", "K-2", "K-3"], merchant)
    fast, slow = new_order(api, product), new_order(api, product)
    api.deliver(fast, dev_account(4).address)
    api.deliver(slow, dev_account(5).address)
    with Session(api.context.engine) as session:  # payment inclusion times, as the indexer writes them
        for chain_order_id, seconds in ((fast, 1.5), (slow, 42.0)):
            order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id)).one()
            assert order.delivered_at is not None
            order.block_time = order.seen_at = order.delivered_at - timedelta(seconds=seconds)
            session.add(order)
        session.commit()

    board = api.client.get("/api/merchant/stats/efficiency", headers=merchant).json()
    assert board["payment_to_delivery"]["count"] == 2
    assert (board["within_threshold"], board["share_within"], board["alert"]) == (1, 0.5, True)
    sales = api.client.get("/api/merchant/stats/sales", headers=merchant).json()
    assert sales["orders"] == 2
    assert sales["by_token"][0]["revenue"] == str(2 * 10**16)
    [level] = api.client.get("/api/merchant/stats/stock", headers=merchant).json()
    assert (level["available"], level["sold"], level["total"]) == (1, 2, 3)
    abnormal = api.client.get("/api/merchant/stats/abnormal", headers=merchant).json()
    assert [(entry["order"], entry["reasons"]) for entry in abnormal["entries"]] == [(slow, ["slow"])]
    window = {"since": utcnow().isoformat(), "until": (utcnow() - timedelta(hours=1)).isoformat()}
    assert api.client.get("/api/merchant/stats/sales", params=window, headers=merchant).status_code == 422
    assert api.client.get("/api/merchant/stats/templates", headers=merchant).status_code == 200
