"""`liandong backup`: an online copy of a SQLite database taken while a writer holds it open
(the copy is consistent and opens standalone), and a `pg_dump` archive of a PostgreSQL one that
`pg_restore` reads back."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import psycopg
from liandong.store.db import migrate

from tests.cli.runner import run
from tests.conftest import postgres_database


def test_sqlite_backup_while_a_writer_has_the_database_open(tmp_path: Path) -> None:
    database = tmp_path / "liandong.db"
    url = f"sqlite:///{database}"
    migrate(url)
    writer = sqlite3.connect(database)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE ledger (n INTEGER PRIMARY KEY, note TEXT)")
    writer.executemany("INSERT INTO ledger (note) VALUES (?)", [(f"row {n}",) for n in range(500)])
    writer.commit()  # committed, still in the WAL: the node keeps its connection open
    writer.execute("INSERT INTO ledger (note) VALUES ('uncommitted')")  # an open transaction
    target = tmp_path / "backups" / "shop.db"
    result = run({**os.environ, "LIANDONG_DATA_DIR": str(tmp_path)}, "backup", "--to", str(target))
    writer.rollback()
    writer.close()
    assert result.returncode == 0, result.stderr
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert not target.with_name(target.name + "-wal").exists()
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*) FROM ledger").fetchone() == (500,)
        assert copy.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_postgres_backup_is_a_pg_dump_archive(tmp_path: Path) -> None:
    with postgres_database() as url:
        migrate(url)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as db:
            db.execute("CREATE TABLE ledger (n serial PRIMARY KEY, note text)")
            db.execute("INSERT INTO ledger (note) SELECT 'row ' || g FROM generate_series(1, 50) g")
        target = tmp_path / "shop.pgdump"
        result = run({**os.environ, "LIANDONG_DATABASE_URL": url}, "backup", "--to", str(target))
        assert result.returncode == 0, result.stderr
        assert target.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
        listing = subprocess.run(
            ["pg_restore", "--list", str(target)], capture_output=True, text=True, check=True
        )
        assert "TABLE public ledger" in listing.stdout
        assert "TABLE public alembic_version" in listing.stdout


def test_backup_of_a_missing_database_fails_clearly(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    result = run({**os.environ}, "backup", "--to", str(tmp_path / "x.db"), "--database-url", missing)
    assert result.returncode == 1
    assert "no SQLite database at" in result.stderr
    assert not (tmp_path / "x.db").exists()
