"""The `liandong` command: run the shop and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import Anvil
from liandong.core.config import Settings
from liandong.node import run_node
from liandong.simulate import dev_account
from liandong.vault.commands import vault_app

app = typer.Typer(
    help="链动小铺 Liandong: a card-key shop paid through an on-chain escrow.", no_args_is_help=True
)
console = Console()
app.add_typer(vault_app, name="vault")

DEMO_BUYER_INDEX = 9
"""The dev account printed as the demo wallet: far from #0, which deploys and operates."""


@app.callback()
def main() -> None:
    """Run `liandong up` to start a local shop."""


def _demo_wallet() -> tuple[str, str]:
    account = dev_account(DEMO_BUYER_INDEX)
    return str(account.address), "0x" + bytes(account.key).hex()


def _wait_for_stop_signal() -> None:
    """Blocks until Ctrl-C (SIGINT) or SIGTERM, so that both end in the same clean shutdown."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


@app.command()
def up(
    port: int | None = typer.Option(None, help="Port of the embedded anvil (default from settings)."),
) -> None:
    """Start a local shop: an embedded anvil chain with the escrow and a demo token deployed."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    node = Anvil(
        port=settings.anvil_port if port is None else port,
        block_time=settings.anvil_block_time,
        state_file=settings.data_dir / "anvil-state.json",
    )
    with console.status("Starting the local chain…"):
        node.start()
    try:
        with console.status("Deploying the escrow…"):
            record = deploy_local_escrow(node.http_url, settings.deployment_file)
        address, key = _demo_wallet()
        table = Table(title="链动小铺 Liandong is up", show_header=False)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        table.add_row("Chain (JSON-RPC)", node.http_url)
        table.add_row("Chain id", str(record.chain_id))
        table.add_row("Escrow", record.escrow)
        for symbol, token in record.tokens.items():
            table.add_row(f"Demo token {symbol}", token)
        table.add_row("Demo wallet", address)
        table.add_row("Demo wallet key", key)
        table.add_row("Deployment record", str(settings.deployment_file))
        console.print(table)
        console.print("Press Ctrl-C to stop; the chain's state is kept for the next `liandong up`.")
        _wait_for_stop_signal()
    finally:
        node.stop()


@app.command()
def node(
    deployment: Annotated[
        Path | None, typer.Option(help="Deployment record (default: the data dir's).")
    ] = None,
) -> None:
    """Run one shop node (indexer, delivery engine, settlement sender, API) against LIANDONG_RPC_URL."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    record = DeploymentRecord.load(deployment or settings.deployment_file)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the API drains, the rest resumes next run
        asyncio.run(run_node(settings, record))
