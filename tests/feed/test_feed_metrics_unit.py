"""feed/metrics.py without processes: latency from ring entries, families from a snapshot."""
from __future__ import annotations

from types import SimpleNamespace as NS

from polymm.feed.metrics import RingLatency


def leg(seq, recv, pub):
    return NS(seq=seq, recv_ts=recv, publish_ts=pub)


def update(seq, window, up, down, status="connected"):
    return NS(seq=seq, window_start=window, status=status, up=up, down=down)


def test_ring_latency_observes_each_publish_once_and_skips_window_starts():
    ring = [
        update(1, 100, leg(1, 10.0, 12.0), leg(0, 0, 0)),  # first of the window: book from the shadow, skipped
        update(2, 100, leg(2, 20.0, 20.0001), leg(1, 10.0, 12.0)),
        update(3, 100, leg(3, 30.0, 30.002), leg(3, 30.0, 30.002)),  # one frame on both legs: one observation
        update(4, 100, leg(3, 30.0, 30.002), leg(3, 30.0, 30.002), status="stale"),  # status-only: skipped
        update(5, 200, leg(5, 40.0, 41.0), leg(0, 0, 0)),  # rotation: skipped
        update(6, 200, leg(5, 40.0, 41.0), leg(6, 50.0, 50.0004)),
    ]
    asked = []

    def updates_since(seq):
        asked.append(seq)
        return [u for u in ring if u.seq > seq]

    lat = RingLatency()
    lat.update(updates_since)
    h = lat.histogram
    assert sum(h.counts) == h.total == 3
    assert abs(h.sum - (0.0001 + 0.002 + 0.0004)) < 1e-6
    lat.update(updates_since)  # nothing new: nothing counted twice
    assert asked == [0, 6] and h.total == 3
