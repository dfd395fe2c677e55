"""What the shop knows of a token on a chain: its symbol and decimals, for labels ("10 USDT") and
for prices written in whole tokens.

The native coin and the profiles' canonical stablecoins are known from `profiles.toml`; any other
token (a deployment's demo token, one a merchant prices in by address) is asked once over
JSON-RPC (`symbol()`, `decimals()`) and remembered. A token that does not answer is named by its
address with unknown decimals and asked again next time, so a chain that is down for a moment
costs a label, never a wrong amount.
"""

from __future__ import annotations

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from pydantic import BaseModel

from liandong.chain.profiles import load_profiles
from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.rpc import rpc_call

SYMBOL_CALL = "0x95d89b41"  # symbol()
DECIMALS_CALL = "0x313ce567"  # decimals()


class TokenInfo(BaseModel):
    symbol: str
    decimals: int | None
    """None when the token did not say: amounts are then shown in base units."""


_token_cache: dict[tuple[str, str], TokenInfo] = {}


def _call(rpc_url: str, to: str, data: str) -> bytes:
    result = rpc_call(rpc_url, "eth_call", [{"to": to, "data": data}, "latest"], timeout=3)
    return bytes.fromhex(str(result).removeprefix("0x"))


def token_info(chain_id: int, rpc_url: str | None, token: str) -> TokenInfo:
    """Symbol and decimals of `token` (lower-case address, `NATIVE_COIN`) on `chain_id`."""
    known = load_profiles().get(chain_id)
    if token == NATIVE_COIN:
        native = known.native if known is not None else None
        return TokenInfo(
            symbol=native.symbol if native else "ETH", decimals=native.decimals if native else 18
        )
    for symbol, canonical in (known.tokens if known is not None else {}).items():
        if canonical.address.lower() == token:
            return TokenInfo(symbol=symbol, decimals=canonical.decimals)
    return _erc20_info(rpc_url, token)


def _erc20_info(rpc_url: str | None, token: str) -> TokenInfo:
    cached = _token_cache.get((str(rpc_url), token))
    if cached is not None:
        return cached
    unknown = TokenInfo(symbol=f"{token[:6]}…{token[-4:]}", decimals=None)
    if rpc_url is None:
        return unknown
    try:
        (symbol,) = decode(["string"], _call(rpc_url, token, SYMBOL_CALL))
        (decimals,) = decode(["uint8"], _call(rpc_url, token, DECIMALS_CALL))
    except (OSError, RuntimeError, ValueError, DecodingError):
        return unknown
    found = TokenInfo(symbol=symbol, decimals=decimals)
    _token_cache[(rpc_url, token)] = found
    return found
