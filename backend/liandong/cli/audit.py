"""For auditors and buyers: the escrow's books from the chain, keys checked against it, and the
deployed contract checked against its sources.

The commands only print: the audit is `audit/report.py`'s and the source check `chain/verify.py`'s,
and both need nothing but the chain (and, to reconcile, the shop's database and master key).
`liandong audit --rpc URL --escrow ADDRESS` audits one escrow; without them it audits every chain
the node serves (its settings: `LIANDONG_RPC_URL` with the deployment record, then each entry of
`LIANDONG_CHAINS`, as `runtime/chains.py` resolves them), the report broken down by network.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from liandong.audit.report import (
    BOOK_COLUMNS,
    FINDING_COLUMNS,
    MOVEMENT_COLUMNS,
    ORDER_COLUMNS,
    AuditReport,
    ExplorerLinks,
    JsonRpc,
    audit_chain,
    book_row,
    commitment_on_chain,
    html_report,
    html_reports,
    movement_row,
    order_row,
    reconcile,
    reports_json,
)
from liandong.chain.rpc import rpc_call
from liandong.chain.verify import VerificationError, verify_escrow
from liandong.cli.common import console, deployment, fail, progress_bar
from liandong.core.config import Settings
from liandong.core.errors import InvalidError
from liandong.runtime.chains import chain_id_named, chain_setups
from liandong.store.db import make_engine
from liandong.vault.crypto import delivery_commitment, load_keyring
from liandong.vault.service import Vault

PLAIN = ExplorerLinks(None)
"""The terminal's tables: addresses and transactions as text."""
RpcOption = Annotated[str, typer.Option(help="The chain's JSON-RPC URL.")]
EscrowOption = Annotated[str, typer.Option(help="The escrow's address.")]
FromBlockOption = Annotated[int, typer.Option(help="The escrow's deployment block, or any earlier one.")]


@dataclass(frozen=True)
class _Target:
    """One escrow to audit: where to read its chain, from which block."""

    rpc_url: str
    escrow: str
    from_block: int
    chain_id: int | None = None
    """The chain the escrow's record names (checked against the endpoint's); None: as it says."""
    first: bool = True
    """The shop's first chain, which owns its orders not yet assigned a chain."""


def _table(title: str, columns: tuple[str, ...], rows: Iterable[Sequence[object]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    return table


def _print(report: AuditReport, summary: bool) -> None:
    states = Counter(order.state for order in report.orders)
    counted = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    console.print(
        f"Escrow {report.escrow} on {report.network} (chain {report.chain_id}), blocks "
        f"{report.from_block} to {report.to_block}: {len(report.orders)} orders ({counted})"
    )
    if not summary:
        orders = (order_row(order, PLAIN) for order in report.orders)
        console.print(_table("orders", ORDER_COLUMNS, orders))
    console.print(_table("books per token", BOOK_COLUMNS, map(book_row, report.books)))
    movements = (movement_row(movement, PLAIN) for movement in report.movements)
    console.print(_table("withdrawals and claimed refunds", MOVEMENT_COLUMNS, movements))
    findings = [(f.kind, f.order, f.detail) for f in report.findings]
    console.print(_table(f"{len(report.findings)} finding(s)", FINDING_COLUMNS, findings))


def _reconcile(reports: list[tuple[_Target, AuditReport]], database_url: str) -> None:
    """The shop's side: its database, and its master key from the settings (to decrypt the keys).

    Opened with `make_engine` alone, not `open_shop_database`: an audit reads the records it is
    given and changes nothing of them (no migration, no data folder created or tightened)."""
    settings = Settings(database_url=database_url)
    engine = make_engine(database_url)
    try:
        vault = Vault(load_keyring(settings))
        for target, report in reports:
            reconcile(report, engine, vault, first_chain=target.first)
    finally:
        engine.dispose()


def _node_targets(from_block: int | None, chain: str | None) -> list[_Target]:
    """Every chain the node serves, from its settings (or the one named `chain`), each from its
    escrow's deployment block unless `from_block` says otherwise."""
    settings = Settings()
    try:
        setups = chain_setups(settings, deployment(settings))
        wanted = None if chain is None else chain_id_named(chain)
    except InvalidError as error:
        raise fail(f"{error} (or name one escrow with --rpc and --escrow)") from None
    targets = [
        _Target(
            setup.rpc_urls[0],
            setup.record.escrow,
            setup.record.block_number if from_block is None else from_block,
            setup.chain_id,
            first=index == 0,
        )
        for index, setup in enumerate(setups)
        if wanted is None or setup.chain_id == wanted
    ]
    if not targets:
        served = ", ".join(f"{setup.name} ({setup.chain_id})" for setup in setups)
        raise fail(f"the node serves no chain {chain} (it serves {served})")
    return targets


def _audit_one(target: _Target) -> AuditReport:
    with JsonRpc(target.rpc_url) as chain, progress_bar() as progress:
        reading = progress.add_task("reading logs", total=None)
        report = audit_chain(
            chain,
            target.escrow,
            target.from_block,
            lambda done, total: progress.update(reading, completed=done, total=total),
        )
    if target.chain_id is not None and report.chain_id != target.chain_id:
        raise fail(
            f"{target.rpc_url} serves chain {report.chain_id}, the escrow's record is of chain "
            f"{target.chain_id}"
        )
    return report


def audit(
    rpc: Annotated[
        str | None, typer.Option(help="The chain's JSON-RPC URL (with --escrow); unset: the node's chains.")
    ] = None,
    escrow: Annotated[
        str | None, typer.Option(help="The escrow's address (with --rpc); unset: the node's chains.")
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option(
            help="The escrow's deployment block, or any earlier one (default: 0 with --rpc, else each "
            "chain's deployment record's)."
        ),
    ] = None,
    chain: Annotated[
        str | None,
        typer.Option(help="Only this one of the node's chains (its network's name or chain id)."),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The shop's database, to reconcile (its master key from the settings).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the report as one standalone page.")
    ] = None,
    summary: Annotated[bool, typer.Option(help="Leave the orders out of the printed report.")] = False,
) -> None:
    """Every order of an escrow from the chain alone, its books per token against what it holds,
    and (with the shop's database) every disagreement with the shop's records. Without --rpc and
    --escrow: every chain the node serves (LIANDONG_RPC_URL and LIANDONG_CHAINS), one report per
    network. Exit 1 on findings."""
    if (rpc is None) != (escrow is None):
        raise fail("--rpc and --escrow name one escrow together; without both the node's chains are audited")
    if rpc is not None and chain is not None:
        raise fail("--chain picks one of the node's chains: not with --rpc and --escrow")
    one = rpc is not None and escrow is not None  # one escrow, its report as before several chains
    targets = [_Target(rpc, escrow, from_block or 0)] if rpc and escrow else _node_targets(from_block, chain)
    audited = [(target, _audit_one(target)) for target in targets]
    if database_url is not None:
        _reconcile(audited, database_url)
    reports = [report for _, report in audited]
    for report in reports:
        _print(report, summary)
    findings = sum(len(report.findings) for report in reports)
    if not one:
        per_network = ", ".join(f"{report.network} {len(report.findings)}" for report in reports)
        console.print(f"{findings} finding(s) on {len(reports)} chain(s): {per_network}")
    if json_out is not None:
        document = reports[0].to_json() if one else reports_json(reports)
        json_out.write_text(json.dumps(document, indent=2))
    if html_out is not None:
        html_out.write_text(html_report(reports[0]) if one else html_reports(reports))
    if findings:
        raise typer.Exit(code=1)


def verify_key(
    rpc: RpcOption,
    escrow: EscrowOption,
    order: Annotated[str, typer.Option(help="The order id (0x + 64 hex digits).")],
    key: Annotated[
        list[str], typer.Option(help="A key of the order, in the order given; repeat for several.")
    ],
    salt: Annotated[str, typer.Option(help="The salt the shop gave with the keys.")],
    from_block: FromBlockOption = 0,
) -> None:
    """Check your keys against the commitment the escrow recorded for your order (exit 0: they
    match, 1: they do not, or nothing was recorded)."""
    try:
        order_id, salt_bytes = bytes.fromhex(order.removeprefix("0x")), bytes.fromhex(salt.removeprefix("0x"))
        mine = "0x" + delivery_commitment(order_id, salt_bytes, key).hex()
    except ValueError as error:
        raise fail(f"order id and salt are 32 bytes each, in hex: {error}") from None
    with JsonRpc(rpc) as chain:
        recorded = commitment_on_chain(chain, escrow, "0x" + order_id.hex(), from_block)
    if recorded is None:
        raise fail(f"the escrow recorded no delivery of order {order}")
    if mine != recorded:
        raise fail(f"MISMATCH: these keys give {mine}, the escrow recorded {recorded}")
    console.print(f"match: the escrow recorded {recorded} for these keys")


def verify_contract(
    rpc: RpcOption,
    address: Annotated[str, typer.Option(help="The deployed escrow.")],
    out: Annotated[
        Path, typer.Option(help="Where to write the standard-JSON input, metadata and ABI.")
    ] = Path("verification"),
) -> None:
    """Recompile the escrow with the project's settings and compare it with the code at ADDRESS, as
    an explorer does (exit 1 if it differs); writes what Etherscan, Blockscout and Sourcify accept."""
    try:
        code = str(rpc_call(rpc, "eth_getCode", [address, "latest"], timeout=30))
        result = verify_escrow(bytes.fromhex(code.removeprefix("0x")), address, out)
    except (OSError, RuntimeError) as error:
        raise fail(f"cannot read the code at {address}: {error}") from None
    except VerificationError as error:
        raise fail(str(error)) from None
    if not result.matches:
        raise fail(
            f"MISMATCH: the code at {address} ({result.deployed_size} bytes) is not the escrow compiled "
            f"from these sources ({result.compiled_size} bytes)"
        )
    exact = "and its metadata hash" if result.metadata_matches else "(the metadata differs: other file paths)"
    console.print(f"match: {address} runs the escrow compiled from these sources {exact}; files in {out}/")
