"""A reader in another process hammering the segment while the writer writes never sees a torn copy.

Torn-ness is detectable: the writer derives every field of both legs from one counter k, so any mix of
two publishes shows up as fields that disagree about k.
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest

from polymm.feed import shm

WINDOW = 1_800_000_000


def legs_for(k: int) -> tuple[tuple, tuple]:
    up = (k * 1.0, k + 0.25, k + 0.5, k + 0.75, k + 0.125, k + 0.375, k + 0.625)
    down = (-k * 1.0, -k - 0.25, -k - 0.5, -k - 0.75, -k - 0.125, -k - 0.375, -k - 0.625)
    return up, down


def torn(up: shm.Leg, down: shm.Leg) -> bool:
    k = up.bid
    if math.isnan(k):
        return not all(math.isnan(x) for x in (up.ask, down.bid, down.ask))
    want_up, want_down = legs_for(int(k))
    got_up = (up.bid, up.bid_size, up.ask, up.ask_size, up.last_trade, up.exchange_ts, up.recv_ts)
    got_down = (down.bid, down.bid_size, down.ask, down.ask_size, down.last_trade, down.exchange_ts, down.recv_ts)
    return got_up != want_up or got_down != want_down or up.seq != down.seq or up.publish_ts != down.publish_ts


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from polymm.feed import shm
    from test_shm_torn import legs_for, WINDOW
    w = shm.Writer({name!r}, ring_capacity=256)
    w.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x01", up_token="1",
                 down_token="2", tick_size=0.01, min_order_size=5, fee_rate=0.07, status="connected")
    print("READY", flush=True)
    k = 0
    deadline = time.monotonic() + {seconds}
    while time.monotonic() < deadline:
        k += 1
        up, down = legs_for(k)
        w.publish(WINDOW, up, down, updates_total=k)
        if k % 64 == 0:
            w.heartbeat()
    print("WROTE", k, flush=True)
    w.close()
    """
)


def test_torn_detector_flags_a_mixed_copy():
    up, _ = legs_for(5)
    _, down = legs_for(6)
    assert torn(shm.Leg(*up, 1.0, 9), shm.Leg(*down, 1.0, 9))
    up, down = legs_for(7)
    assert not torn(shm.Leg(*up, 1.0, 9), shm.Leg(*down, 1.0, 9))


@pytest.mark.slow
def test_reader_in_another_process_never_sees_a_torn_snapshot_or_ring_entry(shm_name):
    import os

    tests_dir = os.path.dirname(__file__)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=tests_dir, name=shm_name, seconds=2.5)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        reader = shm.Reader(shm_name, wait_s=10)
        checked = ring_checked = torn_seen = 0
        seen: list[str] = []  # what the first torn reads looked like, for the failure message
        distinct = set()
        last_ring = reader.seq()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            snap = reader.snapshot()
            checked += 1
            distinct.add(snap.seq)
            if torn(snap.up, snap.down) or snap.updates_total != int(snap.up.bid if snap.up.bid == snap.up.bid else 0):
                torn_seen += 1
                if len(seen) < 3:
                    seen.append(f"snapshot seq={snap.seq} status={snap.status} updates_total={snap.updates_total} "
                                f"up={snap.up!r} down={snap.down!r}")
            if checked % 16 == 0:
                for u in reader.updates_since(last_ring):
                    ring_checked += 1
                    if torn(u.up, u.down):
                        torn_seen += 1
                        if len(seen) < 3:
                            seen.append(f"ring entry seq={u.seq} status={u.status} up={u.up!r} down={u.down!r}")
                    last_ring = u.seq
        reader.close()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        shm.unlink(shm_name)
    assert torn_seen == 0, seen
    # The hammering was real: many snapshots of many different publishes, and ring entries too.
    assert checked > 1000 and len(distinct) > 100 and ring_checked > 100, (checked, len(distinct), ring_checked, out)
