"""The `liandong` command: run the shop and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from liandong import commands
from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import DEV_CHAIN_ID, Anvil
from liandong.core.config import Settings
from liandong.demo import DEMO_MERCHANT, seed_demo_shop
from liandong.node import run_node
from liandong.simulate import OPERATOR, dev_account
from liandong.store.db import make_engine, migrate
from liandong.vault.commands import vault_app
from liandong.vault.crypto import load_keyring
from liandong.vault.service import Vault

app = typer.Typer(
    help="链动小铺 Liandong: a card-key shop paid through an on-chain escrow.", no_args_is_help=True
)
console = Console()
app.add_typer(vault_app, name="vault")
app.add_typer(commands.merchant_app, name="merchant")
app.add_typer(commands.products_app, name="products")
app.add_typer(commands.keys_app, name="keys")
app.add_typer(commands.orders_app, name="orders")
app.command()(commands.refund)
app.command()(commands.status)
app.command()(commands.simulate)
app.command()(commands.audit)
app.command("verify-key")(commands.verify_key)
app.command("verify-contract")(commands.verify_contract)

DEMO_BUYER_INDEX = 9
"""The dev account printed as the demo wallet: far from #0, which deploys and operates."""


@app.callback()
def main() -> None:
    """Run `liandong up` to start a local shop."""


def _demo_wallet() -> tuple[str, str]:
    account = dev_account(DEMO_BUYER_INDEX)
    return str(account.address), "0x" + bytes(account.key).hex()


def _summary(settings: Settings, record: DeploymentRecord, password: str | None) -> Table:
    shop_url = settings.resolved_public_url
    table = Table(title="链动小铺 Liandong is up", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Storefront", f"{shop_url}/")
    table.add_row("Merchant dashboard", f"{shop_url}/merchant")
    table.add_row("API docs", f"{shop_url}/docs")
    if password is not None:
        table.add_row("Merchant login", f"{DEMO_MERCHANT} / {password}  (shown once: note it)")
    table.add_row("Chain (JSON-RPC)", str(settings.rpc_url))
    table.add_row("Chain id", str(record.chain_id))
    table.add_row("Escrow", record.escrow)
    for symbol, token in record.tokens.items():
        table.add_row(f"Demo token {symbol}", token)
    if record.chain_id == DEV_CHAIN_ID:
        address, key = _demo_wallet()
        table.add_row("Demo wallet", address)
        table.add_row("Demo wallet key", key)
    table.add_row("Data", str(settings.data_dir))
    return table


async def _serve(settings: Settings, record: DeploymentRecord, announce: Callable[[], None]) -> None:
    """Runs the node until cancelled (Ctrl-C or SIGTERM); announces the shop once it answers."""
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)

    async def announce_when_healthy() -> None:
        url = f"http://{settings.api_host}:{settings.api_port}/healthz"
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        announce()
                        return
                await asyncio.sleep(0.2)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(run_node(settings, record))
        tasks.create_task(announce_when_healthy())


def _seed_demo(settings: Settings, record: DeploymentRecord) -> str | None:
    database_url = settings.resolved_database_url
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        return seed_demo_shop(engine, Vault(load_keyring(settings)), record)
    finally:
        engine.dispose()


@app.command()
def up(
    port: int | None = typer.Option(None, help="Port of the embedded anvil (default from settings)."),
    api_port: int | None = typer.Option(None, help="Port of the shop's API and pages."),
    rpc: str | None = typer.Option(None, help="A real chain's JSON-RPC URL: no embedded anvil."),
    database_url: str | None = typer.Option(None, help="PostgreSQL to share with other nodes."),
) -> None:
    """Run the shop: with no RPC, an embedded anvil with the escrow, a demo token and a demo
    catalogue; then the API, the indexer and the delivery engine. Ctrl-C stops it; the next `up`
    resumes where it stopped."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    given = {"api_port": api_port, "rpc_url": rpc, "database_url": database_url}
    settings = Settings().model_copy(
        update={name: value for name, value in given.items() if value is not None}
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    chain = None
    if settings.rpc_url is None:
        chain = Anvil(
            port=settings.anvil_port if port is None else port,
            block_time=settings.anvil_block_time,
            state_file=settings.data_dir / "anvil-state.json",
        )
        with console.status("Starting the local chain…"):
            chain.start()
    try:
        password = None
        if chain is not None:
            with console.status("Deploying the escrow and preparing the demo shop…"):
                record = deploy_local_escrow(chain.http_url, settings.deployment_file)
                settings = settings.model_copy(
                    update={"rpc_url": chain.http_url, "operator_key": "0x" + bytes(OPERATOR.key).hex()}
                )
                password = _seed_demo(settings, record)
        else:
            record = DeploymentRecord.load(settings.deployment_file)

        def announce() -> None:
            console.print(_summary(settings, record, password))
            console.print("Press Ctrl-C to stop; everything resumes at the next `liandong up`.")

        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(_serve(settings, record, announce))
    finally:
        if chain is not None:
            chain.stop()


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
