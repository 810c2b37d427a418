"""One reconnecting WebSocket client, in its own thread: connect, subscribe, receive, keep alive, judge idleness,
reconnect with jittered exponential backoff, forever until stopped.

Polymarket's three channels we follow share it: the market channel (feed/stream.py), the Real-Time Data Socket
(feed/rtds/stream.py) and the user channel (trader/venue/user_stream.py). What each does on its own is a hook:

- `subscription()`: the first frame after connecting (Polymarket closes a socket that sends anything else first,
  or nothing for a while: polymarket-protocol.md 2.1, 4.1).
- `on_open()`: the connection is subscribed (default: `connected` and `connected_at` set).
- `on_frame(data, recv_ts) -> bits`: one frame (bytes), PONGs excepted; the hot path of the market channel.
  Nonzero `bits & attention_bits` calls `after_frame(bits)`, which may end the connection (a resync) or call
  `healthy()` (the backoff starts afresh once a connection has proved itself).
- `idle_problem(now) -> words`: **the channel's idle rule**, checked every `check_every_s`: anything but "" ends
  the connection and it reconnects. The market channel judges silence from data per asset, the RTDS from its
  Chainlink stream (both can freeze while PONGs still come); the user channel has none (no orders, no messages:
  quiet is normal; a dead socket is closed by the network or the server).
- `on_pong(recv_ts)`, `on_ping(now)`: keep-alive facts (the text `PING` every `ping_interval_s`; the server
  answers `PONG`, which is not JSON and never reaches `on_frame`).
- `on_closed(reason)`: after each connection ends (not when stopping), before the backoff wait.

It lives in polymm/ (the plumbing) because both services use it: the feed for the market channel and the RTDS,
the trader for the user channel, and tests/test_layout.py forbids the feed and the trader to import each other's
code; it knows no product, only websocket-client.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time

import websocket

log = logging.getLogger("polymm.ws")

RECV_TIMEOUT_S = 0.25  # bounds how late a PING, an idle check or a stop request can be
CHECK_EVERY_S = 0.1  # the clock-driven chores (PING, idle rule) run at most this often, not per frame
READ_AHEAD_BYTES = 65536  # one socket read serves every frame it holds (ReadAhead)


class ReadAhead:
    """The receive websocket-client's frame reader calls (`WebSocket.frame_buffer.recv`), reading ahead.

    websocket-client reads a frame in three socket reads: the 2-byte header, the extended length, the payload, each
    through its socket wrapper (timeout handling, a select() on TLS). A market-channel frame is one TCP segment, so
    this reads up to READ_AHEAD_BYTES once and hands out the bytes asked for from memory: one system call per frame
    (fewer when frames come in bursts) and the library's own frame parsing, masking, UTF-8 and control-frame rules
    unchanged. Reads go through the library's `WebSocket._recv` (its timeouts, its "connection closed" on EOF), and
    only when the buffer is empty, so a timeout or a close loses nothing held here. Not thread-safe, like the
    frame reader it serves (one receiving thread). bench/bench_feed.py measures it against the library alone."""

    __slots__ = ("_read", "_size", "_buf", "_pos")

    def __init__(self, read, size: int = READ_AHEAD_BYTES) -> None:
        self._read = read
        self._size = size
        self._buf = b""
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf, pos = self._read(self._size), 0
            self._buf = buf
        out = buf[pos:pos + n]
        self._pos = pos + len(out)
        return out

    @classmethod
    def attach(cls, ws, size: int = READ_AHEAD_BYTES) -> bool:
        """Give `ws` (a connected websocket.WebSocket) a read-ahead receive; False (and nothing changed) when this
        websocket-client version's frame reader is not shaped as expected."""
        frames, read = getattr(ws, "frame_buffer", None), getattr(ws, "_recv", None)
        if frames is None or read is None or not callable(getattr(frames, "recv", None)):
            return False
        frames.recv = cls(read, size)
        return True


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


def last_heard(last: float, since: float) -> float:
    """When a data series was last heard of, counting `since` (the connection, or going live) as a start: the later
    of its last point and `since`, NaN ignored (NaN only when both are). An idle rule measures silence from here."""
    if last == last and (since != since or last >= since):
        return last
    return since


class ReconnectingSocket:
    """The connection loop; a channel subclasses it with its hooks (module docstring). `start()`, `stop()`."""

    name = "ws"  # how log lines name the channel
    attention_bits = 0  # on_frame bits that call after_frame (0: none)

    def __init__(self, url: str, *, ping_interval_s: float, connect_timeout_s: float = 10.0,
                 backoff: Backoff | None = None, clock=time.time, thread_name: str = "ws",
                 multithread: bool = False, recv_timeout_s: float = RECV_TIMEOUT_S,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self.url = url
        self.ping_interval_s = ping_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.recv_timeout_s = recv_timeout_s
        self.check_every_s = check_every_s
        self.connected = False
        self.connected_at = math.nan
        self.connections = 0
        self.reconnects = 0  # connections after the first
        self.pongs = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        # Other threads may send (the user channel's subscribe()): then sends share a lock, PINGs included.
        self._multithread = multithread
        self._send_lock = threading.Lock() if multithread else None
        self._healthy = False
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    # -- hooks -------------------------------------------------------------------------------------------

    def subscription(self) -> str:
        raise NotImplementedError

    def on_open(self) -> None:
        self.connected = True
        self.connected_at = self.clock()

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        return 0

    def after_frame(self, bits: int) -> str:
        return ""

    def idle_problem(self, now: float) -> str:
        return ""

    def on_pong(self, recv_ts: float) -> None:
        pass

    def on_ping(self, now: float) -> None:
        pass

    def on_closed(self, reason: str) -> None:
        pass

    # -- control -----------------------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.abort()  # wakes the receive call at once
            except Exception:  # noqa: BLE001 - already closed
                pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def send(self, text: str) -> bool:
        """Send on the live, subscribed socket from another thread; False when there is none (a reconnect
        subscribes afresh anyway) or the send failed (the receive loop notices and reconnects)."""
        with self._send_lock or contextlib.nullcontext():
            ws = self._ws
            if ws is None or not self.connected:
                return False
            try:
                ws.send(text)
                return True
            except Exception as exc:  # noqa: BLE001 - the read loop notices and reconnects
                log.debug("%s: send failed: %s", self.name, exc)
                return False

    def drop(self) -> None:
        """Close the socket as if the network dropped it (tests, fault drills); the loop reconnects."""
        ws = self._ws
        if ws is not None:
            try:
                ws.sock and ws.sock.close()
            except Exception:  # noqa: BLE001
                pass

    def healthy(self) -> None:
        """The connection proved itself (the channel says when): the next reconnect's backoff starts afresh."""
        if not self._healthy:
            self._healthy = True
            self.backoff.reset()

    # -- the loop (its own thread) -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            reason = self._connection()
            self.connected = False
            if self._stop.is_set():
                break
            self.on_closed(reason)
            delay = self.backoff.next_delay()
            self.reconnects += 1
            log.warning("%s: %s; reconnecting in %.2fs (reconnect %d)", self.name, reason, delay, self.reconnects)
            self._stop.wait(delay)

    def _connection(self) -> str:
        """One connection's life. Returns why it ended (also kept in `last_error`)."""
        try:
            ws = websocket.create_connection(self.url, timeout=self.connect_timeout_s, skip_utf8_validation=True,
                                             enable_multithread=self._multithread)
        except Exception as e:  # noqa: BLE001 - any failure to connect is retried
            self.last_error = f"connect failed: {e}"
            return self.last_error
        if not ReadAhead.attach(ws):
            log.debug("%s: websocket-client's frame reader is not as expected: receiving without read-ahead", self.name)
        self._ws = ws
        self._healthy = False
        try:
            if self._stop.is_set():
                return "stopped"
            ws.send(self.subscription())
            self.connections += 1
            self.on_open()
            return self._receive(ws)
        except Exception as e:  # noqa: BLE001 - a broken socket, a bug in a handler: reconnect, never die
            self.last_error = f"{type(e).__name__}: {e}"
            if not isinstance(e, (websocket.WebSocketException, OSError)):
                log.exception("%s: unexpected error", self.name)
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
        attention = self.attention_bits
        stop = self._stop
        closed = websocket.ABNF.OPCODE_CLOSE
        # One receive timeout for the connection's life (setting it per frame costs ~2.5 us a frame).
        ws.settimeout(self.recv_timeout_s)
        while not stop.is_set():
            try:
                opcode, data = ws.recv_data()
            except websocket.WebSocketTimeoutException:
                opcode, data = None, None
            except websocket.WebSocketConnectionClosedException:
                self.last_error = "connection closed by the server"
                return self.last_error
            if opcode == closed:
                self.last_error = "server sent close"
                return self.last_error
            if data:
                if data == b"PONG":  # the keep-alive's answer: not JSON, never decoded
                    self.pongs += 1
                    self.on_pong(clock())
                else:
                    bits = on_frame(data, clock())
                    if bits & attention:
                        problem = self.after_frame(bits)
                        if problem:
                            self.last_error = problem
                            return problem
            now_m = monotonic()
            if now_m < next_check:
                continue
            next_check = now_m + self.check_every_s
            if now_m >= next_ping:
                self._ping(ws)
                next_ping = now_m + self.ping_interval_s
            problem = self.idle_problem(clock())
            if problem:
                self.last_error = problem
                return problem
        return "stopped"

    def _ping(self, ws: websocket.WebSocket) -> None:
        if self._send_lock is not None:
            with self._send_lock:
                ws.send("PING")
        else:
            ws.send("PING")
        self.on_ping(self.clock())
