"""The indexer proper: brings the checkpoint to the chain's head, block by block where reorgs happen.

Whatever brought the head (`heads`), the same `sync` closes the gap from the checkpoint with
`eth_getLogs`: in ranges far from the head, block by block (by block hash) near it, where each
block's parent hash is checked against the stored one to notice a reorganisation, which rolls the
store back to the newest block still canonical. The logs are read raw and decoded here; what they
do to the orders is the store's (`store`), one transaction per run of blocks.

Providers cap `eth_getLogs` (a block range, a number of results): a range refused for its size is
split in halves until each part is answered, never skipped, and the indexer remembers the smaller
span that worked, growing it back slowly (`LogSpan`). Throttling, failing and lagging providers are
the pool's (`providers`): every read names the block it is about, so it goes only to a provider
that has it. The head only ever grows here: a provider reporting an older head moves nothing back.

Under a tag policy (`safe`, `finalized`) the indexer asks the pool for the tagged block
(`eth_getBlockByNumber(tag)`) at each new head it syncs to and hands its header to the store, which
confirms the payments at or under it if it is on the chain the store followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from web3 import AsyncWeb3

from liandong.chain.escrow import SETTLEMENT_TOPICS, decode_log
from liandong.chain.indexer.heads import Header, HeadSource, PollingHeads, WebsocketHeads, safety_poll
from liandong.chain.indexer.providers import ProviderPool
from liandong.chain.indexer.store import ConfirmedOrder, IndexerStore, StaleCheckpointError
from liandong.chain.indexer.transport import BlockUnavailableError, LogsLimitError, RpcError

log = logging.getLogger(__name__)

_TOPIC_HEXES = ["0x" + topic.hex() for topic in SETTLEMENT_TOPICS]


class LogSpan:
    """How many blocks one `eth_getLogs` asks for: halved when the provider refuses a span, grown
    back by a quarter after `grow_after` answers in a row, never up to a span refused in the last
    `forget_after` answers (a dense stretch may have been the cause, so it is tried again later)."""

    def __init__(self, ceiling: int, *, grow_after: int = 16, forget_after: int = 256) -> None:
        self.ceiling = ceiling
        self.current = ceiling
        self.grow_after = grow_after
        self.forget_after = forget_after
        self.refused: int | None = None
        self._answered = 0
        self._since_refused = 0

    def shrink(self, refused: int) -> None:
        self.refused = refused if self.refused is None else min(self.refused, refused)
        self.current = max(1, min(self.current, refused // 2))
        self._answered = self._since_refused = 0

    def answered(self) -> None:
        self._answered += 1
        self._since_refused += 1
        if self.refused is not None and self._since_refused >= self.forget_after:
            self.refused = None
        if self._answered >= self.grow_after and self.current < self.ceiling:
            self._answered = 0
            limit = self.ceiling if self.refused is None else max(1, self.refused - 1)
            self.current = max(self.current, min(limit, self.current + max(1, self.current // 4)))


class Indexer:
    """Follows one escrow on one chain; `on_confirmed` hears of orders whose keys may go out."""

    def __init__(
        self,
        store: IndexerStore,
        rpc_urls: list[str],
        ws_url: str | None,
        escrow: str,
        start_block: int,
        on_confirmed: Callable[[list[ConfirmedOrder]], None],
        *,
        backfill_chunk: int = 2_000,
        poll_interval: float = 0.25,
        safety_poll_interval: float = 5.0,
        block_time: float | None = None,
    ) -> None:
        self.store = store
        self.rpc = ProviderPool(rpc_urls)
        self.escrow = AsyncWeb3.to_checksum_address(escrow)
        self.start_block = start_block
        self.on_confirmed = on_confirmed
        self.backfill_chunk = backfill_chunk
        self.log_span = LogSpan(backfill_chunk)
        self.poll_interval = poll_interval
        self.safety_poll_interval = safety_poll_interval
        self.polling = PollingHeads(self.rpc, poll_interval, block_time=block_time)
        self.heads: HeadSource = self.polling if ws_url is None else WebsocketHeads(ws_url, self.polling)
        self._headers: dict[int, Header] = {}
        self._head = -1
        self._position = -1
        self._position_hash = ""
        self.head_time = 0
        """The newest block timestamp seen: the chain's clock, which the escrow's deadlines follow."""
        self._tip_suspect = True
        """Check at the next sync whether our last block is still canonical (start-up, safety poll,
        or a head at or below our height)."""
        self._wake = asyncio.Event()

    @property
    def mode(self) -> str:
        """How heads arrive now ("starting", "websocket", "polling"): the node's health shows it."""
        return self.heads.mode

    # ------------------------------------------------------------------ heads

    def note_head(self, header: Header) -> None:
        if header.number <= self._position:  # a block at a height we already passed: a reorg
            self._tip_suspect = True
        self._headers[header.number] = header
        self.head_time = max(self.head_time, header.timestamp)
        if len(self._headers) > 256:
            for number in sorted(self._headers)[:-128]:
                del self._headers[number]
        self._head = max(self._head, header.number)
        self._wake.set()

    def note_height(self, number: int) -> None:
        if number > self._head:
            self._head = number
            self._wake.set()

    def suspect_tip(self) -> None:
        self._tip_suspect = True
        self._wake.set()

    # ------------------------------------------------------------------- sync

    async def run(self) -> None:
        """Follows the chain until cancelled. Each run (a node's term as leader) starts from the
        checkpoint the database holds, never from what an earlier term of this process remembered."""
        self._position, self._tip_suspect = -1, True
        self._headers.clear()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.heads.follow(self))
            tasks.create_task(safety_poll(self.polling, self, self.safety_poll_interval))
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    if isinstance(error, StaleCheckpointError):  # another node's indexer moved it
                        log.warning("%s; reading it again", error)
                    else:
                        log.exception("sync failed; retrying")
                    self._position = -1  # resume from the checkpoint the database holds
                    await asyncio.sleep(self.poll_interval)
                    self._wake.set()

    async def header(self, number: int) -> Header:
        cached = self._headers.get(number)
        if cached is not None:
            return cached
        header = await self._block(number)
        self.head_time = max(self.head_time, header.timestamp)
        return header

    async def sync(self) -> None:
        """Brings the checkpoint to the head the indexer knows of."""
        if self._position < 0:  # first round: where the store left off (the database is the truth)
            checkpoint = self.store.checkpoint()
            if checkpoint is None:
                self.store.start_at(await self.header(max(self.start_block - 1, 0)))
                checkpoint = self.store.checkpoint()
                assert checkpoint is not None
            self._position, self._position_hash = checkpoint.block_number, checkpoint.block_hash
        if self._head < 0:
            await self.polling.poll(self)
        position, position_hash = self._position, self._position_hash
        if self._tip_suspect:
            self._tip_suspect = False
            position, position_hash = await self._check_tip(position, position_hash)
            self._position, self._position_hash = position, position_hash
        tagged, tagged_at = None, -1
        while position < self._head:
            head = self._head
            if head != tagged_at:  # each new head: where the policy's tag is now
                tagged, tagged_at = await self._tagged(), head
            if head - position > self.store.reorg_window:
                upto = min(position + self.backfill_chunk, head - self.store.reorg_window)
                await self._apply_range(position, upto, head, tagged)
                position = upto
                position_hash = (await self.header(upto)).hash
                self._position, self._position_hash = position, position_hash
                continue
            headers = await self._linked_headers(position, position_hash, head)
            if not headers:
                position, position_hash = await self._handle_reorg(position)
                self._position, self._position_hash = position, position_hash
                continue
            logs = await self._logs(headers[0].number, headers[-1].number)
            hashes = {header.number: header.hash for header in headers}
            raced = {
                int(entry["blockNumber"], 16)
                for entry in logs
                if entry["blockHash"] != hashes[int(entry["blockNumber"], 16)]
            }
            if raced:  # a reorg between the headers and the logs: read those blocks again
                for number in raced:
                    self._headers.pop(number, None)
                continue
            self._apply(logs, position, headers, head, tagged)
            position, position_hash = headers[-1].number, headers[-1].hash
            self._position, self._position_hash = position, position_hash

    async def _block(self, number: int) -> Header:
        block = await self.rpc.call("eth_getBlockByNumber", [hex(number), False], at=number)
        if block is None:
            raise BlockUnavailableError(f"no provider has block {number} yet")
        return Header.from_rpc(block)

    async def _tagged(self) -> Header | None:
        """The block the store's policy tag names now (None for a block-count policy, or when the
        provider has none or refuses the tag: then nothing confirms by the tag this round)."""
        tag = self.store.policy.tag
        if tag is None:
            return None
        try:
            block = await self.rpc.call("eth_getBlockByNumber", [tag, False])
        except RpcError as refused:
            log.warning("eth_getBlockByNumber(%r) refused: %s; no order confirms by it now", tag, refused)
            return None
        return None if block is None else Header.from_rpc(block)

    async def _logs(self, first: int, last: int) -> list[dict[str, Any]]:
        """The escrow's settlement logs in blocks `first`..`last`, as the node sends them: web3's
        result formatting costs more than the decoding itself at a few hundred logs a block.

        Asked for in spans of `log_span` blocks; a span the provider refuses for its size is
        halved and asked again from the same block, so every block of the range is read once."""
        found: list[dict[str, Any]] = []
        start = first
        while start <= last:
            end = min(last, start + self.log_span.current - 1)
            try:
                found.extend(await self._logs_once(start, end))
            except LogsLimitError as refused:
                if end == start:
                    raise  # one block over the provider's limit: nothing smaller to ask for
                self.log_span.shrink(end - start + 1)
                log.warning(
                    "eth_getLogs %s..%s refused (%s); asking %s blocks at a time",
                    start,
                    end,
                    refused.error,
                    self.log_span.current,
                )
                continue
            self.log_span.answered()
            start = end + 1
        return found

    async def _logs_once(self, first: int, last: int) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = await self.rpc.call(
            "eth_getLogs",
            [
                {
                    "fromBlock": hex(first),
                    "toBlock": hex(last),
                    "address": self.escrow,
                    "topics": [_TOPIC_HEXES],
                }
            ],
            at=last,
        )
        return logs

    async def _linked_headers(self, position: int, position_hash: str, head: int) -> list[Header]:
        """The headers after `position` up to `head` that extend it parent by parent (at most 256).

        Empty when the very next block does not build on `position`: the chain reorganised there.
        """
        linked: list[Header] = []
        parent_hash = position_hash
        for number in range(position + 1, min(head, position + 256) + 1):
            header = await self.header(number)
            if header.parent_hash != parent_hash:
                for stale in [n for n in self._headers if n >= number]:
                    del self._headers[stale]  # cached from before a reorg; read again next round
                break
            linked.append(header)
            parent_hash = header.hash
        return linked

    async def _apply_range(self, after: int, last: int, head: int, tagged: Header | None) -> None:
        logs = await self._logs(after + 1, last)
        upto = await self.header(last)
        events = [event for event in map(decode_log, logs) if event is not None]
        self._deliver_confirmed(self.store.apply(events, [], after, upto, head, tagged))

    def _apply(
        self, logs: Sequence[Any], after: int, headers: Sequence[Header], head: int, tagged: Header | None
    ) -> None:
        events = [event for event in map(decode_log, logs) if event is not None]
        self._deliver_confirmed(self.store.apply(events, headers, after, headers[-1], head, tagged))

    def _deliver_confirmed(self, confirmed: list[ConfirmedOrder]) -> None:
        if confirmed:
            self.on_confirmed(confirmed)

    async def _check_tip(self, position: int, position_hash: str) -> tuple[int, str]:
        """A reorg to a chain no longer than ours shows only as a new hash at our own height."""
        canonical = await self._block(position)
        if canonical.hash == position_hash:
            return position, position_hash
        self._headers.pop(position, None)
        return await self._handle_reorg(position)

    async def _handle_reorg(self, position: int) -> tuple[int, str]:
        """Finds the newest block we stored that is still canonical and rolls back to it."""
        number = position
        while number >= 0:
            stored = self.store.stored_hash(number)
            canonical = await self._block(number)
            if stored is None or stored == canonical.hash:
                break
            number -= 1
        for stale in [n for n in self._headers if n > number]:
            del self._headers[stale]
        ancestor = await self._block(number)
        orphaned = self.store.rollback_to(ancestor, position)
        log.warning("reorg: rolled back to block %s (%s payments orphaned)", number, orphaned)
        return ancestor.number, ancestor.hash
