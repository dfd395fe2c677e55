"""The chain profiles shipped with the package: every entry valid, sourced, and as published."""

from __future__ import annotations

from importlib import resources

import pytest
from eth_utils.address import is_checksum_address
from liandong.chain.profiles import (
    PROFILES_FILE,
    ProfileNotFoundError,
    load_profiles,
    parse_profiles,
    profile,
    profile_by_name,
    token,
)
from pydantic import ValidationError

PUBLIC = {
    1: "Ethereum",
    8453: "Base",
    42161: "Arbitrum One",
    10: "OP Mainnet",
    137: "Polygon PoS",
    56: "BNB Smart Chain",
    11155111: "Sepolia",
    84532: "Base Sepolia",
    421614: "Arbitrum Sepolia",
    11155420: "OP Sepolia",
    80002: "Polygon Amoy",
    97: "BNB Smart Chain Testnet",
}
SOURCES = ("ethereum-lists", "circle", "tether", "bsc-peg", "optimism-list", "local dev chain")


def test_every_network_is_there_with_the_local_pair() -> None:
    profiles = load_profiles()
    assert {chain_id: profiles[chain_id].name for chain_id in PUBLIC} == PUBLIC
    local = [chain for chain in profiles.values() if chain.local]
    assert len(local) == 2
    assert all("local" in chain.name.lower() and chain.testnet for chain in local)
    assert not set(PUBLIC) & {chain.chain_id for chain in local}
    assert len({chain.block_time for chain in local}) == 2  # the demo shows two paces


def test_the_file_ships_with_the_package() -> None:
    assert resources.files("liandong.chain").joinpath(PROFILES_FILE).is_file()


def test_every_entry_names_its_source_and_is_sane() -> None:
    for chain in load_profiles().values():
        assert chain.source.startswith(SOURCES), chain.chain_id
        assert chain.native.decimals == 18
        assert chain.block_time <= 12
        assert chain.logs_block_range >= 100
        if not chain.local:
            assert chain.explorer is not None
            assert chain.explorer.tx_url("0xab").endswith("/tx/0xab")
            assert chain.explorer.address_url("0xcd").endswith("/address/0xcd")
            assert chain.wallet_rpc, chain.chain_id  # a wallet that lacks the network can add it
        else:
            assert chain.explorer is None
            assert not chain.tokens
            assert not chain.wallet_rpc  # the order page offers the node's own URL
        for symbol, found in chain.tokens.items():
            assert symbol in {"USDT", "USDC"}
            assert is_checksum_address(found.address)
            assert found.source.startswith(SOURCES), (chain.chain_id, symbol)


def test_token_decimals_as_published() -> None:
    for chain_id in (1, 8453, 42161, 10, 137):
        assert token(chain_id, "USDC").decimals == 6
    for chain_id in (1, 42161, 10, 137):
        assert token(chain_id, "USDT").decimals == 6
    assert token(56, "USDT").decimals == 18  # Binance-Peg tokens on BSC
    assert token(56, "usdc").decimals == 18
    assert token(1, "USDT").address == "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    assert token(8453, "USDC").address == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    for chain_id in (11155111, 84532, 421614, 11155420, 80002):
        found = token(chain_id, "USDC")
        assert found.decimals == 6
        assert found.source.startswith("circle")


def test_no_token_where_none_is_canonical() -> None:
    for chain_id, symbol in [(8453, "USDT"), (97, "USDC"), (97, "USDT"), (11155111, "USDT"), (31337, "USDC")]:
        with pytest.raises(ProfileNotFoundError):
            token(chain_id, symbol)


def test_confirmation_policies() -> None:
    assert profile(1).confirmations == 12
    assert profile(56).confirmations == "finalized"
    for chain in load_profiles().values():
        assert chain.confirmations in ("safe", "finalized") or isinstance(chain.confirmations, int)


def test_lookups() -> None:
    assert profile_by_name("arbitrum one").chain_id == 42161
    with pytest.raises(ProfileNotFoundError):
        profile(424242)
    with pytest.raises(ProfileNotFoundError):
        profile_by_name("Dogechain")


_ENTRY = """
version = 1
[[chains]]
chain_id = {chain_id}
name = "{name}"
testnet = false
native = {{ symbol = "ETH", decimals = 18 }}
block_time = 2.0
confirmations = {confirmations}
logs_block_range = 1000
explorer = {{ tx = "https://x.io/tx/{{hash}}", address = "https://x.io/address/{{address}}" }}
source = "ours"
[chains.tokens.USDC]
address = "{address}"
decimals = 6
source = "circle"
"""


def _entry(**values: object) -> str:
    fields: dict[str, object] = {
        "chain_id": 5,
        "name": "X",
        "confirmations": 3,
        "address": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    }
    return _ENTRY.format(**{**fields, **values})


def test_the_loader_refuses_bad_entries() -> None:
    assert parse_profiles(_entry()).chains[0].tokens["USDC"].decimals == 6
    with_rpc = _entry().replace(
        "logs_block_range = 1000\n", 'logs_block_range = 1000\nwallet_rpc = ["https://x.io"]\n'
    )
    assert parse_profiles(with_rpc).chains[0].wallet_rpc == ("https://x.io",)
    bad = [
        _entry(address="0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"),  # not checksummed
        _entry(confirmations='"latest"'),
        _entry(confirmations=-1),
        _entry().replace('source = "ours"\n', ""),
        _entry() + _entry().replace("version = 1", ""),  # the same id twice
        _entry().replace(
            "logs_block_range = 1000\n", 'logs_block_range = 1000\nwallet_rpc = ["http://x.io"]\n'
        ),
    ]
    for text in bad:
        with pytest.raises(ValidationError):
            parse_profiles(text)
