"""The merchant's commands: logins, products, key imports, orders, refunds, status, simulation.

They work on the shop's database directly (the settings say where), through the same service
functions as the API; a running node picks up what they change (its rescan sends refunds).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select
from web3 import Web3

from liandong.audit import Rpc, audit_chain, commitment_on_chain, html_report, reconcile
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import rpc_call
from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.verify import VerificationError, verify_escrow
from liandong.core.config import Settings
from liandong.services import catalogue, order_admin, stats
from liandong.services.merchant_auth import AccountError, create_merchant
from liandong.simulate import DevBuyer, dev_account, quote_from_api
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainCheckpoint, OrderStatus, ShopOrder
from liandong.vault.crypto import delivery_commitment, load_keyring
from liandong.vault.importer import KeyImportError, import_keys
from liandong.vault.service import Vault

console = Console()
errors = Console(stderr=True)
merchant_app = typer.Typer(help="Merchant logins.", no_args_is_help=True)
products_app = typer.Typer(help="Products and their prices.", no_args_is_help=True)
keys_app = typer.Typer(help="Card keys in stock.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders.", no_args_is_help=True)


def fail(message: str) -> typer.Exit:
    errors.print(message, markup=False, highlight=False)
    return typer.Exit(code=1)


def chain_url(settings: Settings) -> str:
    """The configured chain, or the embedded anvil of `liandong up`."""
    return settings.rpc_url or f"http://127.0.0.1:{settings.anvil_port}"


@contextlib.contextmanager
def shop_engine() -> Iterator[tuple[Settings, Engine]]:
    settings = Settings()
    url = settings.resolved_database_url
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(url)
    engine = make_engine(url)
    try:
        yield settings, engine
    finally:
        engine.dispose()


# ------------------------------------------------------------------ merchant logins


@merchant_app.command("add")
def add_merchant(
    username: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Create a dashboard login (the password is stored as an argon2id hash only)."""
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    )
    with shop_engine() as (_, engine), Session(engine) as session:
        try:
            create_merchant(session, username, password)
        except AccountError as error:
            raise fail(str(error)) from None
    console.print(f"Merchant {username!r} can now log in.")


# ------------------------------------------------------------------ products


def _price_options(prices: list[str]) -> list[catalogue.PriceIn]:
    """`TOKEN=AMOUNT` pairs (`native` for the chain's coin), amounts in base units."""
    parsed = []
    for price in prices:
        address, _, amount = price.partition("=")
        parsed.append(catalogue.PriceIn(token=NATIVE_COIN if address == "native" else address, amount=amount))
    return parsed


@products_app.command("list")
def list_products() -> None:
    with shop_engine() as (_, engine), Session(engine) as session:
        products = catalogue.merchant_products(session)
    table = Table("id", "sku", "name", "listed", "stock", "left / imported", "prices")
    for product in products:
        prices = ", ".join(f"{price.amount} @ {price.token[:10]}…" for price in product.prices)
        state = f"[red]{product.stock}[/]" if product.stock != "in_stock" else str(product.stock)
        table.add_row(
            str(product.id),
            product.sku,
            product.name,
            "yes" if product.active else "no",
            state,
            f"{product.available} / {product.total}",
            prices,
        )
    console.print(table)


@products_app.command("add")
def add_product(
    sku: str,
    name: str,
    price: Annotated[list[str], typer.Option(help="TOKEN=AMOUNT in base units; `native` for the coin.")],
    description: str = "",
    low_stock_percent: int = 20,
) -> None:
    try:
        product_in = catalogue.ProductIn(
            sku=sku,
            name=name,
            description=description,
            low_stock_percent=low_stock_percent,
            prices=_price_options(price),
        )
    except ValidationError as error:
        raise fail(f"invalid product: {error}") from None
    with shop_engine() as (_, engine), Session(engine) as session:
        try:
            created = catalogue.create_product(session, product_in)
        except catalogue.CatalogueError as error:
            raise fail(str(error)) from None
    console.print(f"Product {created.id} ({created.sku}) created.")


@products_app.command("edit")
def edit_product(
    product_id: int,
    name: str | None = None,
    description: str | None = None,
    listed: Annotated[bool | None, typer.Option("--listed/--unlisted")] = None,
    low_stock_percent: int | None = None,
    price: Annotated[list[str] | None, typer.Option(help="Replaces all prices: TOKEN=AMOUNT.")] = None,
) -> None:
    try:
        patch = catalogue.ProductPatch(
            name=name,
            description=description,
            active=listed,
            low_stock_percent=low_stock_percent,
            prices=_price_options(price) if price else None,
        )
    except ValidationError as error:
        raise fail(f"invalid edit: {error}") from None
    with shop_engine() as (_, engine), Session(engine) as session:
        try:
            catalogue.update_product(session, product_id, patch)
        except catalogue.CatalogueError as error:
            raise fail(str(error)) from None
    console.print(f"Product {product_id} updated.")


# ------------------------------------------------------------------ keys


@keys_app.command("import")
def import_key_file(
    product_id: int,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[Literal["txt", "csv"] | None, typer.Option()] = None,
) -> None:
    """Import a TXT (one key per line) or CSV (a `key` column) file: all of it, or nothing."""
    fmt = format or ("csv" if file.suffix.lower() == ".csv" else "txt")
    with (
        shop_engine() as (settings, engine),
        Session(engine) as session,
        Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()) as progress,
    ):
        task = progress.add_task("reading", total=None)

        def report(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        try:
            result = import_keys(
                session, Vault(load_keyring(settings)), product_id, file.name, file.read_bytes(), fmt, report
            )
        except KeyImportError as error:
            raise fail(f"nothing imported: {error}") from None
    console.print(
        f"Imported {result.imported} key(s); skipped {result.duplicates_in_file} repeated in the file "
        f"and {result.duplicates_existing} already in stock."
    )


# ------------------------------------------------------------------ orders


@orders_app.command("list")
def list_orders(
    status: OrderStatus | None = None,
    product: int | None = None,
    buyer: str | None = None,
    limit: int = 50,
) -> None:
    try:
        where = order_admin.OrderFilter(status=status, product_id=product, buyer=buyer, limit=limit)
    except ValidationError as error:
        raise fail(f"invalid filter: {error}") from None
    with shop_engine() as (_, engine), Session(engine) as session:
        page = order_admin.list_orders(session, where)
    table = Table(
        "order", "status", "product", "qty", "amount", "payer", "quoted", title=f"{page.total} order(s)"
    )
    for order in page.orders:
        table.add_row(
            order.order[:18] + "…",
            order.status,
            str(order.product_id),
            str(order.quantity),
            order.amount,
            order.payer or "",
            f"{order.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@orders_app.command("show")
def show_order(order_id: str) -> None:
    """One order with its whole timeline, payment, channel attempts and settlement transactions."""
    with shop_engine() as (_, engine), Session(engine) as session:
        try:
            detail = order_admin.order_detail(session, order_id)
        except order_admin.OrderAdminError as error:
            raise fail(str(error)) from None
    console.print(
        f"[bold]{detail.order}[/]  {detail.status}  product {detail.product_id} x {detail.quantity}"
    )
    console.print(f"paid {detail.amount} of {detail.token} by {detail.payer} in tx {detail.payment_tx}")
    timeline = Table("when", "what", title="timeline")
    for entry in detail.timeline:
        timeline.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S.%f}", entry.event)
    console.print(timeline)
    for attempt in detail.attempts:
        outcome = "ok" if attempt.succeeded else f"failed: {attempt.error}"
        console.print(f"  channel {attempt.channel} ({attempt.variant or '-'}): {outcome}")
    for tx in detail.settlement_txs:
        console.print(f"  settlement tx {tx}")


def refund(
    order_id: str,
    reason: Annotated[str, typer.Option(help="Shown to the merchant.")] = "refunded by the merchant",
) -> None:
    """Refund a paid, undelivered order on-chain (the running node sends the transaction)."""
    with shop_engine() as (_, engine), Session(engine) as session:
        try:
            order_admin.begin_refund(session, order_id, reason)
        except order_admin.OrderAdminError as error:
            raise fail(str(error)) from None
    console.print(f"Order {order_id} is marked for refund; the node sends it within seconds.")


# ------------------------------------------------------------------ status and simulation


def status() -> None:
    """Chain head, checkpoint lag, waiting orders and stock warnings."""
    with shop_engine() as (settings, engine), Session(engine) as session:
        record = DeploymentRecord.load(settings.deployment_file)
        checkpoint = session.get(ChainCheckpoint, record.chain_id)
        waiting = session.exec(
            select(ShopOrder.status, func.count())
            .where(
                col(ShopOrder.status).in_([OrderStatus.PAID, OrderStatus.CONFIRMED, OrderStatus.REFUNDING])
            )
            .group_by(ShopOrder.status)
        ).all()
        levels = stats.stock_levels(session)
    head = int(str(rpc_call(chain_url(settings), "eth_blockNumber")), 16)
    table = Table(show_header=False, title="链动小铺 Liandong status")
    table.add_row("chain head", str(head))
    at = checkpoint.block_number if checkpoint else None
    table.add_row(
        "checkpoint", f"{at} (lag {head - at} blocks)" if head is not None and at is not None else str(at)
    )
    for state, count in waiting:
        table.add_row(f"orders {state}", str(count))
    for level in levels:
        if level.low or level.sold_out:
            table.add_row(f"[red]stock {level.sku}[/]", f"{level.available} of {level.total} left")
    console.print(table)


def simulate(
    buyers: Annotated[int, typer.Option(min=1, max=6)] = 3,
    orders: Annotated[int, typer.Option(min=1)] = 20,
    rate: Annotated[float, typer.Option(min=0.1)] = 5.0,
    product: int | None = None,
    url: str | None = None,
) -> None:
    """Buyers paying from funded dev accounts of the local chain, through the shop's API."""
    settings = Settings()
    shop_url = url or f"http://{settings.api_host}:{settings.api_port}"
    record = DeploymentRecord.load(settings.deployment_file)
    w3 = Web3(Web3.HTTPProvider(chain_url(settings)))
    wallets = [DevBuyer(w3, record.escrow, dev_account(4 + n), record.chain_id) for n in range(buyers)]
    api = httpx.Client(base_url=shop_url, timeout=10)
    product_id = product or api.get("/api/products").json()[0]["id"]
    placed: list[tuple[str, str, float]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()) as progress:
        paying = progress.add_task("paying", total=orders)
        for n in range(orders):
            answer = api.post("/api/quotes", json={"product_id": product_id, "token": NATIVE_COIN})
            if answer.status_code != 201:
                raise fail(f"quote refused: {answer.status_code} {answer.text}")
            issued = answer.json()
            wallets[n % buyers].pay(quote_from_api(issued["quote"]), bytes.fromhex(issued["signature"][2:]))
            placed.append((issued["order"], issued["access_token"], time.monotonic()))
            progress.advance(paying)
            time.sleep(1 / rate)
        delivering = progress.add_task("delivered", total=orders)
        pending = list(placed)
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            order, token, _ = pending[0]
            state = api.get(f"/api/orders/{order}", headers={"X-Order-Token": token}).json()["status"]
            if state in ("delivered", "refunding", "refunded"):
                pending.pop(0)
                progress.advance(delivering)
            else:
                time.sleep(0.1)
    console.print(f"{orders - len(pending)} of {orders} orders delivered or refunded.")
    if pending:
        raise typer.Exit(code=1)


# ------------------------------------------------------------------ audit


def _rpc(url: str) -> Rpc:
    return lambda method, params: rpc_call(url, method, params, timeout=30)


def audit(
    rpc: Annotated[str, typer.Option(help="The chain's JSON-RPC URL.")],
    escrow: Annotated[str, typer.Option(help="The escrow's address.")],
    from_block: Annotated[int, typer.Option(help="Where the escrow was deployed, or earlier.")] = 0,
    database_url: Annotated[
        str | None, typer.Option(help="The shop's database, to reconcile (needs its master key).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write a standalone HTML report.")] = None,
) -> None:
    """Every order of an escrow from the chain alone, its books per token against what it holds,
    and (with the shop's database) every disagreement with the shop's records. Exit 1 on findings."""
    report = audit_chain(_rpc(rpc), escrow, from_block)
    if database_url is not None:
        settings = Settings(database_url=database_url)
        engine = make_engine(database_url)
        try:
            reconcile(report, engine, Vault(load_keyring(settings)))
        finally:
            engine.dispose()
    books = Table(
        "token", "paid", "escrowed", "merchant", "refund credits", "fees", "owed", "held", title="books"
    )
    for book in report.books:
        cells = (
            book.paid,
            book.escrowed,
            book.merchant,
            book.refund_credits,
            book.fees,
            book.owed,
            book.held,
        )
        books.add_row(book.token, *map(str, cells))
    console.print(books)
    states = Counter(order.state for order in report.orders)
    console.print(f"{len(report.orders)} orders: " + ", ".join(f"{n} {state}" for state, n in states.items()))
    findings = Table("kind", "order", "detail", title=f"{len(report.findings)} finding(s)")
    for finding in report.findings:
        findings.add_row(finding.kind, finding.order or "", finding.detail)
    console.print(findings)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_json(), indent=2))
    if html_out is not None:
        html_out.write_text(html_report(report))
    if report.findings:
        raise typer.Exit(code=1)


def verify_key(
    rpc: Annotated[str, typer.Option(help="The chain's JSON-RPC URL.")],
    escrow: Annotated[str, typer.Option(help="The escrow's address.")],
    order: Annotated[str, typer.Option(help="The order id (0x + 64 hex digits).")],
    key: Annotated[list[str], typer.Option(help="A key of the order, in order; repeat for several.")],
    salt: Annotated[str, typer.Option(help="The salt the shop gave with the keys.")],
) -> None:
    """Checks your keys against the commitment the escrow recorded for your order (exit 0: match)."""
    recorded = commitment_on_chain(_rpc(rpc), escrow, order)
    if recorded is None:
        raise fail(f"the escrow recorded no delivery of order {order}")
    mine = (
        "0x"
        + delivery_commitment(bytes.fromhex(order[2:]), bytes.fromhex(salt.removeprefix("0x")), key).hex()
    )
    if mine != recorded:
        raise fail(f"MISMATCH: these keys give {mine}, the escrow recorded {recorded}")
    console.print(f"match: the escrow recorded {recorded} for these keys")


def verify_contract(
    rpc: Annotated[str, typer.Option(help="The chain's JSON-RPC URL.")],
    address: Annotated[str, typer.Option(help="The deployed escrow.")],
    out: Annotated[Path, typer.Option(help="Where to write the standard-JSON input and metadata.")] = Path(
        "verification"
    ),
) -> None:
    """Recompile the escrow and compare it with the code at ADDRESS, as an explorer does (exit 1 if
    it differs); writes the standard-JSON input Etherscan, Blockscout and Sourcify accept."""
    deployed = bytes.fromhex(str(rpc_call(rpc, "eth_getCode", [address, "latest"])).removeprefix("0x"))
    try:
        result = verify_escrow(deployed, address, out)
    except VerificationError as error:
        raise fail(str(error)) from None
    if not result.matches:
        raise fail(
            f"MISMATCH: the code at {address} ({result.deployed_size} bytes) is not the escrow compiled "
            f"from these sources ({result.compiled_size} bytes)"
        )
    exact = "and its metadata hash" if result.metadata_matches else "(metadata differs: other file paths)"
    console.print(f"match: {address} runs the escrow compiled from these sources {exact}; files in {out}/")
