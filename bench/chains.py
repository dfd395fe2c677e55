#!/usr/bin/env python3
"""One node, three chains loaded at once: per chain, block announcement -> keys delivered, and
the node's throughput over all three.

Three anvils with their own chain ids (31337, 31339, 31341), each with `--block-time 1`, an escrow
on each, and one shop node serving them all (`LIANDONG_CHAINS`). Each chain gets its own product,
its quotes (`create_quote` with that chain's escrow domain, made up front in this process) and its
payments, sent at the same rate on every chain at once from twenty dev accounts with nonces kept
here (`delivery_latency.send_paced`). The start of an order's latency is this bench's own
`newHeads` arrival of its payment's block on its chain; the end is the order's `delivered_at` (the
delivery commit), as in `delivery_latency.py`. Node CPU is the node process's utime+stime over
the load. The cores are shared by three anvils, the load generator and the node: figures to watch,
not assertions.

Usage: bench/chains.py [--rate 30] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from delivery_latency import (
    Heads,
    collect,
    cpu_seconds,
    delivered_count,
    payment_gas,
    payments,
    send_paced,
    table,
)
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.core.figures import PERCENTILES, percentile
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import LocalChain, LocalShop, dev_operator
from liandong.services.orders import create_quote
from sqlmodel import Session

CHAINS = (31337, 31339, 31341)


def quotes(shop: LocalShop, chain: LocalChain, product_id: int, count: int) -> list[tuple[Quote, bytes]]:
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    key = "0x" + bytes(dev_operator().key).hex()
    with Session(shop.engine) as session:
        issued = [
            create_quote(
                session,
                chain.domain,
                key,
                product_id=product_id,
                quantity=1,
                token=NATIVE_COIN,
                now=now,
                open_quote=True,
            )
            for _ in range(count)
        ]
    return [(one.quote, one.signature) for one in issued]


async def load(
    shop: LocalShop, plans: dict[int, tuple[int, list[dict[str, str]]]], rate: float
) -> dict[int, Heads]:
    """Sends every chain's payments at `rate` at once, following each chain's heads."""
    heads = {chain_id: Heads() for chain_id in plans}
    followers = []
    for chain_id, follower in heads.items():
        ready = asyncio.Event()
        followers.append(asyncio.create_task(follower.follow(shop.chain(chain_id).anvil.ws_url, ready)))
        await asyncio.wait_for(ready.wait(), 10)
    await asyncio.gather(
        *(send_paced(shop.chain(chain_id).anvil.http_url, txs, rate) for chain_id, (_, txs) in plans.items())
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        delivered_count(shop, product) < len(txs) for product, txs in plans.values()
    ):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    for task in followers:
        task.cancel()
    return heads


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30.0, help="payments per second on each chain")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    count = int(args.rate * args.duration)
    with tempfile.TemporaryDirectory() as root:
        anvils = [
            Anvil(block_time=1, chain_id=chain_id, extra_args=["--accounts", "40"]).start()
            for chain_id in CHAINS
        ]
        shop: LocalShop | None = None
        try:
            data_dir = Path(root) / "shop"
            first = deploy_local_escrow(anvils[0].http_url, data_dir / "deployment.json")
            more = []
            for anvil in anvils[1:]:
                path = data_dir / "deployments" / f"{anvil.chain_id}.json"
                more.append(LocalChain(anvil, deploy_local_escrow(anvil.http_url, path), path))
            shop = LocalShop(anvils[0], first, data_dir, confirmations=0, more_chains=more)
            shop.start()
            plans: dict[int, tuple[int, list[dict[str, str]]]] = {}
            for chain_id in CHAINS:
                chain = shop.chain(chain_id)
                product = shop.add_product(f"bench-{chain_id}", [f"K-{chain_id}-{n}" for n in range(count)])
                issued = quotes(shop, chain, product, count)
                gas = payment_gas(chain, payments(chain, issued[:1], 200_000)[0])
                plans[chain_id] = (product, payments(chain, issued, gas))
            assert shop.process is not None
            cpu_before, started = cpu_seconds(shop.process.pid), time.time()
            heads = asyncio.run(load(shop, plans, args.rate))
            elapsed, cpu = time.time() - started, cpu_seconds(shop.process.pid) - cpu_before
            rows, delivered_all = [], 0
            for chain_id, (product, txs) in plans.items():
                latencies, _, _, _ = collect(shop, product, heads[chain_id])
                delivered = delivered_count(shop, product)
                delivered_all += delivered
                lat = sorted(latencies)
                figures = (
                    [f"{percentile(lat, p):.0f}" for p in PERCENTILES] if lat else ["-"] * len(PERCENTILES)
                )
                rows.append([str(chain_id), f"{args.rate:g}", f"{delivered}/{len(txs)}", *figures])
            print(f"\nOne node, {len(CHAINS)} chains at 1 s blocks, {args.rate:g} payments/s on each at once")
            print(f"Machine: {os.cpu_count()} cores shared by 3 anvils, the load generator and the node.\n")
            print(table(rows, ["chain", "rate/s", "delivered", *(f"p{p:g} ms" for p in PERCENTILES)]))
            per_order = cpu * 1000 / max(delivered_all, 1)
            print(
                f"\nall chains: {delivered_all} orders delivered in {elapsed:.1f} s "
                f"({delivered_all / elapsed:.0f}/s); node CPU {per_order:.2f} ms per order"
            )
            return 0 if delivered_all == sum(len(txs) for _, txs in plans.values()) else 1
        finally:
            if shop is not None:
                shop.kill()
            for anvil in anvils:
                anvil.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
