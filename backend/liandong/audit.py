"""An audit of an escrow from the chain alone, and its reconciliation with a shop's database.

The chain side needs nothing of the shop: the escrow's events say who paid what, which orders were
delivered (with their commitments) or refunded, and what left the escrow. From them the audit
recomputes what the escrow must hold per token (unsettled orders + the merchant's balance + refund
credits + fees) and compares it with what it holds. With the shop's database (and its master key)
it also checks every delivery against the keys the shop stored: a commitment is recomputed from the
decrypted keys and the salt, so a shop that recorded one key and handed out another is caught.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from liandong.chain.escrow import ORDER_DELIVERED, ORDER_PAID, ORDER_REFUNDED, rpc_hex, rpc_int
from liandong.chain.quotes import NATIVE_COIN
from liandong.store.models import CardKey, Delivery, OrderStatus, ShopOrder
from liandong.vault.crypto import delivery_commitment
from liandong.vault.service import Vault

Rpc = Callable[[str, list[Any]], Any]
"""A JSON-RPC call: (method, params) → result."""

REFUND_CLAIMED = keccak(text="RefundClaimed(address,address,uint256)")
MERCHANT_WITHDRAWAL = keccak(text="MerchantWithdrawal(address,address,uint256)")
FEE_WITHDRAWAL = keccak(text="FeeWithdrawal(address,address,uint256)")
BALANCE_OF = keccak(text="balanceOf(address)")[:4]
MERCHANT_BALANCE = keccak(text="merchantBalance(address)")[:4]
FEE_BALANCE = keccak(text="feeBalance(address)")[:4]
LOG_CHUNK = 5_000


@dataclass
class AuditedOrder:
    order: str
    buyer: str
    token: str
    amount: int
    delivery_deadline: int
    paid_block: int
    paid_tx: str
    state: str = "paid"
    """paid (escrowed), delivered, refunded."""
    commitment: str | None = None
    fee: int = 0
    refund_credited: bool = False


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
    held: int | None = None
    """What the escrow holds of the token now (native balance or `balanceOf`)."""

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
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        report = asdict(self)
        for book, data in zip(self.books, report["books"], strict=True):
            data["owed"] = book.owed
        exact: dict[str, Any] = json.loads(json.dumps(report, default=str))
        return exact


def _word(value: Any) -> bytes:
    return bytes.fromhex(rpc_hex(value).removeprefix("0x").rjust(64, "0"))


def _logs(rpc: Rpc, escrow: str, first: int, last: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(first, last + 1, LOG_CHUNK):
        found += rpc(
            "eth_getLogs",
            [{"address": escrow, "fromBlock": hex(start), "toBlock": hex(min(start + LOG_CHUNK - 1, last))}],
        )
    return found


def _call(rpc: Rpc, to: str, selector: bytes, *args: str) -> int:
    data = selector + encode(["address"] * len(args), list(args))
    return int(rpc("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"]), 16)


def audit_chain(rpc: Rpc, escrow: str, from_block: int = 0) -> AuditReport:
    """Every order of the escrow and the books per token, from its events alone."""
    escrow = to_checksum_address(escrow)
    head = rpc_int(rpc("eth_blockNumber", []))
    orders: dict[str, AuditedOrder] = {}
    books: dict[str, TokenBooks] = defaultdict(lambda: TokenBooks(""))
    for log in _logs(rpc, escrow, from_block, head):
        _apply(log, orders, books)
    report = AuditReport(escrow, rpc_int(rpc("eth_chainId", [])), from_block, head, list(orders.values()), [])
    for token, book in sorted(books.items()):
        book.token = token
        book.held = _held(rpc, escrow, token)
        report.books.append(book)
        _check_books(rpc, escrow, book, report.findings)
    now = rpc_int(rpc("eth_getBlockByNumber", ["latest", False])["timestamp"])
    for order in report.orders:
        if order.state == "paid" and order.delivery_deadline < now:
            report.findings.append(
                Finding("overdue", order.order, "paid, neither delivered nor refunded past its deadline")
            )
    return report


def _apply(log: dict[str, Any], orders: dict[str, AuditedOrder], books: dict[str, TokenBooks]) -> None:
    topics = [_word(topic) for topic in log["topics"]]
    data = bytes.fromhex(rpc_hex(log["data"]).removeprefix("0x"))
    if not topics:
        return
    if topics[0] == ORDER_PAID:
        _product, _quantity, token, amount, deadline = decode(
            ["uint256", "uint256", "address", "uint256", "uint64"], data
        )
        order = AuditedOrder(
            "0x" + topics[1].hex(),
            to_checksum_address(topics[2][12:]),
            to_checksum_address(token),
            amount,
            deadline,
            rpc_int(log["blockNumber"]),
            rpc_hex(log["transactionHash"]),
        )
        orders[order.order] = order
        book = books[order.token]
        book.paid += amount
        book.escrowed += amount
    elif topics[0] in (ORDER_DELIVERED, ORDER_REFUNDED) and "0x" + topics[1].hex() in orders:
        _settle(orders["0x" + topics[1].hex()], topics[0], data, books)
    elif topics[0] in (REFUND_CLAIMED, MERCHANT_WITHDRAWAL, FEE_WITHDRAWAL):
        token_topic = topics[2] if topics[0] == REFUND_CLAIMED else topics[1]
        book = books[to_checksum_address(token_topic[12:])]
        (amount,) = decode(["uint256"], data)
        if topics[0] == REFUND_CLAIMED:
            book.refund_credits -= amount
        elif topics[0] == MERCHANT_WITHDRAWAL:
            book.merchant, book.withdrawn = book.merchant - amount, book.withdrawn + amount
        else:
            book.fees, book.fees_withdrawn = book.fees - amount, book.fees_withdrawn + amount


def _settle(order: AuditedOrder, topic: bytes, data: bytes, books: dict[str, TokenBooks]) -> None:
    book = books[order.token]
    book.escrowed -= order.amount
    if topic == ORDER_DELIVERED:
        commitment, fee = decode(["bytes32", "uint256"], data)
        order.state, order.commitment, order.fee = "delivered", "0x" + commitment.hex(), fee
        book.merchant += order.amount - fee
        book.fees += fee
    else:
        _token, _amount, credited = decode(["address", "uint256", "bool"], data)
        order.state, order.refund_credited = "refunded", credited
        if credited:
            book.refund_credits += order.amount


def _held(rpc: Rpc, escrow: str, token: str) -> int:
    if token == to_checksum_address(NATIVE_COIN):
        return rpc_int(rpc("eth_getBalance", [escrow, "latest"]))
    return _call(rpc, token, BALANCE_OF, escrow)


def _check_books(rpc: Rpc, escrow: str, book: TokenBooks, findings: list[Finding]) -> None:
    """The escrow's invariant: what it holds is what it owes (more only through direct transfers)."""
    assert book.held is not None
    if book.held < book.owed:
        findings.append(
            Finding("shortfall", None, f"{book.token}: holds {book.held}, owes {book.owed} (from its events)")
        )
    elif book.held > book.owed:
        findings.append(
            Finding("surplus", None, f"{book.token}: holds {book.held - book.owed} more than it owes")
        )
    for selector, name, expected in (
        (MERCHANT_BALANCE, "merchantBalance", book.merchant),
        (FEE_BALANCE, "feeBalance", book.fees),
    ):
        stored = _call(rpc, escrow, selector, book.token)
        if stored != expected:
            findings.append(
                Finding("state", None, f"{book.token}: {name} is {stored}, the events say {expected}")
            )


def reconcile(report: AuditReport, engine: Engine, vault: Vault) -> None:
    """Adds to `report` every disagreement between the chain and the shop's records."""
    on_chain = {order.order: order for order in report.orders}
    with Session(engine) as session:
        shop_orders = {
            order.chain_order_id: order
            for order in session.exec(select(ShopOrder).where(col(ShopOrder.payer).is_not(None)))
        }
        for chain_order_id, order in shop_orders.items():
            found = on_chain.get(chain_order_id)
            if found is None and order.status == OrderStatus.DELIVERED:
                report.findings.append(
                    Finding("unpaid-delivery", chain_order_id, "delivered with no payment")
                )
            elif found is not None and found.state == "delivered":
                _check_commitment(session, vault, order, found, report.findings)
        for chain_order_id, found in on_chain.items():
            if found.state == "delivered" and chain_order_id not in shop_orders:
                report.findings.append(
                    Finding("unknown-delivery", chain_order_id, "delivered on-chain, unknown to the shop")
                )


def _check_commitment(
    session: Session, vault: Vault, order: ShopOrder, found: AuditedOrder, findings: list[Finding]
) -> None:
    rows = session.exec(
        select(CardKey.ciphertext)
        .join(Delivery, col(Delivery.card_key_id) == col(CardKey.id))
        .where(Delivery.order_id == order.id)
        .order_by(col(Delivery.line_no))
    ).all()
    if not rows or order.salt is None:
        findings.append(Finding("no-keys", found.order, "delivered on-chain, no keys in the shop's records"))
        return
    keys = [vault.decrypt(session, order.product_id, ciphertext) for ciphertext in rows]
    expected = delivery_commitment(bytes.fromhex(found.order[2:]), bytes.fromhex(order.salt[2:]), keys)
    if "0x" + expected.hex() != found.commitment:
        findings.append(
            Finding("commitment", found.order, "the on-chain commitment is not that of the stored keys")
        )


def commitment_on_chain(rpc: Rpc, escrow: str, chain_order_id: str) -> str | None:
    """The commitment the escrow recorded for an order, or None if it recorded no delivery."""
    logs = rpc(
        "eth_getLogs",
        [
            {
                "address": to_checksum_address(escrow),
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": ["0x" + ORDER_DELIVERED.hex(), chain_order_id],
            }
        ],
    )
    if not logs:
        return None
    commitment, _fee = decode(["bytes32", "uint256"], bytes.fromhex(rpc_hex(logs[0]["data"])[2:]))
    return "0x" + bytes(commitment).hex()


def html_report(report: AuditReport) -> str:
    """A standalone page (no external assets) an auditor can keep or send."""

    def rows(cells: Iterable[Iterable[object]]) -> str:
        return "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in cells
        )

    books = rows(
        (b.token, b.paid, b.escrowed, b.merchant, b.refund_credits, b.fees, b.owed, b.held)
        for b in report.books
    )
    orders = rows((o.order, o.state, o.buyer, o.token, o.amount, o.commitment or "") for o in report.orders)
    findings = (
        rows((f.kind, f.order or "", f.detail) for f in report.findings) or "<tr><td colspan=3>none</td></tr>"
    )
    return f"""<!doctype html><html lang="en"><meta charset="utf-8"><title>Audit of {report.escrow}</title>
<style>body{{font:14px system-ui;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;font-family:monospace}}</style>
<h1>Escrow {html.escape(report.escrow)} (chain {report.chain_id})</h1>
<p>Blocks {report.from_block} to {report.to_block}: {len(report.orders)} orders,
{len(report.findings)} findings.</p>
<h2>Findings</h2><table><tr><th>kind<th>order<th>detail</tr>{findings or "<tr><td colspan=3>none"}</table>
<h2>Books per token</h2><table><tr><th>token<th>paid<th>escrowed<th>merchant<th>refund credits<th>fees
<th>owed<th>held</tr>{books}</table>
<h2>Orders</h2><table><tr><th>order<th>state<th>buyer<th>token<th>amount<th>commitment</tr>{orders}</table>
</html>
"""
