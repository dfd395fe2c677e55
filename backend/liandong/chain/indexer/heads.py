"""How the indexer hears of new blocks: one class per way of following the chain's head.

`WebsocketHeads` subscribes to `newHeads` over a WebSocket and, whenever the socket fails or the
node closes it, polls over HTTP while it reconnects with backoff; `PollingHeads` polls the head's
number over HTTP, and is what a node without a WebSocket URL follows. Alongside either runs
`safety_poll`, a slow poll that also has the indexer check its tip, so a silent socket cannot hide a
block. A head source only tells a `HeadSink` (the indexer) what it saw and wakes it: reading the
blocks and their logs is the sync's (`sync`), the same whatever brought the head.

Polling is paced by the chain's block time when the node knows it (`BlockPace`): a block is due one
block time after the last one arrived, so the poll looks every `fast` seconds (≤ 50 ms) from a
little before that moment until the block is seen, and only every `slow` seconds in between. On a
1 s chain a block is then seen within ~50 ms of being served, at ~7 requests a second per provider
(a fixed 50 ms poll would make 20); on a 12 s chain at ~2.5 a second. Without a block time, or
until two polls close together have bracketed a block's arrival, it polls every `interval`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import websockets

from liandong.chain.escrow import rpc_hex, rpc_int
from liandong.chain.indexer.providers import ProviderPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Header:
    number: int
    hash: str
    parent_hash: str
    timestamp: int

    @classmethod
    def from_rpc(cls, block: Any) -> Header:
        return cls(
            number=rpc_int(block["number"]),
            hash=rpc_hex(block["hash"]),
            parent_hash=rpc_hex(block["parentHash"]),
            timestamp=rpc_int(block["timestamp"]),
        )


class HeadSink(Protocol):
    """What a head source tells of the heads it sees: the indexer."""

    def note_head(self, header: Header) -> None:
        """A new head, with its header (the subscription sends it)."""

    def note_height(self, number: int) -> None:
        """The head's number only (a poll finds that)."""

    def suspect_tip(self) -> None:
        """Check at the next sync whether the last block synced is still canonical."""


class HeadSource(Protocol):
    """One way of following the heads."""

    mode: str
    """How heads arrive now: "starting", then "websocket" or "polling" (the node's health shows it)."""

    async def follow(self, sink: HeadSink) -> None:
        """Tells `sink` of the heads until cancelled."""


@dataclass(frozen=True)
class BlockPace:
    """When to poll next on a chain with a block every `block_time` seconds, given when the last
    block arrived: the next ones are due at whole block times after it (a missed slot leaves the
    next block on the same beat). Around each of the next `windows` due times, from `lead` before
    to `tail` after, the poll looks every `fast` seconds; otherwise every `slow` seconds. After
    `windows` empty windows (the chain stalled, or its block time is not what we were told) it
    polls at the slow pace only, until a new block sets the beat again."""

    block_time: float
    slow: float
    fast: float
    lead: float
    tail: float
    windows: int = 2

    @classmethod
    def of(cls, block_time: float, interval: float) -> BlockPace:
        """The pace for `block_time`, never slower than `interval` between windows on a fast chain,
        nor slower than a quarter block on a slow one (a block off the beat is still seen soon)."""
        fast = min(max(block_time / 20, 0.02), 0.05)
        return cls(
            block_time=block_time,
            slow=max(interval, block_time / 4),
            fast=fast,
            lead=max(fast, block_time / 10),
            tail=max(fast, block_time / 4),
        )

    @property
    def bracket(self) -> float:
        """The longest gap between two polls that still dates a block's arrival usefully."""
        return max(self.block_time, self.slow)

    def delay(self, arrived: float, now: float) -> float:
        """Seconds to wait before the next poll, the last block having arrived at `arrived`."""
        due_index = max(1, math.floor((now - arrived - self.tail) / self.block_time) + 1)
        if due_index > self.windows:
            return self.slow
        due = arrived + due_index * self.block_time
        if now >= due - self.lead:
            return self.fast
        return min(self.slow, due - self.lead - now)


class PollingHeads:
    """Heads by asking the providers for the head's number over HTTP: the best one's
    (`ProviderPool.head`), so a lagging provider never holds the head back. Every `interval`
    seconds, or at the `BlockPace` of `block_time` when given.

    A block's arrival is taken to be the moment the last poll that did not see it was sent: early by
    at most the gap between two polls, never late, so the next window opens in time; a block seen
    after a longer gap than `BlockPace.bracket` (the first poll, a poll after a WebSocket spell) sets
    no beat."""

    def __init__(self, rpc: ProviderPool, interval: float, *, block_time: float | None = None) -> None:
        self.rpc = rpc
        self.interval = interval
        self.pace = None if block_time is None else BlockPace.of(block_time, interval)
        self.mode = "starting"
        self._height = -1
        self._asked_at: float | None = None
        """When the newest answered poll was sent."""
        self._arrived: float | None = None
        """When the newest block was first served, as far as the polls tell (None: not known)."""

    async def poll(self, sink: HeadSink) -> None:
        """One look at the head."""
        asked = asyncio.get_running_loop().time()
        height = await self.rpc.head()
        if height > self._height:
            before = self._asked_at
            pace = self.pace
            bracketed = pace is not None and before is not None and asked - before <= pace.bracket
            self._arrived = before if bracketed else None
            self._height = height
        self._asked_at = asked if self._asked_at is None else max(self._asked_at, asked)
        sink.note_height(height)

    def next_delay(self) -> float:
        """Seconds until the next poll."""
        if self.pace is None or self._arrived is None:
            return self.interval
        return self.pace.delay(self._arrived, asyncio.get_running_loop().time())

    async def follow(self, sink: HeadSink) -> None:
        self.mode = "polling"
        await self.poll_for(sink, float("inf"))

    async def poll_for(self, sink: HeadSink, seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                await self.poll(sink)
            except Exception as exc:  # the node may be down; keep trying
                log.debug("polling the head failed: %s", exc)
            await asyncio.sleep(self.next_delay())


class WebsocketHeads:
    """Heads by a `newHeads` subscription; while the socket is down, `polling` follows them."""

    def __init__(self, ws_url: str, polling: PollingHeads) -> None:
        self.ws_url = ws_url
        self.polling = polling
        self.mode = "starting"

    async def follow(self, sink: HeadSink) -> None:
        backoff = 0.5
        while True:
            try:
                await self._subscribe(sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any socket failure means: poll, then reconnect
                if self.mode == "websocket":
                    backoff = 0.5  # it had worked: start the backoff afresh
                log.warning("head subscription lost (%s); polling for %.1f s", exc, backoff)
            self.mode = "polling"
            await self.polling.poll_for(sink, backoff)
            backoff = min(backoff * 2, 30.0)

    async def _subscribe(self, sink: HeadSink) -> None:
        """Subscribes to `newHeads` over a plain WebSocket: at a block per payment, web3's
        subscription machinery cost the node more CPU than the rest of a block's work. A close by
        the node (a provider's restart, an idle timeout) is a loss like any other."""
        async with websockets.connect(self.ws_url, max_size=None) as socket:
            request = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
            await socket.send(json.dumps(request))
            reply = json.loads(await socket.recv())
            if "error" in reply:
                raise ConnectionError(f"eth_subscribe refused: {reply['error']}")
            self.mode = "websocket"
            await self.polling.poll(sink)  # close whatever gap the reconnect left
            async for raw in socket:
                header = json.loads(raw).get("params", {}).get("result")
                if header is not None:
                    sink.note_head(Header.from_rpc(header))
            raise ConnectionError(f"the node closed the socket ({socket.close_code} {socket.close_reason})")


async def safety_poll(polling: PollingHeads, sink: HeadSink, interval: float) -> None:
    """Every `interval` seconds, whichever source follows the heads: a look at the head, and a check
    of the tip at the next sync (a reorg to a chain no longer than ours brings no higher head)."""
    while True:
        await asyncio.sleep(interval)
        sink.suspect_tip()
        try:
            await polling.poll(sink)
        except Exception as exc:
            log.debug("safety poll failed: %s", exc)
