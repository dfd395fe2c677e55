"""Throw-away PostgreSQL databases for the tests and the benchmarks.

Each test or benchmark run gets a database of its own on the server it names, created empty and
dropped (forcibly, whatever still holds a connection) afterwards, so that runs sharing one server
never see each other's rows and a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def scratch_database(server: str, prefix: str) -> Iterator[str]:
    """A new database on `server` (a libpq URL, e.g. postgresql://postgres@127.0.0.1:5432/test),
    named `prefix` and a random suffix, as the SQLAlchemy URL the shop takes; dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
