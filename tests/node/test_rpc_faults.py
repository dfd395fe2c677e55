"""RPC realities through a real fault-injecting proxy (`tests/rpcproxy.py`) in front of real anvil.

The node reads the chain only through the proxy (its `LIANDONG_RPC_URL`; the proxy refuses the
WebSocket upgrade, so it polls), while the buyers pay straight into anvil. Each test then checks
that nothing was missed and nothing happened twice: every paid order delivered once, one Payment
row per payment, one `OrderDelivered` log per order, and the indexer's `eth_getLogs` answers
covering every block from the deployment on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from liandong.devtools.simulate import LocalShop
from liandong.services.orders import IssuedQuote
from liandong.store.models import Delivery, OrderStatus, Payment
from sqlmodel import Session, select

from tests.rpcproxy import RpcProxy

from .test_faults import _delivered_everything, _on_chain_deliveries, _rpc

pytestmark = pytest.mark.slow


@pytest.fixture
def proxied_shop(shop_factory: Any) -> Iterator[Callable[[], tuple[LocalShop, RpcProxy]]]:
    """A shop whose node reads anvil through a fresh proxy (stopped after the test)."""
    proxies: list[RpcProxy] = []

    def make() -> tuple[LocalShop, RpcProxy]:
        shop: LocalShop = shop_factory()
        proxy = RpcProxy(shop.anvil.http_url).start()
        proxies.append(proxy)
        for node in shop.nodes:
            node.env["LIANDONG_RPC_URL"] = proxy.url
        return shop, proxy

    yield make
    for proxy in proxies:
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


def _assert_each_once(shop: LocalShop, proxy: RpcProxy, quotes: list[IssuedQuote]) -> None:
    keys = [issued.order.chain_order_id for issued in quotes]
    shop.wait_for(lambda: _delivered_everything(shop, keys), 120, "every order delivered and recorded")
    with Session(shop.engine) as session:
        payments = Counter(payment.chain_order_id for payment in session.exec(select(Payment)).all())
        deliveries = session.exec(select(Delivery)).all()
    assert payments == Counter(dict.fromkeys(keys, 1))
    assert len(deliveries) == len(keys)
    assert len({delivery.order_id for delivery in deliveries}) == len(keys)
    assert _on_chain_deliveries(shop) == Counter(dict.fromkeys(keys, 1))
    assert all(shop.order(key).status == OrderStatus.DELIVERED for key in keys)
    _assert_every_block_read(shop, proxy)


def _assert_every_block_read(shop: LocalShop, proxy: RpcProxy) -> None:
    """The ranges the proxy answered cover every block from the deployment to the last one read."""
    covered = sorted(proxy.stats.logs_served)
    upto = shop.record.block_number - 1
    for first, last in covered:
        assert first <= upto + 1, f"blocks {upto + 1}..{first - 1} never read"
        upto = max(upto, last)
    assert upto >= int(_rpc(shop, "eth_blockNumber"), 16) - 300


def test_a_backfill_of_20000_blocks_through_capped_get_logs(
    proxied_shop: Callable[[], tuple[LocalShop, RpcProxy]],
) -> None:
    shop, proxy = proxied_shop()
    product = shop.add_product("backfill", [f"B-{n:03}" for n in range(30)])
    quotes: list[IssuedQuote] = []
    for _ in range(30):  # thirty payments spread over 20,000 blocks, before the node starts
        quotes += _pay(shop, product, 1)
        _mine(shop, 666)
    proxy.faults.logs_max_range = 1_000
    proxy.faults.logs_max_results = 10_000

    started = time.monotonic()
    shop.start()
    _assert_each_once(shop, proxy, quotes)
    took = time.monotonic() - started
    print(f"backfill of {int(_rpc(shop, 'eth_blockNumber'), 16)} blocks took {took:.1f} s")
    assert proxy.stats.range_refused > 0
    assert max(last - first + 1 for first, last in proxy.stats.logs_served) <= 1_000


def test_a_result_cap_splits_dense_ranges_down_to_what_the_provider_answers(
    proxied_shop: Callable[[], tuple[LocalShop, RpcProxy]],
) -> None:
    shop, proxy = proxied_shop()
    product = shop.add_product("dense", [f"D-{n:03}" for n in range(40)])
    quotes = _pay(shop, product, 40)  # forty payments in forty consecutive blocks
    _mine(shop, 300)
    proxy.faults.logs_max_results = 3

    shop.start()
    _assert_each_once(shop, proxy, quotes)
    assert proxy.stats.results_refused > 0
    assert max(len(found) for found in proxy.stats.logs_sizes) <= 3


def test_a_429_storm_with_retry_after_is_waited_out(
    proxied_shop: Callable[[], tuple[LocalShop, RpcProxy]],
) -> None:
    shop, proxy = proxied_shop()
    product = shop.add_product("storm", [f"T-{n:03}" for n in range(20)])
    early = _pay(shop, product, 10)
    proxy.faults.retry_after = "0.2"
    proxy.faults.throttle_burst = 40
    proxy.faults.throttle_fraction = 0.4

    shop.start()
    late = _pay(shop, product, 10)
    _mine(shop, 3)
    _assert_each_once(shop, proxy, early + late)
    assert proxy.stats.throttled >= 40


def test_5xx_bursts_a_dead_proxy_and_a_wobbly_lagging_head_are_survived(
    proxied_shop: Callable[[], tuple[LocalShop, RpcProxy]],
) -> None:
    shop, proxy = proxied_shop()
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
    _assert_each_once(shop, proxy, first + second + third)
    assert proxy.stats.server_errors >= 45
