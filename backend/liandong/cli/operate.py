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
from sqlmodel import Session, select
from web3 import Web3

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.profiles import load_profiles
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


def _chain_row(
    chain_id: int,
    served: dict[str, Any] | None,
    checkpoint: int | None,
    settings: Settings,
    record: DeploymentRecord,
) -> tuple[str, str]:
    """One chain's line: its network, head (the node's providers', or the first chain's RPC asked
    directly when the node is not answering), checkpoint and lag, and how the node hears heads."""
    profile = load_profiles().get(chain_id)
    name = served["network"] if served else profile.name if profile else f"chain {chain_id}"
    heads = [p["head"] for p in served["providers"] if p.get("head") is not None] if served else []
    head = max(heads) if heads else None
    if head is None and chain_id == record.chain_id:  # the node is not answering: ask the chain
        head = _chain_head(chain_url(settings))
    lag = f" (lag {head - checkpoint} blocks)" if head is not None and checkpoint is not None else ""
    heard = f", heads over {served['head_source']}" if served else ", not served by the node now"
    return name, f"chain {chain_id}: head {head}, checkpoint {checkpoint}{lag}{heard}"


def status() -> None:
    """Each chain's head, checkpoint and lag, the node's queue, orders waiting, stock warnings."""
    with shop_engine() as (settings, engine), Session(engine) as session:
        record = deployment(settings)
        checkpoints = {row.chain_id: row.block_number for row in session.exec(select(ChainCheckpoint))}
        backlog = stats.backlog(session)
        levels = stats.stock_levels(session)
    health = _node_health(settings)
    served = {int(chain["chain_id"]): chain for chain in (health or {}).get("chains", [])}
    table = Table(show_header=False, title="链动小铺 Liandong status")
    for chain_id in dict.fromkeys([record.chain_id, *served, *checkpoints]):
        table.add_row(
            *_chain_row(chain_id, served.get(chain_id), checkpoints.get(chain_id), settings, record)
        )
    if health is None:
        table.add_row("node", f"[red]not answering on {settings.api_host}:{settings.api_port}[/]")
    else:
        table.add_row("node", f"leader {health['leader']}")
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
