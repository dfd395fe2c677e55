"""`liandong vault …`: operator commands for the card-key vault.

Rotating the master key and retiring the previous one. The work is `vault/rotation.py`'s and runs
online (the nodes keep delivering meanwhile), so these commands only open the shop and report.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from liandong.cli.common import Commands, shop_engine
from liandong.vault.crypto import previous_key_file
from liandong.vault.rotation import REENCRYPT_BATCH, retire_previous_key, rotate_vault

vault_app = typer.Typer(
    cls=Commands, help="The card-key vault: encryption keys of the stock.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)


@vault_app.callback()
def main() -> None:
    """Card keys are encrypted by per-product data keys, which the master key wraps."""


@vault_app.command()
def rotate(
    batch_size: Annotated[
        int, typer.Option(min=1, help="Card keys re-encrypted per transaction.")
    ] = REENCRYPT_BATCH,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for every running node to reload the new key.")
    ] = 30.0,
) -> None:
    """Replace the master key, give every product a new data key and re-encrypt the stock with it,
    in small batches while the nodes keep delivering; then remove the previous master key once
    every running node uses the new one."""
    with shop_engine() as (settings, engine):
        result = rotate_vault(settings, engine, batch_size=batch_size, wait_seconds=wait)
    key_file = settings.resolved_master_key_file
    console.print(
        f"New master key {result.new_key_id} ({key_file}); {result.products} product(s) have new data "
        f"keys and {result.reencrypted} card key(s) were re-encrypted; the old data keys are deleted.",
        markup=False,
        highlight=False,
    )
    if result.previous_removed:
        console.print(
            f"Every running node uses the new key: the previous key {result.previous_key_id} is removed.",
            markup=False,
            highlight=False,
        )
        return
    errors.print(
        f"Nodes still on the previous key after {wait:g} s: {', '.join(result.lagging_nodes)}. "
        f"{previous_key_file(key_file)} stays until they reload; `liandong vault retire-previous` "
        "removes it then.",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(code=1)


@vault_app.command("retire-previous")
def retire_previous(
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the nodes.")] = 30.0,
) -> None:
    """Remove `<key file>.previous` once every running node uses the current master key."""
    with shop_engine() as (settings, engine):
        removed, lagging = retire_previous_key(settings, engine, wait)
    if not removed:
        errors.print(f"Nodes still on the previous key: {', '.join(lagging)}", markup=False, highlight=False)
        raise typer.Exit(code=1)
    console.print("The previous master key is removed.", markup=False, highlight=False)
