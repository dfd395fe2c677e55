"""The escrow owner's transactions, built unsigned: the server never holds the owner's key.

One function per owner action (withdraw, withdraw fees, pause, unpause, propose / apply / cancel a
payout change, the two steps of an ownership transfer) returns an `OwnerCall`: the call's target,
calldata, value and chain id, encoded against the ABI in the deployment record, for the owner's
wallet (`cast send`, a hardware wallet, a browser wallet) to sign. `safe_transaction` wraps such a
call into the `SafeTx` a Safe's owners sign (EIP-712, Safe 1.3.0 and later) when a Safe owns the
escrow. This module owns the encoding only; reading the chain and printing are the callers'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import collapse_if_tuple, function_abi_to_4byte_selector
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.quotes import NATIVE_COIN
from liandong.core.errors import InvalidError

SAFE_DOMAIN_TYPEHASH = keccak(text="EIP712Domain(uint256 chainId,address verifyingContract)")
SAFE_TX_TYPEHASH = keccak(
    text="SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,uint256 baseGas,"
    "uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)"
)

SAFE_TX_FIELDS = (
    # to, value, keccak(data), operation, safeTxGas, baseGas, gasPrice, gasToken, refundReceiver, nonce
    *("address", "uint256", "bytes32", "uint8"),
    *("uint256", "uint256", "uint256", "address", "address", "uint256"),
)
"""The ABI types of SafeTx's fields in its struct hash (`data` hashed)."""


class OwnerCallError(InvalidError):
    """A call that cannot be built: a malformed address, or a function the record's ABI lacks."""


@dataclass(frozen=True)
class OwnerCall:
    """An unsigned call to the escrow, for the account that may make it."""

    chain_id: int
    to: str
    data: bytes
    signature: str
    """The function, e.g. `withdraw(address)`."""
    args: tuple[Any, ...]
    summary: str
    """What the call does, in a sentence."""
    sender: str
    """Who must send it: the owner, or who else the contract lets."""
    value: int = 0

    def as_json(self) -> dict[str, Any]:
        """The transaction as `cast send` or a wallet's `eth_sendTransaction` takes it."""
        return {
            "chainId": self.chain_id,
            "from": self.sender,
            "to": self.to,
            "data": "0x" + self.data.hex(),
            "value": hex(self.value),
            "function": self.signature,
            "args": [str(arg) for arg in self.args],
        }


@dataclass(frozen=True)
class SafeTransaction:
    """A call as a Safe's transaction: its fields, the EIP-712 hash the Safe's owners sign."""

    safe: str
    chain_id: int
    nonce: int
    call: OwnerCall
    safe_tx_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "safe_tx_hash", safe_tx_hash(self.safe, self.chain_id, self.call, self.nonce)
        )

    def as_json(self) -> dict[str, Any]:
        zero = NATIVE_COIN
        return {
            "safe": self.safe,
            "chainId": self.chain_id,
            "safeTxHash": "0x" + self.safe_tx_hash.hex(),
            "to": self.call.to,
            "value": str(self.call.value),
            "data": "0x" + self.call.data.hex(),
            "operation": 0,
            "safeTxGas": "0",
            "baseGas": "0",
            "gasPrice": "0",
            "gasToken": zero,
            "refundReceiver": zero,
            "nonce": str(self.nonce),
        }


def address(text: str, what: str = "address") -> str:
    """`text` as a checksummed address, or an `OwnerCallError` naming `what` it should be."""
    if not is_address(text):
        raise OwnerCallError(f"{what} {text!r} is not an address (0x and 40 hex digits)")
    return to_checksum_address(text)


def encode_call(record: DeploymentRecord, function: str, args: tuple[Any, ...]) -> tuple[str, bytes]:
    """The signature and calldata of `function(*args)`, encoded against the record's ABI."""
    entries = [
        entry
        for entry in record.abi
        if entry.get("type") == "function"
        and entry.get("name") == function
        and len(entry.get("inputs", [])) == len(args)
    ]
    if not entries:
        raise OwnerCallError(
            f"the escrow's ABI in the deployment record has no {function} taking {len(args)}"
        )
    types = [collapse_if_tuple(item) for item in entries[0].get("inputs", [])]
    selector = function_abi_to_4byte_selector(entries[0])  # type: ignore[arg-type]
    return f"{function}({','.join(types)})", selector + encode(types, list(args))


def _call(
    record: DeploymentRecord, function: str, args: tuple[Any, ...], summary: str, sender: str
) -> OwnerCall:
    signature, data = encode_call(record, function, args)
    return OwnerCall(
        record.chain_id, to_checksum_address(record.escrow), data, signature, args, summary, sender
    )


def _token(token: str) -> str:
    return address(token, "token")


def withdraw(record: DeploymentRecord, owner: str, payout: str, token: str) -> OwnerCall:
    """The merchant's whole balance in `token` to the payout address (the owner or the payout sends)."""
    token = _token(token)
    return _call(
        record, "withdraw", (token,), f"withdraw the merchant's balance of {token} to {payout}", owner
    )


def withdraw_fees(record: DeploymentRecord, owner: str, token: str, recipient: str) -> OwnerCall:
    """The fees in `token` accrued to `recipient`, to it (the owner or the recipient sends)."""
    token, recipient = _token(token), address(recipient, "fee recipient")
    return _call(
        record,
        "withdrawFees",
        (token, recipient),
        f"withdraw the fees of {token} accrued to {recipient}",
        owner,
    )


def pause(record: DeploymentRecord, owner: str) -> OwnerCall:
    """Stops new payments (refunds, deliveries and withdrawals go on)."""
    return _call(record, "pause", (), "pause payments", owner)


def unpause(record: DeploymentRecord, owner: str) -> OwnerCall:
    return _call(record, "unpause", (), "accept payments again", owner)


def propose_payout(record: DeploymentRecord, owner: str, new_payout: str, delay: int) -> OwnerCall:
    """A new payout address, effective `delay` seconds after the call is mined (`applyPayout`)."""
    new_payout = address(new_payout, "payout")
    if int(new_payout, 16) == 0:
        raise OwnerCallError("the payout address cannot be the zero address")
    summary = f"propose {new_payout} as payout address, applicable {delay} s after it is mined"
    return _call(record, "proposePayout", (new_payout,), summary, owner)


def apply_payout(record: DeploymentRecord, sender: str) -> OwnerCall:
    """Makes the pending payout change take effect once its delay has passed (anyone may send)."""
    return _call(record, "applyPayout", (), "apply the pending payout change", sender)


def cancel_payout(record: DeploymentRecord, owner: str) -> OwnerCall:
    """Drops the pending payout change (the owner or the current payout address sends)."""
    return _call(record, "cancelPayout", (), "cancel the pending payout change", owner)


def transfer_ownership(record: DeploymentRecord, owner: str, new_owner: str) -> OwnerCall:
    """Step one of two: names the new owner, who must then `accept_ownership`."""
    new_owner = address(new_owner, "new owner")
    summary = f"offer the escrow's ownership to {new_owner} (it must accept)"
    return _call(record, "transferOwnership", (new_owner,), summary, owner)


def accept_ownership(record: DeploymentRecord, new_owner: str) -> OwnerCall:
    """Step two: the pending owner takes the escrow over."""
    new_owner = address(new_owner, "new owner")
    return _call(record, "acceptOwnership", (), f"{new_owner} accepts the escrow's ownership", new_owner)


def set_operator(record: DeploymentRecord, owner: str, new_operator: str) -> OwnerCall:
    """Names a new operator key: quotes signed by the old one stop verifying once it is mined."""
    new_operator = address(new_operator, "operator")
    if int(new_operator, 16) == 0:
        raise OwnerCallError("the operator cannot be the zero address: revoke it with revokeOperator")
    return _call(record, "setOperator", (new_operator,), f"make {new_operator} the escrow's operator", owner)


def safe_tx_hash(safe: str, chain_id: int, call: OwnerCall, nonce: int) -> bytes:
    """The EIP-712 hash a Safe (1.3.0+) checks its owners' signatures against: a plain call, no
    gas refund (`safeTxGas`, `baseGas`, `gasPrice` 0, no gas token or refund receiver)."""
    domain = keccak(SAFE_DOMAIN_TYPEHASH + encode(["uint256", "address"], [chain_id, safe]))
    struct = keccak(
        SAFE_TX_TYPEHASH
        + encode(
            [*SAFE_TX_FIELDS],
            [call.to, call.value, keccak(call.data), 0, 0, 0, 0, NATIVE_COIN, NATIVE_COIN, nonce],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


def safe_transaction(safe: str, call: OwnerCall, nonce: int) -> SafeTransaction:
    """`call` as the transaction number `nonce` of the Safe at `safe`."""
    return SafeTransaction(address(safe, "Safe"), call.chain_id, nonce, call)
