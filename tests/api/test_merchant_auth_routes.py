"""Every merchant route refuses anonymous calls; tokens are scoped and revocable; sessions work."""

from __future__ import annotations

import re

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import MERCHANT, Api

PUBLIC_MERCHANT_ROUTES = {"/api/merchant/login", "/api/merchant/logout"}
PATH_VALUES = {
    "product_id": "1",
    "order_id": "0x" + "00" * 32,
    "job_id": "job",
    "token_id": "1",
    "channel": "email",
    "variant": "A",
}


def merchant_routes(api: Api) -> list[tuple[str, str]]:
    """Every merchant operation of the app's OpenAPI schema, with its path filled in."""
    routes = []
    for template, operations in api.client.get("/openapi.json").json()["paths"].items():
        if template.startswith("/api/merchant") and template not in PUBLIC_MERCHANT_ROUTES:
            path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], template)
            routes += [(method.upper(), path) for method in operations]
    return routes


def test_every_merchant_route_refuses_anonymous_calls(api: Api) -> None:
    routes = merchant_routes(api)
    assert len(routes) >= 25  # the list is read from the app: a new route is covered by itself
    for method, path in routes:
        response = api.client.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_forged_or_revoked_token_is_refused_and_a_scope_is_enforced(api: Api) -> None:
    assert (
        api.client.get("/api/merchant/orders", headers={"Authorization": "Bearer ld_forged"}).status_code
        == 401
    )
    reader = api.merchant_token("orders:read")
    assert api.client.get("/api/merchant/orders", headers=reader).status_code == 200
    refused = api.client.post("/api/merchant/products", json={"sku": "x", "name": "x"}, headers=reader)
    assert refused.status_code == 403
    assert "products:write" in refused.json()["detail"]

    login(api)  # tokens are managed from a dashboard session
    [listed] = [t for t in api.client.get("/api/merchant/tokens").json() if t["scopes"] == ["orders:read"]]
    assert api.client.delete(f"/api/merchant/tokens/{listed['id']}").status_code == 200
    assert api.client.get("/api/merchant/orders", headers=reader).status_code == 401


def login(api: Api) -> None:
    answer = api.client.post("/api/merchant/login", json={"username": MERCHANT[0], "password": MERCHANT[1]})
    assert answer.status_code == 200, answer.text


def test_password_login_sets_a_session_cookie_that_logout_ends(api: Api) -> None:
    wrong = api.client.post(
        "/api/merchant/login", json={"username": MERCHANT[0], "password": "not it at all"}
    )
    assert wrong.status_code == 401
    assert "liandong_session" not in api.client.cookies

    login = api.client.post("/api/merchant/login", json={"username": MERCHANT[0], "password": MERCHANT[1]})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert api.client.get("/api/merchant/me").json()["username"] == MERCHANT[0]
    assert api.client.get("/api/merchant/stats/efficiency").status_code == 200  # a session has every scope

    session_token = api.client.cookies["liandong_session"]
    assert api.client.post("/api/merchant/logout").status_code == 204
    api.client.cookies.set("liandong_session", session_token)  # replaying the old cookie
    assert api.client.get("/api/merchant/me").status_code == 401


def test_the_live_feed_refuses_anonymous_clients(api: Api) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        api.client.websocket_connect("/api/merchant/feed") as feed,
    ):
        feed.receive_json()
    assert refused.value.code == 1008
    headers = api.merchant_token("orders:read", "products:write", "keys:import")
    token = headers["Authorization"].removeprefix("Bearer ")
    product_id = api.add_product("feed-demo", [], headers)
    with api.client.websocket_connect(f"/api/merchant/feed?token={token}") as feed:
        api.import_keys(product_id, ["K-1", "K-2", "K-3"], headers)
        assert feed.receive_json() == {"type": "stock", "product_id": product_id, "change": 3}
