"""polymm-feed's Prometheus metrics (served by polymm/metrics.py).

Nothing here costs the hot path more than a dict increment:
- `FeedCounters.messages`, bumped by the stream threads under the writer's lock (which they hold for the book
  update anyway): market-channel events by type.
- Everything else is read at scrape time from the feed's own shared-memory segment, as every reader sees it:
  health judged by the same function `mmctl status` uses (ctl/status.py `feed_health`), so the metrics say
  "stale" or "unhealthy" exactly when mmctl does; and the decode->publish latency from the ring's per-update
  timestamps (a leg's `recv_ts`, when its frame arrived, and `publish_ts`, when the top of book was written),
  so measuring it adds nothing to the frame path.

Names (README "Monitoring", deploy/monitoring/): see `NAMES`.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Iterable

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
    "polymm_feed_socket_age_seconds",  # the market socket's liveness (issue 27)
    "polymm_feed_crossed",
    "polymm_feed_reconnects_total",
    "polymm_feed_book_updates_total",
    "polymm_feed_window_rotations_total",
    "polymm_feed_window_start_timestamp_seconds",
    "polymm_feed_window_end_timestamp_seconds",
    # the BTC reference price from Polymarket's RTDS (issue 16), when the feed runs it
    "polymm_feed_rtds_connected",
    "polymm_feed_rtds_reconnects_total",
    "polymm_feed_rtds_age_seconds",
    "polymm_feed_btc_reference_usd",
    "polymm_feed_btc_open_known",
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

    def __init__(self, event_types: Iterable[type]) -> None:
        self.messages: dict[type, int] = {t: 0 for t in event_types}
        self.rotations = 0


class RingLatency:
    """Decode->publish latency of every publish since the last scrape, read from the segment's ring.

    Each ring entry is one publish; a leg whose `seq` equals the entry's carries that publish's `recv_ts`
    (frame received) and `publish_ts`. The first publish of a window is skipped: at rotation the next
    window's book, received while it was in the shadow, goes out at the boundary, and that wait is not
    decoding. The ring holds thousands of publishes (minutes at the market's rate), so a scrape every
    15-60 s sees them all; if it ever does not, the histogram is a sample of the rest."""

    def __init__(self) -> None:
        self.histogram = FastHistogram()
        self._lock = threading.Lock()  # scrapes may run concurrently
        self._seq = 0
        self._window = None

    # At most this many ring entries per scrape, the newest: reading the whole ring (4096 entries of depth) at once
    # builds ~10 MB of objects, and the heap does not give that back (a restarted feed's first scrape found a full
    # ring and kept 13 MB more for good; issue 27). The histogram then samples what a late scrape missed.
    MAX_PER_SCRAPE = 512

    def update(self, updates_since: Callable[[int], list], newest: Callable[[], int] | None = None) -> None:
        with self._lock:
            if newest is not None:
                self._seq = max(self._seq, newest() - self.MAX_PER_SCRAPE)
            updates = updates_since(self._seq)
            observe = self.histogram.observe
            for u in updates:
                window = u.window_start
                first_of_window = window != self._window
                self._window = window
                if first_of_window or u.status != "connected":
                    continue
                for leg in (u.up, u.down):
                    if leg.seq == u.seq and leg.recv_ts > 0:
                        observe(max(0.0, leg.publish_ts - leg.recv_ts))
                        break  # one frame, one observation (a two-leg frame stamps both legs alike)
            if updates:
                self._seq = updates[-1].seq


def families(counters: FeedCounters, segment: Any, latency: RingLatency, *,
             clock: Callable[[], float] = time.time) -> list:
    """The feed's metric families at scrape time. `segment` reads the feed's own shared memory:
    `snapshot()` (None when it cannot: then only the counters are exported, and polymm_feed_up says 0) and
    `updates_since(seq)`."""
    # the one definition of a healthy feed and of its thresholds: mmctl status's
    from polymm.ctl.status import HEARTBEAT_LATE_S, feed_health

    out = []
    messages = CounterMetricFamily("polymm_feed_messages", "Market-channel events decoded, by event type",
                                   labels=["type"])
    for t, n in sorted(counters.messages.items(), key=lambda kv: _type_name(kv[0])):
        messages.add_metric([_type_name(t)], n)
    out.append(messages)
    out.append(CounterMetricFamily("polymm_feed_window_rotations",
                                   "Switches to the next window's market", value=counters.rotations))

    snap = segment.snapshot()
    out.append(GaugeMetricFamily("polymm_feed_up", "1 when the feed's shared-memory segment is readable",
                                 value=0 if snap is None else 1))
    if snap is None:
        return out
    latency.update(segment.updates_since, getattr(segment, "seq", None))
    out.append(latency.histogram.family(
        "polymm_feed_decode_to_publish_seconds",
        "From a market-channel frame received to its top of book published in shared memory"))
    now = clock()
    health = feed_health(snap, now)
    book_age = snap.data_age_s(now)
    heartbeat_age = snap.heartbeat_age_s(now)
    link = getattr(snap, "link", None)
    # Stale is the feed's liveness, never a quiet book: status stale, the loop's heartbeat late, or the market socket
    # dead or frozen (shm LINK), as mmctl status words it.
    stale = (snap.status == "stale" or heartbeat_age > HEARTBEAT_LATE_S
             or (snap.status == "connected" and link is not None
                 and bool(link.dead_reason(now) or link.frozen_reason(now))))
    out.append(GaugeMetricFamily("polymm_feed_healthy", "1 when mmctl status would call the feed healthy",
                                 value=0 if health.warnings else 1))
    out.append(GaugeMetricFamily(
        "polymm_feed_stale", "1 when the feed is stale: status stale, heartbeat too old, or its market socket dead or "
        "frozen (a quiet book is not stale; mmctl status)", value=1 if stale else 0))
    status = GaugeMetricFamily("polymm_feed_status", "The segment's status (1 for the current one)", labels=["status"])
    for name in STATUSES + (() if snap.status in STATUSES else (snap.status,)):
        status.add_metric([name], 1 if name == snap.status else 0)
    out.append(status)
    if math.isfinite(book_age):
        out.append(GaugeMetricFamily("polymm_feed_book_age_seconds",
                                     "Age of the staler leg's book data in shared memory", value=book_age))
    socket_age = link.frame_age_s(now) if link is not None and link.connected else math.inf
    if math.isfinite(socket_age):
        out.append(GaugeMetricFamily("polymm_feed_socket_age_seconds",
                                     "Since the market socket's last frame of any kind (market data or PONG)",
                                     value=socket_age))
    if math.isfinite(heartbeat_age):
        out.append(GaugeMetricFamily("polymm_feed_heartbeat_age_seconds",
                                     "Age of the feed loop's heartbeat in shared memory", value=heartbeat_age))
    out.append(GaugeMetricFamily("polymm_feed_crossed", "1 when the published book is crossed",
                                 value=1 if snap.crossed else 0))
    out.append(CounterMetricFamily("polymm_feed_reconnects", "Market-channel reconnects since the feed started",
                                   value=snap.reconnects))
    out.append(CounterMetricFamily("polymm_feed_book_updates", "Book updates applied since the feed started",
                                   value=snap.updates_total))
    market = snap.market
    if market.window_start:
        out.append(GaugeMetricFamily("polymm_feed_window_start_timestamp_seconds",
                                     "Start of the window the feed publishes (unix seconds)", value=market.window_start))
        out.append(GaugeMetricFamily("polymm_feed_window_end_timestamp_seconds",
                                     "End of the window the feed publishes (unix seconds)", value=market.window_end))
    out += _reference_families(getattr(snap, "ref", None), market.window_start, now)
    return out


def _reference_families(ref: Any, window_start: int, now: float) -> list:
    """The segment's REF block (feed/shm/layout.py Reference): RTDS health and the Chainlink BTC/USD price the
    market resolves on. Nothing while the feed runs without RTDS (never connected, no price)."""
    if ref is None or (not ref.rtds_connected and ref.chainlink != ref.chainlink and not ref.rtds_reconnects):
        return []
    out = [
        GaugeMetricFamily("polymm_feed_rtds_connected", "1 while the RTDS WebSocket is connected",
                          value=1 if ref.rtds_connected else 0),
        CounterMetricFamily("polymm_feed_rtds_reconnects", "RTDS reconnects since the feed started",
                            value=ref.rtds_reconnects),
    ]
    age = ref.chainlink_age_s(now)
    if math.isfinite(age):
        out.append(GaugeMetricFamily("polymm_feed_rtds_age_seconds",
                                     "Age of the Chainlink BTC/USD price by its own timestamp", value=age))
        out.append(GaugeMetricFamily("polymm_feed_btc_reference_usd", "Chainlink BTC/USD (the resolution source)",
                                     value=ref.chainlink))
    out.append(GaugeMetricFamily("polymm_feed_btc_open_known",
                                 "1 when the current window's opening BTC price is known (captured or recovered)",
                                 value=0 if ref.opening_for(window_start) != ref.opening_for(window_start) else 1))
    return out
