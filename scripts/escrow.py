"""The escrow owner's transactions, signed where the owner's ape account lives.

    ape run escrow withdraw --account owner --network ethereum:mainnet:node [--token 0x…]
    ape run escrow withdraw-fees --account owner --network … [--token …] [--recipient …]
    ape run escrow pause | unpause --account owner --network …
    ape run escrow propose-payout 0xNew | apply-payout | cancel-payout --account owner --network …
    ape run escrow transfer-ownership 0xNew --account owner --network …
    ape run escrow accept-ownership --account new-owner --network …
    ape run escrow set-operator 0xNewHotKey --account owner --network …

`set-operator` is the owner's half of a key rotation: `liandong escrow rotate-operator`, run on the
shop's server, generates the new key into the shop's keystore and prints its address.

`--account` is any ape account: a keyfile (`ape accounts import`), a Ledger or Trezor
(`ape ledger add` / `ape trezor add`, from `pip install -e '.[wallets]'`), or a Safe
(`ape safe add`): ape-safe then collects its local signers' signatures and executes, or proposes
the transaction to the Safe's service when more owners must sign. The calls are built by
`liandong.chain.owner`, the same functions `liandong escrow …` prints for other wallets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from ape import chain
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context
from ape.exceptions import ContractLogicError
from ethpm_types import ContractType
from liandong.chain import owner as calls
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.owner import OwnerCall, OwnerCallError
from liandong.chain.quotes import NATIVE_COIN

Build = Callable[[DeploymentRecord, str], OwnerCall]


def _record(path: Path | None) -> DeploymentRecord:
    path = path or Path("deployments") / f"{chain.chain_id}.json"
    if not path.is_file():
        raise click.UsageError(f"no deployment record at {path} (--record)")
    record = DeploymentRecord.load(path)
    if record.chain_id != chain.chain_id:
        raise click.UsageError(f"{path} is for chain {record.chain_id}, connected to {chain.chain_id}")
    return record


def _escrow(record_path: Path | None) -> Any:
    """The escrow as an ape contract, from the ABI in its deployment record."""
    record = _record(record_path)
    return chain.contracts.instance_at(record.escrow, contract_type=ContractType(abi=record.abi))


def _send(cli_ctx: Any, account: Any, record_path: Path | None, build: Build) -> None:
    """Builds the call for `account` and has the account sign and send it."""
    if account is None:
        raise click.UsageError("choose the signing account with --account")
    record = _record(record_path)
    try:
        call = build(record, str(account.address))
    except OwnerCallError as error:
        raise click.BadParameter(str(error)) from None
    cli_ctx.logger.info(f"{account.address}: {call.summary} ({call.signature} on {call.to})")
    try:
        receipt = account.transfer(call.to, call.value, data=call.data)
    except ContractLogicError as error:  # the escrow's custom error, decoded from the ABI
        raise click.ClickException(f"the escrow refuses {call.signature}: {error}") from None
    cli_ctx.logger.success(f"{call.signature} mined in {receipt.txn_hash}")


def _command(name: str, help_text: str) -> Callable[[Callable[..., Any]], Any]:
    """A subcommand connected to `--network`, signing with `--account`, reading `--record`."""

    def wrap(function: Callable[..., Any]) -> Any:
        decorated = click.option(
            "--record",
            "record_path",
            type=click.Path(path_type=Path),
            help="The deployment record (default: deployments/<chain id>.json).",
        )(function)
        decorated = account_option(prompt=False)(decorated)
        decorated = ape_cli_context()(decorated)
        return cli.command(name, cls=ConnectedProviderCommand, help=help_text)(decorated)

    return wrap


@click.group()
def cli() -> None:
    """The escrow owner's transactions, signed by an ape account (keyfile, Ledger, Trezor, Safe)."""


TOKEN = click.option("--token", default=NATIVE_COIN, show_default=True, help="The token (0x0: native).")


@_command("withdraw", "Send the merchant's balance in a token to the payout address.")
@TOKEN
def withdraw(cli_ctx: Any, account: Any, record_path: Path | None, token: str) -> None:
    payout = str(_escrow(record_path).payout())
    _send(cli_ctx, account, record_path, lambda r, sender: calls.withdraw(r, sender, payout, token))


@_command("withdraw-fees", "Send the fees in a token accrued to a recipient to it.")
@TOKEN
@click.option("--recipient", required=True, help="The account the fees accrued to.")
def withdraw_fees(cli_ctx: Any, account: Any, record_path: Path | None, token: str, recipient: str) -> None:
    _send(cli_ctx, account, record_path, lambda r, sender: calls.withdraw_fees(r, sender, token, recipient))


@_command("pause", "Stop new payments (refunds, deliveries and withdrawals go on).")
def pause(cli_ctx: Any, account: Any, record_path: Path | None) -> None:
    _send(cli_ctx, account, record_path, calls.pause)


@_command("unpause", "Accept payments again.")
def unpause(cli_ctx: Any, account: Any, record_path: Path | None) -> None:
    _send(cli_ctx, account, record_path, calls.unpause)


@_command("propose-payout", "Propose a new payout address (applicable after PAYOUT_DELAY, 2 days).")
@click.argument("new_payout")
def propose_payout(cli_ctx: Any, account: Any, record_path: Path | None, new_payout: str) -> None:
    delay = int(_escrow(record_path).PAYOUT_DELAY())
    _send(cli_ctx, account, record_path, lambda r, s: calls.propose_payout(r, s, new_payout, delay))


@_command("apply-payout", "Apply the pending payout change once its delay has passed.")
def apply_payout(cli_ctx: Any, account: Any, record_path: Path | None) -> None:
    _send(cli_ctx, account, record_path, calls.apply_payout)


@_command("cancel-payout", "Cancel the pending payout change (the owner or the payout address).")
def cancel_payout(cli_ctx: Any, account: Any, record_path: Path | None) -> None:
    _send(cli_ctx, account, record_path, calls.cancel_payout)


@_command("transfer-ownership", "Step one: offer the escrow to a new owner.")
@click.argument("new_owner")
def transfer_ownership(cli_ctx: Any, account: Any, record_path: Path | None, new_owner: str) -> None:
    _send(cli_ctx, account, record_path, lambda r, s: calls.transfer_ownership(r, s, new_owner))


@_command("set-operator", "Make a new hot key (from `liandong escrow rotate-operator`) the operator.")
@click.argument("new_operator")
def set_operator(cli_ctx: Any, account: Any, record_path: Path | None, new_operator: str) -> None:
    _send(cli_ctx, account, record_path, lambda r, s: calls.set_operator(r, s, new_operator))


@_command("accept-ownership", "Step two: the pending owner takes the escrow over.")
def accept_ownership(cli_ctx: Any, account: Any, record_path: Path | None) -> None:
    _send(cli_ctx, account, record_path, calls.accept_ownership)
