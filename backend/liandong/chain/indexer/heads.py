"""How the indexer hears of new blocks: one class per way of following the chain's head.

`WebsocketHeads` subscribes to `newHeads` over a WebSocket and, whenever the socket fails, polls over
HTTP while it reconnects with backoff; `PollingHeads` polls the head's number over HTTP, and is what
a node without a WebSocket URL follows. Alongside either runs `safety_poll`, a slow poll that also
has the indexer check its tip, so a silent socket cannot hide a block. A head source only tells a
`HeadSink` (the indexer) what it saw and wakes it: reading the blocks and their logs is the sync's
(`sync`), the same whatever brought the head.
"""

from __future__ import annotations

import asyncio
import json
import logging
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


class PollingHeads:
    """Heads by asking the providers for the head's number over HTTP every `interval` seconds: the
    best one's (`ProviderPool.head`), so a lagging provider never holds the head back."""

    def __init__(self, rpc: ProviderPool, interval: float) -> None:
        self.rpc = rpc
        self.interval = interval
        self.mode = "starting"

    async def poll(self, sink: HeadSink) -> None:
        """One look at the head."""
        sink.note_height(await self.rpc.head())

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
            await asyncio.sleep(self.interval)


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
        subscription machinery cost the node more CPU than the rest of a block's work."""
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
