"""The tick-to-decision bench's reference tick (bench/bench_tick_to_decision.py): each decision is measured from the
oldest tick it is the first to answer, read back from the feed's ring."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_tick_to_decision as bench  # noqa: E402

from polymm.feed.shm.layout import Update  # noqa: E402
from tests.support.engine import shm_leg  # noqa: E402


def update(seq: int, *, up_at: float | None = None, down_at: float | None = None) -> Update:
    """Ring entry `seq`: the leg(s) published by it carry its sequence and publish time; the other an older one."""
    up = shm_leg(t=up_at if up_at is not None else 0.0, seq=seq if up_at is not None else 0)
    down = shm_leg(t=down_at if down_at is not None else 0.0, seq=seq if down_at is not None else 0)
    return Update(seq=seq, window_start=0, status="connected", crossed=False, tick_size=0.01, up=up, down=down)


class Ring:
    def __init__(self, updates):
        self.updates = updates

    def updates_since(self, seq):
        return [u for u in self.updates if u.seq > seq]


def test_the_ring_gives_each_tick_its_publish_time_and_skips_status_only_entries():
    ring = Ring([update(4, up_at=10.0), update(5), update(6, down_at=10.2), update(7, up_at=10.3, down_at=10.3)])
    assert bench.ring_publish_times(ring, 3) == {4: 10.0, 5: None, 6: 10.2, 7: 10.3}


def test_a_decision_answering_two_ticks_is_measured_from_the_older():
    times = {4: 10.0, 5: None, 6: 10.2, 7: 10.3}
    assert bench.oldest_unanswered(times, 4, 7) == (10.2, 2)  # ticks 6 and 7; 5 was status only
    assert bench.oldest_unanswered(times, 6, 7) == (10.3, 1)


def test_without_the_ring_covering_the_range_there_is_no_oldest():
    times = {6: 10.2, 7: 10.3}
    assert bench.oldest_unanswered(times, 3, 7) is None  # entries 4-5 left the ring: unknown, not guessed
    assert bench.oldest_unanswered(times, None, 7) is None  # the first decision measured
    assert bench.oldest_unanswered({}, 5, 7) is None


def test_switch_intervals_are_one_for_both_or_waiting_then_deciding():
    assert bench._switch_us("100") == 100.0
    assert bench._switch_us("30,500") == (30.0, 500.0)
    for bad in ("", "0", "30,", "a,b", "1,2,3", "-5,500"):
        with pytest.raises(argparse.ArgumentTypeError, match="want W or W,D"):
            bench._switch_us(bad)


def test_phases_are_aligned_with_windows_and_window_starts_alternate_the_probe():
    window_s = 60
    for warm_ab, types in ((False, 4), (True, 8)):
        firsts = []
        for w in range(100, 100 + types):
            start = w * window_s
            (metrics, probe, warm), end = bench._phase_at(start + 0.001, window_s, warm_ab)
            assert end == start + bench.PHASE_S  # a window's start (its first ROTATION_S) is all in its first phase
            assert bench._phase_at(start + bench.PHASE_S - 0.001, window_s, warm_ab)[0] == (metrics, probe, warm)
            firsts.append((metrics, probe, warm))
        # two windows in a row: one start measured by the headline (no probe), one broken down by the probe
        assert all(a[1] != b[1] for a, b in zip(firsts, firsts[1:]))
        # every phase type holds a window start once per `types` windows
        assert len(set(firsts)) == types
        # inside a window the phases still cycle through every type
        inside = {bench._phase_at(100 * window_s + j * bench.PHASE_S + 0.5, window_s, warm_ab)[0]
                  for j in range(types)}
        assert len(inside) == types
