#!/usr/bin/env python3
"""How soon the indexer sees a new block on a 1 s chain: HTTP polling (fixed, and paced by the
block time) against a WebSocket `newHeads` subscription.

What is measured, and from where:

* The start is the moment the block became available: a reference poller, in a process of its own
  (so neither the GIL nor the indexer's event loop delays it), asks anvil for `eth_blockNumber`
  every 5 ms over one kept-alive HTTP connection and records `time.monotonic()` when each number
  first shows. It sees a block 0-5 ms (plus a ~0.3 ms request) after anvil serves it, so the figures
  below are low by ~2.5 ms on average, and a WebSocket push can come out slightly negative. The
  block timestamp cannot serve: anvil's are whole seconds.
* The end is the moment the real `Indexer` first hears of a head at or above that number
  (`note_head` from the subscription, `note_height` from a poll), and, as a second column, the
  moment its sync has read that block (checkpoint written). Both clocks are CLOCK_MONOTONIC of
  this machine, one clock for every process.

Runs, one after the other against one anvil with `--block-time 1` and an empty address for the
escrow (no logs: the sync still reads each block's header and logs): HTTP only at today's fixed
0.25 s poll, HTTP only paced by the block time (`PollingHeads(block_time=1)`), and WebSocket. The
first blocks of each run are left out (the indexer starting). Head polls/s counts the indexer's
answered `eth_blockNumber` polls (the 5 s safety poll included) over the run. Figures to watch, not
assertions: the exit status is non-zero only when something fails to run.

Usage: bench/detection.py [--quick] [--blocks 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from delivery_latency import BenchError, table
from liandong.chain.indexer import ConfirmationPolicy, ConfirmedOrder, Indexer, IndexerStore
from liandong.chain.indexer.heads import Header
from liandong.core.figures import PERCENTILES, percentile
from liandong.devtools.devnet import DEV_CHAIN_ID, Anvil
from liandong.store.db import make_engine, migrate

REFERENCE_TICK_S = 0.005
BLOCK_TIME_S = 1.0
WARM_UP_BLOCKS = 3
NO_ESCROW = "0x00000000000000000000000000000000000000E5"
"""An address with no code: the indexer's `eth_getLogs` find nothing, the rest of its work is real."""


# ------------------------------------------------------------------------------ the reference


def reference_poller(port: int, stop: Event, out: Connection) -> None:
    """Child-process body: the first `time.monotonic()` each block number is served, until `stop`."""
    seen: dict[int, float] = {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    headers = {"Content-Type": "application/json"}
    head = -1
    while not stop.is_set():
        connection.request("POST", "/", body, headers)
        number = int(json.loads(connection.getresponse().read())["result"], 16)
        now = time.monotonic()
        for block in range(head + 1, number + 1):
            seen[block] = now
        head = max(head, number)
        time.sleep(REFERENCE_TICK_S)
    connection.close()
    out.send(seen)


# -------------------------------------------------------------------------------- the indexer


def _ignore(confirmed: list[ConfirmedOrder]) -> None:
    del confirmed


class TimedIndexer(Indexer):
    """The real indexer, writing down when it first heard of each block and when it had synced it."""

    def __init__(
        self, store: IndexerStore, rpc_url: str, ws_url: str | None, start: int, block_time: float | None
    ) -> None:
        super().__init__(store, [rpc_url], ws_url, NO_ESCROW, start, _ignore, block_time=block_time)
        self.heard: dict[int, float] = {}
        self.synced: dict[int, float] = {}
        self.polls = 0
        self._heard_upto = -1
        self.synced_upto = -1

    def _heard(self, number: int) -> None:
        now = time.monotonic()
        if self._heard_upto >= 0:
            for block in range(self._heard_upto + 1, number + 1):
                self.heard[block] = now
        self._heard_upto = max(self._heard_upto, number)

    def note_head(self, header: Header) -> None:
        self._heard(header.number)
        super().note_head(header)

    def note_height(self, number: int) -> None:
        self.polls += 1
        self._heard(number)
        super().note_height(number)

    async def sync(self) -> None:
        await super().sync()
        now = time.monotonic()
        if self.synced_upto >= 0:
            for block in range(self.synced_upto + 1, self._position + 1):
                self.synced[block] = now
        self.synced_upto = max(self.synced_upto, self._position)


@dataclass
class Followed:
    """What one run of the indexer wrote down (compared with the reference once it has stopped)."""

    name: str
    heard: dict[int, float]
    synced: dict[int, float]
    polls_per_s: float

    def cells(self, served: dict[int, float]) -> list[str]:
        counted = sorted(self.heard)[WARM_UP_BLOCKS:]
        missing = [block for block in counted if block not in served or block not in self.synced]
        if missing:
            raise BenchError(f"{self.name}: blocks {missing[:5]} not seen by the reference or not synced")
        cells = [self.name, str(len(counted))]
        for moments in (self.heard, self.synced):
            ordered = sorted((moments[block] - served[block]) * 1000 for block in counted)
            cells += [f"{percentile(ordered, p):.1f}" for p in PERCENTILES] + [f"{ordered[-1]:.1f}"]
        return [*cells, f"{self.polls_per_s:.1f}"]


HEADER = [
    "heads by",
    "blocks",
    *(f"seen p{p}" for p in PERCENTILES),
    "seen max",
    *(f"synced p{p}" for p in PERCENTILES),
    "synced max",
    "head polls/s",
]

RUNS: list[tuple[str, bool, float | None]] = [
    # (name, WebSocket, block time given to the indexer)
    ("HTTP, fixed 0.25 s poll", False, None),
    ("HTTP, paced by 1 s blocks", False, BLOCK_TIME_S),
    ("WebSocket newHeads", True, None),
]


def anvil_head(anvil: Anvil) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", anvil.port, timeout=5)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    connection.request("POST", "/", body, {"Content-Type": "application/json"})
    head = int(json.loads(connection.getresponse().read())["result"], 16)
    connection.close()
    return head


async def follow(indexer: TimedIndexer, until: int) -> float:
    """Runs `indexer` until it has synced block `until`; the seconds it ran."""
    started = time.monotonic()
    task = asyncio.create_task(indexer.run())
    while indexer.synced_upto < until:
        if task.done():
            task.result()
            raise BenchError("the indexer stopped")
        await asyncio.sleep(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for provider in indexer.rpc.providers:
        await provider.transport.close()
    return time.monotonic() - started


def measure(
    name: str, anvil: Anvil, database: Path, blocks: int, ws: bool, block_time: float | None
) -> Followed:
    migrate(f"sqlite:///{database}")
    engine = make_engine(f"sqlite:///{database}")
    store = IndexerStore(engine, DEV_CHAIN_ID, ConfirmationPolicy(0), 64)
    head = anvil_head(anvil)
    ws_url = anvil.ws_url if ws else None
    indexer = TimedIndexer(store, anvil.http_url, ws_url, head, block_time)
    print(f"== {name}: {blocks} blocks", flush=True)
    took = asyncio.run(follow(indexer, head + blocks))
    engine.dispose()
    return Followed(name, indexer.heard, indexer.synced, indexer.polls / took)


def run(blocks: int, root: Path) -> list[list[str]]:
    context = get_context("spawn")
    with Anvil(block_time=BLOCK_TIME_S) as anvil:
        stop = context.Event()
        receiving, sending = context.Pipe(duplex=False)
        poller = context.Process(target=reference_poller, args=(anvil.port, stop, sending), daemon=True)
        poller.start()
        try:
            followed = [
                measure(name, anvil, root / f"run{index}.db", blocks, ws, block_time)
                for index, (name, ws, block_time) in enumerate(RUNS)
            ]
        finally:
            stop.set()
            served: dict[int, float] = receiving.recv() if receiving.poll(10) else {}
            poller.join(timeout=10)
    return [run.cells(served) for run in followed]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=60, help="blocks per run")
    parser.add_argument("--quick", action="store_true", help="20 blocks per run")
    args = parser.parse_args(argv)
    blocks = 20 if args.quick else args.blocks
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="liandong-detection-") as root:
            rows = run(blocks, Path(root))
    except (BenchError, RuntimeError, TimeoutError, OSError) as failed:
        print(f"detection: {failed}", file=sys.stderr)
        return 1
    print("\nDetection on anvil --block-time 1: reference 5 ms poller's first sight -> the indexer's (ms).")
    print(f"Machine: {os.cpu_count()} cores shared by anvil, the reference poller and the indexer.\n")
    print(table(rows, HEADER))
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
