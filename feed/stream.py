"""One market's market-channel WebSocket, in its own thread: receive -> decode -> book -> publish.

Protocol (polymarket-protocol.md 2.1, 2.3):
- The subscription is the FIRST frame after connect (a PING before it, or a late subscription, gets the
  connection closed): both token ids, `initial_dump` for the snapshot, custom features on.
- A text "PING" every 10 s; the server answers "PONG" (not JSON: skipped before decoding).
- No replay after a reconnect: the book is rebuilt from the new connection's `book` snapshots.
- The socket can freeze silently while PING/PONG still works, so a frozen socket is judged from DATA, per
  asset: when an asset has had no data for `stale_after_s`, the segment is flagged stale and we reconnect.
- A PING unanswered for PONG_TIMEOUT_S with no other frame meanwhile is a dead (half-open) socket: reconnect.
  The socket's liveness (feed/liveness.py: frames, PONGs, PINGs) is published in shared memory by the service,
  so readers tell a dead feed from a quiet market.

Rotation: a stream for the next window runs in "shadow" (book kept, nothing published) until the service
`activate()`s it at the boundary; it then publishes its book at once. Publishing always names the
stream's window, and shm.Writer refuses a window that is not current, so an old stream can never write
over the new market.

The thread that applies an update publishes it (no hand-off): decode, book update and publish happen in
`on_frame`, the hot path measured by bench/bench_feed.py.
"""
from __future__ import annotations

import json
import logging
import math
import random
import threading
import time

import websocket

from polymm.feed import book as bk
from polymm.feed.discovery import MarketInfo
from polymm.feed.liveness import PONG_TIMEOUT_S, LinkLiveness
from polymm.feed.shm import Writer
from polymm.feed.wire import FrameDecoder

log = logging.getLogger("polymm.feed.stream")

PING_INTERVAL_S = 10.0
RECV_TIMEOUT_S = 0.25
_PUBLISH_BITS = bk.UP | bk.DOWN | bk.TICK


def subscription(up_token: str, down_token: str) -> str:
    return json.dumps(
        {"assets_ids": [up_token, down_token], "type": "market", "initial_dump": True, "custom_feature_enabled": True}
    )


class Backoff:
    """Jittered exponential backoff: initial, x2 per failure, capped; reset after a healthy connection."""

    def __init__(self, initial_s: float = 0.25, max_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * 2**self.failures)
        self.failures += 1
        return base * self._rng.uniform(0.5, 1.0)  # jitter: many clients do not reconnect in lockstep

    def reset(self) -> None:
        self.failures = 0


class MarketStream:
    """Market channel for one market. Start with `start()`; `activate()` makes it publish; `stop()`."""

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
        self.url = url
        self.market = market
        self.window_start = market.window_start
        self.writer = writer
        self.stale_after_s = stale_after_s
        self.ping_interval_s = ping_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.resync_after_unverified_s = resync_after_unverified_s
        self.clock = clock
        self.book = bk.MarketBook(market.up_token, market.down_token, market.condition_id, market.tick_size,
                                  depth=writer.depth)
        self.decoder = FrameDecoder()
        self._decode_fast = self.decoder.fast
        # feed/metrics.py FeedCounters shared by the service's streams (None: no metrics, nothing counted)
        self._msg_counts = counters.messages if counters is not None else None
        self.updates_base = updates_base
        self.disagreements_base = disagreements_base
        self.live = False
        self.connected = False
        self.connected_at = math.nan
        self._age_baseline = math.nan  # data age is counted from here when a leg has had no data since
        self.reconnects = 0  # connections after the first
        self.connections = 0
        self.pongs = 0
        # frames / PONGs / PINGs of this stream's socket (published by the service as the segment's LINK block)
        self.link = LinkLiveness(ping_interval_s, pong_timeout_s, stale_after_s)
        self.last_error = ""
        self.first_publish = threading.Event()  # set when this stream first published a complete book
        self._published = False
        # Book + publish vs activate() from the service thread: the writer's own lock, so a frame costs
        # one lock, not two (publish_locked).
        self._lock = writer.lock
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._thread = threading.Thread(target=self._run, name=f"market-ws-{market.window_start}", daemon=True)
        self._last_disagree_log = 0.0
        self._logged_disagreements = 0

    # -- control (service thread) ----------------------------------------------------------------------

    def start(self) -> "MarketStream":
        self._thread.start()
        return self

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
        self._stop.set()
        self.live = False
        ws = self._ws
        if ws is not None:
            try:
                ws.abort()  # wakes the receive call at once
            except Exception:  # noqa: BLE001 - already closed
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

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
        baseline = self._age_baseline
        recv = leg.recv_ts
        if recv == recv and (baseline != baseline or recv >= baseline):
            return recv
        return baseline

    # -- the hot path (stream thread) ------------------------------------------------------------------

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        """Decode one frame, apply it to the book and publish what changed. Returns the book's bits.

        This is the hot path (bench/bench_feed.py): the publish is written out here rather than calling
        `_publish`, to save a call layer per message."""
        link = self.link
        if data == b"PONG":
            self.pongs += 1
            link.on_pong(recv_ts)
            return 0
        # link.on_data(recv_ts), written out (one call less per message)
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

    # -- connection loop (stream thread) ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = self._connection()
            self.connected = False
            self.link.on_closed()
            if self._stop.is_set():
                break
            if self.live:
                self.writer.set_status("stale", self.window_start)
            delay = self.backoff.next_delay()
            self.reconnects += 1
            log.warning(
                "market ws %s: %s; reconnecting in %.2fs (reconnect %d)",
                self.market.slug, reason, delay, self.reconnects,
            )
            self._stop.wait(delay)

    def _connection(self) -> str:
        """One connection's life. Returns why it ended."""
        try:
            ws = websocket.create_connection(
                self.url, timeout=self.connect_timeout_s, skip_utf8_validation=True, enable_multithread=False
            )
        except Exception as e:  # noqa: BLE001 - any failure to connect is retried
            self.last_error = f"connect failed: {e}"
            return self.last_error
        self._ws = ws
        try:
            if self._stop.is_set():
                return "stopped"
            ws.send(subscription(self.market.up_token, self.market.down_token))
            self.connections += 1
            with self._lock:
                self.book.reset()  # no replay: the snapshot of this connection rebuilds the book
                self.connected = True
                self.connected_at = self._age_baseline = self.clock()
                self.link.on_connected(self.connected_at)
            log.info(
                "market ws %s connected to %s; subscribed up=%s.. down=%s..",
                self.market.slug, self.url, self.market.up_token[:12], self.market.down_token[:12],
            )
            return self._receive(ws)
        except Exception as e:  # noqa: BLE001 - a broken socket, a bug in a handler: reconnect, never die
            self.last_error = f"{type(e).__name__}: {e}"
            if not isinstance(e, (websocket.WebSocketException, OSError)):
                log.exception("market ws %s: unexpected error", self.market.slug)
            return self.last_error
        finally:
            self._ws = None
            try:
                ws.close(timeout=0.5)
            except Exception:  # noqa: BLE001
                pass

    def _receive(self, ws: websocket.WebSocket) -> str:
        monotonic = time.monotonic
        next_ping = monotonic() + self.ping_interval_s
        next_check = 0.0
        clock = self.clock
        on_frame = self.on_frame
        healthy = False
        # One receive timeout for the connection's life (setting it per frame costs ~2.5 us a frame): it
        # bounds how late a PING, a staleness check or a stop request can be.
        ws.settimeout(RECV_TIMEOUT_S)
        while not self._stop.is_set():
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                opcode, data = None, None
            except websocket.WebSocketConnectionClosedException:
                self.last_error = "connection closed by the server"
                return self.last_error
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.last_error = "server sent close"
                return self.last_error
            if data:
                bits = on_frame(data, clock())
                if bits & (bk.RESYNC | bk.RESOLVED | bk.SNAPSHOT):
                    if bits & bk.RESYNC:
                        self.last_error = (
                            f"book disagrees with the exchange's best bid/ask {bk.DISAGREE_RESYNC_AFTER} times in a row"
                        )
                        return self.last_error + "; resyncing from a fresh snapshot"
                    if bits & bk.RESOLVED:
                        log.info("market %s resolved: winning token %s", self.market.slug,
                                 self.book.resolved_winner or "?")
                    if not healthy and self.book.ready():
                        healthy = True
                        self.backoff.reset()
            # The clock-driven chores run at most every 100 ms, not per frame.
            now_m = monotonic()
            if now_m < next_check:
                continue
            next_check = now_m + 0.1
            if now_m >= next_ping:
                ws.send("PING")
                self.link.on_ping(clock())
                next_ping = now_m + self.ping_interval_s
            self._log_disagreements()
            problem = self._health_problem(clock())
            if problem:
                self.last_error = problem
                if self.live:
                    self.writer.set_status("stale", self.window_start)
                return problem
        return "stopped"

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

    def is_alive(self) -> bool:
        return self._thread.is_alive()
