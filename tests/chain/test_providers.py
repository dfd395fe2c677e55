"""The provider pool against real anvil behind real fault proxies (`tests/rpcproxy.py`): failover
and its cool-down, timeouts, `Retry-After` obeyed per provider, and no block asked of a provider
behind it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from liandong.chain.indexer.providers import ProviderPool
from liandong.chain.indexer.transport import RetryPolicy, TransientRpcError
from liandong.chain.rpc import rpc_call
from liandong.devtools.devnet import Anvil

from tests.rpcproxy import RpcProxy


@pytest.fixture
def proxies() -> Iterator[list[RpcProxy]]:
    """Two proxies in front of one anvil with a few blocks."""
    with Anvil() as anvil:
        rpc_call(anvil.http_url, "anvil_mine", ["0x14"])
        started = [RpcProxy(anvil.http_url, seed=n).start() for n in range(2)]
        try:
            yield started
        finally:
            for proxy in started:
                proxy.stop()


def _pool(proxies: list[RpcProxy]) -> ProviderPool:
    return ProviderPool([proxy.url for proxy in proxies], retry=RetryPolicy(attempts=4, base=0.1, cap=0.5))


def test_a_dead_provider_is_failed_over_and_comes_back_after_its_cool_down(proxies: list[RpcProxy]) -> None:
    first, second = proxies

    async def scenario() -> None:
        pool = _pool(proxies)
        first.go_dead()
        assert await pool.call("eth_chainId", []) == "0x7a69"
        assert second.stats.requests["eth_chainId"] == 1
        assert pool.providers[0].resting_until > time.monotonic()  # scored down, resting
        assert pool.providers[0].score < pool.providers[1].score
        for _ in range(3):
            await pool.call("eth_chainId", [])
        assert first.stats.requests["eth_chainId"] == 0  # not asked while it rests or ranks lower

        first.revive()
        second.faults.server_error_fraction = 1.0
        await asyncio.sleep(max(pool.providers[0].resting_until - time.monotonic(), 0))
        assert await pool.call("eth_chainId", []) == "0x7a69"
        assert first.stats.requests["eth_chainId"] == 1  # back after its cool-down
        assert second.stats.server_errors == 1

    asyncio.run(scenario())


def test_a_provider_that_times_out_is_failed_over(proxies: list[RpcProxy]) -> None:
    slow, quick = proxies
    slow.faults.stall = 2.0

    async def scenario() -> float:
        pool = ProviderPool([proxy.url for proxy in proxies], timeout=0.5)
        started = time.monotonic()
        assert await pool.call("eth_chainId", []) == "0x7a69"
        assert pool.providers[0].resting_until > time.monotonic()
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.5  # half a second lost to the slow one, not two
    assert quick.stats.requests["eth_chainId"] == 1


def test_a_throttled_provider_rests_for_its_retry_after(proxies: list[RpcProxy]) -> None:
    stormy, calm = proxies
    stormy.faults.throttle_fraction = 1.0
    stormy.faults.retry_after = "0.6"

    async def scenario() -> None:
        pool = _pool(proxies)
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            assert await pool.head() >= 20
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert stormy.stats.throttled == 3  # at 0, 0.6 and 1.2 s; never within a Retry-After
    assert calm.stats.requests["eth_blockNumber"] >= 20


def test_a_lagging_provider_is_not_asked_for_blocks_above_its_head(proxies: list[RpcProxy]) -> None:
    lagging, current = proxies
    lagging.faults.lag = 5

    async def scenario() -> None:
        pool = _pool(proxies)
        head = await pool.head()
        assert head == pool.providers[1].head  # the best provider's head
        assert pool.providers[0].head == head - 5
        assert pool.lagging(pool.providers[0])
        block = await pool.call("eth_getBlockByNumber", [hex(head), False], at=head)
        assert int(block["number"], 16) == head
        logs = await pool.call("eth_getLogs", [{"fromBlock": hex(head - 3), "toBlock": hex(head)}], at=head)
        assert logs == []
        await pool.call("eth_chainId", [])  # any provider would do: the lagging one ranks last
        assert lagging.stats.requests["eth_chainId"] == 0

        current.go_dead()  # the lagging one is left, and it has no block at the head: not asked
        with pytest.raises(TransientRpcError):
            await pool.call("eth_getBlockByNumber", [hex(head), False], at=head)
        older = await pool.call("eth_getBlockByNumber", [hex(head - 5), False], at=head - 5)
        assert int(older["number"], 16) == head - 5

    asyncio.run(scenario())
    assert lagging.stats.beyond_head == 0


def test_a_provider_answering_null_for_a_block_it_reported_is_taken_to_be_behind(
    proxies: list[RpcProxy],
) -> None:
    behind, current = proxies

    async def scenario() -> None:
        pool = _pool(proxies)
        head = await pool.head()
        behind.faults.lag = 3  # falls behind after reporting the head (a node behind a balancer)
        block = await pool.call("eth_getBlockByNumber", [hex(head), False], at=head)
        assert int(block["number"], 16) == head  # from the other provider
        assert pool.providers[0].head == head - 1
        assert behind.stats.beyond_head == 1
        assert current.stats.requests["eth_getBlockByNumber"] == 1

    asyncio.run(scenario())
