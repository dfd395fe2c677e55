"""The chain's JSON-RPC providers as one: failover by health, and no answer from one that lags.

`ProviderPool` owns every request the indexer and the settlement sender make. Each provider (one
URL, its `RpcTransport`) keeps a health score, an average of its recent answers (1 for an answer,
0 for a failure), and the head it last reported. A request goes to the best provider: not resting,
not lagging (its head more than `lag_limit` blocks behind the best one's), highest score, then the
order of the configuration. A provider that throttles, fails or times out is scored down and rests
for the delay `RetryPolicy` gives its run of failures (its `Retry-After` when it sent one), and the
request goes at once to the next; once its rest is over it is asked again when it ranks first, so
a recovered provider comes back after a cool-down. Only when every provider rests does the
request wait, for the first rest to end, so one provider alone behaves as it did before the pool.

Shaped so because a lagging provider is worse than a dead one: it answers, but an `eth_getLogs`
for blocks it does not have yet returns nothing, and a payment would be missed. So every request
about a height (`at`) goes only to a provider whose head reached it (the heads are asked again
when none is known to), one answering `null` for a block is taken to be behind it, and when none
has the block yet the request fails with `BlockUnavailableError` for the sync to try again. The
head is the best provider's (`head`); what the indexer does with heads that go backwards is the
sync's (it keeps the highest).

`PoolProvider` lends the pool to web3 for the sender, so that its transactions and receipts fail
over in the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from web3.providers.async_base import AsyncJSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from liandong.chain.escrow import rpc_int
from liandong.chain.indexer.transport import (
    BlockUnavailableError,
    RetryPolicy,
    RpcTransport,
    TransientRpcError,
    result_of,
)

log = logging.getLogger(__name__)

SCORE_WEIGHT = 0.2
"""How much the newest answer moves a provider's score (an exponential moving average)."""


@dataclass
class Provider:
    """One URL and what the pool knows of its health."""

    transport: RpcTransport
    rank: int
    """Its place in the configuration: the tie-break between providers equally healthy."""
    score: float = 1.0
    failures: int = 0
    """Failures in a row (the length of its next rest grows with them)."""
    resting_until: float = 0.0
    """Not asked before this (monotonic), unless every provider rests."""
    head: int | None = None
    """The head it last reported, lowered when it answers `null` for a block below that."""

    @property
    def url(self) -> str:
        return self.transport.url

    def answered(self) -> None:
        self.score += SCORE_WEIGHT * (1.0 - self.score)
        self.failures = 0

    def failed(self, rest: float) -> None:
        self.score -= SCORE_WEIGHT * self.score
        self.failures += 1
        self.resting_until = time.monotonic() + rest


class ProviderPool:
    """Every request to the chain, each to the healthiest provider that has the block it is about."""

    def __init__(
        self,
        urls: list[str],
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        lag_limit: int = 3,
    ) -> None:
        if not urls:
            raise ValueError("a provider pool needs at least one URL")
        self.providers = [Provider(RpcTransport(url, timeout=timeout), rank) for rank, url in enumerate(urls)]
        self.retry = retry or RetryPolicy()
        self.lag_limit = lag_limit
        self._chance = random.Random()  # noqa: S311 - jitter, not secrets

    @property
    def best_head(self) -> int | None:
        heads = [provider.head for provider in self.providers if provider.head is not None]
        return max(heads) if heads else None

    def lagging(self, provider: Provider) -> bool:
        best = self.best_head
        return provider.head is not None and best is not None and provider.head < best - self.lag_limit

    def health(self) -> list[dict[str, Any]]:
        """What the pool knows of each provider, for `/healthz`: its host only (a provider's URL
        often carries its API key in the path or the query), score, rest, head, lag."""
        now = time.monotonic()
        return [
            {
                "host": urlsplit(provider.url).hostname or "?",
                "score": round(provider.score, 3),
                "resting": provider.resting_until > now,
                "head": provider.head,
                "lagging": self.lagging(provider),
            }
            for provider in self.providers
        ]

    async def close(self) -> None:
        """Closes every provider's HTTP sessions, when the node that asked through them stops."""
        await asyncio.gather(*(provider.transport.close() for provider in self.providers))

    async def head(self) -> int:
        """The highest head the providers not resting report now (each is asked once)."""
        now = time.monotonic()
        awake = [provider for provider in self.providers if provider.resting_until <= now]
        heads = await asyncio.gather(*(self._ask_head(provider) for provider in awake))
        found = [head for head in heads if head is not None]
        if not found:
            raise TransientRpcError("no provider answered eth_blockNumber")
        return max(found)

    async def _ask_head(self, provider: Provider) -> int | None:
        try:
            head = rpc_int(result_of("eth_blockNumber", await self._send(provider, "eth_blockNumber", [])))
        except TransientRpcError:
            return None
        provider.head = head
        return head

    async def call(self, method: str, params: list[Any], *, at: int | None = None) -> Any:
        """The result of `method` (about block `at`, when given); `LogsLimitError` / `RpcError` for
        errors retrying cannot cure, the last `TransientRpcError` when no provider answered."""
        return result_of(method, await self.request(method, params, at=at))

    async def request(self, method: str, params: list[Any], *, at: int | None = None) -> RPCResponse:
        """The answer of the best provider for it, errors and all (web3 reads them)."""
        attempt = 0
        while True:
            provider = await self._choose(at)
            try:
                response = await self._send(provider, method, params)
            except TransientRpcError:
                if attempt + 1 >= self.retry.attempts:
                    raise
                attempt += 1
                continue
            if at is None or response.get("result") is not None or "error" in response:
                return response
            provider.head = at - 1  # `null` for block `at`: it does not have it yet
            attempt += 1
            if attempt >= self.retry.attempts:
                return response  # the caller finds no block there
            log.info("%s has no block %s yet; asking another provider", provider.url, at)

    async def _send(self, provider: Provider, method: str, params: list[Any]) -> RPCResponse:
        try:
            response = await provider.transport.send(method, params)
        except TransientRpcError as exc:
            rest = self.retry.delay(provider.failures, exc.retry_after, self._chance)
            provider.failed(rest)
            log.info("%s: %s from %s; resting it %.2f s", method, exc, provider.url, rest)
            raise
        provider.answered()
        return response

    async def _choose(self, at: int | None) -> Provider:
        """The provider to ask: the best one that has block `at`, waiting for its rest to end when
        every such provider rests."""
        able = self._having(at)
        if not able:
            await self.head()
            able = self._having(at)
            if not able:
                raise BlockUnavailableError(f"no provider has block {at} yet")
        now = time.monotonic()
        best = min(
            able,
            key=lambda p: (p.resting_until > now, self.lagging(p), -p.score, p.rank),
        )
        if best.resting_until > now:
            best = min(able, key=lambda p: p.resting_until)
            await asyncio.sleep(best.resting_until - now)
        return best

    def _having(self, at: int | None) -> list[Provider]:
        if at is None:
            return self.providers
        return [provider for provider in self.providers if provider.head is not None and provider.head >= at]


class PoolProvider(AsyncJSONBaseProvider):
    """The pool as web3's provider: each request to the healthiest provider, failing over."""

    def __init__(self, pool: ProviderPool) -> None:
        super().__init__()
        self.pool = pool

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return await self.pool.request(method, list(params))
