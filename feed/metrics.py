"""polymm-feed's Prometheus metrics (served by polymm/metrics.py).

Two sources, both cheap:
- `FeedCounters`, bumped by the stream threads on the hot path under the writer's lock (which they hold for
  the book update anyway): messages by type (a dict increment) and decode->publish latency (a FastHistogram).
- Everything else is read at scrape time: the feed's own shared-memory segment, judged by the same function
  `mmctl status` uses (ctl/status.py `feed_health`), so the metrics say "stale" or "unhealthy" exactly when
  mmctl does; and the service's rotation count.

Names (README "Monitoring", deploy/monitoring/): see `NAMES`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from polymm.metrics import FastHistogram

# Every series this module exports (tests check the dashboard and the alert rules against it).
NAMES = (
    "polymm_feed_messages_total",
    "polymm_feed_decode_to_publish_seconds",
    "polymm_feed_up",
    "polymm_feed_healthy",
    "polymm_feed_stale",
    "polymm_feed_status",
    "polymm_feed_book_age_seconds",
    "polymm_feed_heartbeat_age_seconds",
    "polymm_feed_crossed",
    "polymm_feed_reconnects_total",
    "polymm_feed_book_updates_total",
    "polymm_feed_window_rotations_total",
    "polymm_feed_window_start_timestamp_seconds",
    "polymm_feed_window_end_timestamp_seconds",
)

# Every status the segment can carry (feed/shm.py); one series each so a dashboard can show the current one.
STATUSES = ("starting", "connected", "stale", "rotating", "stopped")


def _type_name(t: type) -> str:
    """The wire name of a decoded market-channel event type (its msgspec tag: "book", "price_change", ...)."""
    tag = getattr(getattr(t, "__struct_config__", None), "tag", None)
    return str(tag) if tag else t.__name__


class FeedCounters:
    """Counters the stream threads update on the hot path; shared by every stream of one feed process, so
    they survive rotations. Updated only under the writer's lock (one stream publishes at a time)."""

    def __init__(self, event_types: Iterable[type], *, latency: bool = True) -> None:
        self.messages: dict[type, int] = {t: 0 for t in event_types}
        self.latency: FastHistogram | None = FastHistogram() if latency else None
        self.rotations = 0


def families(counters: FeedCounters, snapshot_fn: Callable[[], object | None], *,
             clock: Callable[[], float] = time.time) -> list:
    """The feed's metric families at scrape time. `snapshot_fn()` reads the feed's own segment (None when it
    cannot: then only the counters are exported, and polymm_feed_up says 0)."""
    # the one definition of a healthy feed and of its thresholds: mmctl status's
    from polymm.ctl.status import BOOK_STALE_S, HEARTBEAT_LATE_S, feed_health

    out = []
    messages = CounterMetricFamily("polymm_feed_messages", "Market-channel events decoded, by event type",
                                   labels=["type"])
    for t, n in sorted(counters.messages.items(), key=lambda kv: _type_name(kv[0])):
        messages.add_metric([_type_name(t)], n)
    out.append(messages)
    if counters.latency is not None:
        out.append(counters.latency.family(
            "polymm_feed_decode_to_publish_seconds",
            "From a market-channel frame received to its top of book published in shared memory"))
    out.append(CounterMetricFamily("polymm_feed_window_rotations",
                                   "Switches to the next window's market", value=counters.rotations))

    snap = snapshot_fn()
    out.append(GaugeMetricFamily("polymm_feed_up", "1 when the feed's shared-memory segment is readable",
                                 value=0 if snap is None else 1))
    if snap is None:
        return out
    now = clock()
    health = feed_health(snap, now)
    book_age = snap.data_age_s(now)
    heartbeat_age = snap.heartbeat_age_s(now)
    stale = (snap.status == "stale" or heartbeat_age > HEARTBEAT_LATE_S
             or (snap.status not in ("stopped", "starting") and book_age > BOOK_STALE_S))
    out.append(GaugeMetricFamily("polymm_feed_healthy", "1 when mmctl status would call the feed healthy",
                                 value=0 if health.warnings else 1))
    out.append(GaugeMetricFamily(
        "polymm_feed_stale", "1 when the book is stale: status stale, book data or heartbeat too old (mmctl status)",
        value=1 if stale else 0))
    status = GaugeMetricFamily("polymm_feed_status", "The segment's status (1 for the current one)", labels=["status"])
    for name in STATUSES + (() if snap.status in STATUSES else (snap.status,)):
        status.add_metric([name], 1 if name == snap.status else 0)
    out.append(status)
    if math.isfinite(book_age):
        out.append(GaugeMetricFamily("polymm_feed_book_age_seconds",
                                     "Age of the staler leg's book data in shared memory", value=book_age))
    if math.isfinite(heartbeat_age):
        out.append(GaugeMetricFamily("polymm_feed_heartbeat_age_seconds",
                                     "Age of the feed loop's heartbeat in shared memory", value=heartbeat_age))
    out.append(GaugeMetricFamily("polymm_feed_crossed", "1 when the published book is crossed",
                                 value=1 if snap.crossed else 0))
    out.append(CounterMetricFamily("polymm_feed_reconnects", "Market-channel reconnects since the feed started",
                                   value=snap.reconnects))
    out.append(CounterMetricFamily("polymm_feed_book_updates", "Book updates applied since the feed started",
                                   value=snap.updates_total))
    if snap.window_start:
        out.append(GaugeMetricFamily("polymm_feed_window_start_timestamp_seconds",
                                     "Start of the window the feed publishes (unix seconds)", value=snap.window_start))
        out.append(GaugeMetricFamily("polymm_feed_window_end_timestamp_seconds",
                                     "End of the window the feed publishes (unix seconds)", value=snap.window_end))
    return out
