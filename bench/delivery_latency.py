#!/usr/bin/env python3
"""Payment-to-key latency and throughput of a whole shop node, on a local anvil chain.

What is measured, and from where:

* The start of an order's latency is the moment the chain NODE announces the block that holds its
  payment. The benchmark holds its own WebSocket `newHeads` subscription to anvil (next to the shop
  node's) and records `time.time()` when each block number arrives. Measuring from the announcement
  and not from the send keeps the chain's own mining delay (up to a second with interval mining)
  out of the shop's figure: that delay is the chain's, not the shop's.
* The end is the order's `delivered_at`, written inside the delivery transaction just before it
  commits: from that commit on, the buyer can fetch the key. Both clocks are this machine's.
* Each order is joined to its payment's block through the `Payment` row (`block_number`), matched
  by `chain_order_id`, so the join uses what the shop itself recorded.

How the load is made: every quote is created first through `create_quote` (an order row and an
operator signature each, in worker processes because the pure-Python signature costs ~9 ms), with
enough keys imported up front. Payments then go out at a fixed rate from twenty funded dev accounts
(10..29 of anvil's mnemonic) with nonces kept here, so they pipeline. They are sent with
`eth_sendTransaction` (anvil signs for its unlocked dev accounts): signing client-side costs ~7 ms
per transaction in pure Python and would make the load generator, not the shop, the bottleneck.
Due payments are sent as one JSON-RPC batch per 5 ms tick.

Runs: both chain modes (anvil `--block-time 1`, and automine where each payment is mined as it
arrives), a rate ramp (its first step, 100 orders/s, is the p99 <= 100 ms target; the ramp finds
the highest rate whose p99 stays under 1 s), and a fixed-rate run of N = 100, 1,000, 10,000 orders
to see whether the per-order cost (node CPU ms per order, latency) stays flat as the store grows.
Node CPU is utime+stime of the node process from /proc, from the first send to the last delivery.

This machine's cores are shared by the load generator, anvil and the node: the figures are a lower
bound of what the node does on its own. Figures to watch, not assertions: the exit status is
non-zero only when something fails to run.

Several nodes (`--nodes 1,2,3 --postgres postgresql://postgres@127.0.0.1:5432/test`) share one
PostgreSQL database made for each run; node CPU is then the sum over the nodes.

Usage: bench/delivery_latency.py [--quick] [--rates 100,200,300,400] [--duration 10]
       [--sizes 100,1000,10000] [--size-rate 200] [--size-modes automine]
       [--nodes 1,2,3 --postgres URL] [--http-only]

`--http-only`: the node subscribes to no WebSocket and polls heads over HTTP at the pace of the
chain's block time, as with a provider without WebSocket (`ws_url: "none"`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import aiohttp
import websockets
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain, Quote
from liandong.chain.rpc import rpc_call
from liandong.core.figures import PERCENTILES, percentile
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.postgres import scratch_database
from liandong.devtools.simulate import LocalChain, LocalShop, dev_account, dev_operator, pay_calldata
from liandong.services.orders import create_quote
from liandong.store.db import make_engine
from liandong.store.models import OrderStatus, Payment, ShopOrder
from sqlmodel import Session, col, func, select

BUYERS = range(10, 30)
"""Dev accounts that pay; anvil runs with 40 accounts so that these exist and are funded."""
TICK_S = 0.005
MAX_FEE = 10**14
"""Far above any base fee these runs reach (full 1 s blocks raise it by at most 12.5 % a block)."""
TARGET_P99_MS = 100.0
SUSTAINED_P99_MS = 1000.0
MODES = ("interval", "automine")


class BenchError(Exception):
    """Something needed for the measurement failed to run."""


# ---------------------------------------------------------------------------------------- quotes


def _make_quotes(
    database_url: str, domain: EscrowDomain, product_id: int, count: int, now: int
) -> list[tuple[Quote, bytes]]:
    """Worker-process body: `count` quotes through the shop's own `create_quote`."""
    engine = make_engine(database_url)
    operator_key = "0x" + bytes(dev_operator().key).hex()
    issued = []
    with Session(engine) as session:
        for _ in range(count):
            quote = create_quote(
                session,
                domain,
                operator_key,
                product_id=product_id,
                quantity=1,
                token=NATIVE_COIN,
                now=now,
                open_quote=True,
            )
            issued.append((quote.quote, quote.signature))
    engine.dispose()
    return issued


def prepare_quotes(
    shop: LocalShop, pool: ProcessPoolExecutor, workers: int, count: int
) -> tuple[int, list[tuple[Quote, bytes]]]:
    """A fresh product with `count` keys, and `count` quotes for it (one order row each)."""
    sku = f"bench-{secrets.token_hex(4)}"
    product_id = shop.add_product(sku, [f"{sku}-{i:06d}-{secrets.token_hex(8)}" for i in range(count)])
    now = int(shop.w3.eth.get_block("latest")["timestamp"])
    url = shop.settings().resolved_database_url
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    futures = [
        pool.submit(_make_quotes, url, shop.domain, product_id, share, now) for share in shares if share
    ]
    quotes = [issued for future in futures for issued in future.result()]
    return product_id, quotes


# -------------------------------------------------------------------------------------- the load


@dataclass
class Heads:
    """Arrival time (this machine's `time.time()`) of each block number announced by `newHeads`."""

    arrived: dict[int, float] = field(default_factory=dict)

    async def follow(self, ws_url: str, ready: asyncio.Event) -> None:
        async with websockets.connect(ws_url, max_size=None) as socket:
            await socket.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            )
            reply = json.loads(await socket.recv())
            if "error" in reply:
                raise BenchError(f"newHeads subscription failed: {reply['error']}")
            ready.set()
            async for message in socket:
                now = time.time()
                result = json.loads(message).get("params", {}).get("result")
                if result is not None:
                    self.arrived.setdefault(int(result["number"], 16), now)


@dataclass
class Sent:
    started: float
    finished: float
    count: int
    errors: list[str]


async def send_paced(http_url: str, transactions: Sequence[dict[str, str]], rate: float) -> Sent:
    """Sends `transactions` at `rate` per second: whatever is due goes out as one batch per tick."""
    errors: list[str] = []
    pending: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def post(first: int, batch: Sequence[dict[str, str]]) -> None:
            body = [
                {"jsonrpc": "2.0", "id": first + i, "method": "eth_sendTransaction", "params": [tx]}
                for i, tx in enumerate(batch)
            ]
            try:
                async with client.post(http_url, json=body) as response:
                    replies = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as failed:
                errors.append(f"batch at {first}: {failed!r}")
                return
            errors.extend(str(reply["error"]) for reply in replies if "error" in reply)

        started = time.time()
        sent = 0
        while sent < len(transactions):
            due = min(len(transactions), int((time.time() - started) * rate) + 1)
            if due > sent:
                task = asyncio.create_task(post(sent, transactions[sent:due]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent = due
            await asyncio.sleep(TICK_S)
        finished = time.time()
        await asyncio.gather(*pending)
    return Sent(started, finished, len(transactions), errors)


def payments(
    shop: LocalShop | LocalChain, quotes: Sequence[tuple[Quote, bytes]], gas: int
) -> list[dict[str, str]]:
    """One `eth_sendTransaction` per quote, round-robin over the buyers, with nonces kept here."""
    buyers = [dev_account(index).address for index in BUYERS]
    nonces = {
        address: int(str(rpc_call(shop.anvil.http_url, "eth_getTransactionCount", [address, "pending"])), 16)
        for address in buyers
    }
    transactions = []
    for i, (quote, signature) in enumerate(quotes):
        payer = buyers[i % len(buyers)]
        transactions.append(
            {
                "from": payer,
                "to": shop.record.escrow,
                "value": hex(quote.amount),
                "data": "0x" + pay_calldata(quote, signature).hex(),
                "gas": hex(gas),
                "nonce": hex(nonces[payer]),
                "maxFeePerGas": hex(MAX_FEE),
                "maxPriorityFeePerGas": hex(10**9),
                "type": "0x2",
            }
        )
        nonces[payer] += 1
    return transactions


def payment_gas(shop: LocalShop | LocalChain, transaction: dict[str, str]) -> int:
    """The payment's gas estimate with headroom: anvil packs blocks by gas limit, so keep it tight."""
    probe = {key: value for key, value in transaction.items() if key not in ("nonce", "gas")}
    return int(int(str(rpc_call(shop.anvil.http_url, "eth_estimateGas", [probe])), 16) * 1.2)


# ---------------------------------------------------------------------------------- measurement


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nodes_cpu_seconds(shop: LocalShop) -> float:
    return sum(cpu_seconds(node.process.pid) for node in shop.nodes if node.process is not None)


def epoch(moment: datetime) -> float:
    """SQLite hands datetimes back naive; the store writes them in UTC."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class Result:
    mode: str
    label: str
    rate: float
    sent: int
    send_rate: float
    delivered: int
    latencies_ms: list[float]
    throughput: float
    node_cpu_ms: float
    anvil_cpu_ms: float
    blocks: int
    stages_ms: dict[str, float]
    send_errors: list[str]
    missing_heads: int

    def cells(self) -> list[str]:
        lat = sorted(self.latencies_ms)
        figures = [percentile(lat, p) for p in PERCENTILES] + [max(lat)] if lat else [float("nan")] * 4
        per_order = max(self.delivered, 1)
        return [
            self.mode,
            self.label,
            f"{self.rate:g}",
            f"{self.send_rate:.0f}",
            f"{self.delivered}/{self.sent}",
            *(f"{value:.0f}" for value in figures),
            f"{self.throughput:.0f}",
            f"{self.node_cpu_ms / per_order:.2f}",
            f"{self.anvil_cpu_ms / per_order:.2f}",
            f"{self.sent / max(self.blocks, 1):.1f}",
        ]


HEADER = [
    "mode",
    "run",
    "rate/s",
    "sent/s",
    "delivered",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "deliv/s",
    "node CPU ms/ord",
    "anvil CPU ms/ord",
    "pay/blk",
]


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> str:
    """`rows` under `header`, right-aligned in columns (this bench's and the front door's)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    head = "  ".join(cell.rjust(width) for cell, width in zip(header, widths, strict=True))
    return "\n".join([head, "-" * len(head), *lines])


def collect(shop: LocalShop, product_id: int, heads: Heads) -> tuple[list[float], dict[str, float], int, int]:
    """Per delivered order: block announcement -> delivered_at; plus the median of each stage."""
    with Session(shop.engine) as session:
        rows = session.exec(
            select(ShopOrder, Payment)
            .join(Payment, col(Payment.chain_order_id) == col(ShopOrder.chain_order_id))
            .where(ShopOrder.product_id == product_id, ShopOrder.status == OrderStatus.DELIVERED)
        ).all()
    latencies, seen, confirmed, delivered, committed = [], [], [], [], []
    missing = 0
    for order, payment in rows:
        announced = heads.arrived.get(payment.block_number)
        if announced is None or order.delivered_at is None:
            missing += 1
            continue
        latencies.append((epoch(order.delivered_at) - announced) * 1000)
        if order.seen_at and order.confirmed_at:
            seen.append((epoch(order.seen_at) - announced) * 1000)
            confirmed.append((epoch(order.confirmed_at) - epoch(order.seen_at)) * 1000)
            delivered.append((epoch(order.delivered_at) - epoch(order.confirmed_at)) * 1000)
        if order.committed_at:
            committed.append((epoch(order.committed_at) - epoch(order.delivered_at)) * 1000)
    stages = {
        "head->seen": statistics.median(seen) if seen else float("nan"),
        "seen->confirmed": statistics.median(confirmed) if confirmed else float("nan"),
        "confirmed->delivered": statistics.median(delivered) if delivered else float("nan"),
        "delivered->committed on-chain": statistics.median(committed) if committed else float("nan"),
    }
    blocks = len({payment.block_number for _, payment in rows})
    return latencies, stages, missing, blocks


def delivered_count(shop: LocalShop, product_id: int) -> int:
    with Session(shop.engine) as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(ShopOrder)
                .where(ShopOrder.product_id == product_id, ShopOrder.status == OrderStatus.DELIVERED)
            ).one()
        )


def last_delivery(shop: LocalShop, product_id: int) -> float | None:
    with Session(shop.engine) as session:
        latest = session.exec(
            select(func.max(ShopOrder.delivered_at)).where(ShopOrder.product_id == product_id)
        ).one()
    return epoch(latest) if latest is not None else None


async def run_load(
    shop: LocalShop, transactions: Sequence[dict[str, str]], rate: float, product_id: int, timeout: float
) -> tuple[Sent, Heads, float, float]:
    """Sends the load while following heads; waits until every order is delivered (or `timeout`)."""
    heads = Heads()
    ready = asyncio.Event()
    follower = asyncio.create_task(heads.follow(shop.anvil.ws_url, ready))
    await asyncio.wait_for(ready.wait(), 10)
    assert shop.anvil.process is not None
    node_before, anvil_before = nodes_cpu_seconds(shop), cpu_seconds(shop.anvil.process.pid)
    sent = await send_paced(shop.anvil.http_url, transactions, rate)
    deadline = time.monotonic() + timeout
    expected = len(transactions) - len(sent.errors)
    while time.monotonic() < deadline and delivered_count(shop, product_id) < expected:
        await asyncio.sleep(0.1)
    node_cpu = nodes_cpu_seconds(shop) - node_before
    anvil_cpu = cpu_seconds(shop.anvil.process.pid) - anvil_before
    await asyncio.sleep(0.3)  # late head messages for the last blocks
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    if follower.done() and not follower.cancelled() and follower.exception() is not None:
        raise BenchError(f"the head follower failed: {follower.exception()!r}")
    return sent, heads, node_cpu, anvil_cpu


def measure(
    shop: LocalShop,
    pool: ProcessPoolExecutor,
    workers: int,
    mode: str,
    label: str,
    rate: float,
    count: int,
    gas: int,
) -> Result:
    prepared = time.monotonic()
    product_id, quotes = prepare_quotes(shop, pool, workers, count)
    transactions = payments(shop, quotes, gas)
    print(
        f"  [{mode} {label}] {count} quotes prepared in {time.monotonic() - prepared:.1f} s; "
        f"sending at {rate:g}/s",
        flush=True,
    )
    timeout = 60 + count / rate
    sent, heads, node_cpu, anvil_cpu = asyncio.run(run_load(shop, transactions, rate, product_id, timeout))
    latencies, stages, missing, blocks = collect(shop, product_id, heads)
    delivered = delivered_count(shop, product_id)
    last = last_delivery(shop, product_id)
    window = (last - sent.started) if last is not None else float("nan")
    result = Result(
        mode=mode,
        label=label,
        rate=rate,
        sent=sent.count - len(sent.errors),
        send_rate=sent.count / max(sent.finished - sent.started, 1e-9),
        delivered=delivered,
        latencies_ms=latencies,
        throughput=delivered / window if window > 0 else 0.0,
        node_cpu_ms=node_cpu * 1000,
        anvil_cpu_ms=anvil_cpu * 1000,
        blocks=blocks,
        stages_ms=stages,
        send_errors=sent.errors,
        missing_heads=missing,
    )
    print("  " + table([result.cells()]).splitlines()[-1].strip(), flush=True)
    if sent.errors:
        print(f"  ! {len(sent.errors)} send errors, first: {sent.errors[0]}", flush=True)
    if missing:
        print(f"  ! {missing} delivered orders whose block announcement was not seen", flush=True)
    return result


# -------------------------------------------------------------------------------------- the runs


@contextlib.contextmanager
def own_database(server: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database on `server` for one run (dropped after), or None for SQLite."""
    if server is None:
        yield None
        return
    with scratch_database(server, "liandong_bench") as database_url:
        yield database_url


@contextlib.contextmanager
def local_shop(mode: str, root: Path, nodes: int = 1, postgres: str | None = None) -> Iterator[LocalShop]:
    anvil = Anvil(block_time=1 if mode == "interval" else None, extra_args=["--accounts", "40"]).start()
    shop: LocalShop | None = None
    try:
        with own_database(postgres) as database_url:
            data_dir = root / f"{mode}-{nodes}"
            data_dir.mkdir(parents=True)
            record = deploy_local_escrow(anvil.http_url, data_dir / "deployment.json")
            shop = LocalShop(anvil, record, data_dir, confirmations=0, database_url=database_url)
            shop.start()
            for _ in range(nodes - 1):
                shop.start(shop.add_node())
            yield shop
            shop.kill()
            shop.engine.dispose()
    finally:
        if shop is not None:
            shop.kill()
        anvil.stop()


def run_mode(
    mode: str,
    root: Path,
    pool: ProcessPoolExecutor,
    workers: int,
    args: argparse.Namespace,
    with_sizes: bool,
) -> list[Result]:
    results: list[Result] = []
    for nodes in args.nodes:
        with local_shop(mode, root, nodes, args.postgres) as shop:
            database = "PostgreSQL" if args.postgres else "SQLite"
            print(f"\n== {mode}: {nodes} node(s) on {database}", flush=True)
            _, probe = prepare_quotes(shop, pool, 1, 1)
            gas = payment_gas(shop, payments(shop, probe, 200_000)[0])
            label = "ramp" if args.nodes == [1] else f"ramp {nodes}n"
            for rate in args.rates:
                count = int(rate * args.duration)
                results.append(measure(shop, pool, workers, mode, label, rate, count, gas))
    if with_sizes and args.sizes:
        # A fresh chain and shop: the ramp's last step may have overloaded anvil past recovery.
        with local_shop(mode, root / "sizes") as shop:
            for size in args.sizes:
                results.append(measure(shop, pool, workers, mode, f"N={size}", args.size_rate, size, gas))
    return results


def report(results: Sequence[Result], args: argparse.Namespace) -> None:
    print("\nLatency: the bench's own newHeads arrival of the payment's block -> order.delivered_at.")
    heads = "over HTTP alone, polled at the blocks' pace" if args.http_only else "from a WebSocket"
    print(f"The node's heads: {heads}.")
    print(f"Machine: {os.cpu_count()} cores shared by the load generator, anvil and the node.\n")
    print(table([result.cells() for result in results]))
    print("\nMedian time per stage (ms):")
    for result in results:
        stages = "  ".join(f"{name} {value:.0f}" for name, value in result.stages_ms.items())
        print(f"  {result.mode:>8} {result.label:>8} {result.rate:>5g}/s  {stages}")
    print()
    runs = dict.fromkeys((r.mode, r.label) for r in results if r.label.startswith("ramp"))
    for mode, label in runs:
        ramp = [r for r in results if (r.mode, r.label) == (mode, label) and r.latencies_ms]
        name = f"{mode} {label.removeprefix('ramp').strip()}".strip()
        first = next((r for r in ramp if r.rate == args.rates[0]), None)
        if first is not None:
            p99 = percentile(sorted(first.latencies_ms), 99)
            verdict = "met" if p99 <= TARGET_P99_MS and first.delivered == first.sent else "MISS"
            print(
                f"{name}: p99 at {first.rate:g} orders/s = {p99:.0f} ms "
                f"(target <= {TARGET_P99_MS:.0f} ms): {verdict}"
            )
        sustained = [
            r.rate
            for r in ramp
            if percentile(sorted(r.latencies_ms), 99) <= SUSTAINED_P99_MS and r.delivered == r.sent
        ]
        print(
            f"{name}: highest ramp rate with p99 <= {SUSTAINED_P99_MS:.0f} ms and all delivered: "
            f"{max(sustained):g} orders/s"
            if sustained
            else f"{name}: no ramp rate kept p99 <= 1 s"
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    def numbers(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=numbers, default=[100, 200, 300, 400], help="ramp, orders/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per ramp step")
    parser.add_argument("--sizes", type=numbers, default=[100, 1_000, 10_000], help="orders per size run")
    parser.add_argument("--size-rate", type=float, default=200.0, help="orders/s of the size runs")
    parser.add_argument(
        "--size-modes",
        default="automine",
        help="chain modes of the size runs: automine, interval, both, none",
    )
    parser.add_argument("--modes", default="both", help="interval, automine or both")
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument(
        "--http-only",
        action="store_true",
        help="the node polls heads over HTTP alone (LIANDONG_WS_URL=none): a provider without WebSocket",
    )
    parser.add_argument("--nodes", type=numbers, default=[1], help="node counts to run, e.g. 1,2,3")
    parser.add_argument(
        "--postgres",
        default=None,
        help="PostgreSQL server URL (a database is made per run); default SQLite, which is one node",
    )
    args = parser.parse_args(argv)
    if max(args.nodes) > 1 and args.postgres is None:
        parser.error("several nodes share a PostgreSQL database: give --postgres URL")
    if args.quick:
        args.rates, args.duration, args.sizes = [100, 200], 2.0, [100, 500]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.http_only:
        os.environ["LIANDONG_WS_URL"] = "none"  # the node's environment: heads polled, paced by the blocks
    modes = MODES if args.modes == "both" else (args.modes,)
    size_modes = set(
        MODES if args.size_modes == "both" else () if args.size_modes == "none" else (args.size_modes,)
    )
    workers = max(1, os.cpu_count() or 1)
    results: list[Result] = []
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="liandong-latency-") as root,
            ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool,
        ):
            for mode in modes:
                results += run_mode(mode, Path(root), pool, workers, args, mode in size_modes)
    except (BenchError, RuntimeError, TimeoutError, OSError) as failed:
        print(f"delivery_latency: {failed}", file=sys.stderr)
        return 1
    report(results, args)
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
