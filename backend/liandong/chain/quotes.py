"""EIP-712 quotes: the shop's signed offer that the escrow's `pay` checks.

The typed data here must match `QUOTE_TYPEHASH` and the EIP-712 domain in
`contracts/LiandongEscrow.sol`; the contract tests sign with this module, so a drift fails them.

Signing is on every quote's path, so it hashes the quote's fixed-size words itself (every field is
a static type: one 32-byte word each) instead of going through eth_account's generic typed-data
encoder, which costs ~1 ms a quote; the domain separator is computed once per domain and the
operator's key parsed once. `quote_typed_data` is the same document in a wallet's form (the tests
check that both give the same digest).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from eth_keys.datatypes import PrivateKey
from eth_utils.address import to_checksum_address
from eth_utils.conversions import to_bytes
from eth_utils.crypto import keccak

from liandong.chain.escrow import MIN_DELIVERY_WINDOW

# The token address that stands for the chain's native coin, as in the contract.
NATIVE_COIN = "0x0000000000000000000000000000000000000000"
ESCROW_DOMAIN_NAME = "LiandongEscrow"
ESCROW_DOMAIN_VERSION = "1"

EIP712_DOMAIN_FIELDS: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

QUOTE_FIELDS: list[dict[str, str]] = [
    {"name": "orderId", "type": "bytes32"},
    {"name": "productId", "type": "uint256"},
    {"name": "quantity", "type": "uint256"},
    {"name": "token", "type": "address"},
    {"name": "amount", "type": "uint256"},
    {"name": "buyer", "type": "address"},
    {"name": "expiry", "type": "uint64"},
    {"name": "deliveryDeadline", "type": "uint64"},
]


def _type_hash(name: str, fields: list[dict[str, str]]) -> bytes:
    members = ",".join(f"{field['type']} {field['name']}" for field in fields)
    return keccak(text=f"{name}({members})")


EIP712_DOMAIN_TYPEHASH = _type_hash("EIP712Domain", EIP712_DOMAIN_FIELDS)
QUOTE_TYPEHASH = _type_hash("Quote", QUOTE_FIELDS)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"{address!r} is not a 20-byte address")
    return raw.rjust(32, b"\0")


@dataclass(frozen=True)
class EscrowDomain:
    """Where a quote is valid: one escrow contract on one chain."""

    chain_id: int
    verifying_contract: str

    def as_typed_data(self) -> dict[str, Any]:
        return {
            "name": ESCROW_DOMAIN_NAME,
            "version": ESCROW_DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }

    @functools.cached_property
    def separator(self) -> bytes:
        """The EIP-712 domain separator, as the escrow's `_domainSeparatorV4()` computes it."""
        return keccak(
            EIP712_DOMAIN_TYPEHASH
            + keccak(text=ESCROW_DOMAIN_NAME)
            + keccak(text=ESCROW_DOMAIN_VERSION)
            + _word(self.chain_id)
            + _address_word(self.verifying_contract)
        )


@dataclass(frozen=True)
class Quote:
    """An order as the shop offers it; `buyer` is the zero address when anyone may pay."""

    order_id: bytes
    product_id: int
    quantity: int
    token: str
    amount: int
    buyer: str
    expiry: int
    delivery_deadline: int

    def __post_init__(self) -> None:
        if len(self.order_id) != 32:
            raise ValueError(f"order_id must be 32 bytes, got {len(self.order_id)}")
        if self.quantity <= 0 or self.amount <= 0:
            raise ValueError("quantity and amount must be positive")
        if self.delivery_deadline < self.expiry:
            raise ValueError("the delivery deadline cannot come before the quote expires")

    @property
    def delivery_window(self) -> int:
        """Seconds from the quote's expiry to its delivery deadline: the escrow refuses to take a
        payment for less than its MIN_DELIVERY_WINDOW (the shop never quotes less)."""
        return self.delivery_deadline - self.expiry

    @property
    def payable(self) -> bool:
        """Whether the escrow's `pay` accepts these windows (the tests build refused ones too)."""
        return self.delivery_window >= MIN_DELIVERY_WINDOW

    def to_json(self) -> dict[str, Any]:
        """The quote as the API answers `POST /api/quotes` with it: the contract's field names, the
        order id in 0x-hex, the amount as a string (JSON numbers cannot hold every uint256)."""
        return {
            "orderId": "0x" + self.order_id.hex(),
            "productId": self.product_id,
            "quantity": self.quantity,
            "token": self.token,
            "amount": str(self.amount),
            "buyer": self.buyer,
            "expiry": self.expiry,
            "deliveryDeadline": self.delivery_deadline,
        }

    @classmethod
    def from_json(cls, terms: Mapping[str, Any]) -> Self:
        """The quote back from `to_json`'s form (an API answer), as `pay` takes it."""
        return cls(
            order_id=bytes.fromhex(terms["orderId"].removeprefix("0x")),
            product_id=terms["productId"],
            quantity=terms["quantity"],
            token=terms["token"],
            amount=int(terms["amount"]),
            buyer=terms["buyer"],
            expiry=terms["expiry"],
            delivery_deadline=terms["deliveryDeadline"],
        )

    def as_message(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "productId": self.product_id,
            "quantity": self.quantity,
            "token": to_checksum_address(self.token),
            "amount": self.amount,
            "buyer": to_checksum_address(self.buyer),
            "expiry": self.expiry,
            "deliveryDeadline": self.delivery_deadline,
        }

    def struct_hash(self) -> bytes:
        """EIP-712 `hashStruct` of the quote: its type hash and each field as one 32-byte word."""
        return keccak(
            QUOTE_TYPEHASH
            + self.order_id
            + _word(self.product_id)
            + _word(self.quantity)
            + _address_word(self.token)
            + _word(self.amount)
            + _address_word(self.buyer)
            + _word(self.expiry)
            + _word(self.delivery_deadline)
        )

    def as_abi_tuple(self) -> tuple[bytes, int, int, str, int, str, int, int]:
        """The `Quote` struct as the contract's ABI takes it."""
        return (
            self.order_id,
            self.product_id,
            self.quantity,
            to_checksum_address(self.token),
            self.amount,
            to_checksum_address(self.buyer),
            self.expiry,
            self.delivery_deadline,
        )

    def order_terms(self, payer: str, fee_bps: int = 0) -> tuple[bytes, str, str, int, int, int]:
        """The `Order` struct that settles this quote once `payer` has paid it, with the platform
        fee the escrow fixed at payment (its `OrderPaid` event says which)."""
        return (
            self.order_id,
            to_checksum_address(payer),
            to_checksum_address(self.token),
            self.amount,
            self.delivery_deadline,
            fee_bps,
        )


def quote_typed_data(quote: Quote, domain: EscrowDomain) -> dict[str, Any]:
    """The full EIP-712 document for `quote`, as a wallet's `eth_signTypedData_v4` takes it."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, "Quote": QUOTE_FIELDS},
        "primaryType": "Quote",
        "domain": domain.as_typed_data(),
        "message": quote.as_message(),
    }


def quote_digest(quote: Quote, domain: EscrowDomain) -> bytes:
    """The EIP-712 digest the operator signs and the escrow recovers the signer from."""
    return keccak(b"\x19\x01" + domain.separator + quote.struct_hash())


@functools.lru_cache(maxsize=8)
def _signing_key(operator_key: bytes | str) -> PrivateKey:
    return PrivateKey(to_bytes(hexstr=operator_key) if isinstance(operator_key, str) else operator_key)


def sign_quote(quote: Quote, domain: EscrowDomain, operator_key: bytes | str) -> bytes:
    """The operator's 65-byte signature (r ‖ s ‖ v, v 27 or 28) of `quote`, as `pay` expects it."""
    signature = _signing_key(operator_key).sign_msg_hash(quote_digest(quote, domain))
    return _word(signature.r) + _word(signature.s) + bytes([signature.v + 27])
