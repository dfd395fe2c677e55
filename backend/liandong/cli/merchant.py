"""The merchant's commands: logins, products, key imports, orders and refunds.

They work on the shop's database directly (the settings say where), through the same service
functions as the API; a running node picks up what they change (its rescan sends refunds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlmodel import Session

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.profiles import load_profiles
from liandong.chain.quotes import NATIVE_COIN
from liandong.cli.common import Commands, console, deployment, fail, progress_bar, shop_engine
from liandong.core.config import Settings
from liandong.runtime.chains import ChainSetup, chain_id_named, chain_setups, pricing_of
from liandong.services import catalogue, order_admin
from liandong.services.merchant_auth import create_merchant
from liandong.store.models import OrderStatus
from liandong.vault.crypto import load_keyring
from liandong.vault.importer import KeyImportError, import_keys
from liandong.vault.service import Vault

merchant_app = typer.Typer(cls=Commands, help="Merchant logins of the dashboard.", no_args_is_help=True)
products_app = typer.Typer(cls=Commands, help="Products and their prices.", no_args_is_help=True)
keys_app = typer.Typer(cls=Commands, help="Card keys in stock.", no_args_is_help=True)
orders_app = typer.Typer(cls=Commands, help="Orders: search them, see one whole.", no_args_is_help=True)

PriceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--price",
        help="TOKEN=AMOUNT, the price of one unit: a token address and base units (`native` for the "
        "chain's coin, in wei), or a symbol and whole tokens (`USDT=10`: 10 USDT on every chain of the "
        "shop that has it; `Base:USDC=9.99` on one chain, by name or id). Repeat for several.",
    ),
]


# ------------------------------------------------------------------ logins


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
        create_merchant(session, username, password)
    console.print(f"Merchant {username!r} can now log in.", markup=False)


# ------------------------------------------------------------------ products


def _prices(prices: list[str]) -> list[catalogue.PriceIn]:
    parsed = []
    for price in prices:
        token, _, amount = price.partition("=")
        chain, _, token = token.rpartition(":")
        chain_id = chain_id_named(chain) if chain else None
        native = token == "native"  # noqa: S105  (the word, not a secret)
        if native or token.startswith("0x"):
            address = NATIVE_COIN if native else token
            parsed.append(catalogue.PriceIn(chain_id=chain_id, token=address, amount=amount))
        else:
            parsed.append(catalogue.PriceIn(chain_id=chain_id, token=token, units=amount))
    return parsed


def _pricing(settings: Settings) -> catalogue.Pricing:
    """What the prices may name: the node's chains (their tokens' decimals asked of the chains)."""
    record = deployment(settings)
    if settings.rpc_url is None:  # no endpoint configured: the profiles' tokens of the first chain
        return pricing_of([ChainSetup(record, [], None, None, load_profiles().get(record.chain_id))])
    return pricing_of(chain_setups(settings, record))


def _token_names(settings: Settings) -> dict[str, str]:
    """`native` for the chain's coin, and the symbols of the tokens the deployment record names."""
    names = {NATIVE_COIN: "native"}
    if settings.deployment_file.is_file():
        record = DeploymentRecord.load(settings.deployment_file)
        names |= {address.lower(): symbol for symbol, address in record.tokens.items()}
    return names


@products_app.command("list")
def list_products() -> None:
    """Every product, listed or not, with its prices and stock (left / imported)."""
    with shop_engine() as (settings, engine), Session(engine) as session:
        products = catalogue.merchant_products(session)
    names = _token_names(settings)
    table = Table("id", "sku", "name", "listed", "stock", "left / imported")
    table.add_column("prices", no_wrap=True)
    for product in products:
        warn = product.stock != catalogue.StockState.IN_STOCK
        table.add_row(
            str(product.id),
            product.sku,
            product.name,
            "yes" if product.active else "no",
            f"[red]{product.stock}[/]" if warn else str(product.stock),
            f"{product.available} / {product.total}",
            "\n".join(f"{price.amount} {names.get(price.token, price.token)}" for price in product.prices),
        )
    console.print(table)


@products_app.command("add")
def add_product(
    sku: str,
    name: str,
    price: PriceOption = None,
    description: str = "",
    low_stock_percent: Annotated[int, typer.Option(help="Warn when this share of the stock is left.")] = 20,
) -> None:
    """Add a product; keys come with `liandong keys import`."""
    try:
        product_in = catalogue.ProductIn(
            sku=sku,
            name=name,
            description=description,
            low_stock_percent=low_stock_percent,
            prices=_prices(price or []),
        )
    except ValidationError as error:
        raise fail(f"invalid product: {error}") from None
    with shop_engine() as (settings, engine), Session(engine) as session:
        created = catalogue.create_product(session, product_in, _pricing(settings))
    console.print(f"Product {created.id} ({created.sku}) created.", markup=False)


@products_app.command("edit")
def edit_product(
    product_id: int,
    name: str | None = None,
    description: str | None = None,
    listed: Annotated[bool | None, typer.Option("--listed/--unlisted", help="Shown to buyers?")] = None,
    low_stock_percent: int | None = None,
    price: PriceOption = None,
) -> None:
    """Change what is given; `--price` replaces all the product's prices."""
    try:
        patch = catalogue.ProductPatch(
            name=name,
            description=description,
            active=listed,
            low_stock_percent=low_stock_percent,
            prices=_prices(price) if price else None,
        )
    except ValidationError as error:
        raise fail(f"invalid edit: {error}") from None
    with shop_engine() as (settings, engine), Session(engine) as session:
        catalogue.update_product(session, product_id, patch, _pricing(settings))
    console.print(f"Product {product_id} updated.")


# ------------------------------------------------------------------ keys


@keys_app.command("import")
def import_key_file(
    product_id: int,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    format: Annotated[
        Literal["txt", "csv"] | None, typer.Option(help="Default: from the file's extension.")
    ] = None,
) -> None:
    """Import a TXT (one key per line) or CSV (a `key` column) file: all of it, or nothing."""
    fmt = format or ("csv" if file.suffix.lower() == ".csv" else "txt")
    with shop_engine() as (settings, engine), Session(engine) as session, progress_bar() as progress:
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
    product: Annotated[int | None, typer.Option(help="A product id.")] = None,
    buyer: Annotated[str | None, typer.Option(help="The paying address.")] = None,
    limit: int = 50,
) -> None:
    """Orders, newest first."""
    try:
        where = order_admin.OrderFilter(status=status, product_id=product, buyer=buyer, limit=limit)
    except ValidationError as error:
        raise fail(f"invalid filter: {error}") from None
    with shop_engine() as (_, engine), Session(engine) as session:
        page = order_admin.list_orders(session, where)
    table = Table(title=f"{page.total} order(s)")
    table.add_column("order", overflow="fold")
    for column in ("status", "product", "qty", "amount"):
        table.add_column(column)
    table.add_column("payer", overflow="fold")
    table.add_column("quoted (UTC)")
    for order in page.orders:
        table.add_row(
            order.order,
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
        detail = order_admin.order_detail(session, order_id)
    facts = Table(show_header=False, title=f"order {detail.order}")
    facts.add_row("status", detail.status)
    facts.add_row("product", f"{detail.product_id} x {detail.quantity}")
    facts.add_row("price", f"{detail.amount} of {detail.token}")
    facts.add_row("payer", detail.payer or "")
    facts.add_row(
        "payment", f"tx {detail.payment_tx} in block {detail.payment_block}" if detail.payment_tx else ""
    )
    facts.add_row("commitment", detail.commitment or "")
    facts.add_row("refund reason", detail.refund_reason or "")
    console.print(facts)
    timeline = Table("when (UTC)", "what", title="timeline")
    for entry in detail.timeline:
        timeline.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3], entry.event)
    console.print(timeline)
    for attempt in detail.attempts:
        outcome = "ok" if attempt.succeeded else f"failed: {attempt.error}"
        console.print(f"channel {attempt.channel} ({attempt.variant or '-'}): {outcome}", markup=False)
    for tx in detail.settlement_txs:
        console.print(f"settlement tx {tx}")


def refund(
    order_id: str,
    reason: Annotated[
        str, typer.Option(help="Kept with the order, shown to the merchant.")
    ] = "refunded by the merchant",
) -> None:
    """Refund a paid, undelivered order on-chain (the running node sends the transaction)."""
    with shop_engine() as (_, engine), Session(engine) as session:
        order_admin.begin_refund(session, order_id, reason)
    console.print(f"Order {order_id} is marked for refund; the running node sends it within seconds.")
