"""The database engine: SQLite (WAL) by default, PostgreSQL through `database_url`; and the data
folder, which only the shop's user may enter (0700, its files 0600: the database holds buyers'
e-mail addresses and phone numbers, the folder the master key)."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from liandong.core.config import Settings

MIGRATIONS = Path(__file__).with_name("migrations")

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

IDLE_IN_TRANSACTION_SECONDS = 30
"""PostgreSQL ends a session idle inside a transaction this long (a frozen or cut-off node), so its
row locks (card keys, the leader epoch) do not hold up the other nodes for ever."""

BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for the write lock before it fails with "database is locked"."""

SQLITE_POOL = 16
"""SQLite connections kept open for reuse (and as many more opened at a peak)."""

KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""libpq TCP keepalives: a connection to a server that vanished fails in ~11 s, not hours later."""


def make_private(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Takes group and other permissions off `path` (if it exists and is ours to change)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(path.stat().st_mode) & ~mode:
            path.chmod(mode)


def prepare_data_dir(path: Path) -> Path:
    """Creates the data folder 0700, or tightens an existing one, and its files to 0600: databases
    and their WAL, master keys, the local chain's state, whatever an older version left looser."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    make_private(path, PRIVATE_DIR)
    for entry in path.iterdir():
        if entry.is_file() and not entry.is_symlink():
            make_private(entry)
    return path


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _private_sqlite(database_url: str) -> None:
    """Creates the database file 0600 before SQLite does (SQLite gives its WAL and shared-memory
    files the database's mode) and tightens existing ones."""
    path = sqlite_file(database_url)
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError):  # a missing folder: SQLite says so itself
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    for side in ("", *SQLITE_SIDE_FILES):
        make_private(path.with_name(path.name + side))


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the engine writes; NORMAL sync is durable across process
    # crashes (only an OS crash can lose the last commits); a busy timeout queues writers.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


READ_ONLY = {"liandong_read_only": True}
"""Execution options of a connection that only reads (`Session.connection(execution_options=
READ_ONLY)` before its first statement): on SQLite its transaction begins DEFERRED, so it reads a
snapshot of what is committed without taking, or waiting for, the one write lock. Elsewhere it
changes nothing."""


class WriterTurns:
    """The order in which this process's SQLite transactions take the one write lock.

    SQLite serialises writers itself, but a writer that finds the lock taken polls for it,
    sleeping 1, 2, 5, 10, … up to 100 ms between tries: under load (the indexer, the delivery
    batches, the key reads' log, the settlement sender, all committing many times a second) every
    handoff cost tens of milliseconds of sleeping while the lock sat free. So writers of this
    process first queue on a mutex, handed over the moment the last one commits or rolls back;
    SQLite's lock (and its busy timeout) still arbitrates with other processes (a command run
    beside the node) and is the guarantee, the mutex only an order. A writer that waits longer than
    the busy timeout for the mutex goes on without it, to SQLite's own queue, as before.

    IMMEDIATE takes the write lock up front. A deferred transaction that reads and then writes
    fails outright ("database is locked") when another process committed in between, because its
    snapshot is stale; waiting for the lock first is what lets several processes share it. A
    read-only transaction (`READ_ONLY`) never writes, so it begins deferred and queues behind no
    writer.
    """

    def __init__(self, wait_seconds: float) -> None:
        self._mutex = threading.Lock()
        self._wait = wait_seconds

    def listen(self, engine: Engine) -> None:
        # pysqlite's own transaction handling breaks SAVEPOINT; SQLAlchemy emits BEGIN itself.
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._ended)  # before COMMIT: the next writer's BEGIN
        event.listen(engine, "rollback", self._ended)  # finds SQLite's lock free within ~1 ms
        event.listen(engine.pool, "reset", self._reset)  # a connection given back mid-transaction

    def _begin(self, connection: Connection) -> None:
        if connection.get_execution_options().get("liandong_read_only", False):
            connection.exec_driver_sql("BEGIN")
            return
        connection.info[_HOLDS_TURN] = self._mutex.acquire(timeout=self._wait)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._release(connection.info)
            raise

    def _ended(self, connection: Connection) -> None:
        self._release(connection.info)

    def _reset(self, _dbapi_connection: Any, record: Any, _state: Any) -> None:
        self._release(record.info)

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS_TURN, False):
            self._mutex.release()


_HOLDS_TURN = "liandong_holds_writer_turn"
"""Set in a connection's `info` while its transaction holds the process's writer turn."""


def make_engine(database_url: str) -> Engine:
    """An engine for `database_url`, tuned for many short transactions."""
    if database_url.startswith("sqlite"):
        _private_sqlite(database_url)
        # A pool as large as the threads that hold a session at once (the event loop, the API's
        # thread pool, the quote and key-read batches, the delivery batches): past its size every
        # session would open, tune and close a connection of its own.
        pool = {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_POOL} if sqlite_file(database_url) else {}
        engine = create_engine(database_url, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", _tune_sqlite)
        WriterTurns(BUSY_TIMEOUT_MS / 1000).listen(engine)
        return engine
    options = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS * 1000}"
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={**KEEPALIVES, "options": options},
    )


def migrate(database_url: str) -> None:
    """Brings the schema to the newest migration; safe to call at every start."""
    _private_sqlite(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")


def open_shop_database(settings: Settings) -> Engine:
    """The shop's database as `settings` name it (SQLite in the data folder unless `database_url`
    says otherwise), with the data folder made private and the schema at the newest migration: how
    every process of the shop (a node, the commands, the demo, the dev tools) opens its store."""
    prepare_data_dir(settings.data_dir)
    database_url = settings.resolved_database_url
    migrate(database_url)
    return make_engine(database_url)
