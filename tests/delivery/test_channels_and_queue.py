"""The delivery engine's ordering and the channel failover, without a chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

from liandong.chain.indexer import ConfirmedOrder
from liandong.delivery.channels import ChannelError, DeliveryNotice, InSiteChannel, OrderEventHub, notify
from liandong.delivery.engine import DeliveryEngine
from liandong.store.db import make_engine, migrate
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.service import Vault

NOTICE = DeliveryNotice(order_id=1, chain_order_id="0x" + "ab" * 32, email=None, payer=None)


class BrokenChannel:
    """A channel whose server is down, as an SMTP relay that refuses connections."""

    name = "broken"

    async def send(self, notice: DeliveryNotice) -> None:
        raise ChannelError("connection refused")


def test_a_failing_channel_hands_over_to_the_next_and_every_attempt_is_recorded() -> None:
    hub = OrderEventHub()
    events = hub.subscribe(NOTICE.chain_order_id)
    attempts = asyncio.run(notify([BrokenChannel(), InSiteChannel(hub), BrokenChannel()], NOTICE))
    assert [(a.channel, a.succeeded) for a in attempts] == [("broken", False), ("in-site", True)]
    assert attempts[0].error == "connection refused"
    assert events.get_nowait() == {"order": NOTICE.chain_order_id, "status": "delivered"}


def test_all_channels_failing_is_recorded_as_such() -> None:
    attempts = asyncio.run(notify([BrokenChannel(), BrokenChannel()], NOTICE))
    assert [a.succeeded for a in attempts] == [False, False]


def test_a_slow_reader_never_blocks_the_hub() -> None:
    hub = OrderEventHub()
    queue = hub.subscribe(NOTICE.chain_order_id)
    for n in range(100):
        hub.publish(NOTICE.chain_order_id, {"n": n})
    assert queue.qsize() == 64
    assert queue.get_nowait() == {"n": 36}  # the oldest events gave way


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
