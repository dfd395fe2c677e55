"""Issue 12, item 6: status reads, WebSocket opens and key reads each have their own budget, so an
order page load (one of each) behind a carrier NAT does not spend the others'."""

from __future__ import annotations

import pytest
from liandong.devtools.simulate import dev_account
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import ApiFactory
from tests.security.helpers import buy, product_with_keys, read_keys


def test_status_reads_behind_one_nat_address_do_not_spend_the_key_budget(api_factory: ApiFactory) -> None:
    with api_factory(
        key_rate_limit="2/minute", status_rate_limit="6/minute", ws_rate_limit="3/minute", ws_auth_seconds=0.2
    ) as api:
        product = product_with_keys(api, "nat", ["N-1", "N-2", "N-3"])
        bought = buy(api, product)
        api.deliver(bought.order, dev_account(4).address)
        proof = {"X-Order-Token": bought.token}
        for _ in range(6):  # six buyers behind one address load their pages
            assert api.client.get(f"/api/orders/{bought.order}", headers=proof).status_code == 200
        busy = api.client.get(f"/api/orders/{bought.order}", headers=proof)
        assert busy.status_code == 429
        assert int(busy.headers["Retry-After"]) >= 1
        read_keys(api, bought.order, proof)  # the key budget is untouched by the status reads
        read_keys(api, bought.order, proof)
        public = "0x" + "11" * 32
        limited = api.client.post(
            f"/api/orders/{bought.order}/keys", json={"public_key": public}, headers=proof
        )
        assert limited.status_code == 429
        assert "Retry-After" in limited.headers

        path = f"/api/orders/{bought.order}/events"
        for _ in range(3):  # WebSocket opens: their own budget too
            with api.client.websocket_connect(path) as page:
                page.send_json({"type": "auth", "token": bought.token})
                assert page.receive_json()["type"] == "ready"
        with pytest.raises(WebSocketDisconnect) as refused:
            api.client.websocket_connect(path).__enter__()
        assert refused.value.code == 1013
