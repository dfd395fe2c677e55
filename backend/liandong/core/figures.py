"""Percentiles, computed one way wherever the shop reports them.

The merchant's efficiency board (`services.stats`), `liandong simulate`'s summary and the README's
speed table (`bench/delivery_latency.py`) all give p50/p95/p99 of delivery latency; one function
computes them all, so a p99 means the same thing on each. It lives in `core`, with nothing but the
standard library behind it, so that the benchmark imports it without the dashboard and no bench
code enters the package.
"""

from __future__ import annotations

from collections.abc import Sequence

PERCENTILES = (50, 95, 99)
"""The percentiles the shop reports: on the board, in the CLI and in the benchmark."""


def percentile(sorted_values: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile of values sorted in ascending order: the value of rank
    ⌈percent * n / 100⌉ (at least the first), the smallest with `percent` % of the values at or
    below it. Always a latency some order actually had, never an interpolation between two; p100
    is the maximum. Raises IndexError without values."""
    rank = max(1, -(-percent * len(sorted_values) // 100))
    return sorted_values[rank - 1]
