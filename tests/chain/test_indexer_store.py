"""Two indexers on one database (a node that lost the lead and has not noticed yet, and the new
leader): the checkpoint moves only from where each one built, so the stale one writes nothing and
never moves the checkpoint backwards."""

from __future__ import annotations

import secrets
import threading

import pytest
from liandong.chain.indexer import ConfirmationPolicy, Header, IndexerStore
from liandong.chain.indexer.store import StaleCheckpointError
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainBlock, ChainCheckpoint, OrderStatus, Product, ShopOrder, utcnow
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from tests.concurrency import commits_of_other_threads_held

CHAIN = 1


def header(number: int, branch: str = "a") -> Header:
    return Header(number, f"0x{branch}{number:03}", f"0x{branch}{number - 1:03}", 1_000 + number)


def _store(postgres_url: str) -> tuple[Engine, IndexerStore, IndexerStore]:
    migrate(postgres_url)
    engine = make_engine(postgres_url)
    with Session(engine) as session:
        start = header(10)
        session.add(ChainCheckpoint(chain_id=CHAIN, block_number=start.number, block_hash=start.hash))
        session.commit()
    return (
        engine,
        IndexerStore(engine, CHAIN, ConfirmationPolicy(), 64),
        IndexerStore(engine, CHAIN, ConfirmationPolicy(), 64),
    )


def _state(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        checkpoint = session.get(ChainCheckpoint, CHAIN)
        assert checkpoint is not None
        blocks = session.exec(select(func.count()).select_from(ChainBlock)).one()
        return checkpoint.block_number, blocks


def test_an_indexer_behind_the_checkpoint_writes_nothing(postgres_url: str) -> None:
    engine, leader, stale = _store(postgres_url)
    leader.apply([], [header(11), header(12)], 10, header(12), 12)
    with pytest.raises(StaleCheckpointError):
        stale.apply([], [header(11)], 10, header(11), 11)  # from the checkpoint it read before
    with pytest.raises(StaleCheckpointError):
        stale.apply([], [], 10, header(40), 100)  # a range far from the head, no headers kept
    with pytest.raises(StaleCheckpointError):
        stale.rollback_to(header(10), 11)  # a "reorg" seen from an old position
    assert _state(engine) == (12, 2)
    leader.apply([], [header(13)], 12, header(13), 13)  # the leader goes on undisturbed
    assert _state(engine) == (13, 3)
    engine.dispose()


def test_two_indexers_applying_the_same_blocks_at_once_one_wins(postgres_url: str) -> None:
    """Both read the checkpoint at 10 and apply 11..12 concurrently: the second waits for the first's
    row lock, then finds the checkpoint moved, and its transaction leaves nothing behind."""
    engine, first, second = _store(postgres_url)
    with commits_of_other_threads_held() as held:
        racer = threading.Thread(target=lambda: first.apply([], [header(11), header(12)], 10, header(12), 12))
        racer.start()
        assert held.holding.wait(10)  # the first holds the checkpoint's row, not committed yet
        threading.Timer(0.5, held.release.set).start()
        with pytest.raises(StaleCheckpointError):
            second.apply([], [header(11, "b"), header(12, "b")], 10, header(12, "b"), 12)
        racer.join(10)
    assert _state(engine) == (12, 2)
    with Session(engine) as session:
        checkpoint = session.get(ChainCheckpoint, CHAIN)
        assert checkpoint is not None
        assert checkpoint.block_hash == header(12).hash
    engine.dispose()


def _settled_order(session: Session, chain_id: int, settled_block: int) -> int:
    order = ShopOrder(
        chain_id=chain_id,
        chain_order_id="0x" + secrets.token_hex(32),
        product_id=1,
        quantity=1,
        token="0x" + "00" * 20,
        amount="1",
        payer="0x" + "11" * 20,
        status=OrderStatus.DELIVERED,
        quote_signature="0x",
        quote_expiry=0,
        delivery_deadline=2**40,
        access_token_hash="",
        committed_at=utcnow(),
        settled_block=settled_block,
    )
    session.add(order)
    session.commit()
    assert order.id is not None
    return order.id


def test_a_reorg_on_one_chain_unsettles_only_that_chains_settlements(engine: Engine) -> None:
    """Chain A is far ahead of chain B: B's fork below its block 40 says nothing of A's block 500."""
    chain_a, chain_b = 31337, 31339
    with Session(engine) as session:
        session.add(Product(id=1, sku="p", name="p"))
        session.commit()
        on_a, on_b = _settled_order(session, chain_a, 500), _settled_order(session, chain_b, 50)
        session.add(ChainCheckpoint(chain_id=chain_b, block_number=60, block_hash=header(60).hash))
        session.commit()
    IndexerStore(engine, chain_b, ConfirmationPolicy(), 64).rollback_to(header(40), 60)
    with Session(engine) as session:
        a, b = session.get(ShopOrder, on_a), session.get(ShopOrder, on_b)
        assert a is not None
        assert b is not None
        assert (a.committed_at is not None, a.settled_block) == (True, 500)  # chain A's: untouched
        assert (b.committed_at, b.settled_block) == (None, None)  # owed again on chain B
