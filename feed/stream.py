"""One market's market-channel WebSocket, in its own thread: receive -> decode -> book -> publish.

Protocol (polymarket-protocol.md 2.1, 2.3):
- The subscription is the FIRST frame after connect (a PING before it, or a late subscription, gets the
  connection closed): both token ids, `initial_dump` for the snapshot, custom features on.
- A text "PING" every 10 s; the server answers "PONG" (not JSON: skipped before decoding).
- No replay after a reconnect: the book is rebuilt from the new connection's `book` snapshots.
- The socket can freeze silently while PING/PONG still works, so a frozen socket is judged from DATA, per
  asset: when an asset has had no data for `stale_after_s`, the segment is flagged stale and we reconnect.
- A PING unanswered for PONG_TIMEOUT_S with no other frame meanwhile is a dead (half-open) socket: reconnect.
  The socket's liveness (feed/liveness.py: frames, PONGs, PINGs, from the connection's hooks) is published in
  shared memory by the service, so readers tell a dead feed from a quiet market.

Rotation: a stream for the next window runs in "shadow" (book kept, nothing published) until the service
`activate()`s it at the boundary; it then publishes its book at once. Publishing always names the
stream's window, and shm.Writer refuses a window that is not current, so an old stream can never write
over the new market.

The thread that applies an update publishes it (no hand-off): decode, book update and publish happen in
`on_frame`, the hot path measured by bench/bench_feed.py. The connection itself (connect, subscribe, PING,
reconnect with jittered backoff) is polymm/ws.py's, shared with the RTDS and the user channel; this channel's
idle rule is `idle_problem` (data age per asset, once live).
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time

from polymm.feed import book as bk
from polymm.feed.discovery import MarketInfo
from polymm.feed.liveness import PONG_TIMEOUT_S, LinkLiveness
from polymm.feed.shm import Writer
from polymm.feed.wire import FrameDecoder
from polymm.ws import Backoff, ReconnectingSocket, last_heard

log = logging.getLogger("polymm.feed.stream")

PING_INTERVAL_S = 10.0
_PUBLISH_BITS = bk.UP | bk.DOWN | bk.TICK


def subscription(up_token: str, down_token: str) -> str:
    return json.dumps(
        {"assets_ids": [up_token, down_token], "type": "market", "initial_dump": True, "custom_feature_enabled": True}
    )


class MarketStream(ReconnectingSocket):
    """Market channel for one market. Start with `start()`; `activate()` makes it publish; `stop()`."""

    attention_bits = bk.RESYNC | bk.RESOLVED | bk.SNAPSHOT

    def __init__(
        self,
        url: str,
        market: MarketInfo,
        writer: Writer,
        *,
        stale_after_s: float = 15.0,
        ping_interval_s: float = PING_INTERVAL_S,
        pong_timeout_s: float = PONG_TIMEOUT_S,
        connect_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        updates_base: int = 0,
        disagreements_base: int = 0,
        resync_after_unverified_s: float = 5.0,
        clock=time.time,
        counters=None,
    ) -> None:
        super().__init__(url, ping_interval_s=ping_interval_s, connect_timeout_s=connect_timeout_s,
                         backoff=backoff or Backoff(), clock=clock, thread_name=f"market-ws-{market.window_start}")
        self.name = f"market ws {market.slug}"
        self.market = market
        self.window_start = market.window_start
        self.writer = writer
        self.stale_after_s = stale_after_s
        self.resync_after_unverified_s = resync_after_unverified_s
        self.book = bk.MarketBook(market.up_token, market.down_token, market.condition_id, market.tick_size,
                                  depth=writer.depth)
        self.decoder = FrameDecoder()
        self._decode_fast = self.decoder.fast
        # feed/metrics.py FeedCounters shared by the service's streams (None: no metrics, nothing counted)
        self._msg_counts = counters.messages if counters is not None else None
        self.updates_base = updates_base
        self.disagreements_base = disagreements_base
        self.live = False
        self._age_baseline = math.nan  # data age is counted from here when a leg has had no data since
        # frames / PONGs / PINGs of this stream's socket (published by the service as the segment's LINK block)
        self.link = LinkLiveness(ping_interval_s, pong_timeout_s, stale_after_s)
        self.first_publish = threading.Event()  # set when this stream first published a complete book
        self._published = False
        # Book + publish vs activate() from the service thread: the writer's own lock, so a frame costs
        # one lock, not two (publish_locked).
        self._lock = writer.lock
        self._last_disagree_log = 0.0
        self._logged_disagreements = 0

    # -- control (service thread) ----------------------------------------------------------------------

    def activate(self) -> None:
        """Start publishing (at the window boundary): the current book goes out at once if complete."""
        with self._lock:
            self.live = True
            # The market was not live until now and may have been quiet: measure silence from here.
            self._age_baseline = self.clock()
            self.link.on_activated(self._age_baseline)
            if self.book.ready() and self.connected:
                self._publish(bk.UP | bk.DOWN, "connected")

    def stop(self, timeout_s: float = 5.0) -> None:
        self.live = False
        super().stop(timeout_s)

    @property
    def updates_total(self) -> int:
        return self.updates_base + self.book.applied

    @property
    def disagreements(self) -> int:
        return self.disagreements_base + self.book.disagreements

    def data_age_s(self, now: float | None = None) -> float:
        """Age of the staler leg's data (per asset), counted from the connection when none yet."""
        now = self.clock() if now is None else now
        oldest = min(self._leg_last(self.book.up), self._leg_last(self.book.down))
        return now - oldest if oldest == oldest else math.inf

    def _leg_last(self, leg: bk.LegBook) -> float:
        """When this leg last had data, counting the connection (or going live) as a start: silence is
        measured from the later of the leg's last data and that baseline."""
        return last_heard(leg.recv_ts, self._age_baseline)

    # -- the hot path (stream thread) ------------------------------------------------------------------

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        """Decode one frame, apply it to the book and publish what changed. Returns the book's bits.

        This is the hot path (bench/bench_feed.py): the publish is written out here rather than calling
        `_publish`, to save a call layer per message. (PONGs never get here: polymm/ws.py counts them.)"""
        # self.link.on_data(recv_ts), written out (one call less per message)
        link = self.link
        link.last_frame = link.last_data = recv_ts
        link.frames += 1
        try:
            decoded = self._decode_fast(data)
        except FrameDecoder.FAST_ERRORS:
            decoded = self.decoder.slow(data)  # unknown type or malformed item somewhere: sort it out slowly
        book = self.book
        dispatch = book.dispatch
        counts = self._msg_counts
        with self._lock:
            if type(decoded) is list:
                bits = 0
                for event in decoded:
                    t = type(event)
                    if counts is not None:
                        counts[t] += 1
                    bits |= dispatch[t](event, recv_ts)
            else:
                t = type(decoded)
                if counts is not None:
                    counts[t] += 1
                bits = dispatch[t](decoded, recv_ts)
            if bits & _PUBLISH_BITS and self.live:
                up, down = book.up, book.down
                ready = up.has_snapshot and down.has_snapshot and self.connected
                seq = self.writer.publish_locked(
                    self.window_start,
                    up.top() if bits & bk.UP else None,
                    down.top() if bits & bk.DOWN else None,
                    # book.crossed(), written out here (a call less per message)
                    (up.bids.best >= up.asks.best or down.bids.best >= down.asks.best
                     or up.bids.best + down.bids.best >= bk.CROSS_SUM_BIDS
                     or up.asks.best + down.asks.best <= bk.CROSS_SUM_ASKS),
                    self.updates_base + book.applied,
                    self.disagreements_base + book.disagreements,
                    "connected" if ready else None,
                    book.tick_size if bits & bk.TICK else None,
                    up.depth() if bits & bk.UP else None,
                    down.depth() if bits & bk.DOWN else None,
                )
                if ready and seq and not self._published:
                    self._published = True
                    self.first_publish.set()
        return bits

    def _publish(self, bits: int, status: str | None) -> None:
        """Publish outside the frame path (activation). Caller holds `self._lock`."""
        book = self.book
        if book.up.has_snapshot and book.down.has_snapshot:
            status = "connected" if self.connected else status
        seq = self.writer.publish_locked(
            self.window_start,
            book.up.top() if bits & bk.UP else None,
            book.down.top() if bits & bk.DOWN else None,
            book.crossed(),
            self.updates_base + book.applied,
            self.disagreements_base + book.disagreements,
            status,
            book.tick_size,  # a shadow stream may have seen a tick change since Gamma was asked
            book.up.depth() if bits & bk.UP else None,
            book.down.depth() if bits & bk.DOWN else None,
        )
        if status == "connected" and seq and not self._published:
            self._published = True
            self.first_publish.set()

    # -- the connection's hooks (stream thread; the loop is polymm/ws.py's) -----------------------------

    def subscription(self) -> str:
        return subscription(self.market.up_token, self.market.down_token)

    def on_open(self) -> None:
        with self._lock:
            self.book.reset()  # no replay: the snapshot of this connection rebuilds the book
            self.connected = True
            self.connected_at = self._age_baseline = self.clock()
            self.link.on_connected(self.connected_at)
        log.info(
            "market ws %s connected to %s; subscribed up=%s.. down=%s..",
            self.market.slug, self.url, self.market.up_token[:12], self.market.down_token[:12],
        )

    def after_frame(self, bits: int) -> str:
        if bits & bk.RESYNC:
            return (f"book disagrees with the exchange's best bid/ask {bk.DISAGREE_RESYNC_AFTER} times in a row; "
                    "resyncing from a fresh snapshot")
        if bits & bk.RESOLVED:
            log.info("market %s resolved: winning token %s", self.market.slug, self.book.resolved_winner or "?")
        if self.book.ready():
            self.healthy()
        return ""

    def idle_problem(self, now: float) -> str:
        """This channel's idle rule: a live market silent on a leg for `stale_after_s` (the socket can freeze while
        PONGs still come), or a book unconfirmed too long after a tick size change."""
        self._log_disagreements()
        return self._health_problem(now)

    def on_closed(self, reason: str) -> None:
        self.link.on_closed()
        if self.live:
            self.writer.set_status("stale", self.window_start)

    def on_pong(self, recv_ts: float) -> None:
        self.link.on_pong(recv_ts)

    def on_ping(self, now: float) -> None:
        self.link.on_ping(now)

    def _health_problem(self, now: float) -> str:
        dead = self.link.dead_reason(now)
        if dead:
            return dead  # a shadow's too: it must be alive when its window starts
        if not self.live:
            # A shadow stream's market has not started: it may legitimately be silent for long. Its data
            # age is judged from the moment it goes live (a frozen socket is then caught as usual).
            return ""
        for name, leg in (("up", self.book.up), ("down", self.book.down)):
            age = now - self._leg_last(leg)
            if age > self.stale_after_s:
                return f"no data for {name} leg for {age:.1f}s (stale after {self.stale_after_s:g}s; socket may be frozen)"
        unverified = self.book.unverified_for(now)
        if unverified > self.resync_after_unverified_s:
            return f"book not confirmed for {unverified:.1f}s after a tick size change; resyncing"
        return ""

    def _log_disagreements(self) -> None:
        d = self.book.disagreements
        if d != self._logged_disagreements:
            now = time.monotonic()
            if now - self._last_disagree_log >= 10.0:
                log.warning(
                    "market %s: our best bid/ask disagreed with the exchange's %d time(s) so far",
                    self.market.slug, self.disagreements,
                )
                self._last_disagree_log = now
                self._logged_disagreements = d
