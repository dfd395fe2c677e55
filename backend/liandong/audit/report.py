"""An audit of an escrow from the chain alone, and its reconciliation with a shop's database.

The chain side needs nothing of the shop: the escrow's events say who paid what, which orders were
delivered (with their commitments) or refunded, and what left the escrow. From them the audit
rebuilds the escrow's books per token and checks them against its state at the same block:

- what it holds (`eth_getBalance` / `balanceOf`) must be what it owes: unsettled orders + the
  merchant's balance + refund credits + fees (a surplus can only come from a plain transfer in);
- `merchantBalance`, `feeBalance` and every buyer's `refundCredit` must be what the events add up to;
- every order's storage slot must hold the hash of the terms its `OrderPaid` carried and the status
  its events led to;
- no order may stay paid past its delivery deadline.

With the shop's database (and its master key) it also checks every delivery against the keys the
shop stored: a commitment is recomputed from the decrypted keys and the order's salt, so a shop that
recorded one key and handed out another is caught; and it lists deliveries one side has and the
other has not. A shop serving several chains is audited chain by chain: each escrow's report is
reconciled with the shop's orders of its own chain only, and `html_reports` puts them on one page,
a section per network with that network's explorer links.

The escrow's logs are decoded by the shop's one decoder, `chain/escrow.py`, not a second copy here:
that module holds no shop state, only eth-abi against the event signatures of
`contracts/LiandongEscrow.sol`, so an auditor checks it against the contract once, and a decoder
the shop and its audit share cannot drift apart and let the two disagree about what the chain says.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from liandong.chain.escrow import (
    ORDER_DELIVERED,
    ORDER_STATES,
    ORDER_STATUS,
    FundsOut,
    OrderDelivered,
    OrderPaid,
    OrderRefunded,
    decode_fee_recipient,
    decode_funds_out,
    decode_log,
    decode_order_record,
    rpc_hex,
    rpc_int,
    terms_hash,
)
from liandong.chain.profiles import Explorer, load_profiles
from liandong.chain.quotes import NATIVE_COIN
from liandong.core.errors import UnavailableError
from liandong.store.models import OrderStatus, Payment, ShopOrder
from liandong.vault.crypto import VaultError, delivery_commitment
from liandong.vault.service import Vault

LOG_CHUNK = 2_000
"""Blocks per `eth_getLogs`: public providers refuse much larger ranges."""
CALL_BATCH = 100
"""Calls per JSON-RPC batch for the per-order and per-buyer state reads."""
NATIVE = to_checksum_address(NATIVE_COIN)
BALANCE_OF = keccak(text="balanceOf(address)")[:4]
MERCHANT_BALANCE = keccak(text="merchantBalance(address)")[:4]
FEE_BALANCE = keccak(text="feeBalance(address,address)")[:4]
FEE_RECIPIENT = keccak(text="feeRecipient()")[:4]
REFUND_CREDIT = keccak(text="refundCredit(address,address)")[:4]

Progress = Callable[[int, int], None]
"""Hears (blocks read, blocks to read) while the logs are read."""


class AuditError(UnavailableError):
    """The chain could not be read: unreachable, or it refused a call."""


class JsonRpc:
    """JSON-RPC over one kept-alive connection, with batches: an audit reads thousands of slots."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)

    def __call__(self, method: str, params: list[Any]) -> Any:
        return self.batch([(method, params)])[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The results of `calls`, in order; one request for all of them."""
        body = [{"jsonrpc": "2.0", "id": n, "method": m, "params": p} for n, (m, p) in enumerate(calls)]
        try:
            answer = self._client.post(self.url, json=body)
            answer.raise_for_status()
            replies = answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise AuditError(f"the chain at {self.url} did not answer: {error}") from error
        by_id = {reply.get("id"): reply for reply in replies} if isinstance(replies, list) else {}
        results = []
        for n, (method, _) in enumerate(calls):
            reply = by_id.get(n, {})
            if "result" not in reply:
                raise AuditError(f"{method} failed: {reply.get('error', replies)}")
            results.append(reply["result"])
        return results

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client.close()


@dataclass
class AuditedOrder:
    order: str
    buyer: str
    token: str
    amount: int
    delivery_deadline: int
    paid_block: int
    paid_tx: str
    fee_bps: int = 0
    """The platform fee the escrow fixed at payment."""
    state: str = "paid"
    """paid (escrowed), delivered, refunded."""
    commitment: str | None = None
    fee: int = 0
    refund_credited: bool = False
    settled_tx: str | None = None


@dataclass(frozen=True)
class Movement:
    """Funds that left the escrow other than by a refund (see `FundsOut`)."""

    kind: str
    token: str
    recipient: str
    amount: int
    block: int
    tx: str


@dataclass
class TokenBooks:
    token: str
    paid: int = 0
    escrowed: int = 0
    merchant: int = 0
    fees: int = 0
    refund_credits: int = 0
    withdrawn: int = 0
    fees_withdrawn: int = 0
    refunds_claimed: int = 0
    held: int | None = None
    """What the escrow holds of the token at the audited block (native balance or `balanceOf`)."""

    @property
    def owed(self) -> int:
        return self.escrowed + self.merchant + self.refund_credits + self.fees


@dataclass(frozen=True)
class Finding:
    kind: str
    order: str | None
    detail: str


@dataclass
class AuditReport:
    escrow: str
    chain_id: int
    from_block: int
    to_block: int
    orders: list[AuditedOrder]
    books: list[TokenBooks]
    movements: list[Movement]
    findings: list[Finding] = field(default_factory=list)

    @property
    def network(self) -> str:
        return network_name(self.chain_id)

    def to_json(self) -> dict[str, Any]:
        report = {"network": self.network, **asdict(self)}
        for book, data in zip(self.books, report["books"], strict=True):
            data["owed"] = book.owed
        exact: dict[str, Any] = json.loads(json.dumps(report, default=str))
        return exact


def network_name(chain_id: int) -> str:
    """The chain's network as its profile names it ("Base"), else "Chain <id>"."""
    known = load_profiles().get(chain_id)
    return known.name if known is not None else f"Chain {chain_id}"


def reports_json(reports: Sequence[AuditReport]) -> dict[str, Any]:
    """The audit of several chains: each chain's report (with its network), and the findings' total."""
    return {
        "chains": [report.to_json() for report in reports],
        "findings": sum(len(r.findings) for r in reports),
    }


@dataclass
class _Ledger:
    """The escrow's books rebuilt from its events, in log order."""

    orders: dict[str, AuditedOrder] = field(default_factory=dict)
    books: dict[str, TokenBooks] = field(default_factory=lambda: {NATIVE: TokenBooks(NATIVE)})
    credits: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Refunds credited and not claimed, by (token, buyer): what `refundCredit` must hold."""
    movements: list[Movement] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fee_recipients: set[str] = field(default_factory=set)
    """Every fee recipient a `FeeChanged` event named: fees accrue per recipient."""

    def book(self, token: str) -> TokenBooks:
        return self.books.setdefault(token, TokenBooks(token))

    def apply(self, log: dict[str, Any]) -> None:
        event = decode_log(log)
        if isinstance(event, OrderPaid):
            self._paid(event)
        elif event is not None:
            self._settled(event)
        elif (moved := decode_funds_out(log)) is not None:
            self._moved(moved)
        elif (recipient := decode_fee_recipient(log)) is not None:
            self.fee_recipients.add(recipient)

    def _paid(self, event: OrderPaid) -> None:
        order = AuditedOrder(
            "0x" + event.order_id.hex(),
            event.buyer,
            event.token,
            event.amount,
            event.delivery_deadline,
            event.position.block_number,
            event.position.tx_hash,
            event.fee_bps,
        )
        self.orders[order.order] = order
        book = self.book(order.token)
        book.paid += order.amount
        book.escrowed += order.amount

    def _settled(self, event: OrderDelivered | OrderRefunded) -> None:
        order = self.orders.get("0x" + event.order_id.hex())
        if order is None:
            self.findings.append(
                Finding(
                    "unseen-payment", "0x" + event.order_id.hex(), "settled, but paid before --from-block"
                )
            )
            return
        if order.state != "paid":
            self.findings.append(Finding("sequence", order.order, f"settled again after {order.state}"))
            return
        book = self.book(order.token)
        book.escrowed -= order.amount
        order.settled_tx = event.position.tx_hash
        if isinstance(event, OrderDelivered):
            order.state, order.commitment, order.fee = "delivered", "0x" + event.commitment.hex(), event.fee
            book.merchant += order.amount - event.fee
            book.fees += event.fee
        else:
            order.state, order.refund_credited = "refunded", event.credited
            if event.credited:
                book.refund_credits += order.amount
                self.credits[(order.token, order.buyer)] += order.amount

    def _moved(self, moved: FundsOut) -> None:
        position = moved.position
        self.movements.append(
            Movement(
                moved.kind,
                moved.token,
                moved.recipient,
                moved.amount,
                position.block_number,
                position.tx_hash,
            )
        )
        book = self.book(moved.token)
        if moved.kind == "withdrawal":
            book.merchant, book.withdrawn = book.merchant - moved.amount, book.withdrawn + moved.amount
        elif moved.kind == "fees":
            book.fees, book.fees_withdrawn = book.fees - moved.amount, book.fees_withdrawn + moved.amount
        else:
            book.refund_credits -= moved.amount
            book.refunds_claimed += moved.amount
            self.credits[(moved.token, moved.account)] -= moved.amount


def _address(text: str) -> str:
    try:
        return to_checksum_address(text)
    except ValueError:
        raise AuditError(f"{text!r} is not an address") from None


def _logs(
    rpc: JsonRpc,
    escrow: str,
    first: int,
    last: int,
    topics: list[str] | None = None,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    for start in range(first, last + 1, LOG_CHUNK):
        end = min(start + LOG_CHUNK - 1, last)
        query: dict[str, Any] = {"address": escrow, "fromBlock": hex(start), "toBlock": hex(end)}
        yield from rpc("eth_getLogs", [query | ({"topics": topics} if topics else {})])
        if progress is not None:
            progress(end - first + 1, last - first + 1)


def _call(to: str, selector: bytes, types: list[str], values: list[Any], block: int) -> tuple[str, list[Any]]:
    data = selector + encode(types, values)
    return "eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)]


def _batched(rpc: JsonRpc, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(calls), CALL_BATCH):
        results += rpc.batch(calls[start : start + CALL_BATCH])
    return results


def _books(
    rpc: JsonRpc, escrow: str, from_block: int, progress: Progress | None
) -> tuple[AuditReport, _Ledger]:
    """The escrow's events up to the chain's head applied, and its books checked at the head."""
    escrow = _address(escrow)
    head = rpc_int(rpc("eth_blockNumber", []))
    if not rpc_hex(rpc("eth_getCode", [escrow, hex(head)])).removeprefix("0x"):
        raise AuditError(f"no contract at {escrow}")
    ledger = _Ledger()
    for log in _logs(rpc, escrow, from_block, head, progress=progress):
        ledger.apply(log)
    report = AuditReport(
        escrow,
        rpc_int(rpc("eth_chainId", [])),
        from_block,
        head,
        list(ledger.orders.values()),
        [ledger.books[token] for token in sorted(ledger.books)],
        ledger.movements,
        ledger.findings,
    )
    _check_books(rpc, report, ledger.fee_recipients)
    return report, ledger


def books_at_head(rpc: JsonRpc, escrow: str, from_block: int = 0) -> AuditReport:
    """The escrow's books per token at the chain's head, as the audit computes them (its events,
    what it holds, `merchantBalance` and `feeBalance` checked against them), without the per-order
    and per-buyer checks: cheap enough for a dashboard. Its findings are those of the books only."""
    return _books(rpc, escrow, from_block, None)[0]


def audit_chain(
    rpc: JsonRpc, escrow: str, from_block: int = 0, progress: Progress | None = None
) -> AuditReport:
    """Every order of the escrow, its books per token and every way its state departs from its
    events, up to the chain's head when the audit starts (all state is read at that block)."""
    report, ledger = _books(rpc, escrow, from_block, progress)
    _check_order_slots(rpc, report)
    _check_refund_credits(rpc, report, ledger.credits)
    _check_deadlines(rpc, report)
    return report


def _check_books(rpc: JsonRpc, report: AuditReport, fee_recipients: set[str]) -> None:
    """Holdings against debts, and the escrow's balance variables against the events, per token.
    Fees accrue per recipient: `feeBalance` is summed over every recipient `FeeChanged` named (the
    constructor's too) and the current one."""
    at, escrow = report.to_block, report.escrow
    current = rpc_hex(rpc("eth_call", [{"to": escrow, "data": "0x" + FEE_RECIPIENT.hex()}, hex(at)]))
    recipients = sorted(fee_recipients | {to_checksum_address("0x" + current[-40:])})
    calls = []
    for book in report.books:
        if book.token == NATIVE:
            calls.append(("eth_getBalance", [escrow, hex(at)]))
        else:
            calls.append(_call(book.token, BALANCE_OF, ["address"], [escrow], at))
        calls.append(_call(escrow, MERCHANT_BALANCE, ["address"], [book.token], at))
        calls += [_call(escrow, FEE_BALANCE, ["address", "address"], [book.token, r], at) for r in recipients]
    answers = iter(rpc_int(answer) for answer in _batched(rpc, calls))
    for book in report.books:
        book.held, merchant = next(answers), next(answers)
        fees = sum(next(answers) for _ in recipients)
        if book.held < book.owed:
            report.findings.append(
                Finding(
                    "shortfall", None, f"{book.token}: holds {book.held}, owes {book.owed} (from its events)"
                )
            )
        elif book.held > book.owed:
            report.findings.append(
                Finding("surplus", None, f"{book.token}: holds {book.held - book.owed} more than it owes")
            )
        for name, stored, expected in (
            ("merchantBalance", merchant, book.merchant),
            ("feeBalance", fees, book.fees),
        ):
            if stored != expected:
                report.findings.append(
                    Finding("state", None, f"{book.token}: {name} is {stored}, the events say {expected}")
                )


def _check_order_slots(rpc: JsonRpc, report: AuditReport) -> None:
    """Each order's slot: the hash of the terms `OrderPaid` carried, and the status of its events."""
    at = report.to_block
    calls = [
        _call(report.escrow, ORDER_STATUS, ["bytes32"], [bytes.fromhex(o.order[2:])], at)
        for o in report.orders
    ]
    for order, answer in zip(report.orders, _batched(rpc, calls), strict=True):
        status, stored_terms = decode_order_record(bytes.fromhex(rpc_hex(answer)[2:]))
        expected = terms_hash(order.buyer, order.token, order.amount, order.delivery_deadline, order.fee_bps)
        if stored_terms != expected:
            report.findings.append(
                Finding("storage", order.order, "its slot holds other terms than OrderPaid's")
            )
        elif ORDER_STATES[status] != order.state:
            report.findings.append(
                Finding(
                    "storage", order.order, f"its slot says {ORDER_STATES[status]}, its events {order.state}"
                )
            )


def _check_refund_credits(rpc: JsonRpc, report: AuditReport, credits: Counter[tuple[str, str]]) -> None:
    pairs = sorted(credits)
    calls = [
        _call(report.escrow, REFUND_CREDIT, ["address", "address"], list(p), report.to_block) for p in pairs
    ]
    for (token, buyer), answer in zip(pairs, _batched(rpc, calls), strict=True):
        stored, expected = rpc_int(answer), credits[(token, buyer)]
        if stored != expected:
            detail = f"{token}: refundCredit of {buyer} is {stored}, the events say {expected}"
            report.findings.append(Finding("state", None, detail))


def _check_deadlines(rpc: JsonRpc, report: AuditReport) -> None:
    """The escrow lets the buyer take the money back once the block time passes the deadline."""
    now = rpc_int(rpc("eth_getBlockByNumber", [hex(report.to_block), False])["timestamp"])
    for order in report.orders:
        if order.state == "paid" and now > order.delivery_deadline:
            report.findings.append(
                Finding("overdue", order.order, "paid, neither delivered nor refunded past its deadline")
            )


# ------------------------------------------------------------------ the shop's side


UNASSIGNED_CHAIN = 0
"""The chain of orders written before the shop served several chains (migration 0009), until the
node adopts them for its first chain."""


def reconcile(report: AuditReport, engine: Engine, vault: Vault, *, first_chain: bool = True) -> None:
    """Adds to `report` every disagreement between the chain and the shop's records of that chain
    (the shop's orders on its other chains are theirs). `first_chain`: the report is of the shop's
    first chain, which owns the orders not yet assigned a chain."""
    on_chain = {order.order: order for order in report.orders}
    chains = [report.chain_id, *([UNASSIGNED_CHAIN] if first_chain else [])]
    with Session(engine) as session:
        known = {
            order.chain_order_id: order
            for order in session.exec(
                select(ShopOrder).where(
                    ShopOrder.status != OrderStatus.QUOTED, col(ShopOrder.chain_id).in_(chains)
                )
            )
        }
        for found in on_chain.values():
            finding = _compare(session, vault, found, known.get(found.order))
            if finding is not None:
                report.findings.append(finding)
        report.findings += [
            Finding("unpaid-delivery", key, "delivered by the shop, never paid on-chain")
            for key in _delivered_unpaid(session, known, on_chain, report)
        ]


def _compare(session: Session, vault: Vault, found: AuditedOrder, order: ShopOrder | None) -> Finding | None:
    """What is wrong with an order the chain knows, seen from the shop's records (a payment the
    shop has not delivered yet is the chain's business: it becomes overdue)."""
    if order is None or order.status != OrderStatus.DELIVERED:
        if found.state != "delivered":
            return None
        state = order.status.value if order else "unknown"
        return Finding("unknown-delivery", found.order, f"delivered on-chain; the shop has it {state}")
    if found.state == "delivered":
        return _check_commitment(session, vault, order, found)
    if found.state == "refunded":
        return Finding("refunded-delivery", found.order, "refunded on-chain; the shop handed out its keys")
    return None


def _delivered_unpaid(
    session: Session, known: dict[str, ShopOrder], on_chain: dict[str, AuditedOrder], report: AuditReport
) -> list[str]:
    """The shop's deliveries with no payment on-chain, leaving out payments the shop recorded in
    blocks after the audited one (a running shop goes on while the audit reads)."""
    delivered = [
        key for key, order in known.items() if order.status == OrderStatus.DELIVERED and key not in on_chain
    ]
    later = set(
        session.exec(
            select(Payment.chain_order_id).where(
                Payment.chain_id == report.chain_id,
                col(Payment.chain_order_id).in_(delivered),
                col(Payment.block_number) > report.to_block,
            )
        )
    )
    return [key for key in delivered if key not in later]


def _check_commitment(
    session: Session, vault: Vault, order: ShopOrder, found: AuditedOrder
) -> Finding | None:
    """The on-chain commitment recomputed from the keys the shop stored for the order, decrypted."""
    no_keys = Finding("no-keys", found.order, "delivered on-chain, no keys in the shop's records")
    if order.salt is None:
        return no_keys
    try:
        keys = vault.delivered_keys(session, order)
    except VaultError as error:
        raise AuditError(f"the shop's keys do not decrypt (is this its master key?): {error}") from error
    if not keys:
        return no_keys
    expected = delivery_commitment(bytes.fromhex(found.order[2:]), bytes.fromhex(order.salt[2:]), keys)
    if "0x" + expected.hex() != found.commitment:
        return Finding("commitment", found.order, "the on-chain commitment is not that of the stored keys")
    return None


def commitment_on_chain(rpc: JsonRpc, escrow: str, chain_order_id: str, from_block: int = 0) -> str | None:
    """The commitment the escrow recorded for an order, or None if it recorded no delivery."""
    head = rpc_int(rpc("eth_blockNumber", []))
    topics = ["0x" + ORDER_DELIVERED.hex(), chain_order_id.lower()]
    for log in _logs(rpc, _address(escrow), from_block, head, topics):
        event = decode_log(log)
        if isinstance(event, OrderDelivered):
            return "0x" + event.commitment.hex()
    return None


# ------------------------------------------------------------------ the report as a page


@dataclass(frozen=True)
class Link:
    """A table cell that links to the chain's explorer."""

    text: str
    href: str


def _cell(value: object) -> str:
    if isinstance(value, Link):
        return f'<a href="{html.escape(value.href)}">{html.escape(value.text)}</a>'
    return html.escape(str(value))


def _rows(cells: Iterable[Iterable[object]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>" for row in cells)


def _table(headers: Sequence[str], cells: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    body = _rows(cells) or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f"<table><tr>{head}</tr>{body}</table>"


BOOK_COLUMNS = ("token", "paid", "escrowed", "merchant", "refund credits", "fees", "owed", "held")
ORDER_COLUMNS = ("order", "state", "buyer", "token", "amount", "fee", "commitment / refund", "payment")
MOVEMENT_COLUMNS = ("kind", "token", "recipient", "amount", "block", "transaction")
FINDING_COLUMNS = ("kind", "order", "detail")


@dataclass(frozen=True)
class ExplorerLinks:
    """Addresses and transactions as links to the chain's explorer (from its profile); plain text
    on a chain without one (a local chain, an unknown network)."""

    explorer: Explorer | None

    @classmethod
    def of(cls, chain_id: int) -> ExplorerLinks:
        known = load_profiles().get(chain_id)
        return cls(known.explorer if known is not None else None)

    def address(self, address: str) -> object:
        return address if self.explorer is None else Link(address, self.explorer.address_url(address))

    def tx(self, tx_hash: str) -> object:
        return tx_hash if self.explorer is None else Link(tx_hash, self.explorer.tx_url(tx_hash))


def book_row(book: TokenBooks) -> tuple[object, ...]:
    return (
        book.token,
        book.paid,
        book.escrowed,
        book.merchant,
        book.refund_credits,
        book.fees,
        book.owed,
        book.held,
    )


def order_row(order: AuditedOrder, links: ExplorerLinks) -> tuple[object, ...]:
    outcome = order.commitment or (
        "credited" if order.refund_credited else "sent" if order.state == "refunded" else ""
    )
    buyer, paid = links.address(order.buyer), links.tx(order.paid_tx)
    return (order.order, order.state, buyer, order.token, order.amount, order.fee, outcome, paid)


def movement_row(movement: Movement, links: ExplorerLinks) -> tuple[object, ...]:
    recipient, tx = links.address(movement.recipient), links.tx(movement.tx)
    return (movement.kind, movement.token, recipient, movement.amount, movement.block, tx)


STYLE = """<style>body{font:14px system-ui;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;font-family:monospace;text-align:left}
h2,h3{margin-top:1.5em}</style>"""


def _section(report: AuditReport, heading: int) -> str:
    """One escrow's audit: its title at level `heading`, its tables a level under."""
    states = Counter(order.state for order in report.orders)
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "no orders"
    links = ExplorerLinks.of(report.chain_id)
    network = f"{report.network}, chain {report.chain_id}"
    movements = (movement_row(movement, links) for movement in report.movements)
    orders = (order_row(order, links) for order in report.orders)
    top, sub = f"h{heading}", f"h{heading + 1}"
    findings = ((f.kind, f.order or "", f.detail) for f in report.findings)
    return f"""<{top}>Escrow {_cell(links.address(report.escrow))} ({html.escape(network)})</{top}>
<p>Blocks {report.from_block} to {report.to_block}: {len(report.orders)} orders ({summary}),
{len(report.findings)} finding(s).</p>
<{sub}>Findings</{sub}>{_table(FINDING_COLUMNS, findings)}
<{sub}>Books per token</{sub}>{_table(BOOK_COLUMNS, map(book_row, report.books))}
<{sub}>Withdrawals and claimed refunds</{sub}>{_table(MOVEMENT_COLUMNS, movements)}
<{sub}>Orders</{sub}>{_table(ORDER_COLUMNS, orders)}
"""


def html_report(report: AuditReport) -> str:
    """A standalone page (no external assets) an auditor can keep or send; addresses and
    transactions link to the chain's explorer when its profile names one."""
    return f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>Audit of {html.escape(report.escrow)}</title>
{STYLE}
{_section(report, 1)}</html>
"""


def html_reports(reports: Sequence[AuditReport]) -> str:
    """The audit of a shop's chains on one standalone page: a summary per network, then a section
    per chain, each linking to its own network's explorer."""
    summary = _rows(
        (report.network, report.chain_id, _escrow_link(report), len(report.orders), len(report.findings))
        for report in reports
    )
    total = sum(len(report.findings) for report in reports)
    return f"""<!doctype html><html lang="en"><meta charset="utf-8">
<title>Audit of {len(reports)} chain(s)</title>
{STYLE}
<h1>Audit of the shop's {len(reports)} chain(s)</h1>
<p>{total} finding(s) in all.</p>
<table><tr><th>network</th><th>chain</th><th>escrow</th><th>orders</th><th>findings</th></tr>{summary}</table>
{"".join(_section(report, 2) for report in reports)}</html>
"""


def _escrow_link(report: AuditReport) -> object:
    return ExplorerLinks.of(report.chain_id).address(report.escrow)
