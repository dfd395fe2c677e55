"""RPC realities through a real fault-injecting proxy (`tests/rpcproxy.py`) in front of real anvil.

The node reads the chain only through proxies (its `LIANDONG_RPC_URL`, and `LIANDONG_RPC_URLS`
when a test gives it several providers; the proxy refuses the WebSocket upgrade, so it polls,
unless the test asks for a proxied WebSocket, its `LIANDONG_WS_URL`), while the buyers pay straight
into anvil. Each test then checks that nothing was missed and nothing
happened twice: every paid order delivered once, one Payment row per payment, one `OrderDelivered`
log per order, and the indexer's `eth_getLogs` answers (from all its providers) covering every
block from the deployment on. One test follows heads alone, with the indexer's `PollingHeads`,
on a chain with 1 s blocks: paced by the block time, it sees each block soon after anvil announces
it, at a few polls a second.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from liandong.devtools.simulate import LocalShop
from liandong.services.orders import IssuedQuote
from liandong.store.models import ChainCheckpoint, Delivery, OrderStatus, Payment
from sqlmodel import Session, select

from tests.rpcproxy import RpcProxy

from .test_faults import _delivered_everything, _on_chain_deliveries, _rpc

pytestmark = pytest.mark.slow


ProxiedShop = Callable[..., tuple[LocalShop, list[RpcProxy]]]


@pytest.fixture
def proxied_shop(shop_factory: Any) -> Iterator[ProxiedShop]:
    """A shop whose node reads anvil through `providers` fresh proxies, in that order (all stopped
    after the test), and follows its heads over the first one's WebSocket when `websocket`;
    `options` go to `shop_factory`."""
    started: list[RpcProxy] = []

    def make(providers: int = 1, websocket: bool = False, **options: Any) -> tuple[LocalShop, list[RpcProxy]]:
        shop: LocalShop = shop_factory(**options)
        ws_upstream = shop.anvil.ws_url if websocket else None
        proxies = [
            RpcProxy(shop.anvil.http_url, ws_upstream=ws_upstream, seed=14 + n).start()
            for n in range(providers)
        ]
        started.extend(proxies)
        for node in shop.nodes:
            node.env["LIANDONG_RPC_URL"] = proxies[0].url
            node.env["LIANDONG_RPC_URLS"] = json.dumps([proxy.url for proxy in proxies[1:]])
            if websocket:
                node.env["LIANDONG_WS_URL"] = proxies[0].ws_url
        return shop, proxies

    yield make
    for proxy in started:
        proxy.stop()


def _mine(shop: LocalShop, blocks: int) -> None:
    """`blocks` empty blocks, in steps anvil mines quickly."""
    while blocks > 0:
        step = min(blocks, 500)
        _rpc(shop, "anvil_mine", hex(step))
        blocks -= step


def _pay(shop: LocalShop, product: int, count: int) -> list[IssuedQuote]:
    quotes = [shop.quote(product) for _ in range(count)]
    for index, issued in enumerate(quotes):
        shop.buyer(4 + index % 6).pay(issued.quote, issued.signature)
    return quotes


def _assert_each_once(
    shop: LocalShop, proxies: list[RpcProxy], quotes: list[IssuedQuote], timeout: float = 120
) -> None:
    keys = [issued.order.chain_order_id for issued in quotes]
    shop.wait_for(lambda: _delivered_everything(shop, keys), timeout, "every order delivered and recorded")
    with Session(shop.engine) as session:
        payments = Counter(payment.chain_order_id for payment in session.exec(select(Payment)).all())
        deliveries = session.exec(select(Delivery)).all()
    assert payments == Counter(dict.fromkeys(keys, 1))
    assert len(deliveries) == len(keys)
    assert len({delivery.order_id for delivery in deliveries}) == len(keys)
    assert _on_chain_deliveries(shop) == Counter(dict.fromkeys(keys, 1))
    assert all(shop.order(key).status == OrderStatus.DELIVERED for key in keys)
    _assert_every_block_read(shop, proxies)


def _assert_every_block_read(shop: LocalShop, proxies: list[RpcProxy]) -> None:
    """The ranges the proxies answered cover every block from the deployment to the last one read."""
    covered = sorted(served for proxy in proxies for served in proxy.stats.logs_served)
    upto = shop.record.block_number - 1
    for first, last in covered:
        assert first <= upto + 1, f"blocks {upto + 1}..{first - 1} never read"
        upto = max(upto, last)
    assert upto >= int(_rpc(shop, "eth_blockNumber"), 16) - 300


def test_a_backfill_through_get_logs_capped_at_1000_blocks_and_10000_results(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (proxy,) = proxied_shop()
    product = shop.add_product("backfill", [f"B-{n:03}" for n in range(6)])
    quotes: list[IssuedQuote] = []
    for _ in range(6):  # six payments over 3,000 blocks (anvil mines ~150 a second), before the start
        quotes += _pay(shop, product, 1)
        _mine(shop, 500)
    proxy.faults.logs_max_range = 1_000
    proxy.faults.logs_max_results = 10_000

    started = time.monotonic()
    shop.start()
    _assert_each_once(shop, [proxy], quotes)
    took = time.monotonic() - started
    print(f"backfill of {int(_rpc(shop, 'eth_blockNumber'), 16)} blocks took {took:.1f} s")
    assert proxy.stats.range_refused > 0  # the sync's 2,000-block ranges were split
    assert sum(last - first + 1 for first, last in proxy.stats.logs_served) >= 2_900
    assert max(last - first + 1 for first, last in proxy.stats.logs_served) <= 1_000


def test_a_result_cap_splits_dense_ranges_down_to_what_the_provider_answers(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (proxy,) = proxied_shop()
    product = shop.add_product("dense", [f"D-{n:03}" for n in range(40)])
    quotes = _pay(shop, product, 40)  # forty payments in forty consecutive blocks
    _mine(shop, 300)
    proxy.faults.logs_max_results = 3

    shop.start()
    _assert_each_once(shop, [proxy], quotes)
    assert proxy.stats.results_refused > 0
    assert max(len(found) for found in proxy.stats.logs_sizes) <= 3


def test_a_429_storm_with_retry_after_is_waited_out(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (proxy,) = proxied_shop()
    product = shop.add_product("storm", [f"T-{n:03}" for n in range(20)])
    early = _pay(shop, product, 10)
    proxy.faults.retry_after = "0.2"
    proxy.faults.throttle_burst = 40
    proxy.faults.throttle_fraction = 0.4

    shop.start()
    late = _pay(shop, product, 10)
    _mine(shop, 3)
    _assert_each_once(shop, [proxy], early + late)
    assert proxy.stats.throttled >= 40


def test_5xx_bursts_a_dead_proxy_and_a_wobbly_lagging_head_are_survived(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (proxy,) = proxied_shop()
    product = shop.add_product("flaky", [f"F-{n:03}" for n in range(20)])
    shop.start()
    proxy.faults.retry_after = None  # backoff with jitter, no hint
    proxy.faults.server_error_fraction = 0.3
    proxy.faults.lag = 2
    proxy.faults.wobbly_head = True
    first = _pay(shop, product, 8)
    for _ in range(3):
        proxy.faults.server_error_burst = 15
        time.sleep(0.5)
    proxy.go_dead()  # connection refused for a while
    second = _pay(shop, product, 6)
    time.sleep(2)
    proxy.revive()
    third = _pay(shop, product, 6)
    _mine(shop, 5)
    _assert_each_once(shop, [proxy], first + second + third)
    assert proxy.stats.server_errors >= 45


def _checkpoints(shop: LocalShop, seen: list[int], stop: threading.Event) -> None:
    """Writes down the indexer's checkpoint every few milliseconds until `stop`."""
    while not stop.is_set():
        with Session(shop.engine) as session:
            checkpoint = session.exec(select(ChainCheckpoint)).first()
        if checkpoint is not None:
            seen.append(checkpoint.block_number)
        time.sleep(0.05)


def test_two_providers_fail_over_each_way_and_every_order_is_delivered_once(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (first, second) = proxied_shop(2)
    product = shop.add_product("failover", [f"O-{n:03}" for n in range(12)])
    first.go_dead()  # the first URL refuses connections from the start
    shop.start()
    early = _pay(shop, product, 6)
    _mine(shop, 2)
    _assert_each_once(shop, [first, second], early, timeout=60)  # all through the second one
    assert first.stats.logs_served == []

    first.revive()
    time.sleep(12)  # longer than its longest rest: it is asked again, and answers
    second.faults.server_error_fraction = 1.0  # now the second answers only 5xx
    late = _pay(shop, product, 6)
    _mine(shop, 2)
    _assert_each_once(shop, [first, second], early + late, timeout=60)
    assert second.stats.server_errors > 0
    assert first.stats.logs_served  # the first one took over


def test_a_429_storm_on_one_provider_is_waited_out_by_its_retry_after_on_the_other(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (stormy, calm) = proxied_shop(2)
    product = shop.add_product("storm2", [f"S-{n:03}" for n in range(16)])
    early = _pay(shop, product, 8)
    stormy.faults.retry_after = "2"
    stormy.faults.throttle_fraction = 1.0

    started = time.monotonic()
    shop.start()
    late = _pay(shop, product, 8)
    _mine(shop, 3)
    _assert_each_once(shop, [stormy, calm], early + late, timeout=60)
    time.sleep(max(0.0, 10 - (time.monotonic() - started)))  # a storm long enough to count in
    took = time.monotonic() - started
    assert stormy.stats.throttled > 0
    # Each of the node's two pools (indexer, sender) asks the throttled one again only after its
    # Retry-After: about once every 2 s, where the head poll alone would ask 4 times a second.
    assert sum(stormy.stats.requests.values()) <= 2 * (took / 2 + 3)


def test_a_lagging_provider_is_not_asked_for_blocks_it_does_not_have(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (lagging, current) = proxied_shop(2, confirmations=2)
    product = shop.add_product("lag", [f"L-{n:03}" for n in range(6)])
    lagging.faults.lag = 40  # the first URL: it answers, but 40 blocks behind
    shop.start()
    quotes = _pay(shop, product, 6)
    _mine(shop, 2)  # the last payment's two confirmations, on the current provider only
    _assert_each_once(shop, [lagging, current], quotes, timeout=60)
    assert lagging.stats.requests["eth_blockNumber"] > 0  # it is in the pool, asked for its head
    assert lagging.stats.beyond_head == 0


def test_heads_going_backwards_or_repeating_move_nothing_back(
    proxied_shop: ProxiedShop,
) -> None:
    shop, proxies = proxied_shop(2, confirmations=1)
    for lag, proxy in enumerate(proxies):
        proxy.faults.wobbly_head = True  # every other head repeats or goes back up to 2 blocks
        proxy.faults.lag = lag
    product = shop.add_product("wobble", [f"W-{n:03}" for n in range(12)])
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_checkpoints, args=(shop, seen, stop), daemon=True)
    shop.start()
    watcher.start()
    try:
        quotes: list[IssuedQuote] = []
        for _ in range(4):
            quotes += _pay(shop, product, 3)
            _mine(shop, 1)
            time.sleep(0.5)
        _mine(shop, 2)
        _assert_each_once(shop, proxies, quotes, timeout=60)
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert seen
    assert seen == sorted(seen)  # the checkpoint never went back


def test_a_websocket_dropped_every_2_s_while_payments_flow_misses_nothing_and_repeats_nothing(
    proxied_shop: ProxiedShop,
) -> None:
    shop, (proxy,) = proxied_shop(websocket=True)
    product = shop.add_product("dropped", [f"W-{n:03}" for n in range(80)])
    proxy.faults.ws_drop_every = 2.0  # a close frame, then a reset connection, and so on
    shop.start()
    quotes: list[IssuedQuote] = []
    started = time.monotonic()
    while time.monotonic() - started < 11 and len(quotes) < 80:  # a payment (a block) every ~0.3 s
        quotes += _pay(shop, product, 1)
        time.sleep(0.2)
    _assert_each_once(shop, [proxy], quotes, timeout=60)
    stats = proxy.stats
    print(f"{len(quotes)} orders, {stats.ws_dropped} drops, {stats.requests['eth_subscribe']} subscriptions")
    assert len(quotes) >= 20
    assert proxy.stats.ws_dropped >= 5
    assert proxy.stats.requests["eth_subscribe"] > proxy.stats.ws_dropped  # resubscribed after each
    assert proxy.stats.ws_notifications >= len(quotes) // 2  # heads came mostly over the socket
