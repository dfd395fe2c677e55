"""`liandong vault …`: operator commands for the card-key vault."""

from __future__ import annotations

import typer
from rich.console import Console

from liandong.core.config import Settings
from liandong.store.db import make_engine, migrate
from liandong.vault.crypto import previous_key_file
from liandong.vault.rotation import RotationRefusedError, rotate_master_key_file

vault_app = typer.Typer(help="The card-key vault: encryption keys of the stock.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@vault_app.callback()
def main() -> None:
    """Card keys are encrypted by per-product data keys, which the master key wraps."""


@vault_app.command()
def rotate() -> None:
    """Replace the master key and rewrap every data key with the new one (card keys stay as they are).

    The old key is kept in `<key file>.previous`, so nodes not yet restarted keep working.
    """
    settings = Settings()
    url = settings.resolved_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    engine = make_engine(url)
    try:
        result = rotate_master_key_file(settings, engine)
    except RotationRefusedError as error:
        errors.print(str(error), markup=False, highlight=False)
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()
    key_file = settings.resolved_master_key_file
    console.print(
        f"Rewrapped {result.rewrapped} data key(s) with the new master key {result.new_key_id} "
        f"({key_file}); the previous key {result.previous_key_id} is in {previous_key_file(key_file)}.",
        markup=False,
        highlight=False,
    )
