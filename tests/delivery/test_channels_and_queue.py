"""The delivery engine's ordering and the channel failover, without a chain."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from liandong.chain.indexer import ConfirmedOrder
from liandong.delivery.channels import ChannelError, DeliveryNotice, InSiteChannel, notify
from liandong.delivery.engine import DeliveryEngine
from liandong.events import OrderEvent, OrderEventHub, StockEvent
from liandong.store.db import make_engine, migrate
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.service import Vault

NOTICE = DeliveryNotice(
    order_id=1,
    chain_order_id="0x" + "ab" * 32,
    product_name="Game key",
    quantity=1,
    email=None,
    phone=None,
    payer=None,
    commitment=None,
    order_url="http://shop.test/orders/0x" + "ab" * 32,
)


class BrokenChannel:
    """A channel whose server is down, as an SMTP relay that refuses connections."""

    name = "broken"

    attempts = 2
    backoff = 0.01

    async def send(self, notice: DeliveryNotice) -> str | None:
        raise ChannelError("connection refused", variant="B")


def test_a_failing_channel_is_retried_then_hands_over_and_every_attempt_is_recorded() -> None:
    hub = OrderEventHub()
    hub.subscribe(NOTICE.chain_order_id)  # the buyer's order page is open
    hub.acknowledge(NOTICE.chain_order_id)  # and says it opened the keys
    attempts = asyncio.run(notify([BrokenChannel(), InSiteChannel(hub), BrokenChannel()], NOTICE))
    assert [(a.channel, a.succeeded) for a in attempts] == [
        ("broken", False),
        ("broken", False),
        ("in-site", True),
    ]
    assert attempts[0].error == "connection refused"
    assert attempts[0].variant == "B"


def test_the_in_site_channel_fails_over_when_no_order_page_is_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="liandong.delivery.channels")
    attempts = asyncio.run(notify([InSiteChannel(OrderEventHub()), BrokenChannel()], NOTICE))
    assert [(a.channel, a.succeeded) for a in attempts] == [("in-site", False)] + [("broken", False)] * 2
    assert attempts[0].error == "the order page is not open"
    # A buyer with no page open is the usual case, not a fault: only the broken channel warns.
    levels = [(record.levelno, record.getMessage().split(" failed")[0]) for record in caplog.records]
    assert levels == [(logging.INFO, "channel in-site")] + [(logging.WARNING, "channel broken")] * 2


def test_order_events_reach_the_order_page_and_the_merchant_feed_stock_only_the_feed() -> None:
    hub = OrderEventHub()
    page, feed, other = hub.subscribe(NOTICE.chain_order_id), hub.subscribe_feed(), hub.subscribe("0x01")
    hub.publish(OrderEvent(NOTICE.chain_order_id.upper().replace("0X", "0x"), "paid"))
    hub.publish_stock(StockEvent(1, -1))
    paid = {"type": "order", "order": NOTICE.chain_order_id.lower(), "status": "paid"}
    assert page.get_nowait() == paid
    assert page.empty()
    assert feed.get_nowait() == paid
    assert feed.get_nowait() == {"type": "stock", "product_id": 1, "change": -1}
    assert other.empty()


def test_a_slow_reader_never_blocks_the_hub() -> None:
    hub = OrderEventHub()
    queue = hub.subscribe(NOTICE.chain_order_id)
    for n in range(100):
        hub.publish(OrderEvent(NOTICE.chain_order_id, "paid", confirmations=n))
    assert queue.qsize() == 64
    assert queue.get_nowait()["confirmations"] == 36  # the oldest events gave way


def test_bigger_and_returning_buyers_are_served_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate(url)
    engine = DeliveryEngine(
        make_engine(url), Vault(Keyring(MasterKey.generate(), ())), [], lambda _: None, workers=1
    )

    async def order_of_service() -> list[int]:
        engine.enqueue(
            [ConfirmedOrder(1, 10), ConfirmedOrder(2, 300), ConfirmedOrder(3, 60), ConfirmedOrder(4, 60)]
        )
        return [engine.queue.get_nowait()[2] for _ in range(4)]

    assert asyncio.run(order_of_service()) == [2, 3, 4, 1]  # ties keep their arrival order
