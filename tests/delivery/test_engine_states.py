"""The engine's own decisions, on a real store without a chain: an order too close to its delivery
deadline is refunded (and its page hears so), a delivered order's notice carries its commitment and
stays due until the channels ran."""

from __future__ import annotations

import asyncio

from liandong.delivery.channels import DeliveryNotice
from liandong.delivery.engine import WINDOW_TOO_SHORT, DeliveryEngine
from liandong.events import OrderEventHub
from liandong.store.models import OrderStatus, ShopOrder
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session

from tests.rows import confirmed_order
from tests.vault.conftest import add_product

NOW = 1_800_000_000


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.notices: list[DeliveryNotice] = []

    async def send(self, notice: DeliveryNotice) -> str | None:
        self.notices.append(notice)
        return None


def test_too_close_to_the_deadline_is_refunded_and_a_delivery_notice_carries_its_commitment(
    engine: Engine,
) -> None:
    vault = Vault(Keyring(MasterKey.generate(), ()))
    with Session(engine) as session:
        product_id = add_product(session, "p")
        import_keys(session, vault, product_id, "k.txt", b"K-1\nK-2\n", "txt")
        near, near_key = confirmed_order(session, product_id, NOW + 14 * 60, NOW)  # inside the margin
        far, _ = confirmed_order(session, product_id, NOW + 16 * 60, NOW)
    hub = OrderEventHub()
    page = hub.subscribe(near_key)
    recorder = Recorder()
    delivery = DeliveryEngine(
        engine, vault, [recorder], lambda _: None, hub=hub, safety_margin=15 * 60, clock=lambda _: NOW
    )
    outcome = delivery.deliver([near, far])
    delivery._announce(outcome)

    with Session(engine) as session:
        refunded, delivered = session.get(ShopOrder, near), session.get(ShopOrder, far)
        assert refunded is not None
        assert delivered is not None
        assert (refunded.status, refunded.refund_reason) == (OrderStatus.REFUNDING, WINDOW_TOO_SHORT)
        assert refunded.commitment is None
        assert delivered.status == OrderStatus.DELIVERED
        assert delivered.notice_due
        commitment, delivered_at = delivered.commitment, delivered.delivered_at
    assert page.get_nowait() == {"type": "order", "order": near_key, "status": "refunding"}
    assert [s.commitment is None for s in outcome.settlements] == [False, True]

    [notice] = outcome.notices
    assert commitment is not None
    assert notice.commitment == commitment
    assert delivered_at is not None
    assert [n.order_id for n in delivery.due_notices(delivered_at)] == [far]
    asyncio.run(delivery.notify(outcome.notices))
    assert [n.commitment for n in recorder.notices] == [commitment]
    assert delivery.due_notices(delivered_at) == []
    with Session(engine) as session:
        told = session.get(ShopOrder, far)
        assert told is not None
        assert not told.notice_due
