"""Issue 12, item 8: password guessing is slowed per account, and a logged-in browser cannot be
made to write from another site (a sibling subdomain's forged text/plain key import above all)."""

from __future__ import annotations

from datetime import timedelta

from liandong.services.merchant_auth import AccountLockedError, AuthError
from liandong.services.merchant_auth import login as service_login
from liandong.store.models import utcnow
from sqlmodel import Session

from tests.api.conftest import MERCHANT, PUBLIC_URL, Api, ApiFactory
from tests.security.helpers import ALL_SCOPES, login


def _try(api: Api, password: str, address: str) -> int:
    # Each guess from another address: a per-address budget alone would never stop them.
    answer = api.client.post(
        "/api/merchant/login",
        json={"username": MERCHANT[0], "password": password},
        headers={"X-Forwarded-For": address},
    )
    return answer.status_code


def test_password_guessing_from_many_addresses_locks_the_account(api_factory: ApiFactory) -> None:
    with api_factory(login_lockout_after=3, login_lockout_seconds=60) as api:
        assert [_try(api, f"guess number {n}", f"198.51.100.{n}") for n in range(3)] == [401, 401, 401]
        locked = api.client.post(
            "/api/merchant/login", json={"username": MERCHANT[0], "password": MERCHANT[1]}
        )
        assert locked.status_code == 429  # even the right password waits out the lock
        assert 30 <= int(locked.headers["Retry-After"]) <= 60
        assert "try again" in locked.json()["detail"]
        # Unknown accounts are not locked (nor told apart): still the plain refusal.
        unknown = api.client.post("/api/merchant/login", json={"username": "nobody", "password": "x" * 12})
        assert unknown.status_code == 401


def test_the_lock_doubles_and_a_good_password_after_it_resets_the_count(api_factory: ApiFactory) -> None:
    with api_factory() as api, Session(api.context.engine) as session:
        start = utcnow()

        def attempt(password: str, after: float) -> str:
            try:
                service_login(
                    session,
                    MERCHANT[0],
                    password,
                    1,
                    now=start + timedelta(seconds=after),
                    lockout_after=2,
                    lockout_seconds=10,
                )
            except AccountLockedError as error:
                return f"locked {error.retry_after}"
            except AuthError:
                return "refused"
            return "in"

        assert attempt("wrong one ...", 0) == "refused"
        assert attempt("wrong two ...", 0) == "refused"  # second failure: locked 10 s
        assert attempt(MERCHANT[1], 5) == "locked 5"
        assert attempt("wrong three ..", 11) == "refused"  # third failure: locked 20 s
        assert attempt(MERCHANT[1], 20) == "locked 11"
        assert attempt(MERCHANT[1], 32) == "in"
        assert attempt("wrong again ..", 32) == "refused"  # the count started over
        assert attempt(MERCHANT[1], 32) == "in"


def test_cross_site_text_plain_key_import_with_the_session_cookie_is_refused(api: Api) -> None:
    product = api.add_product("csrf", [], api.merchant_token(*ALL_SCOPES))
    login(api)
    path = f"/api/merchant/products/{product}/keys"
    forged = {"Content-Type": "text/plain"}
    for origin in ("https://evil.shop.test", "http://shop.test.evil.example", "null"):
        answer = api.client.post(path, content="STOLEN-1\nSTOLEN-2", headers={**forged, "Origin": origin})
        assert answer.status_code == 403, (origin, answer.text)
    del api.client.headers["Origin"]  # neither Origin nor Referer: refused as well
    assert api.client.post(path, content="STOLEN-3", headers=forged).status_code == 403
    other_page = {**forged, "Referer": "https://evil.shop.test/page"}
    assert api.client.post(path, content="STOLEN-4", headers=other_page).status_code == 403
    # Every other cookie-authenticated write is checked the same way.
    assert api.client.post("/api/merchant/products", json={"sku": "x", "name": "x"}).status_code == 403
    assert api.client.post("/api/merchant/logout").status_code == 403
    detail = api.client.get(f"/api/merchant/products/{product}").json()
    assert detail["available"] == 0  # nothing was imported

    own_page = {**forged, "Referer": f"{PUBLIC_URL}/merchant"}
    assert api.client.post(path, content="REAL-1", headers=own_page).status_code == 201
    assert (
        api.client.post(path, content="REAL-2", headers={**forged, "Origin": PUBLIC_URL}).status_code == 201
    )
    # An API token is no ambient credential: no Origin needed.
    token = api.merchant_token("keys:import")
    assert api.client.post(path, content="REAL-3", headers={**forged, **token}).status_code == 201
