"""Chain profiles: what the shop knows of each network it can take payments on.

The data is `profiles.toml`, shipped with the package: for Ethereum, Base, Arbitrum One, OP
Mainnet, Polygon PoS, BNB Smart Chain, their public testnets and two local chains for the demo —
chain id, name, native coin, typical block time, the default confirmation policy (a block count,
or the `safe` / `finalized` tag), the `eth_getLogs` range to start with, explorer links, and the
canonical USDT and USDC contracts with their decimals. Every entry names where its values were
taken from (`source`). This module validates the file into typed models:

    profile(42161).name                  # "Arbitrum One"
    token(56, "USDT")                    # TokenProfile(address="0x55d3…", decimals=18, …)
    profile(1).explorer.tx_url(tx_hash)  # "https://etherscan.io/tx/0x…"

`load_profiles()` reads and checks the file once (cached); a missing chain or token is a
`ProfileNotFoundError` (a `NotFoundError`), which a caller answers as such.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import Literal

from eth_utils.address import is_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liandong.core.errors import NotFoundError

PROFILES_FILE = "profiles.toml"

ConfirmationTag = Literal["safe", "finalized"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NativeCoin(_Model):
    symbol: str = Field(min_length=1)
    decimals: int = Field(ge=0, le=36)


class Explorer(_Model):
    tx: str
    """URL template with `{hash}`."""
    address: str
    """URL template with `{address}`."""

    @model_validator(mode="after")
    def _templates(self) -> Explorer:
        if not self.tx.startswith("https://") or "{hash}" not in self.tx:
            raise ValueError(f"explorer tx template must be https:// with {{hash}}: {self.tx}")
        if not self.address.startswith("https://") or "{address}" not in self.address:
            raise ValueError(f"explorer address template must be https:// with {{address}}: {self.address}")
        return self

    def tx_url(self, tx_hash: str) -> str:
        return self.tx.replace("{hash}", tx_hash)

    def address_url(self, address: str) -> str:
        return self.address.replace("{address}", address)


class TokenProfile(_Model):
    address: str
    """EIP-55 checksummed."""
    decimals: int = Field(ge=0, le=36)
    source: str = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _checksummed(cls, address: str) -> str:
        if not is_checksum_address(address):
            raise ValueError(f"token address is not EIP-55 checksummed: {address}")
        return address


class ChainProfile(_Model):
    chain_id: int = Field(gt=0)
    name: str = Field(min_length=1)
    testnet: bool
    local: bool = False
    """A dev chain (the demo's): no explorer, no canonical tokens."""
    native: NativeCoin
    block_time: float = Field(gt=0)
    """Typical seconds between blocks."""
    confirmations: int | ConfirmationTag
    """Default policy: blocks on top of the payment's, or the block tag the payment must be under."""
    logs_block_range: int = Field(gt=0)
    """The `eth_getLogs` range to start with; the indexer shrinks it when a provider refuses."""
    explorer: Explorer | None = None
    wallet_rpc: tuple[str, ...] = ()
    """Public RPC URLs a wallet can add the network with (EIP-3085); none for local chains."""
    source: str = Field(min_length=1)
    tokens: dict[str, TokenProfile] = Field(default_factory=dict)

    @field_validator("confirmations")
    @classmethod
    def _count(cls, confirmations: int | str) -> int | str:
        if isinstance(confirmations, int) and confirmations < 0:
            raise ValueError("confirmations must not be negative")
        return confirmations

    @model_validator(mode="after")
    def _public_or_local(self) -> ChainProfile:
        if not self.local and self.explorer is None:
            raise ValueError(f"chain {self.chain_id}: a public network needs its explorer links")
        if any(not url.startswith("https://") for url in self.wallet_rpc):
            raise ValueError(f"chain {self.chain_id}: wallet RPC URLs must be https://")
        if self.local and not self.testnet:
            raise ValueError(f"chain {self.chain_id}: a local chain is a test network")
        return self


class ProfileBook(_Model):
    version: int
    chains: list[ChainProfile]

    @model_validator(mode="after")
    def _unique(self) -> ProfileBook:
        ids = [chain.chain_id for chain in self.chains]
        if len(ids) != len(set(ids)):
            raise ValueError("chain ids must be unique")
        names = [chain.name for chain in self.chains]
        if len(names) != len(set(names)):
            raise ValueError("chain names must be unique")
        return self

    def by_id(self) -> dict[int, ChainProfile]:
        return {chain.chain_id: chain for chain in self.chains}


class ProfileNotFoundError(NotFoundError):
    """No profile for that chain, or no canonical token of that symbol on it."""


def parse_profiles(text: str) -> ProfileBook:
    """Profiles from TOML text (the shipped file, or a test's)."""
    return ProfileBook.model_validate(tomllib.loads(text))


@functools.cache
def load_profiles() -> dict[int, ChainProfile]:
    """The shipped profiles by chain id, read and validated once."""
    text = resources.files("liandong.chain").joinpath(PROFILES_FILE).read_text(encoding="utf-8")
    return parse_profiles(text).by_id()


def profile(chain_id: int) -> ChainProfile:
    found = load_profiles().get(chain_id)
    if found is None:
        raise ProfileNotFoundError(f"no profile for chain {chain_id}")
    return found


def profile_by_name(name: str) -> ChainProfile:
    """A profile by its name ("Arbitrum One"), case-insensitive: how a merchant names a chain."""
    for found in load_profiles().values():
        if found.name.casefold() == name.casefold():
            return found
    raise ProfileNotFoundError(f"no profile for a chain named {name!r}")


def token(chain_id: int, symbol: str) -> TokenProfile:
    """The canonical `symbol` ("USDT", "USDC") contract on `chain_id`, with its decimals."""
    found = profile(chain_id).tokens.get(symbol.upper())
    if found is None:
        raise ProfileNotFoundError(f"no canonical {symbol} on chain {chain_id}")
    return found
