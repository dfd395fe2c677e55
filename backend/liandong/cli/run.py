"""Running the shop: `liandong up` (everything, on an embedded chain or a real one) and
`liandong node` (one node of a shop, as several share a PostgreSQL database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import SecretStr
from rich.table import Table

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.profiles import load_profiles
from liandong.cli.common import console, deployment
from liandong.core.config import ChainSettings, Settings
from liandong.devtools.demo import DEMO_MERCHANT, seed_demo_shop
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import DEV_CHAIN_ID, SECOND_DEV_CHAIN_ID, Anvil
from liandong.devtools.simulate import dev_account, dev_operator
from liandong.runtime.chains import chain_setups, pricing_of
from liandong.runtime.node import assemble, run_node
from liandong.store.db import open_shop_database, prepare_data_dir
from liandong.vault.crypto import load_keyring
from liandong.vault.service import Vault

DEMO_BUYER_INDEX = 9
"""The dev account printed as the demo wallet: far from #0, which deploys and operates."""

DEMO_QUOTE_RATE_LIMIT = "1000/second"
"""Quotes per client on the embedded chain, unless LIANDONG_QUOTE_RATE_LIMIT says otherwise: the
demo shop serves 127.0.0.1, where `liandong simulate` asks every quote from one address."""


def _demo_wallet() -> tuple[str, str]:
    account = dev_account(DEMO_BUYER_INDEX)
    return str(account.address), "0x" + bytes(account.key).hex()


def _summary(
    settings: Settings, records: list[DeploymentRecord], password: str | None, urls: list[str]
) -> Table:
    shop_url = settings.resolved_public_url
    table = Table(title="链动小铺 Liandong is up", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("Storefront", f"{shop_url}/")
    table.add_row("Merchant dashboard", f"{shop_url}/merchant")
    table.add_row("API docs", f"{shop_url}/docs")
    if password is not None:
        table.add_row("Merchant login", f"{DEMO_MERCHANT} / {password}  (shown once: note it)")
    for record, url in zip(records, urls, strict=True):
        known = load_profiles().get(record.chain_id)
        name = known.name if known else f"Chain {record.chain_id}"
        block_time = f", {known.block_time:g} s blocks" if known else ""
        table.add_row(name, f"{url}  (chain id {record.chain_id}{block_time})")
        table.add_row(f"  escrow on {name}", record.escrow)
        for symbol, token in record.tokens.items():
            table.add_row(f"  demo token {symbol}", token)
    if records[0].chain_id == DEV_CHAIN_ID:
        address, key = _demo_wallet()
        table.add_row("Demo wallet", address)
        table.add_row("Demo wallet key", key)
    table.add_row("Data", str(settings.data_dir))
    return table


async def _serve(settings: Settings, record: DeploymentRecord, announce: Callable[[], None]) -> None:
    """Runs the node until cancelled (Ctrl-C or SIGTERM); announces the shop once it answers."""
    main = asyncio.current_task()
    assert main is not None
    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too, even where a shell ignored it for us
        asyncio.get_running_loop().add_signal_handler(signum, main.cancel)

    async def announce_when_healthy() -> None:
        url = f"http://{settings.api_host}:{settings.api_port}/healthz"
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        announce()
                        return
                await asyncio.sleep(0.2)

    node = assemble(settings, record)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(node.run())
        tasks.create_task(announce_when_healthy())


def _run(settings: Settings, record: DeploymentRecord, password: str | None) -> None:
    """The node in this process until Ctrl-C or SIGTERM; the API drains, the rest resumes next run."""
    records = [setup.record for setup in chain_setups(settings, record)]
    urls = [str(settings.rpc_url), *(chain.rpc_url for chain in settings.chains)]

    def announce() -> None:
        console.print(_summary(settings, records, password, urls))
        console.print("Press Ctrl-C to stop; everything resumes at the next `liandong up`.")

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_node(_serve(settings, record, announce))
    console.print("The node stopped.")


def _seed_demo(settings: Settings, record: DeploymentRecord) -> str | None:
    engine = open_shop_database(settings)
    try:
        pricing = pricing_of(chain_setups(settings, record))
        return seed_demo_shop(engine, Vault(load_keyring(settings)), pricing)
    finally:
        engine.dispose()


def _embedded_chains(settings: Settings, anvil_port: int | None) -> list[Anvil]:
    """The demo's two local chains, with their profiles' block times (the first's from the
    settings when set) and the state their last run saved."""
    first = load_profiles()[DEV_CHAIN_ID]
    second = load_profiles()[SECOND_DEV_CHAIN_ID]
    block_time = first.block_time if settings.anvil_block_time is None else settings.anvil_block_time
    return [
        Anvil(
            port=settings.anvil_port if anvil_port is None else anvil_port,
            block_time=block_time or None,
            state_file=settings.data_dir / "anvil-state.json",
        ),
        Anvil(
            port=settings.second_anvil_port,
            block_time=second.block_time,
            chain_id=SECOND_DEV_CHAIN_ID,
            state_file=settings.data_dir / f"anvil-state-{SECOND_DEV_CHAIN_ID}.json",
        ),
    ]


def _on_embedded_chain(settings: Settings, anvil_port: int | None) -> None:
    """Starts the two local chains (with the state the last run saved), deploys an escrow on each
    and fills the demo shop if it is new, and runs the node; the chains stop after the node,
    saving their state."""
    chains = _embedded_chains(settings, anvil_port)
    try:
        with console.status("Starting the local chains…"):
            for chain in chains:
                chain.start()
        with console.status("Deploying the escrows and preparing the demo shop…"):
            record = deploy_local_escrow(chains[0].http_url, settings.deployment_file)
            second = ChainSettings(name=str(SECOND_DEV_CHAIN_ID), rpc_url=chains[1].http_url)
            deploy_local_escrow(
                chains[1].http_url, settings.data_dir / "deployments" / f"{SECOND_DEV_CHAIN_ID}.json"
            )
            demo: dict[str, object] = {
                "rpc_url": chains[0].http_url,
                "chains": [second, *settings.chains],
                "operator_key": SecretStr("0x" + bytes(dev_operator().key).hex()),
            }
            if "quote_rate_limit" not in settings.model_fields_set:
                demo["quote_rate_limit"] = DEMO_QUOTE_RATE_LIMIT
            settings = settings.model_copy(update=demo)
            password = _seed_demo(settings, record)
        _run(settings, record, password)
    finally:
        with console.status("Stopping the local chains (their state goes to anvil-state*.json)…"):
            for chain in reversed(chains):
                chain.stop()


def up(
    port: Annotated[
        int | None, typer.Option(help="Port of the embedded anvil (default from settings).")
    ] = None,
    api_port: Annotated[int | None, typer.Option(help="Port of the shop's API and pages.")] = None,
    rpc: Annotated[str | None, typer.Option(help="A real chain's JSON-RPC URL: no embedded anvil.")] = None,
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL to share with other nodes.")] = None,
) -> None:
    """Run the shop: with no RPC, an embedded anvil with the escrow, a demo token and a demo
    catalogue; then the API, the indexer and the delivery engine. Ctrl-C stops it; the next `up`
    resumes where it stopped."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    given = {"api_port": api_port, "rpc_url": rpc, "database_url": database_url}
    settings = Settings().model_copy(
        update={name: value for name, value in given.items() if value is not None}
    )
    os.umask(0o077)  # what the shop and its anvil write (database, WAL, chain state) is the user's only
    prepare_data_dir(settings.data_dir)
    if settings.rpc_url is None:
        _on_embedded_chain(settings, port)
        return
    _run(settings, deployment(settings), None)


def node(
    deployment_file: Annotated[
        Path | None, typer.Option("--deployment", help="Deployment record (default: the data dir's).")
    ] = None,
) -> None:
    """Run one shop node (indexer, delivery engine, settlement sender, API) against LIANDONG_RPC_URL."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    os.umask(0o077)
    prepare_data_dir(settings.data_dir)
    record = DeploymentRecord.load(deployment_file) if deployment_file else deployment(settings)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the API drains, the rest resumes next run
        run_node(assemble(settings, record).run())
