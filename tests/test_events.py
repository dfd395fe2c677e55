"""The event hub's routing of sealed keys: each box to the one subscription it was sealed for,
never to another page of the order, never to the merchant feed."""

from __future__ import annotations

import asyncio

from liandong.events import KeyRecipient, OrderEvent, OrderEventHub

ORDER = "0x" + "ab" * 32


def test_a_box_goes_only_to_the_page_it_was_sealed_for() -> None:
    async def run() -> None:
        hub = OrderEventHub()
        alice = KeyRecipient(b"\x01" * 32, "token")
        mine = hub.subscribe(ORDER, alice)
        other = hub.subscribe(ORDER, KeyRecipient(b"\x02" * 32, "wallet"))
        plain = hub.subscribe(ORDER)
        feed = hub.subscribe_feed()
        assert [r.via for r in hub.recipients("0x" + "AB" * 32)] == ["token", "wallet"]

        hub.publish_delivered(OrderEvent(ORDER, "delivered", commitment="0x01"), {alice: {"box": "A"}})
        assert mine.get_nowait()["keys"] == {"box": "A"}
        for queue in (other, plain, feed):
            event = queue.get_nowait()
            assert event["status"] == "delivered"
            assert "keys" not in event

        hub.unsubscribe(ORDER, mine)
        assert [r.via for r in hub.recipients(ORDER)] == ["wallet"]
        hub.unsubscribe(ORDER, other)
        assert hub.recipients(ORDER) == ()

    asyncio.run(run())
