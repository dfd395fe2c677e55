#!/usr/bin/env python3
"""What a buyer meets at the shop's front door: quotes and key reads through the public HTTP API of
a real local node (`liandong node` as a child process, SQLite, a local anvil with 1 s blocks).

Quotes (`POST /api/quotes`, each a stored order and an operator signature):

* closed loop: N clients, each sending its next quote when the last one is answered, for
  `--duration` seconds; quotes/s and the latency of each answer;
* open loop: quotes sent at a fixed rate, each at its own scheduled time whatever the answers do,
  latency counted from that scheduled time (so a stalled node cannot hide its queue);
* stock: the quotes are for a product with `--stock` keys (several sizes, one product each), and
  once more, after the key run, for the product whose `--orders` oldest keys it sold, to see whether
  a quote's cost grows with the stock or with the keys sold.

Keys (`--orders`): buyers each hold their order's stream open (`/api/orders/{id}/events`,
authenticated with the order token and naming an X25519 public key, as the order page does), pay at
each of `--order-rates` from 20 funded dev accounts, and take the keys sealed to them that come with
the `delivered` event (with `--fetch-keys` they name no key and, on the event, fetch the keys with
`POST /api/orders/{id}/keys`, as a page that joined late does), then acknowledge. Latency: the
bench's own `newHeads` arrival of the payment's block -> the keys in hand; and its two legs: -> the
`delivered` event, and that event -> the keys (0 when they came with it).

Node CPU per quote (or order) is utime+stime of the node process from /proc over the run; the
load generator's own CPU is shown next to it, as both share this machine's cores. The client is
aiohttp, the cheapest asyncio HTTP client here, so the load generator takes as little of them as it
can. Figures to watch, not assertions: the exit status is non-zero only when something fails to run.

Usage: bench/front_door.py [--clients 1,16] [--rates 300] [--duration 5] [--stock 1000]
       [--orders 300] [--order-rates 100,300] [--fetch-keys] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import websockets
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from delivery_latency import (
    BenchError,
    Heads,
    cpu_seconds,
    local_shop,
    payment_gas,
    payments,
    send_paced,
    table,
)
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.core.figures import PERCENTILES, percentile
from liandong.devtools.simulate import LocalShop
from liandong.store.models import Payment
from sqlmodel import Session, col, select

UNLIMITED = {
    "LIANDONG_QUOTE_RATE_LIMIT": "1000000/second",
    "LIANDONG_KEY_RATE_LIMIT": "1000000/second",
    "LIANDONG_STATUS_RATE_LIMIT": "1000000/second",
    "LIANDONG_WS_RATE_LIMIT": "1000000/second",
    "LIANDONG_WS_MAX_PER_CLIENT": "100000",
    "LIANDONG_WS_MAX_TOTAL": "100000",
}
"""Every request comes from 127.0.0.1: the per-client limits would measure themselves."""
BUYER = "0x" + "ab" * 20


@dataclass
class Run:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    node_cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    rss_mb: tuple[float, float] = (0.0, 0.0)
    """The node's resident memory before and after the run."""

    def cells(self) -> list[str]:
        done = max(len(self.latencies_ms), 1)
        lat = sorted(self.latencies_ms)
        figures = [percentile(lat, p) for p in PERCENTILES] if lat else [float("nan")] * 3
        return [
            self.label,
            str(len(self.latencies_ms)),
            str(len(self.errors)),
            f"{len(self.latencies_ms) / max(self.seconds, 1e-9):.0f}",
            *(f"{value:.1f}" for value in figures),
            f"{max(lat) if lat else float('nan'):.1f}",
            f"{self.node_cpu_s * 1000 / done:.2f}",
            f"{self.own_cpu_s * 1000 / done:.2f}",
            f"{self.rss_mb[0]:.0f} -> {self.rss_mb[1]:.0f}",
        ]


HEADER = [
    "run",
    "done",
    "errors",
    "per s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "node CPU ms",
    "bench CPU ms",
    "node RSS MB",
]


PUSHED = True
"""Whether the bench's pages name their public key on the stream (the order page does), so the
keys come with the `delivered` event; `--fetch-keys` makes them ask `POST …/keys` on the event."""

PROFILE: Path | None = None
"""Where `--profile` writes a py-spy profile of the node per run (collapsed stacks), or None."""


@contextlib.contextmanager
def profiled(pid: int, label: str) -> Iterator[None]:
    """py-spy samples the node (`pid`) while the block runs, into PROFILE/<label>.txt (collapsed
    stacks: `frame;frame;… count`); nothing when no profile was asked for."""
    spy = shutil.which("py-spy") or os.environ.get("LIANDONG_PY_SPY")
    if PROFILE is None or spy is None:
        yield
        return
    out = PROFILE / ("".join(c if c.isalnum() else "-" for c in label) + ".txt")
    command = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking", "--gil"]
    recorder = subprocess.Popen(
        [*command, "--threads", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)


async def measured(shop: LocalShop, run: Run, load: Callable[[], Awaitable[None]]) -> Run:
    """Runs `load`, noting the wall time and the node's and this process's CPU it took."""
    assert shop.process is not None
    with profiled(shop.process.pid, run.label):
        node_before, own_before = cpu_seconds(shop.process.pid), time.process_time()
        rss_before, started = rss_mb(shop.process.pid), time.time()
        await load()
        run.seconds = time.time() - started
        run.node_cpu_s = cpu_seconds(shop.process.pid) - node_before
        run.own_cpu_s = time.process_time() - own_before
        run.rss_mb = (rss_before, rss_mb(shop.process.pid))
    return run


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def post_quote(client: aiohttp.ClientSession, body: dict[str, object], run: Run, since: float) -> None:
    try:
        async with client.post("/api/quotes", json=body) as answer:
            text = await answer.read()
            if answer.status != 201:
                run.errors.append(f"{answer.status}: {text[:200]!r}")
                return
    except aiohttp.ClientError as failed:
        run.errors.append(repr(failed))
        return
    run.latencies_ms.append((time.perf_counter() - since) * 1000)


def api_client(shop: LocalShop, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        f"http://127.0.0.1:{shop.nodes[0].api_port}", connector=aiohttp.TCPConnector(limit=connections)
    )


async def closed_loop(shop: LocalShop, product_id: int, clients: int, duration: float, label: str) -> Run:
    body = {"product_id": product_id, "token": NATIVE_COIN, "buyer": BUYER}
    run = Run(label)

    async def load() -> None:
        deadline = time.perf_counter() + duration
        async with api_client(shop, clients) as client:

            async def one_client() -> None:
                while time.perf_counter() < deadline:
                    await post_quote(client, body, run, time.perf_counter())

            await asyncio.gather(*(one_client() for _ in range(clients)))

    return await measured(shop, run, load)


async def open_loop(shop: LocalShop, product_id: int, rate: float, duration: float) -> Run:
    body = {"product_id": product_id, "token": NATIVE_COIN, "buyer": BUYER}
    run = Run(f"{rate:g}/s open")

    async def load() -> None:
        count = int(rate * duration)
        async with api_client(shop, 256) as client:
            started = time.perf_counter()
            pending = []
            for n in range(count):
                due = started + n / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                pending.append(asyncio.create_task(post_quote(client, body, run, due)))
            await asyncio.gather(*pending)

    return await measured(shop, run, load)


# -------------------------------------------------------------------------------------- keys


@dataclass
class Buyer:
    order: str
    token: str
    quote: Quote
    signature: bytes
    delivered_at: float | None = None
    keys_at: float | None = None
    error: str | None = None


async def quote_buyers(shop: LocalShop, product_id: int, count: int) -> list[Buyer]:
    """`count` open quotes through the API (untimed), with the order token each buyer keeps."""
    body = {"product_id": product_id, "token": NATIVE_COIN, "open": True}
    async with api_client(shop, 8) as client:

        async def one() -> Buyer:
            async with client.post("/api/quotes", json=body) as answer:
                issued = await answer.json()
                if answer.status != 201:
                    raise BenchError(f"quote refused: {answer.status} {issued}")
            signature = bytes.fromhex(issued["signature"].removeprefix("0x"))
            return Buyer(issued["order"], issued["access_token"], Quote.from_json(issued["quote"]), signature)

        return list(await asyncio.gather(*(one() for _ in range(count))))


def public_key() -> str:
    raw = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def follow_order(
    shop: LocalShop, client: aiohttp.ClientSession, buyer: Buyer, key: str, ready: asyncio.Event
) -> None:
    """What the order page does: listen (naming its public key, unless `PUSHED` is off), and on
    `delivered` take the sealed keys it carries, or fetch them, then ack."""
    url = f"ws://127.0.0.1:{shop.nodes[0].api_port}/api/orders/{buyer.order}/events"
    async with websockets.connect(url) as socket:
        hello = {"type": "auth", "token": buyer.token, **({"public_key": key} if PUSHED else {})}
        await socket.send(json.dumps(hello))
        if json.loads(await socket.recv()).get("type") != "ready":
            raise BenchError(f"order {buyer.order}: the stream did not open")
        ready.set()
        async for message in socket:
            event = json.loads(message)
            if event.get("type") == "order" and event.get("status") == "delivered":
                buyer.delivered_at = time.time()
                if "box" in event.get("keys", {}):
                    buyer.keys_at = buyer.delivered_at
                    await socket.send(json.dumps({"type": "ack"}))
                    return
                headers = {"X-Order-Token": buyer.token}
                async with client.post(
                    f"/api/orders/{buyer.order}/keys", json={"public_key": key}, headers=headers
                ) as answer:
                    sealed = await answer.json()
                    buyer.keys_at = time.time()
                    if answer.status != 200 or "box" not in sealed:
                        buyer.error = f"{answer.status}: {sealed}"
                await socket.send(json.dumps({"type": "ack"}))
                return
        buyer.error = f"order {buyer.order}: the stream closed before the delivered event"


async def keys_path(shop: LocalShop, product_id: int, count: int, rate: float) -> tuple[Run, KeyLegs]:
    buyers = await quote_buyers(shop, product_id, count)
    gas = payment_gas(shop, payments(shop, [(buyers[0].quote, buyers[0].signature)], 200_000)[0])
    transactions = payments(shop, [(buyer.quote, buyer.signature) for buyer in buyers], gas)
    key = public_key()
    heads = Heads()
    heads_ready = asyncio.Event()
    follower = asyncio.create_task(heads.follow(shop.anvil.ws_url, heads_ready))
    await asyncio.wait_for(heads_ready.wait(), 10)
    run = Run(f"keys {rate:g}/s")
    async with api_client(shop, count) as client:  # a connection per buyer, as in a browser
        opened = [asyncio.Event() for _ in buyers]
        listeners = [
            asyncio.create_task(follow_order(shop, client, buyer, key, ready))
            for buyer, ready in zip(buyers, opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in opened)), 60)

        async def load() -> None:
            sent = await send_paced(shop.anvil.http_url, transactions, rate)
            run.errors += sent.errors
            await asyncio.wait_for(asyncio.gather(*listeners), 60 + count / rate)

        await measured(shop, run, load)
    await asyncio.sleep(0.3)  # late head messages
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    with Session(shop.engine) as session:
        blocks = dict(
            session.exec(
                select(Payment.chain_order_id, Payment.block_number).where(
                    col(Payment.chain_order_id).in_([buyer.order for buyer in buyers])
                )
            ).all()
        )
    legs = KeyLegs()
    for buyer in buyers:
        announced = heads.arrived.get(blocks.get(buyer.order, -1))
        if buyer.error is not None:
            run.errors.append(buyer.error)
        elif announced is not None and buyer.keys_at is not None and buyer.delivered_at is not None:
            run.latencies_ms.append((buyer.keys_at - announced) * 1000)
            legs.block_to_event.append((buyer.delivered_at - announced) * 1000)
            legs.event_to_keys.append((buyer.keys_at - buyer.delivered_at) * 1000)
        else:
            run.errors.append(f"order {buyer.order}: no block announcement or no keys")
    return run, legs


@dataclass
class KeyLegs:
    """The two legs of a key run's latency, per order, in ms."""

    block_to_event: list[float] = field(default_factory=list)
    """The block's announcement -> the order stream's `delivered` event."""
    event_to_keys: list[float] = field(default_factory=list)
    """The `delivered` event -> the sealed keys' answer."""

    def lines(self) -> list[str]:
        shown = []
        for name, values in (
            ("block -> delivered event", self.block_to_event),
            ("delivered event -> keys", self.event_to_keys),
        ):
            ordered = sorted(values)
            if ordered:
                figures = "  ".join(f"p{p} {percentile(ordered, p):.0f} ms" for p in PERCENTILES)
                shown.append(f"  {name}: {figures}")
        return shown


# -------------------------------------------------------------------------------------- the runs


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=numbers, default=[1, 16], help="closed-loop client counts")
    parser.add_argument("--rates", type=numbers, default=[300], help="open-loop quote rates, quotes/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per quote run")
    parser.add_argument("--stock", type=numbers, default=[1000], help="keys of the quoted product, per run")
    parser.add_argument("--orders", type=int, default=300, help="orders of the key-read run (0: none)")
    parser.add_argument(
        "--order-rates",
        type=numbers,
        default=[100, 300],
        help="payments/s of the key-read runs, one run each",
    )
    parser.add_argument(
        "--fetch-keys",
        action="store_true",
        help="pages name no public key on the stream and fetch their keys on the delivered event",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder for a py-spy profile of the node per run (py-spy on PATH or LIANDONG_PY_SPY)",
    )
    return parser.parse_args(argv)


async def bench(shop: LocalShop, args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []

    def show(run: Run) -> None:
        runs.append(run)
        print("  " + table([run.cells()], HEADER).splitlines()[-1].strip(), flush=True)
        if run.errors:
            print(f"  ! {len(run.errors)} errors, first: {run.errors[0]}", flush=True)

    for stock in args.stock:
        product_id = shop.add_product(f"quotes-{stock}", [f"key-{stock}-{i:07d}" for i in range(stock)])
        print(f"quotes for a product with {stock} keys", flush=True)
        await closed_loop(shop, product_id, 4, 1.0, "warm-up")  # the node's first requests
        for clients in args.clients:
            show(
                await closed_loop(
                    shop, product_id, clients, args.duration, f"{clients} clients, {stock} keys"
                )
            )
        for rate in args.rates:
            show(await open_loop(shop, product_id, rate, args.duration))
    if args.orders:
        for rate in args.order_rates:
            keys = [f"sold-{rate}-{i:07d}" for i in range(args.orders + 100)]
            product_id = shop.add_product(f"keys-{rate}", keys)
            print(f"{args.orders} orders paid at {rate}/s, keys read on the delivered event", flush=True)
            run, legs = await keys_path(shop, product_id, args.orders, rate)
            show(run)
            for line in legs.lines():
                print(line, flush=True)
        clients = max(args.clients)
        label = f"{clients} clients, {args.orders} sold"
        show(await closed_loop(shop, product_id, clients, args.duration, label))
    return runs


def main(argv: Sequence[str]) -> int:
    global PROFILE, PUSHED
    args = parse_args(argv)
    PUSHED = not args.fetch_keys
    os.environ.update(UNLIMITED)
    if args.profile is not None:
        PROFILE = args.profile
        PROFILE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="liandong-front-door-") as root,
            local_shop("interval", Path(root)) as shop,
        ):
            runs = asyncio.run(bench(shop, args))
    except (BenchError, RuntimeError, TimeoutError, OSError) as failed:
        print(f"front_door: {failed}", file=sys.stderr)
        return 1
    print(
        f"\nOne node, SQLite, anvil with 1 s blocks; {os.cpu_count()} cores shared by the bench, anvil "
        "and the node."
    )
    print(
        "Latency: quotes from their send (open loop: their scheduled send); keys from the block's "
        "announcement."
    )
    print("CPU columns: per quote (per order for the key run).\n")
    print(table([run.cells() for run in runs], HEADER))
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
