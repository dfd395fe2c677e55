"""The `liandong` command: run the shop (`run`), operate it (`merchant`, `operate`, `vault`), audit
it (`audit`). Each group lives in its own module of this package; this one only wires them, and
`python -m liandong` runs the same app."""

from __future__ import annotations

import typer

from liandong.cli import audit, merchant, operate, run
from liandong.cli.backup import backup
from liandong.cli.common import Commands
from liandong.cli.escrow import escrow_app
from liandong.cli.vault import vault_app

app = typer.Typer(
    cls=Commands,
    help="链动小铺 Liandong: a card-key shop paid through an on-chain escrow.",
    no_args_is_help=True,
)
app.command()(run.up)
app.command()(run.node)
app.add_typer(merchant.merchant_app, name="merchant")
app.add_typer(merchant.products_app, name="products")
app.add_typer(merchant.keys_app, name="keys")
app.add_typer(merchant.orders_app, name="orders")
app.command()(merchant.refund)
app.command()(operate.status)
app.command()(operate.simulate)
app.add_typer(vault_app, name="vault")
app.add_typer(escrow_app, name="escrow")
app.command()(backup)
app.command()(audit.audit)
app.command("verify-key")(audit.verify_key)
app.command("verify-contract")(audit.verify_contract)


@app.callback()
def main() -> None:
    """Run `liandong up` to start a local shop."""
