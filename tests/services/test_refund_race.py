"""A refund (and a reorg's rollback) racing a delivery on PostgreSQL, with two real connections
in two threads: exactly one wins. The delivery transaction holds the order's row when the merchant's
refund arrives; the refund waits for it and, once the delivery commits, finds the order
delivered and refuses."""

from __future__ import annotations

import threading
import time

import pytest
from liandong.chain.indexer import PAYMENT_REORGED, ConfirmationPolicy, Header, IndexerStore
from liandong.chain.quotes import NATIVE_COIN
from liandong.delivery.engine import DeliveryEngine
from liandong.services.order_admin import OrderAdminError, begin_refund
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainCheckpoint, Delivery, OrderStatus, Payment, ShopOrder
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.concurrency import commits_of_other_threads_held
from tests.rows import PAYER, confirmed_order
from tests.vault.conftest import add_product


def _confirmed_order(postgres_url: str, sku: str) -> tuple[Engine, Vault, int, str]:
    """A migrated PostgreSQL store with one product, one key and one confirmed order for it."""
    migrate(postgres_url)
    engine = make_engine(postgres_url)
    vault = Vault(Keyring(MasterKey.generate(), ()))
    with Session(engine) as session:
        product_id = add_product(session, sku)
        import_keys(session, vault, product_id, "k.txt", f"{sku.upper()}-1\n".encode(), "txt")
        order_id, chain_order_id = confirmed_order(session, product_id, int(time.time()) + 86_400)
        return engine, vault, order_id, chain_order_id


def test_a_refund_racing_a_delivery_never_overwrites_it(postgres_url: str) -> None:
    engine, vault, order_id, order_key = _confirmed_order(postgres_url, "race")

    delivery = DeliveryEngine(engine, vault, [], lambda _: None, shared=True)
    results: dict[str, object] = {}

    def deliver() -> None:
        results["delivered"] = delivery.deliver([order_id])

    def refund() -> None:
        with Session(engine) as session:
            try:
                results["refund"] = begin_refund(session, order_key, "merchant refund")
            except OrderAdminError as error:
                results["refund"] = error

    with commits_of_other_threads_held() as held:  # the delivery has written all, holds the row
        deliverer = threading.Thread(target=deliver)
        deliverer.start()
        assert held.holding.wait(10), "the delivery never reached its commit"
        refunder = threading.Thread(target=refund)
        refunder.start()
        time.sleep(0.5)  # the refund reads the order (confirmed) and waits for the row
        assert refunder.is_alive(), "the refund did not wait for the delivery's row lock"
        held.release.set()
        deliverer.join(10)
        refunder.join(10)

    assert isinstance(results["refund"], OrderAdminError)
    with Session(engine) as session:
        final = session.get(ShopOrder, order_id)
        assert final is not None
        assert final.status == OrderStatus.DELIVERED
        assert final.refund_reason is None
        assert len(session.exec(select(Delivery).where(Delivery.order_id == order_id)).all()) == 1
    engine.dispose()


def test_a_refund_first_leaves_nothing_to_deliver(postgres_url: str) -> None:
    engine, vault, order_id, order_key = _confirmed_order(postgres_url, "first")
    with Session(engine) as session:
        begin_refund(session, order_key, "merchant refund")
        with pytest.raises(OrderAdminError):
            begin_refund(session, order_key, "again")
    outcome = DeliveryEngine(engine, vault, [], lambda _: None, shared=True).deliver([order_id])
    assert outcome.notices == []
    with Session(engine) as session:
        final = session.get(ShopOrder, order_id)
        assert final is not None
        assert final.status == OrderStatus.REFUNDING
    engine.dispose()


def test_a_rollback_racing_a_delivery_flags_it_instead_of_unpaying_it(postgres_url: str) -> None:
    """A reorg's rollback reads the order confirmed while a delivery holds its row: once the
    delivery commits, the rollback must not make the delivered order unpaid; it flags it."""
    engine, vault, order_id, order_key = _confirmed_order(postgres_url, "reorg")
    with Session(engine) as session:
        session.add(ChainCheckpoint(chain_id=1, block_number=10, block_hash="0x10"))
        session.add(
            Payment(
                chain_id=1,
                chain_order_id=order_key,
                payer=PAYER,
                token=NATIVE_COIN,
                amount="1000",
                tx_hash="0x" + "ab" * 32,
                block_number=10,
                block_hash="0x10",
                log_index=0,
            )
        )
        session.commit()

    delivery = DeliveryEngine(engine, vault, [], lambda _: None, shared=True)
    store = IndexerStore(engine, 1, ConfirmationPolicy(), 64)
    with commits_of_other_threads_held() as held:
        deliverer = threading.Thread(target=lambda: delivery.deliver([order_id]))
        deliverer.start()
        assert held.holding.wait(10)
        threading.Timer(0.5, held.release.set).start()
        store.rollback_to(Header(9, "0x09", "0x08", 0), 10)  # waits for the delivery's row, then decides
        deliverer.join(10)

    with Session(engine) as session:
        final = session.get(ShopOrder, order_id)
        assert final is not None
        assert final.status == OrderStatus.DELIVERED
        assert final.payer is not None
        assert final.anomaly == PAYMENT_REORGED
    engine.dispose()
