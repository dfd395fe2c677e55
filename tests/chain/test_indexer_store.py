"""Two indexers on one database (a node that lost the lead and has not noticed yet, and the new
leader): the checkpoint moves only from where each one built, so the stale one writes nothing and
never moves the checkpoint backwards."""

from __future__ import annotations

import threading

import pytest
from liandong.chain.indexer import ConfirmationPolicy, Header, IndexerStore
from liandong.chain.indexer.store import StaleCheckpointError
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainBlock, ChainCheckpoint
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
