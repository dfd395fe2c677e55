"""Operating a running shop: its status, and simulated buyers for demos and load.

`status` reads the node's health endpoint, the chain and the store, so it works while the node
runs; `simulate` drives the shop through its public API from dev accounts, as real buyers would.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table
from sqlmodel import Session
from web3 import Web3

from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.rpc import rpc_call
from liandong.cli.common import chain_url, console, deployment, fail, progress_bar, shop_engine
from liandong.core.config import Settings
from liandong.devtools.devnet import DEV_CHAIN_ID
from liandong.devtools.simulate import (
    SIMULATED_BUYERS,
    DevBuyer,
    SimulationError,
    SimulationOutcome,
    await_outcomes,
    dev_account,
    place_orders,
)
from liandong.services import stats
from liandong.store.models import ChainCheckpoint


def _chain_head(url: str) -> int | None:
    try:
        return int(str(rpc_call(url, "eth_blockNumber")), 16)
    except OSError:
        return None


def _node_health(settings: Settings) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"http://{settings.api_host}:{settings.api_port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return dict(answer.json()) if answer.status_code == 200 else None


def status() -> None:
    """Chain head and checkpoint lag, the node's queue, orders waiting, stock warnings."""
    with shop_engine() as (settings, engine), Session(engine) as session:
        record = deployment(settings)
        checkpoint = session.get(ChainCheckpoint, record.chain_id)
        backlog = stats.backlog(session)
        levels = stats.stock_levels(session)
    url = chain_url(settings)
    head, health = _chain_head(url), _node_health(settings)
    table = Table(show_header=False, title="链动小铺 Liandong status")
    table.add_row(
        "chain", f"{url} (chain {record.chain_id}), head {head}" if head is not None else f"{url}: no answer"
    )
    at = checkpoint.block_number if checkpoint else None
    lag = f" (lag {head - at} blocks)" if head is not None and at is not None else ""
    table.add_row("checkpoint", f"{at}{lag}")
    if health is None:
        table.add_row("node", f"[red]not answering on {settings.api_host}:{settings.api_port}[/]")
    else:
        table.add_row("node", f"leader {health['leader']}, heads over {health['head_source']}")
        table.add_row("delivery queue", str(health["queue"]))
    table.add_row("awaiting confirmations", str(backlog.awaiting_confirmations))
    table.add_row("awaiting keys", str(backlog.awaiting_keys))
    table.add_row("deliveries to record on-chain", str(backlog.deliveries_to_record))
    table.add_row("refunds to send", str(backlog.refunds_to_send))
    for level in levels:
        if level.low or level.sold_out:
            table.add_row(f"[red]stock {level.sku}[/]", f"{level.available} of {level.total} left")
    console.print(table)


def _for_sale(api: httpx.Client) -> list[int]:
    """Products in stock with a price in the chain's coin (what the simulated wallets pay in)."""
    products = api.get("/api/products").json()
    return [
        product["id"]
        for product in products
        if product["stock"] != "sold_out"
        and any(price["token"] == NATIVE_COIN for price in product["prices"])
    ]


def _summary(outcome: SimulationOutcome, placed: int, seconds: float) -> Table:
    table = Table(show_header=False, title="simulation")
    table.add_row("orders paid", f"{placed} in {seconds:.1f} s ({placed / max(seconds, 0.001):.1f}/s)")
    table.add_row("delivered", str(len(outcome.latencies)))
    table.add_row("refunded (out of stock)", str(outcome.refunded))
    if outcome.waiting:
        table.add_row("[red]still waiting[/]", str(outcome.waiting))
    ordered = sorted(outcome.latencies)
    if ordered:
        figures = [f"p{p} {stats.percentile(ordered, p) * 1000:.0f} ms" for p in stats.PERCENTILES]
        table.add_row("payment → keys", ", ".join([*figures, f"max {ordered[-1] * 1000:.0f} ms"]))
    return table


def simulate(
    buyers: Annotated[
        int, typer.Option(min=1, max=len(SIMULATED_BUYERS), help="Dev accounts paying in turn.")
    ] = 3,
    orders: Annotated[int, typer.Option(min=1, help="Orders to pay.")] = 20,
    rate: Annotated[float, typer.Option(min=0.1, help="Payments a second.")] = 5.0,
    product: Annotated[
        list[int] | None, typer.Option(help="Products to buy (default: all for sale).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The shop's API (default: from the settings).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the last deliveries.")] = 60.0,
) -> None:
    """Buyers paying from funded dev accounts of the local chain, through the shop's API; reports
    how many orders got their keys and how fast. For demos and load."""
    settings = Settings()
    record = deployment(settings)
    if record.chain_id != DEV_CHAIN_ID:
        raise fail("simulate pays from anvil's dev accounts: it runs against the local chain only")
    w3 = Web3(Web3.HTTPProvider(chain_url(settings)))
    wallets = [
        DevBuyer(w3, record.escrow, dev_account(n), record.chain_id) for n in SIMULATED_BUYERS[:buyers]
    ]
    shop_url = url or f"http://{settings.api_host}:{settings.api_port}"
    with httpx.Client(base_url=shop_url, timeout=10) as api, shop_engine(settings) as (_, engine):
        try:
            product_ids = product or _for_sale(api)
        except httpx.HTTPError as error:
            raise fail(
                f"the shop does not answer at {shop_url} ({error}): is `liandong up` running?"
            ) from None
        if not product_ids:
            raise fail("nothing to buy: no product in stock has a price in the chain's coin")
        started = time.monotonic()
        with progress_bar() as progress:
            paying = progress.add_task("paying", total=orders)
            try:
                placed = place_orders(
                    api, wallets, product_ids, orders, rate, lambda: progress.advance(paying)
                )
            except SimulationError as error:
                raise fail(str(error)) from None
            paid_in = time.monotonic() - started
            settling = progress.add_task("delivered", total=len(placed))
            outcome = await_outcomes(engine, placed, timeout, lambda n: progress.advance(settling, n))
    console.print(_summary(outcome, len(placed), paid_in))
    console.print(f"{len(outcome.latencies)} of {len(placed)} orders delivered.")
    if outcome.waiting:
        raise typer.Exit(code=1)
