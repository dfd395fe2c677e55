"""`liandong backup`: a consistent copy of the shop's database while its nodes run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from liandong.cli.common import console
from liandong.core.config import Settings
from liandong.store.backup import backup_database


def backup(
    to: Annotated[Path, typer.Option("--to", help="The backup file to write (replaced if it exists).")],
    database_url: Annotated[
        str | None, typer.Option(help="The database to back up (default: the shop's).")
    ] = None,
) -> None:
    """Copy the shop's database while the nodes run. SQLite: an online, consistent copy through
    sqlite3's backup API (a database file; restore by putting it in place with the nodes stopped).
    PostgreSQL: runs `pg_dump --format=custom` to the file (restore with `pg_restore`). Back up
    the master key separately: the card keys in the copy are encrypted with it."""
    url = database_url or Settings().resolved_database_url
    backup_database(url, to)  # a BackupError ends the command with its message (`Commands`)
    console.print(f"Backed up to {to}", markup=False, highlight=False)
