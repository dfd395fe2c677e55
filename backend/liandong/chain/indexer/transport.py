"""How the indexer talks to one node: a JSON-RPC request, its errors sorted, and the provider limits.

`RpcTransport.send` makes one request to one URL. A provider that throttles (HTTP 429, or a JSON-RPC
"rate limit" error) or fails (HTTP 5xx, a refused or timed-out connection) raises
`TransientRpcError`, with its `Retry-After` when it gives one; asking again, or another provider,
is the pool's (`providers.ProviderPool`), after the delay `RetryPolicy` says. An `eth_getLogs`
refused for its size raises `LogsLimitError`, which the sync answers by splitting the range
(`sync.Indexer._logs`). web3's own retries are off for this provider: they would ignore
`Retry-After` and hide the attempts.

The providers' messages are listed once, here (`LOGS_LIMIT_MESSAGES`, `RATE_LIMIT_MESSAGES`), each
with where it was seen.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint, RPCResponse

LOGS_LIMIT_MESSAGES: tuple[tuple[str, str], ...] = (
    # (lower-case fragment of the error message, where it comes from)
    ("query returned more than", "Infura -32005, geth-style nodes: 'query returned more than 10000 results'"),
    ("exceeds limit of", "Infura -32602: 'range 1000000 exceeds limit of 10000' (INFURA/infura#237)"),
    ("is limited to a", "QuickNode -32614: 'eth_getLogs is limited to a 10,000 range' (often with HTTP 413)"),
    ("blocks range", "QuickNode: 'eth_getLogs and eth_newFilter are limited to a 10,000 blocks range'"),
    ("log response size exceeded", "Alchemy: 'Log response size exceeded. ... up to a 2K block range'"),
    ("block range", "Alchemy free tier, Ankr: '… up to a 10 block range', 'block range is too wide'"),
    ("exceed maximum block range", "BSC and HECO nodes: 'exceed maximum block range: 5000'"),
    ("exceeds max block range", "reth: 'query exceeds max block range 100000'"),
    ("exceeds max results", "reth: 'query exceeds max results 20000, retry with the range …'"),
    ("max range limit", "Cloudflare: 'Exceeded max range limit for eth_getLogs: 800'"),
    ("limit exceeded", "BSC providers (NodeReal, public dataseeds) -32005: 'limit exceeded'"),
    ("response size", "Alchemy and others: 'response size exceeded', 'response size should not …'"),
    ("too many blocks", "Nethermind-style nodes: 'too many blocks'"),
    ("too large", "Polygon and others: 'block range too large', 'query too large'"),
)
"""What providers answer to an `eth_getLogs` too wide or with too many results (after rate limits
are ruled out: "rate limit exceeded" also contains "limit exceeded")."""

RATE_LIMIT_MESSAGES: tuple[tuple[str, str], ...] = (
    ("rate limit", "Infura -32005 'request rate limited' / 'rate limit exceeded', most providers"),
    ("too many requests", "HTTP 429 reason phrase, repeated in JSON-RPC errors by public endpoints"),
    ("compute units", "Alchemy 429: 'Your app has exceeded its compute units per second capacity'"),
    ("request count exceeded", "Infura -32005: 'daily request count exceeded, request rate limited'"),
    ("capacity", "Alchemy, QuickNode: 'exceeded ... capacity'"),
)
"""What providers answer in a JSON-RPC error (HTTP 200) when they throttle."""

RATE_LIMIT_CODES = frozenset({429, -32029})
"""JSON-RPC error codes that mean "slow down" (Alchemy repeats 429 in the body; -32029 some gateways)."""

LOGS_LIMIT_HTTP_STATUSES = frozenset({413})
"""HTTP statuses that mean "too large" for `eth_getLogs` (QuickNode answers 413 with its message)."""


class RpcError(Exception):
    """A JSON-RPC error the node answered that retrying does not cure."""

    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method} failed: {error}")
        self.method = method
        self.error = error


class LogsLimitError(RpcError):
    """`eth_getLogs` refused for its block range or its number of results: ask for less."""


class TransientRpcError(Exception):
    """Throttled or failing: worth asking again, after `retry_after` seconds when the node said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    """Tries per call before the error goes to the sync loop."""
    base: float = 0.2
    """First backoff (seconds); doubled each try."""
    cap: float = 10.0
    """No backoff longer than this."""
    retry_after_cap: float = 30.0
    """No `Retry-After` obeyed beyond this."""

    def delay(self, attempt: int, retry_after: float | None, chance: random.Random) -> float:
        """Seconds to wait before try `attempt + 1` (`attempt` counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        backoff = min(self.cap, self.base * 2.0**attempt)
        return backoff / 2 + chance.uniform(0, backoff / 2)  # "equal jitter": at least half


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('message', '')} {error.get('data', '')}".lower()
    return str(error).lower()


def is_rate_limit(error: Any) -> bool:
    code = error.get("code") if isinstance(error, dict) else None
    text = _message(error)
    return code in RATE_LIMIT_CODES or any(fragment in text for fragment, _ in RATE_LIMIT_MESSAGES)


def is_logs_limit(error: Any) -> bool:
    text = _message(error)
    return not is_rate_limit(error) and any(fragment in text for fragment, _ in LOGS_LIMIT_MESSAGES)


class BlockUnavailableError(TransientRpcError):
    """No provider has the block at that height (yet): each is behind the head one reported."""


class RpcTransport:
    """JSON-RPC over HTTP to one node, one request at a time (the pool retries)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.w3 = AsyncWeb3(
            AsyncHTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        )

    async def close(self) -> None:
        """Closes its HTTP sessions (a node never needs to: they last as long as the process)."""
        await self.w3.provider.disconnect()

    async def send(self, method: str, params: list[Any]) -> RPCResponse:
        """The node's answer, which may carry an error retrying does not cure (`result_of` raises
        it); `TransientRpcError` when throttled or failing, `LogsLimitError` for an HTTP 413."""
        try:
            response = await self.w3.provider.make_request(RPCEndpoint(method), params)
        except aiohttp.ClientResponseError as exc:
            if exc.status in LOGS_LIMIT_HTTP_STATUSES and method == "eth_getLogs":
                raise LogsLimitError(method, f"HTTP {exc.status} {exc.message}") from exc
            if exc.status == 429 or exc.status >= 500:
                retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                raise TransientRpcError(f"HTTP {exc.status}", retry_after) from exc
            raise
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise TransientRpcError(f"{type(exc).__name__}: {exc}") from exc
        if "error" in response and is_rate_limit(response["error"]):
            raise TransientRpcError(f"throttled: {response['error']}")
        return response


def result_of(method: str, response: RPCResponse) -> Any:
    """The result of an answer; `LogsLimitError` / `RpcError` for the errors retrying cannot cure."""
    if "error" in response:
        error = response["error"]
        if method == "eth_getLogs" and is_logs_limit(error):
            raise LogsLimitError(method, error)
        raise RpcError(method, error)
    return response.get("result")
