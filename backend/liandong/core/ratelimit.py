"""Per-client rate limits (quotes, order reads, keys, sign-in, WebSocket opens) and socket caps.

A sliding-window counter per (limit, client) in the node's memory. Several nodes each count their
own clients; a shop that needs one global count puts its reverse proxy's limit in front.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

from liandong.core.errors import TooManyRequestsError

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
MAX_CLIENTS = 100_000
"""Clients tracked per limit; beyond that the least recently seen are forgotten."""


class RateLimitExceededError(TooManyRequestsError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "too many requests; retry in {seconds} s")


@dataclass
class RateLimit:
    limit: int
    period: float
    _hits: dict[str, deque[float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        """`"30/minute"` → 30 requests per 60 s; a clear error for anything else."""
        match = _SPEC.match(spec)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"rate limit {spec!r}: expected N/second, N/minute or N/hour with N ≥ 1")
        return cls(int(match.group(1)), _PERIODS[match.group(2)])

    def hit(self, client: str, now: float | None = None) -> None:
        """Counts one request of `client`, or raises RateLimitExceededError without counting it."""
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(client, None) or deque()
        self._hits[client] = hits  # re-inserted: dict order is least recently seen first
        while hits and hits[0] <= now - self.period:
            hits.popleft()
        if len(hits) >= self.limit:
            raise RateLimitExceededError(hits[0] + self.period - now)
        hits.append(now)
        if len(self._hits) > MAX_CLIENTS:
            del self._hits[next(iter(self._hits))]


class SocketCount:
    """Open WebSockets per client and in all, so that no client (or crowd) holds the node's sockets.

    `open` counts one in or refuses it (False); `close` counts it out. Per node, like the rate limits.
    """

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self._open: dict[str, int] = {}
        self._count = 0

    def open(self, client: str) -> bool:
        if self._count >= self.total or self._open.get(client, 0) >= self.per_client:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        self._count += 1
        return True

    def close(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left < 0:
            return
        self._count -= 1
        if left:
            self._open[client] = left
        else:
            del self._open[client]

    @property
    def count(self) -> int:
        return self._count
