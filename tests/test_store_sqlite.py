"""The SQLite engine's transactions: writers take turns (none lost, none refused), a turn is given
back however its transaction ends, and a read-only transaction never waits for a writer."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from liandong.store.db import READ_ONLY, make_engine
from sqlalchemy import Engine, text
from sqlmodel import Session


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO counter VALUES (1, 0)"))
    return engine


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT n FROM counter")).scalar_one())


def _in_thread(work: Callable[[], None], seconds: float = 5.0) -> None:
    """Runs `work` in a thread and fails the test if it has not finished within `seconds` (far
    below the 10 s a writer would wait for a turn that was never given back)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as failed:
            failures.append(failed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the transaction waited for a writer that had finished"
    assert not failures, failures


def test_writers_in_many_threads_read_then_write_and_lose_nothing(engine: Engine) -> None:
    def increments() -> None:
        for _ in range(40):
            with Session(engine) as session:  # read, then write what was read: a lost update
                n = session.connection().execute(text("SELECT n FROM counter")).scalar_one()
                session.connection().execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
                session.commit()

    threads = [threading.Thread(target=increments) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _count(engine) == 8 * 40


def test_a_turn_is_given_back_by_a_rollback_a_failed_statement_a_close_and_a_dropped_connection(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        session.connection().execute(text("UPDATE counter SET n = 1"))
        session.rollback()
    with Session(engine) as session, pytest.raises(Exception, match="no such table"):
        session.connection().execute(text("UPDATE missing SET n = 1"))
    session = Session(engine)
    session.connection().execute(text("UPDATE counter SET n = 2"))
    session.close()  # never committed: closed mid-transaction
    forgotten = engine.connect()
    forgotten.execute(text("UPDATE counter SET n = 2"))
    del forgotten  # neither closed nor rolled back: the pool takes its connection back
    gc.collect()

    def write() -> None:
        with Session(engine) as other:
            other.connection().execute(text("UPDATE counter SET n = 3"))
            other.commit()

    _in_thread(write)
    assert _count(engine) == 3


def test_a_read_only_transaction_reads_what_is_committed_while_a_writer_holds_the_lock(
    engine: Engine,
) -> None:
    with Session(engine) as writer:
        writer.connection().execute(text("UPDATE counter SET n = 41"))  # uncommitted, lock held
        seen: list[int] = []

        def read() -> None:
            with Session(engine) as reader:
                connection = reader.connection(execution_options=READ_ONLY)
                seen.append(int(connection.execute(text("SELECT n FROM counter")).scalar_one()))

        _in_thread(read)
        assert seen == [0]
        writer.commit()
    assert _count(engine) == 41
