"""Issue 12, item 2: nobody hears the merchant feed or an order's stream without proof, and the
in-site channel counts only when the buyer's own page opened the keys."""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from liandong.delivery.channels import DeliveryNotice, delivery_notice
from liandong.devtools.simulate import dev_account
from liandong.events import OrderEvent
from liandong.store.models import DeliveryAttempt, Product, ShopOrder
from sqlmodel import Session, select
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tests.api.conftest import PUBLIC_URL, Api, ApiFactory
from tests.peers import Inbox
from tests.security.helpers import buy, product_with_keys, read_keys, sign_in


def refused(api: Api, path: str, first: dict[str, Any] | None = None) -> int:
    """Connects, sends `first` (if any), and returns the close code; fails if anything is heard."""
    with pytest.raises(WebSocketDisconnect) as closed, api.client.websocket_connect(path) as socket:  # noqa: PT012
        if first is not None:
            socket.send_json(first)
        heard = socket.receive_json()
        raise AssertionError(f"{path} let an unproven client hear {heard}")
    return closed.value.code


def test_anonymous_client_on_the_merchant_feed_topic_as_an_order_id_hears_nothing(api: Api) -> None:
    for path in ("/api/orders/merchant/events", "/api/orders/MERCHANT/events", "/api/orders/order:x/events"):
        assert refused(api, path) == 1008
    assert refused(api, "/api/merchant/feed") == 1008


def test_anonymous_stream_on_a_real_order_is_refused(api_factory: ApiFactory) -> None:
    with api_factory(ws_auth_seconds=0.5) as api:
        product = product_with_keys(api, "ws-keys", ["WS-1", "WS-2"])
        mine, other = buy(api, product), buy(api, product)
        path = f"/api/orders/{mine.order}/events"
        api.context.hub.publish(OrderEvent(mine.order, "paid"))
        assert refused(api, path) == 1008  # silent: closed when the time to prove it is up
        assert refused(api, path, {"type": "auth", "token": "forged"}) == 1008
        assert refused(api, path, {"type": "auth", "token": other.token}) == 1008  # another order's
        assert refused(api, path, {"type": "auth", "session": "not a session"}) == 1008
        # A wallet that did not pay this order (it paid nothing) opens nothing either.
        assert refused(api, path, {"type": "auth", "session": sign_in(api, dev_account(7))}) == 1008

        with api.client.websocket_connect(path) as page:
            page.send_json({"type": "auth", "token": mine.token})
            assert page.receive_json() == {"type": "ready", "order": mine.order}
            api.context.hub.publish(OrderEvent(mine.order, "confirmed"))
            assert page.receive_json()["status"] == "confirmed"


def _set_channels(api: Api, order: list[str]) -> None:
    with Session(api.context.engine) as session:
        api.context.channels.set_order(session, order)
    api.context.on_channels_changed()


def _notice(api: Api, chain_order_id: str) -> DeliveryNotice:
    with Session(api.context.engine) as session:
        order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id)).one()
        product = session.get(Product, order.product_id)
        assert product is not None
        return delivery_notice(order, product.name, PUBLIC_URL)


def _notify(api: Api, notice: DeliveryNotice) -> concurrent.futures.Future[list[DeliveryAttempt]]:
    """The engine's notify, in the app's own event loop (where the hub and the sockets live)."""
    return api.client.portal.start_task_soon(api.delivery.notify, [notice])  # type: ignore[union-attr]


@contextlib.contextmanager
def _authed(api: Api, order: str, token: str) -> Iterator[WebSocketTestSession]:
    with api.client.websocket_connect(f"/api/orders/{order}/events") as page:
        page.send_json({"type": "auth", "token": token})
        assert page.receive_json()["type"] == "ready"
        yield page


def test_in_site_is_not_counted_without_the_buyers_ack_and_email_is_tried(
    api_factory: ApiFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    with api_factory(smtp_host="127.0.0.1", smtp_port=port, in_site_ack_seconds=0.5) as api:
        _set_channels(api, ["in-site", "email"])
        product = product_with_keys(api, "in-site", ["IS-1", "IS-2"])
        silent = buy(api, product, email="alice@example.com")
        api.deliver(silent.order, dev_account(4).address)
        with _authed(api, silent.order, silent.token):  # open, proven, but never opens the keys
            attempts = _notify(api, _notice(api, silent.order)).result(timeout=20)
        assert [(a.channel, a.succeeded) for a in attempts] == [("in-site", False), ("email", True)]
        assert "did not confirm" in (attempts[0].error or "")
        assert inbox.message()["To"] == "alice@example.com"

        # The buyer's page opens the keys and acknowledges them: in-site counts, no e-mail.
        seen = buy(api, product, email="bob@example.com")
        api.deliver(seen.order, dev_account(5).address)
        with _authed(api, seen.order, seen.token) as page:
            page.send_json({"type": "ack"})  # before reading the keys: not believed
            pending = _notify(api, _notice(api, seen.order))
            read_keys(api, seen.order, {"X-Order-Token": seen.token})
            page.send_json({"type": "ack"})
            attempts = pending.result(timeout=20)
        assert [(a.channel, a.succeeded) for a in attempts] == [("in-site", True)]
        assert len(inbox.envelopes) == 1
