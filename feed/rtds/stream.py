"""The RTDS connection, in its own thread: connect -> subscribe -> receive -> decode -> ReferenceBook.

Protocol (docs.polymarket.com, Real-Time Data Socket; polymarket-protocol.md 4.1):
- URL `wss://ws-live-data.polymarket.com` (env POLYMM_RTDS_URL); no authentication for the price topics.
- One subscribe frame for both topics of the series' asset right after connecting (wire.subscription(symbols)).
- Keepalive: the documentation asks for a text `PING` every 5 seconds; the answer is not JSON and is skipped.
- After each (re)subscription the server first sends the recent history per topic (type `subscribe`), so a
  short disconnect loses no point: the ReferenceBook ignores points it already has.
- A third-party report (dev.to, "Polymarket's price WebSocket can stall while connected") says the socket can
  go silent while staying up, so liveness is judged from Chainlink DATA: no Chainlink point for
  `stale_after_s` -> reconnect (this channel's idle rule, `idle_problem`). The connection loop, PINGs and the
  jittered exponential backoff are polymm/ws.py's, shared with the market and user channels.

The book path never waits on this thread: it holds only its own lock while applying a frame, then hands the
changed bits to `on_update` (the service publishes them into shared memory).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

from polymm.feed.rtds import wire
from polymm.feed.rtds.reference import ReferenceBook
from polymm.ws import Backoff, ReconnectingSocket, last_heard

log = logging.getLogger("polymm.feed.rtds")

PING_INTERVAL_S = 5.0


class RtdsStream(ReconnectingSocket):
    """Start with `start()`; `stop()`. `on_update(bits)` runs on this thread after each frame that changed
    something (bits from reference.py), without any lock held."""

    name = "rtds ws"
    attention_bits = ~0  # any change: the connection proved itself

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
        super().__init__(url, ping_interval_s=ping_interval_s, connect_timeout_s=connect_timeout_s,
                         backoff=backoff or Backoff(), clock=clock, thread_name="rtds-ws")
        self.book = book
        self.on_update = on_update or (lambda bits: None)
        self.stale_after_s = stale_after_s
        self.symbols = symbols or wire.SYMBOL_OF_SOURCE  # the series' asset (wire.symbols())
        self.decoder = wire.Decoder(self.symbols)
        self.lock = threading.Lock()  # the book vs readers on the service thread
        self.frames = 0

    # -- frames ----------------------------------------------------------------------------------------

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        """Decode one frame and apply its prices. Returns what changed (reference.py bits)."""
        self.frames += 1
        if not data or data[:1] not in (b"{", b"["):
            self.pongs += 1  # a non-JSON control text (the keepalive's own PONG is counted by polymm/ws.py)
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
        heard = last_heard(self.book.chainlink.recv_ts, self.connected_at)
        return now - heard if heard == heard else math.inf

    # -- the connection's hooks (its thread; the loop is polymm/ws.py's) --------------------------------

    def subscription(self) -> str:
        return wire.subscription(self.symbols)

    def on_open(self) -> None:
        super().on_open()
        log.info("rtds ws connected to %s; subscribed to %s and %s (%s)", self.url, wire.CHAINLINK_TOPIC,
                 wire.BINANCE_TOPIC, ", ".join(self.symbols.values()))

    def after_frame(self, bits: int) -> str:
        self.healthy()
        return ""

    def idle_problem(self, now: float) -> str:
        """This channel's idle rule: no Chainlink point for `stale_after_s` (the socket can freeze while PONGs come)."""
        silence = self.chainlink_silence_s(now)
        if silence > self.stale_after_s:
            return f"no Chainlink price for {silence:.1f}s (stale after {self.stale_after_s:g}s; socket may be frozen)"
        return ""
