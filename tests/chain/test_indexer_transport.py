"""The indexer's RPC rules without a node: which errors mean "ask for less", how long to wait."""

from __future__ import annotations

import random

from liandong.chain.indexer.sync import LogSpan
from liandong.chain.indexer.transport import RetryPolicy, is_logs_limit, is_rate_limit, parse_retry_after


def test_provider_messages_are_recognised() -> None:
    limits = [
        {"code": -32005, "message": "query returned more than 10000 results"},
        {"code": -32005, "message": "limit exceeded"},
        {"code": -32602, "message": "range 1000000 exceeds limit of 10000"},
        {"code": -32614, "message": "eth_getLogs is limited to a 10,000 range"},
        {"code": -32602, "message": "Log response size exceeded. You can make eth_getLogs requests ..."},
        {"code": -32000, "message": "exceed maximum block range: 5000"},
        {"code": -32602, "message": "query exceeds max block range 100000"},
    ]
    for error in limits:
        assert is_logs_limit(error), error
        assert not is_rate_limit(error), error
    throttled = [
        {"code": -32005, "message": "daily request count exceeded, request rate limited"},
        {"code": 429, "message": "Your app has exceeded its compute units per second capacity"},
        {"code": -32016, "message": "rate limit exceeded"},
    ]
    for error in throttled:
        assert is_rate_limit(error), error
        assert not is_logs_limit(error), error
    assert not is_logs_limit({"code": -32000, "message": "header not found"})


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    policy = RetryPolicy(base=0.2, cap=10.0, retry_after_cap=30.0)
    chance = random.Random(1)  # noqa: S311 - jitter
    assert policy.delay(0, 3.0, chance) == 3.0
    assert policy.delay(0, 300.0, chance) == 30.0  # a provider's wish, capped
    delays = [policy.delay(attempt, None, chance) for attempt in range(12)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(5.0 <= delay <= 10.0 for delay in delays[7:])  # capped, jittered within half


def test_log_span_halves_then_grows_back_slowly_below_what_was_refused() -> None:
    span = LogSpan(2000, grow_after=4, forget_after=40)
    span.shrink(2000)
    assert span.current == 1000
    for _ in range(4 * 10):
        span.answered()
    assert span.current == 2000  # the refusal forgotten after 40 answers: back to the ceiling
    span.shrink(1500)
    assert span.current == 750
    for _ in range(4 * 3):
        span.answered()
    assert 750 < span.current <= 1499  # grows, but not up to the span refused
    span.shrink(1)
    assert span.current == 1
