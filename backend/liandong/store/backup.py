"""Backups of the shop's database while its nodes run.

SQLite: sqlite3's online backup API copies the database page by page into a new file while the
nodes go on writing; the copy is one consistent snapshot (SQLite restarts the copy when a write
lands in between), including what is still in the WAL. It is written next to the target and
renamed into place, 0600, so a reader never sees half a copy. PostgreSQL: `pg_dump` (a consistent
snapshot through one repeatable-read transaction) in its custom format, which `pg_restore`
reads; the password, if the URL has one, goes to it through the environment, not its arguments.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from liandong.core.errors import LiandongError
from liandong.store.db import PRIVATE_FILE, sqlite_file

SQLITE_PAGES_PER_STEP = 1024
"""Pages copied per step: between steps the nodes' writers get the database."""


class BackupError(LiandongError):
    """The backup could not be made (no database there, pg_dump missing or failing)."""


def backup_database(database_url: str, target: Path) -> Path:
    """A consistent copy of the database at `database_url` in `target` (a SQLite file, or a
    `pg_dump --format=custom` archive for PostgreSQL). Returns `target`."""
    url = make_url(database_url)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_EXCL, PRIVATE_FILE))
    try:
        if url.get_backend_name() == "sqlite":
            _backup_sqlite(database_url, partial)
        elif url.get_backend_name() == "postgresql":
            _dump_postgres(database_url, partial)
        else:
            raise BackupError(f"cannot back up a {url.get_backend_name()} database")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _backup_sqlite(database_url: str, partial: Path) -> None:
    source = sqlite_file(database_url)
    if source is None or not source.is_file():
        raise BackupError(f"no SQLite database at {source or database_url}")
    with (
        closing(sqlite3.connect(source, timeout=30)) as reader,
        closing(sqlite3.connect(partial)) as copy,
    ):
        reader.backup(copy, pages=SQLITE_PAGES_PER_STEP)
        # The copy is a standalone file: no WAL beside it.
        copy.execute("PRAGMA journal_mode=DELETE")
        if (check := copy.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
            raise BackupError(f"the copy does not check out: {check}")


def _dump_postgres(database_url: str, partial: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not on PATH (Debian: apt-get install postgresql-client)")
    url = make_url(database_url)
    env = {**os.environ}
    for name, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[name] = str(value)
    command = [pg_dump, "--format=custom", "--no-owner", f"--file={partial}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
