"""`liandong escrow …`: the merchant's money and the escrow's owner actions.

`balance` reads the books the audit computes. The owner's actions (withdrawals, pause, the payout
change, the ownership transfer) never take the owner's key: each prints the unsigned transaction
for the owner's account (JSON on stdout for `cast send` or a wallet, a summary on stderr), or with
`--propose-safe` the Safe transaction its owners sign. `ape run escrow …` signs the same calls with
an ape account (keyfile, hardware wallet, Safe) where the owner's account lives. `rotate-operator`
generates the new hot key into the shop's keystore (sealed by the master key) before it prints the
owner's `setOperator`: the key never leaves the server, the owner's never comes to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from rich.table import Table
from sqlmodel import Session

from liandong.audit.report import JsonRpc, books_at_head
from liandong.chain import owner as calls
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.escrow import rpc_hex, rpc_int
from liandong.chain.owner import OwnerCall
from liandong.chain.quotes import NATIVE_COIN
from liandong.cli.common import Commands, chain_url, console, errors, fail
from liandong.core.config import Settings
from liandong.store.db import open_shop_database
from liandong.vault import operator_keys
from liandong.vault.crypto import load_keyring

escrow_app = typer.Typer(
    cls=Commands, help="The escrow's balances and its owner's transactions.", no_args_is_help=True
)
payout_app = typer.Typer(
    cls=Commands,
    help="Change the payout address: propose, then apply after the delay (or cancel).",
    no_args_is_help=True,
)
ownership_app = typer.Typer(
    cls=Commands,
    help="Hand the escrow to a new owner in two steps: offer, then accept.",
    no_args_is_help=True,
)
escrow_app.add_typer(payout_app, name="set-payout")
escrow_app.add_typer(ownership_app, name="transfer-ownership")

DeploymentOption = Annotated[
    Path | None, typer.Option("--deployment", help="The deployment record (default: the shop's).")
]
RpcOption = Annotated[
    str | None, typer.Option("--rpc", help="The chain's JSON-RPC URL (default: the shop's).")
]
SafeOption = Annotated[
    str | None,
    typer.Option(
        "--propose-safe",
        metavar="SAFE",
        help="Print the Safe transaction (SafeTx hash and fields) for the owners of this Safe to sign.",
    ),
]
TokenOption = Annotated[
    str, typer.Option("--token", help="Token address or symbol from the record; default the native coin.")
]


@dataclass
class Escrow:
    """The deployment record and a connection to its chain."""

    record: DeploymentRecord
    rpc: JsonRpc
    url: str

    def view(self, function: str, *args: Any, returns: str = "uint256") -> Any:
        _, data = calls.encode_call(self.record, function, args)
        answer = rpc_hex(
            self.rpc("eth_call", [{"to": self.record.escrow, "data": "0x" + data.hex()}, "latest"])
        )
        return decode([returns], bytes.fromhex(answer[2:]))[0]

    def owner(self) -> str:
        return to_checksum_address(self.view("owner", returns="address"))

    def token(self, text: str) -> str:
        """A token address, or the symbol of one the record lists."""
        if text.lower() in ("native", "eth", ""):
            return NATIVE_COIN
        by_symbol = {symbol.lower(): token for symbol, token in self.record.tokens.items()}
        return calls.address(by_symbol.get(text.lower(), text), "token")

    def fee_recipient(self) -> str:
        return to_checksum_address(self.view("feeRecipient", returns="address"))

    def timestamp(self) -> int:
        return rpc_int(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"])


@contextmanager
def _escrow(deployment: Path | None, rpc: str | None) -> Iterator[Escrow]:
    settings = Settings()
    path = deployment or settings.deployment_file
    try:
        record = DeploymentRecord.load(path)
    except FileNotFoundError:
        raise fail(
            f"no deployment record at {path}: `ape run deploy` writes one (or pass --deployment)"
        ) from None
    except ValueError as error:
        raise fail(f"{path} is not a deployment record: {error}") from None
    url = rpc or chain_url(settings)
    # An unreachable chain (`AuditError`) or a malformed address (`OwnerCallError`) ends the command
    # with its message: both are `LiandongError`s, which `Commands` turns into exits.
    with JsonRpc(url, timeout=15.0) as chain:
        chain_id = rpc_int(chain("eth_chainId", []))
        if chain_id != record.chain_id:
            raise fail(f"{url} is chain {chain_id}; the deployment record is for chain {record.chain_id}")
        if not rpc_hex(chain("eth_getCode", [record.escrow, "latest"])).removeprefix("0x"):
            raise fail(f"no contract at {record.escrow} on chain {chain_id}")
        yield Escrow(record, chain, url)


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _emit(escrow: Escrow, call: OwnerCall, safe: str | None, notes: tuple[str, ...] = ()) -> None:
    """The transaction for the owner's account, or the Safe transaction for its owners."""
    if safe is None:
        typer.echo(json.dumps(call.as_json(), indent=2))
        errors.print(f"To sign as {call.sender}: {call.summary}.", markup=False, highlight=False)
        args = " ".join(str(arg) for arg in call.args)
        cast = f"cast send {call.to} '{call.signature}' {args}".rstrip()
        errors.print(
            f"  {cast} --rpc-url {escrow.url} --from {call.sender}",
            markup=False,
            highlight=False,
        )
    else:
        safe = calls.address(safe, "Safe")
        if call.sender != safe:
            raise fail(f"{call.sender} must send this transaction, not the Safe {safe}")
        nonce = rpc_int(escrow.rpc("eth_call", [{"to": safe, "data": "0x" + _NONCE.hex()}, "latest"]))
        proposal = calls.safe_transaction(safe, call, nonce)
        typer.echo(json.dumps(proposal.as_json(), indent=2))
        errors.print(
            f"Safe {safe} transaction {nonce}: {call.summary}. Its owners sign safeTxHash "
            f"0x{proposal.safe_tx_hash.hex()} (`ape run escrow … --account <safe alias>`, the Safe app, "
            "or `cast wallet sign --no-hash`); then anyone executes it with execTransaction.",
            markup=False,
            highlight=False,
        )
    for note in notes:
        errors.print(note, markup=False, highlight=False)


_NONCE = bytes.fromhex("affed0e0")  # Safe.nonce()


def _owner_action(
    deployment: Path | None, rpc: str | None, safe: str | None, build: Callable[[Escrow, str], OwnerCall]
) -> None:
    with _escrow(deployment, rpc) as escrow:
        call = build(escrow, escrow.owner())
        _emit(escrow, call, safe)


# ------------------------------------------------------------------ balance


@dataclass
class TokenBalance:
    """One token's books, as the audit computes them, with the fees split per recipient."""

    token: str
    symbol: str
    escrowed: int
    merchant: int
    fees: int
    fees_by_recipient: dict[str, int]
    refund_credits: int
    held: int | None


@dataclass
class EscrowBalance:
    chain_id: int
    escrow: str
    block: int
    owner: str
    payout: str
    paused: bool
    tokens: list[TokenBalance]
    findings: list[str]


def escrow_balance(escrow: Escrow) -> EscrowBalance:
    """The audit's books of every token the escrow saw. Fees accrue per recipient: the split reads
    `feeBalance` of the deployment's, the current and every withdrawing recipient; what the audit
    counts beyond them accrued to recipients replaced since ("earlier recipients")."""
    record = escrow.record
    report = books_at_head(escrow.rpc, record.escrow, record.block_number)
    recipients = sorted(
        {to_checksum_address(record.fee_recipient), escrow.fee_recipient()}
        | {movement.recipient for movement in report.movements if movement.kind == "fees"}
    )
    symbols = {to_checksum_address(token): symbol for symbol, token in record.tokens.items()}
    tokens = []
    for book in report.books:
        accrued = {r: int(escrow.view("feeBalance", book.token, r)) for r in recipients}
        split = {r: amount for r, amount in accrued.items() if amount}
        if (other := book.fees - sum(split.values())) > 0:
            split["earlier recipients"] = other
        symbol = "native" if book.token == NATIVE_COIN else symbols.get(to_checksum_address(book.token), "")
        tokens.append(
            TokenBalance(
                book.token,
                symbol,
                book.escrowed,
                book.merchant,
                book.fees,
                split,
                book.refund_credits,
                book.held,
            )
        )
    return EscrowBalance(
        report.chain_id,
        report.escrow,
        report.to_block,
        escrow.owner(),
        to_checksum_address(escrow.view("payout", returns="address")),
        bool(escrow.view("paused", returns="bool")),
        tokens,
        [f"{finding.kind}: {finding.detail}" for finding in report.findings],
    )


def balance(
    deployment: DeploymentOption = None,
    rpc: RpcOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the balances as JSON.")] = False,
) -> None:
    """Per token: escrowed (paid, unsettled), the merchant's balance, fees per recipient, refund
    credits and what the escrow holds, as `liandong audit` computes them from the chain."""
    with _escrow(deployment, rpc) as escrow:
        state = escrow_balance(escrow)
    if json_out:
        typer.echo(json.dumps(asdict(state), indent=2))
        return
    accepting = "PAUSED" if state.paused else "accepting payments"
    console.print(
        f"Escrow {state.escrow} on chain {state.chain_id} at block {state.block}: {accepting}; "
        f"payout {state.payout}, owner {state.owner}",
        markup=False,
        highlight=False,
    )
    table = Table(title="balances per token")
    for column in ("token", "escrowed", "merchant", "fees", "refund credits", "held"):
        table.add_column(column, overflow="fold")
    for token in state.tokens:
        fees = "\n".join(f"{r}: {amount}" for r, amount in token.fees_by_recipient.items()) or "0"
        table.add_row(
            f"{token.symbol} {token.token}".strip(),
            str(token.escrowed),
            str(token.merchant),
            fees,
            str(token.refund_credits),
            str(token.held),
        )
    console.print(table)
    for finding in state.findings:
        errors.print(f"audit finding: {finding} (run `liandong audit`)", markup=False, highlight=False)


# ------------------------------------------------------------------ owner actions


def withdraw(
    token: TokenOption = "native",  # noqa: S107
    deployment: DeploymentOption = None,
    rpc: RpcOption = None,
    propose_safe: SafeOption = None,
) -> None:
    """The merchant's whole balance in a token to the payout address (the owner's transaction)."""

    def build(escrow: Escrow, owner: str) -> OwnerCall:
        address = escrow.token(token)
        if not escrow.view("merchantBalance", address):
            raise fail(f"nothing to withdraw: the merchant's balance of {token} is 0")
        payout = to_checksum_address(escrow.view("payout", returns="address"))
        return calls.withdraw(escrow.record, owner, payout, address)

    _owner_action(deployment, rpc, propose_safe, build)


def withdraw_fees(
    token: TokenOption = "native",  # noqa: S107
    recipient: Annotated[
        str | None, typer.Option(help="The account the fees accrued to (default: the current fee recipient).")
    ] = None,
    deployment: DeploymentOption = None,
    rpc: RpcOption = None,
    propose_safe: SafeOption = None,
) -> None:
    """The platform fees in a token accrued to a recipient, sent to it (the owner's transaction)."""

    def build(escrow: Escrow, owner: str) -> OwnerCall:
        address = escrow.token(token)
        to = calls.address(recipient, "fee recipient") if recipient else escrow.fee_recipient()
        if not escrow.view("feeBalance", address, to):
            raise fail(f"nothing to withdraw: no fees of {token} accrued to {to}")
        return calls.withdraw_fees(escrow.record, owner, address, to)

    _owner_action(deployment, rpc, propose_safe, build)


def pause(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Stop new payments; refunds, deliveries and withdrawals go on."""

    def build(escrow: Escrow, owner: str) -> OwnerCall:
        if escrow.view("paused", returns="bool"):
            raise fail("the escrow is already paused")
        return calls.pause(escrow.record, owner)

    _owner_action(deployment, rpc, propose_safe, build)


def unpause(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Accept payments again."""

    def build(escrow: Escrow, owner: str) -> OwnerCall:
        if not escrow.view("paused", returns="bool"):
            raise fail("the escrow is not paused")
        return calls.unpause(escrow.record, owner)

    _owner_action(deployment, rpc, propose_safe, build)


@contextmanager
def _keystore(settings: Settings) -> Iterator[Session]:
    """A session on the shop's database, where the operator keystore lives."""
    engine = open_shop_database(settings)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def rotate_operator(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Generate a new operator key into the shop's keystore and print the owner's setOperator call.

    Run where the shop's database and master key are. The key is sealed by the master key and
    never shown. Once the owner's transaction is mined, running nodes switch to it by themselves.
    """
    settings = Settings()
    with _escrow(deployment, rpc) as escrow:
        owner = escrow.owner()
        current = to_checksum_address(escrow.view("operator", returns="address"))
        with _keystore(settings) as session:
            new_operator = operator_keys.generate_operator_key(
                session, load_keyring(settings), escrow.record.chain_id
            )
        notes = (
            f"Generated operator {new_operator} (replacing {current}); its key is sealed in the keystore.",
            f"Fund it with gas on chain {escrow.record.chain_id} before the owner sends the transaction.",
            f"Nodes switch to it within {settings.operator_check_seconds:g} s of the transaction being mined."
            " From that moment quotes signed by the old key no longer verify: a buyer who pays one is"
            " refused by the escrow (nothing is taken) and gets a new quote from the shop.",
        )
        _emit(escrow, calls.set_operator(escrow.record, owner, new_operator), propose_safe, notes)


def operators(deployment: DeploymentOption = None, rpc: RpcOption = None) -> None:
    """The escrow's operator now, and the keys in the shop's keystore for its chain."""
    settings = Settings()
    with _escrow(deployment, rpc) as escrow:
        current = to_checksum_address(escrow.view("operator", returns="address"))
        with _keystore(settings) as session:
            keys = operator_keys.operator_keys(session, escrow.record.chain_id)
    table = Table("address", "status", "generated", "the escrow's operator")
    for key in keys:
        table.add_row(
            key.address,
            key.status.value,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            "yes" * (key.address == current),
        )
    console.print(f"operator on chain {escrow.record.chain_id}: {current}")
    console.print(table)


escrow_app.command()(balance)
escrow_app.command()(withdraw)
escrow_app.command("withdraw-fees")(withdraw_fees)
escrow_app.command()(pause)
escrow_app.command()(unpause)
escrow_app.command("rotate-operator")(rotate_operator)
escrow_app.command()(operators)


# ------------------------------------------------------------------ payout change


def _pending(escrow: Escrow) -> tuple[str | None, int]:
    pending = to_checksum_address(escrow.view("pendingPayout", returns="address"))
    at = int(escrow.view("pendingPayoutAt", returns="uint64"))
    return (None if int(pending, 16) == 0 else pending), at


@payout_app.command("propose")
def propose_payout(
    new_payout: Annotated[str, typer.Argument(help="The new payout address.")],
    deployment: DeploymentOption = None,
    rpc: RpcOption = None,
    propose_safe: SafeOption = None,
) -> None:
    """Propose a new payout address; it can be applied PAYOUT_DELAY (2 days) after the proposal is
    mined, and the owner or the current payout address can cancel it until then."""
    with _escrow(deployment, rpc) as escrow:
        delay = int(escrow.view("PAYOUT_DELAY", returns="uint64"))
        call = calls.propose_payout(escrow.record, escrow.owner(), new_payout, delay)
        earliest = escrow.timestamp() + delay
        notes = [
            f"Delay {delay} s ({delay / 86400:g} days): applicable from about {_when(earliest)} if mined now."
        ]
        pending, at = _pending(escrow)
        if pending is not None:
            notes.append(f"It replaces the pending proposal of {pending} (applicable {_when(at)}).")
        _emit(escrow, call, propose_safe, tuple(notes))


@payout_app.command("apply")
def apply_payout(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Make the pending payout change take effect once its delay has passed (anyone may send it)."""
    with _escrow(deployment, rpc) as escrow:
        pending, at = _pending(escrow)
        if pending is None:
            raise fail("no payout change is pending: propose one with `liandong escrow set-payout propose`")
        if (now := escrow.timestamp()) < at:
            raise fail(f"the change to {pending} can be applied from {_when(at)} (in {at - now} s)")
        _emit(escrow, calls.apply_payout(escrow.record, escrow.owner()), propose_safe)


@payout_app.command("cancel")
def cancel_payout(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Drop the pending payout change (the owner or the current payout address may send it)."""
    with _escrow(deployment, rpc) as escrow:
        pending, at = _pending(escrow)
        if pending is None:
            raise fail("no payout change is pending")
        note = f"Cancels the change to {pending} (applicable {_when(at)})."
        _emit(escrow, calls.cancel_payout(escrow.record, escrow.owner()), propose_safe, (note,))


@payout_app.command("status")
def payout_status(deployment: DeploymentOption = None, rpc: RpcOption = None) -> None:
    """The payout address, the pending change and when it can be applied."""
    with _escrow(deployment, rpc) as escrow:
        payout = to_checksum_address(escrow.view("payout", returns="address"))
        delay = int(escrow.view("PAYOUT_DELAY", returns="uint64"))
        pending, at = _pending(escrow)
        now = escrow.timestamp()
    console.print(f"payout {payout}; delay {delay} s", markup=False, highlight=False)
    if pending is None:
        console.print("no change pending", markup=False)
    else:
        ready = "now" if now >= at else f"in {at - now} s"
        console.print(f"pending {pending}: applicable from {_when(at)} ({ready})", markup=False)


# ------------------------------------------------------------------ ownership


@ownership_app.command("offer")
def offer_ownership(
    new_owner: Annotated[str, typer.Argument(help="The account (or Safe) to own the escrow.")],
    deployment: DeploymentOption = None,
    rpc: RpcOption = None,
    propose_safe: SafeOption = None,
) -> None:
    """Step one (the current owner): offer the ownership; nothing changes until it is accepted."""
    with _escrow(deployment, rpc) as escrow:
        call = calls.transfer_ownership(escrow.record, escrow.owner(), new_owner)
        note = "Then the new owner runs `liandong escrow transfer-ownership accept`."
        _emit(escrow, call, propose_safe, (note,))


@ownership_app.command("accept")
def accept_ownership(
    deployment: DeploymentOption = None, rpc: RpcOption = None, propose_safe: SafeOption = None
) -> None:
    """Step two (the pending owner): take the escrow over."""
    with _escrow(deployment, rpc) as escrow:
        pending = to_checksum_address(escrow.view("pendingOwner", returns="address"))
        if int(pending, 16) == 0:
            raise fail("no ownership transfer is pending: the owner runs `transfer-ownership offer` first")
        _emit(escrow, calls.accept_ownership(escrow.record, pending), propose_safe)
