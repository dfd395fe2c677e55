"""The escrow's events and settlement calls, decoded and encoded without a contract object.

The indexer reads thousands of logs a second, so decoding is done once per log with eth-abi
against the event signatures of `contracts/LiandongEscrow.sol`, not through web3's contract layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

ORDER_PAID = keccak(text="OrderPaid(bytes32,address,uint256,uint256,address,uint256,uint64,uint16)")
ORDER_DELIVERED = keccak(text="OrderDelivered(bytes32,bytes32,uint256)")
ORDER_REFUNDED = keccak(text="OrderRefunded(bytes32,address,address,uint256,bool)")
SETTLEMENT_SKIPPED = keccak(text="SettlementSkipped(bytes32,uint8)")
SETTLEMENT_TOPICS = (ORDER_PAID, ORDER_DELIVERED, ORDER_REFUNDED)
REFUND_CLAIMED = keccak(text="RefundClaimed(address,address,address,uint256)")
FEE_CHANGED = keccak(text="FeeChanged(address,uint16)")
MERCHANT_WITHDRAWAL = keccak(text="MerchantWithdrawal(address,address,uint256)")
FEE_WITHDRAWAL = keccak(text="FeeWithdrawal(address,address,uint256)")
FUNDS_OUT_KINDS = {REFUND_CLAIMED: "refund claim", MERCHANT_WITHDRAWAL: "withdrawal", FEE_WITHDRAWAL: "fees"}

_ORDER_TUPLE = "(bytes32,address,address,uint256,uint64,uint16)"
RECORD_DELIVERIES = keccak(text=f"recordDeliveries(({_ORDER_TUPLE},bytes32)[])")[:4]
REFUND_BATCH = keccak(text=f"refundBatch({_ORDER_TUPLE}[])")[:4]
ORDER_STATUS = keccak(text="orderStatus(bytes32)")[:4]
OPERATOR = keccak(text="operator()")[:4]
"""Calldata of the escrow's `operator()` view: the address quotes must be signed by."""
STATUS_MASK = 3
ORDER_STATES = ("none", "paid", "delivered", "refunded")
"""The escrow's `Status` values, by number."""
MIN_DELIVERY_WINDOW = 60 * 60
"""The escrow's `MIN_DELIVERY_WINDOW`: a quote's deadline must leave this long after its expiry."""

SKIP_UNKNOWN_ORDER = 1
SKIP_TERMS_MISMATCH = 2
SKIP_NOT_PAID = 3
SKIP_WINDOW_CLOSED = 4
SKIP_REASONS = {
    SKIP_UNKNOWN_ORDER: "unknown order",
    SKIP_TERMS_MISMATCH: "terms mismatch",
    SKIP_NOT_PAID: "not paid (already settled)",
    SKIP_WINDOW_CLOSED: "delivery window closed",
}
"""`SettlementSkipped` reasons: why a batch left an order as it was."""


@dataclass(frozen=True)
class LogPosition:
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class OrderPaid:
    position: LogPosition
    order_id: bytes
    buyer: str
    product_id: int
    quantity: int
    token: str
    amount: int
    delivery_deadline: int
    fee_bps: int = 0


@dataclass(frozen=True)
class OrderDelivered:
    position: LogPosition
    order_id: bytes
    commitment: bytes
    fee: int


@dataclass(frozen=True)
class OrderRefunded:
    position: LogPosition
    order_id: bytes
    buyer: str
    credited: bool
    token: str
    amount: int


@dataclass(frozen=True)
class SettlementSkipped:
    """A batch left an order as it was (`reason`: one of the `SKIP_` constants)."""

    position: LogPosition
    order_id: bytes
    reason: int


EscrowEvent = OrderPaid | OrderDelivered | OrderRefunded


@dataclass(frozen=True)
class FundsOut:
    """Funds leaving the escrow other than by a refund: the merchant's withdrawal (`withdrawal`),
    the platform's (`fees`), or a buyer claiming refunds credited to them (`refund claim`)."""

    position: LogPosition
    kind: str
    token: str
    recipient: str
    """Where the funds went (for a refund claim, the `to` the buyer named)."""
    amount: int
    account: str = ""
    """Whose balance the funds came from: the recipient, or the buyer whose credit was claimed."""


@dataclass(frozen=True)
class OrderTerms:
    """The escrow's `Order` struct: what settling an order needs (the terms `OrderPaid` carried,
    with the platform fee fixed at payment)."""

    order_id: bytes
    buyer: str
    token: str
    amount: int
    delivery_deadline: int
    fee_bps: int = 0

    def as_abi(self) -> tuple[bytes, str, str, int, int, int]:
        return (self.order_id, self.buyer, self.token, self.amount, self.delivery_deadline, self.fee_bps)


def rpc_hex(value: Any) -> str:
    """A hash from a JSON-RPC answer, raw (0x-string) or formatted by web3 (HexBytes), as 0x-hex."""
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)


def rpc_int(value: Any) -> int:
    """A quantity from a JSON-RPC answer, raw (0x-string) or formatted by web3 (int)."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes(value: Any) -> bytes:
    return bytes(value) if not isinstance(value, str) else bytes.fromhex(value.removeprefix("0x"))


def decode_log(log: Any) -> EscrowEvent | None:
    """The escrow event in a raw `eth_getLogs` entry, or None for any other log."""
    topics = [_bytes(topic) for topic in log["topics"]]
    if not topics:
        return None
    data = _bytes(log["data"])
    position = _position(log)
    if topics[0] == ORDER_PAID:
        product_id, quantity, token, amount, deadline, fee_bps = decode(
            ["uint256", "uint256", "address", "uint256", "uint64", "uint16"], data
        )
        buyer = to_checksum_address(topics[2][12:])
        return OrderPaid(
            position,
            topics[1],
            buyer,
            product_id,
            quantity,
            to_checksum_address(token),
            amount,
            deadline,
            fee_bps,
        )
    if topics[0] == ORDER_DELIVERED:
        commitment, fee = decode(["bytes32", "uint256"], data)
        return OrderDelivered(position, topics[1], commitment, fee)
    if topics[0] == ORDER_REFUNDED:
        token, amount, credited = decode(["address", "uint256", "bool"], data)
        buyer = to_checksum_address(topics[2][12:])
        return OrderRefunded(position, topics[1], buyer, credited, to_checksum_address(token), amount)
    return None


def decode_skipped(log: Any) -> SettlementSkipped | None:
    """The `SettlementSkipped` event in a raw log (or a receipt's log), or None for any other log."""
    topics = [_bytes(topic) for topic in log["topics"]]
    if not topics or topics[0] != SETTLEMENT_SKIPPED:
        return None
    (reason,) = decode(["uint8"], _bytes(log["data"]))
    return SettlementSkipped(_position(log), topics[1], int(reason))


def decode_fee_recipient(log: Any) -> str | None:
    """The recipient a `FeeChanged` event names, or None for any other log."""
    topics = [_bytes(topic) for topic in log["topics"]]
    if not topics or topics[0] != FEE_CHANGED:
        return None
    return to_checksum_address(topics[1][12:])


def decode_funds_out(log: Any) -> FundsOut | None:
    """The withdrawal or refund claim in a raw `eth_getLogs` entry, or None for any other log."""
    topics = [_bytes(topic) for topic in log["topics"]]
    kind = FUNDS_OUT_KINDS.get(topics[0]) if topics else None
    if kind is None:
        return None
    (amount,) = decode(["uint256"], _bytes(log["data"]))
    # RefundClaimed(buyer, token, to, …): the credit was the buyer's, the funds went to `to`;
    # the withdrawals (token, recipient, …).
    if topics[0] == REFUND_CLAIMED:
        token, recipient, account = topics[2], topics[3], topics[1]
    else:
        token, recipient = topics[1], topics[2]
        account = recipient
    return FundsOut(
        _position(log),
        kind,
        to_checksum_address(token[12:]),
        to_checksum_address(recipient[12:]),
        amount,
        to_checksum_address(account[12:]),
    )


def _position(log: Any) -> LogPosition:
    return LogPosition(
        block_number=rpc_int(log["blockNumber"]),
        block_hash=rpc_hex(log["blockHash"]),
        tx_hash=rpc_hex(log["transactionHash"]),
        log_index=rpc_int(log["logIndex"]),
    )


def record_deliveries_calldata(deliveries: Sequence[tuple[OrderTerms, bytes]]) -> bytes:
    payload = [(terms.as_abi(), commitment) for terms, commitment in deliveries]
    return RECORD_DELIVERIES + encode([f"({_ORDER_TUPLE},bytes32)[]"], [payload])


def refund_batch_calldata(orders: Sequence[OrderTerms]) -> bytes:
    return REFUND_BATCH + encode([f"{_ORDER_TUPLE}[]"], [[terms.as_abi() for terms in orders]])


def order_status_calldata(order_id: bytes) -> bytes:
    return ORDER_STATUS + encode(["bytes32"], [order_id])


def decode_address(result: bytes) -> str:
    """The checksummed address a view such as `operator()` returns (one ABI word)."""
    return to_checksum_address(result[12:32])


def decode_order_status(result: bytes) -> int:
    """The `Status` (0 none, 1 paid, 2 delivered, 3 refunded) from an `orderStatus` call's result."""
    return decode_order_record(result)[0]


def decode_order_record(result: bytes) -> tuple[int, bytes]:
    """An `orderStatus` call's result: the status and the stored hash of the order's terms."""
    status, stored_terms = decode(["uint8", "bytes32"], result)
    return int(status), bytes(stored_terms)


def terms_hash(buyer: str, token: str, amount: int, delivery_deadline: int, fee_bps: int = 0) -> bytes:
    """The hash the escrow keeps in an order's slot (`orderTermsHash`): the two lowest bits, which
    hold the status there, cleared."""
    digest = keccak(
        encode(
            ["address", "address", "uint256", "uint64", "uint16"],
            [buyer, token, amount, delivery_deadline, fee_bps],
        )
    )
    return digest[:-1] + bytes([digest[-1] & ~STATUS_MASK & 0xFF])
