"""The authorization matrix, built from the app itself: every operation of the OpenAPI schema and
every WebSocket route, called with no credentials, with a buyer's wallet session, with another
buyer's order token and with an API token of each single scope. What each must answer is the
table below; a route the table does not name fails the test, so a new route cannot ship without
saying who may call it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi.routing import APIWebSocketRoute
from liandong.devtools.simulate import dev_account
from liandong.services.merchant_auth import SCOPES
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import Api
from tests.security.helpers import buy, product_with_keys, sign_in

PASS = "pass"
"""Authentication and authorization passed: anything but 401 and 403 (the call itself may still
be refused as invalid or not found: these calls carry no meaningful bodies)."""

Expect = dict[str, str | int]
"""Credential name → 401, 403, 404 or PASS."""

CREDENTIALS = ("none", "buyer", "other-order-token", *(f"scope:{scope}" for scope in sorted(SCOPES)))


def public() -> Expect:
    return dict.fromkeys(CREDENTIALS, PASS)


def scoped(scope: str) -> Expect:
    """A merchant route: a dashboard session or an API token holding `scope`."""
    assert scope in SCOPES
    expect: Expect = {"none": 401, "buyer": 401, "other-order-token": 401}
    return expect | {f"scope:{s}": PASS if s == scope else 403 for s in SCOPES}


def dashboard() -> Expect:
    """The account itself: a dashboard session only, never any API token."""
    return {"none": 401, "buyer": 401, "other-order-token": 401} | {f"scope:{s}": 403 for s in SCOPES}


def buyer_order() -> Expect:
    """An order of the victim's: only its token or its paying wallet (neither is tried here) open it;
    the wrong proof gets the same 404 as no such order."""
    return {"none": 401, "buyer": 404, "other-order-token": 404} | {f"scope:{s}": 401 for s in SCOPES}


def wallet() -> Expect:
    return {"none": 401, "buyer": PASS, "other-order-token": 401} | {f"scope:{s}": 401 for s in SCOPES}


HTTP: dict[tuple[str, str], Expect] = {
    ("GET", "/healthz"): public(),
    ("GET", "/api/shop"): public(),
    ("GET", "/api/products"): public(),
    ("POST", "/api/quotes"): public(),
    ("GET", "/api/orders/{order_id}"): buyer_order(),
    ("POST", "/api/orders/{order_id}/keys"): buyer_order(),
    ("POST", "/api/buyer/challenge"): public(),
    ("POST", "/api/buyer/session"): public(),
    ("GET", "/api/buyer/orders"): wallet(),
    ("POST", "/api/merchant/login"): public(),
    ("POST", "/api/merchant/logout"): public(),
    ("GET", "/api/merchant/me"): scoped("orders:read"),
    ("POST", "/api/merchant/password"): dashboard(),
    ("GET", "/api/merchant/tokens"): dashboard(),
    ("POST", "/api/merchant/tokens"): dashboard(),
    ("DELETE", "/api/merchant/tokens/{token_id}"): dashboard(),
    ("GET", "/api/merchant/channels"): scoped("orders:read"),
    ("PUT", "/api/merchant/channels"): scoped("channels:write"),
    ("GET", "/api/merchant/templates"): scoped("orders:read"),
    ("PUT", "/api/merchant/templates/{channel}/{variant}"): scoped("channels:write"),
    ("DELETE", "/api/merchant/templates/{channel}/{variant}"): scoped("channels:write"),
    ("GET", "/api/merchant/products"): scoped("products:read"),
    ("POST", "/api/merchant/products"): scoped("products:write"),
    ("GET", "/api/merchant/products/{product_id}"): scoped("products:read"),
    ("PATCH", "/api/merchant/products/{product_id}"): scoped("products:write"),
    ("POST", "/api/merchant/products/{product_id}/keys"): scoped("keys:import"),
    ("GET", "/api/merchant/imports/{job_id}"): scoped("keys:import"),
    ("GET", "/api/merchant/orders"): scoped("orders:read"),
    ("GET", "/api/merchant/orders/{order_id}"): scoped("orders:read"),
    ("POST", "/api/merchant/orders/{order_id}/refund"): scoped("orders:write"),
    ("POST", "/api/merchant/orders/{order_id}/resend"): scoped("orders:write"),
    ("GET", "/api/merchant/stats/efficiency"): scoped("stats:read"),
    ("GET", "/api/merchant/stats/sales"): scoped("stats:read"),
    ("GET", "/api/merchant/stats/abnormal"): scoped("stats:read"),
    ("GET", "/api/merchant/stats/stock"): scoped("stats:read"),
    ("GET", "/api/merchant/stats/templates"): scoped("stats:read"),
    ("GET", "/api/merchant/funds"): scoped("stats:read"),
}

BODIES: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/orders/{order_id}/keys"): {"public_key": "0x" + "11" * 32},
}
"""Valid bodies where the proof is checked after the body (a 422 there says nothing of the order)."""

OPEN, REFUSED = "open", "refused"
WEBSOCKETS: dict[str, dict[str, str]] = {
    # The order stream: only the order's token or its paying wallet's session, none of these.
    "/api/orders/{order_id}/events": dict.fromkeys(CREDENTIALS, REFUSED),
    # The merchant feed: a dashboard session or a token with orders:read.
    "/api/merchant/feed": dict.fromkeys(CREDENTIALS, REFUSED) | {"scope:orders:read": OPEN},
}


def websocket_paths(routes: Iterable[Any]) -> Iterator[str]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            yield from websocket_paths(route.original_router.routes)
        elif isinstance(route, APIWebSocketRoute):
            yield route.path


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """A victim's delivered order, another buyer's order, a signed-in wallet that paid neither,
    and a token per scope."""
    product = product_with_keys(api, "matrix", ["M-1", "M-2", "M-3"])
    victim, other = buy(api, product), buy(api, product)
    api.deliver(victim.order, dev_account(4).address)
    credentials: dict[str, dict[str, str]] = {
        "none": {},
        "buyer": {"Authorization": f"Bearer {sign_in(api, dev_account(7))}"},
        "other-order-token": {"X-Order-Token": other.token},
    }
    for scope in SCOPES:
        credentials[f"scope:{scope}"] = api.merchant_token(scope)
    values = {
        "order_id": victim.order,
        "product_id": str(product),
        "token_id": "1",
        "job_id": "job",
        "channel": "email",
        "variant": "A",
    }
    return {"credentials": credentials, "values": values, "other": other}


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def test_every_route_answers_each_credential_as_the_table_says(api: Api, world: dict[str, Any]) -> None:
    schema = api.client.get("/openapi.json").json()["paths"]
    operations = {(method.upper(), path) for path, methods in schema.items() for method in methods}
    assert sorted(operations - HTTP.keys()) == [], "routes without an entry in the matrix"
    assert sorted(HTTP.keys() - operations) == [], "matrix entries for routes that are gone"

    wrong = []
    for (method, template), expected in sorted(HTTP.items()):
        assert set(expected) == set(CREDENTIALS), (method, template)
        path = _fill(template, world["values"])
        for name, headers in world["credentials"].items():
            api.client.cookies.clear()
            body = None if method in ("GET", "DELETE") else BODIES.get((method, template), {})
            status = api.client.request(method, path, json=body, headers=headers).status_code
            want = expected[name]
            ok = status not in (401, 403) if want == PASS else status == want
            if not ok:
                wrong.append(f"{method} {template} as {name}: {status}, expected {want}")
    assert wrong == []


def test_every_websocket_answers_each_credential_as_the_table_says(api: Api, world: dict[str, Any]) -> None:
    found = set(websocket_paths(api.client.app.routes))  # type: ignore[attr-defined]
    assert found == set(WEBSOCKETS), "WebSocket routes without an entry in the matrix, or gone"
    wrong = []
    for template, expected in sorted(WEBSOCKETS.items()):
        path = _fill(template, world["values"])
        for name, headers in world["credentials"].items():
            outcome = _websocket(api, path, headers)
            if outcome != expected[name]:
                wrong.append(f"WS {template} as {name}: {outcome}, expected {expected[name]}")
    assert wrong == []


def _websocket(api: Api, path: str, headers: dict[str, str]) -> str:
    """Proves itself the way a client of that route would: the order stream with a first message,
    the feed with `?token=`; then sees whether anything is heard."""
    bearer = headers.get("Authorization", "").removeprefix("Bearer ")
    order_token = headers.get("X-Order-Token")
    feed = path.endswith("/feed")
    url = f"{path}?token={bearer}" if feed and bearer else path
    api.context.settings.ws_auth_seconds = 0.3
    try:
        with api.client.websocket_connect(url) as socket:
            if not feed:
                proof = {"type": "auth", "token": order_token} if order_token else {"type": "auth"}
                if bearer:
                    proof = {"type": "auth", "session": bearer}
                socket.send_json(proof)
                socket.receive_json()  # "ready" only for a proven stream
            return OPEN
    except WebSocketDisconnect:
        return REFUSED
