"""Buyers on a dev chain: quote an order in the shop's store and pay it from a funded dev account.

Used by the tests, the benchmarks and `liandong simulate`; nothing here is meant for a real chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from liandong.chain.devnet import DEV_MNEMONIC
from liandong.chain.quotes import Quote

PAY = keccak(text="pay((bytes32,uint256,uint256,address,uint256,address,uint64,uint64),bytes)")[:4]


def dev_account(index: int) -> LocalAccount:
    """Account `index` of anvil's dev mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account


def pay_calldata(quote: Quote, signature: bytes) -> bytes:
    return PAY + encode(
        ["(bytes32,uint256,uint256,address,uint256,address,uint64,uint64)", "bytes"],
        [quote.as_abi_tuple(), signature],
    )


@dataclass
class DevBuyer:
    """A dev account that pays native-coin quotes, keeping its own nonce so payments can pipeline."""

    w3: Web3
    escrow: str
    account: LocalAccount
    chain_id: int
    nonce: int | None = field(default=None)

    def pay(self, quote: Quote, signature: bytes) -> str:
        """Sends the payment and returns its transaction hash, without waiting for the receipt."""
        if self.nonce is None:
            self.nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        fee = 2 * int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0)) + 10**9
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": self.nonce,
                "to": Web3.to_checksum_address(self.escrow),
                "value": quote.amount,
                "data": pay_calldata(quote, signature),
                "gas": 200_000,
                "maxFeePerGas": fee,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        self.nonce += 1
        return self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()
