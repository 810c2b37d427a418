"""The RTDS connection, in its own thread: connect -> subscribe -> receive -> decode -> ReferenceBook.

Protocol (docs.polymarket.com, Real-Time Data Socket; polymarket-protocol.md 4.1):
- URL `wss://ws-live-data.polymarket.com` (env POLYMM_RTDS_URL); no authentication for the price topics.
- One subscribe frame for both topics of the series' asset right after connecting (wire.subscription()).
- Keepalive: the documentation asks for a text `PING` every 5 seconds; the answer is not JSON and is skipped.
- After each (re)subscription the server first sends the recent history per topic (type `subscribe`), so a
  short disconnect loses no point: the ReferenceBook ignores points it already has.
- A third-party report (dev.to, "Polymarket's price WebSocket can stall while connected") says the socket can
  go silent while staying up, so liveness is judged from Chainlink DATA: no Chainlink point for
  `stale_after_s` -> reconnect. Reconnects use the feed's jittered exponential backoff.

The book path never waits on this thread: it holds only its own lock while applying a frame, then hands the
changed bits to `on_update` (the service publishes them into shared memory).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import websocket

from polymm.feed.rtds import wire
from polymm.feed.rtds.reference import ReferenceBook
from polymm.feed.stream import Backoff

log = logging.getLogger("polymm.feed.rtds")

PING_INTERVAL_S = 5.0
RECV_TIMEOUT_S = 0.25


class RtdsStream:
    """Start with `start()`; `stop()`. `on_update(bits)` runs on this thread after each frame that changed
    something (bits from reference.py), without any lock held."""

    def __init__(
        self,
        url: str,
        book: ReferenceBook,
        on_update: Callable[[int], None] | None = None,
        *,
        stale_after_s: float = 15.0,
        ping_interval_s: float = PING_INTERVAL_S,
        connect_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        clock=time.time,
        symbols: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.book = book
        self.on_update = on_update or (lambda bits: None)
        self.stale_after_s = stale_after_s
        self.ping_interval_s = ping_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.symbols = symbols or wire.SYMBOL_OF_SOURCE  # the series' asset (wire.symbols())
        self.decoder = wire.Decoder(self.symbols)
        self.lock = threading.Lock()  # the book vs readers on the service thread
        self.connected = False
        self.connected_at = math.nan
        self.connections = 0
        self.reconnects = 0
        self.pongs = 0
        self.frames = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._thread = threading.Thread(target=self._run, name="rtds-ws", daemon=True)

    # -- control ---------------------------------------------------------------------------------------

    def start(self) -> "RtdsStream":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.abort()
            except Exception:  # noqa: BLE001 - already closed
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    # -- frames ----------------------------------------------------------------------------------------

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        """Decode one frame and apply its prices. Returns what changed (reference.py bits)."""
        self.frames += 1
        if not data or data[:1] not in (b"{", b"["):
            self.pongs += 1  # the keepalive's answer (or another non-JSON control text)
            return 0
        bits = 0
        prices = self.decoder.decode(data)
        if prices:
            with self.lock:
                apply = self.book.apply
                for price in prices:
                    bits |= apply(price, recv_ts)
        if bits:
            self.on_update(bits)
        return bits

    def chainlink_silence_s(self, now: float) -> float:
        """Seconds since the last Chainlink point was received, counted from the connection when none yet."""
        last = self.book.chainlink.recv_ts
        baseline = self.connected_at
        if last == last and (baseline != baseline or last >= baseline):
            return now - last
        return now - baseline if baseline == baseline else math.inf

    # -- connection loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = self._connection()
            self.connected = False
            if self._stop.is_set():
                break
            delay = self.backoff.next_delay()
            self.reconnects += 1
            log.warning("rtds ws: %s; reconnecting in %.2fs (reconnect %d)", reason, delay, self.reconnects)
            self._stop.wait(delay)

    def _connection(self) -> str:
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
            ws.send(wire.subscription(self.symbols))
            self.connections += 1
            self.connected = True
            self.connected_at = self.clock()
            log.info("rtds ws connected to %s; subscribed to %s and %s", self.url, wire.CHAINLINK_TOPIC, wire.BINANCE_TOPIC)
            return self._receive(ws)
        except Exception as e:  # noqa: BLE001 - a broken socket or a bug in a handler: reconnect, never die
            self.last_error = f"{type(e).__name__}: {e}"
            if not isinstance(e, (websocket.WebSocketException, OSError)):
                log.exception("rtds ws: unexpected error")
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
        healthy = False
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
                if self.on_frame(data, self.clock()) and not healthy:
                    healthy = True
                    self.backoff.reset()
            now_m = monotonic()
            if now_m < next_check:
                continue
            next_check = now_m + 0.1
            if now_m >= next_ping:
                ws.send("PING")
                next_ping = now_m + self.ping_interval_s
            silence = self.chainlink_silence_s(self.clock())
            if silence > self.stale_after_s:
                self.last_error = (f"no Chainlink price for {silence:.1f}s (stale after {self.stale_after_s:g}s; "
                                   "socket may be frozen)")
                return self.last_error
        return "stopped"
