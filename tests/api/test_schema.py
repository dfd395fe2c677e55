"""schemathesis: requests generated from the app's own OpenAPI schema never get a 5xx, whether
anonymous or with a merchant token holding every scope, against a shop with data in it."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from liandong.devtools.simulate import dev_account
from liandong.services.merchant_auth import SCOPES
from schemathesis.checks import not_a_server_error

from tests.api.conftest import Api


@pytest.fixture
def shop_schema(api: Api) -> Any:
    headers = api.merchant_token(*sorted(SCOPES))
    product = api.add_product("schema-game", [f"S-{n}" for n in range(20)], headers)
    quote = api.client.post(
        "/api/quotes", json={"product_id": product, "token": "0x" + "00" * 20, "open": True}
    ).json()
    api.deliver(quote["order"], dev_account(4).address)
    return schemathesis.openapi.from_asgi("/openapi.json", api.client.app)


schema = schemathesis.pytest.from_fixture("shop_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: Any, api: Api) -> None:
    # A fresh token per case: a generated call may well revoke the token it was sent with.
    for headers in (None, api.merchant_token(*sorted(SCOPES))):
        case.call_and_validate(headers=headers, checks=[not_a_server_error])
