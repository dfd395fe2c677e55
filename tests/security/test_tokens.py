"""Issue 12, item 1: an API token cannot mint a stronger token, nor revoke others."""

from __future__ import annotations

import pytest
from liandong.services.merchant_auth import ScopeError, create_api_token, revoke_api_token
from sqlmodel import Session

from tests.api.conftest import Api
from tests.security.helpers import ALL_SCOPES, login


def test_orders_read_token_cannot_mint_all_scopes(api: Api) -> None:
    reader = api.merchant_token("orders:read")
    minted = api.client.post(
        "/api/merchant/tokens", json={"name": "escalated", "scopes": list(ALL_SCOPES)}, headers=reader
    )
    assert minted.status_code == 403, minted.text
    assert "dashboard session" in minted.json()["detail"]
    assert api.client.get("/api/merchant/tokens", headers=reader).status_code == 403
    # No token of any scope set manages tokens: not even one holding all of them.
    strongest = api.merchant_token(*ALL_SCOPES)
    assert (
        api.client.post(
            "/api/merchant/tokens", json={"name": "x", "scopes": ["orders:read"]}, headers=strongest
        ).status_code
        == 403
    )
    login(api)
    listed = api.client.get("/api/merchant/tokens").json()
    assert {tuple(t["scopes"]) for t in listed} == {("orders:read",), tuple(sorted(ALL_SCOPES))}


def test_orders_read_token_cannot_revoke_other_tokens(api: Api) -> None:
    reader = api.merchant_token("orders:read")
    importer = api.merchant_token("keys:import", "products:read")
    login(api)
    [victim] = [t for t in api.client.get("/api/merchant/tokens").json() if "keys:import" in t["scopes"]]
    api.client.cookies.clear()
    refused = api.client.delete(f"/api/merchant/tokens/{victim['id']}", headers=reader)
    assert refused.status_code == 403
    assert api.client.get("/api/merchant/products", headers=importer).status_code == 200  # still valid


def test_a_token_is_never_created_or_revoked_beyond_its_creators_scopes(api: Api) -> None:
    """The service's own rule, whoever calls it (a route opened to tokens one day, the CLI)."""
    with Session(api.context.engine) as session:
        with pytest.raises(ScopeError, match="keys:import"):
            create_api_token(session, 1, "escalated", ALL_SCOPES, allowed={"orders:read"})
        _, strong = create_api_token(session, 1, "strong", ["orders:write", "orders:read"])
        assert strong.id is not None
        with pytest.raises(ScopeError):
            revoke_api_token(session, 1, strong.id, allowed={"orders:read"})
        within, _ = create_api_token(session, 1, "within", ["orders:read"], allowed={"orders:read"})
        assert within.startswith("ld_")
    login(api)
    made = api.client.post(
        "/api/merchant/tokens", json={"name": "from the dashboard", "scopes": ["stats:read"]}
    )
    assert made.status_code == 201, made.text
