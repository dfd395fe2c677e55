"""`BlockPace`, the schedule of HTTP head polls on a chain with a known block time, run against a
simulated chain in virtual time: no clock, no sleeping, so the figures are the schedule's own.
What it really sees on anvil is measured by `bench/detection.py` (figures in the README)."""

from __future__ import annotations

from liandong.chain.indexer.heads import BlockPace

BLOCK_TIME = 1.0
FIRST_BLOCK_AT = 0.37


def _follow(pace: BlockPace, produced: list[float], until: float) -> tuple[list[float], int]:
    """Polls as `PollingHeads` does (a block's arrival taken as the send time of the last poll that
    did not see it) against blocks produced at `produced`; returns each block's detection delay
    and the number of polls."""
    now, seen, asked_before, arrived = 0.0, 0, None, None
    delays, polls = [], 0
    while now < until:
        polls += 1
        height = sum(1 for at in produced if at <= now)
        if height > seen:
            bracketed = asked_before is not None and now - asked_before <= pace.bracket
            delays += [now - at for at in produced[seen:height]]
            arrived = asked_before if bracketed else None
            seen = height
        asked_before = now
        now += pace.delay(arrived, now) if arrived is not None else 0.25
    return delays, polls


def test_on_a_steady_1_s_chain_each_block_is_seen_within_one_fast_poll_at_a_few_polls_a_second() -> None:
    pace = BlockPace.of(BLOCK_TIME, 0.25)
    produced = [FIRST_BLOCK_AT + n * BLOCK_TIME for n in range(60)]
    delays, polls = _follow(pace, produced, until=60.0)
    steady = delays[2:]  # the first blocks set the beat, at the slow pace
    assert len(delays) == 60
    assert max(steady) <= pace.fast + 1e-9
    assert polls / 60.0 <= 10  # a fixed poll as quick would make 1 / fast = 20 a second


def test_a_stalled_chain_falls_back_to_the_slow_pace_and_a_late_block_takes_the_beat_again() -> None:
    pace = BlockPace.of(BLOCK_TIME, 0.25)
    produced = [FIRST_BLOCK_AT + n * BLOCK_TIME for n in range(5)]
    produced += [produced[-1] + 10.6 + n * BLOCK_TIME for n in range(10)]  # 10.6 s without a block
    delays, polls = _follow(pace, produced, until=produced[-1] + 0.5)
    stall_start, stall_end = produced[4], produced[5]
    assert delays[5] <= pace.slow + 1e-9  # the late block is still seen within a slow poll
    assert max(delays[8:]) <= pace.fast + 1e-9  # and the beat is back
    assert polls <= (stall_end - stall_start) / pace.slow + 15 * 10  # no fast polling through the stall
