"""The user WebSocket (our orders and trades), in its own thread, via websocket-client.

- Subscribes right after connecting (the server may close an idle socket) with the API credentials
  and our markets; the auth object holds secrets and is never logged.
- Sends the text frame `PING` every 10 s (the server drops a silent client after ~10 s); `PONG` frames
  are keep-alive answers, not events.
- The channel does not replay missed events: every reconnect calls `on_connected(reconnect=True)` and
  the execution core reconciles against REST before trusting the stream again.
- Reconnects with exponential back-off (0.5 s doubling to 15 s) forever until stopped.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable

import websocket

from polymm.trader.venue.user_wire import UserEvent, WireError, decode_user_frame

log = logging.getLogger("polymm.trader.user_stream")

PING_EVERY_S = 10.0


class UserStream:
    def __init__(self, url: str, auth: Callable[[], dict], markets: Callable[[], list[str]],
                 on_events: Callable[[list[UserEvent]], None], on_connected: Callable[[bool], None],
                 on_disconnected: Callable[[str], None], *, ping_every_s: float = PING_EVERY_S,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 15.0) -> None:
        self.url = url
        self._auth = auth
        self._markets = markets
        self._on_events = on_events
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self.ping_every_s = ping_every_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._ws: websocket.WebSocket | None = None
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.connects = 0
        self.frames = 0
        self.bad_frames = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="polymm-user-ws", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def subscribe(self, markets: list[str]) -> None:
        """Add markets on the live socket (window rotation); a reconnect subscribes to all anyway."""
        self._send(json.dumps({"operation": "subscribe", "markets": markets}))

    def drop(self) -> None:
        """Close the socket as if the network dropped it (tests, fault drills); the loop reconnects."""
        ws = self._ws
        if ws is not None:
            try:
                ws.sock and ws.sock.close()
            except Exception:  # noqa: BLE001
                pass

    def _send(self, text: str) -> bool:
        with self._send_lock:
            ws = self._ws
            if ws is None or not self.connected:
                return False
            try:
                ws.send(text)
                return True
            except Exception as exc:  # noqa: BLE001 - the read loop notices and reconnects
                log.debug("user ws send failed: %s", exc)
                return False

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stop.is_set():
            connects_before = self.connects
            reason = self._session()
            if self._stop.is_set():
                break
            if self.connects > connects_before:
                backoff = self.backoff_initial_s  # it worked for a while: start the back-off afresh
            self._on_disconnected(reason)
            log.warning("user channel disconnected (%s); reconnecting in %.1f s", reason, backoff)
            self._stop.wait(backoff)
            backoff = min(self.backoff_max_s, backoff * 2)

    def _session(self) -> str:
        try:
            ws = websocket.create_connection(self.url, timeout=5, enable_multithread=True)
        except Exception as exc:  # noqa: BLE001
            return f"connect failed: {type(exc).__name__}: {exc}"
        self._ws = ws
        started = time.monotonic()
        try:
            subscribe = {"auth": self._auth(), "type": "user"}
            markets = self._markets()
            if markets:
                subscribe["markets"] = markets
            ws.send(json.dumps(subscribe))
            self.connected = True
            self.connects += 1
            log.info("user channel connected (%d markets)", len(markets))
            self._on_connected(self.connects > 1)
            ws.settimeout(1.0)
            last_ping = time.monotonic()
            while not self._stop.is_set():
                if time.monotonic() - last_ping >= self.ping_every_s:
                    with self._send_lock:
                        ws.send("PING")
                    last_ping = time.monotonic()
                try:
                    frame = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                if frame in ("PONG", b"PONG", "", b""):
                    if frame in ("", b"") and not ws.connected:
                        return "closed by server"
                    continue
                self.frames += 1
                self._handle(frame)
            return "stopped"
        except websocket.WebSocketConnectionClosedException:
            return f"closed by server after {time.monotonic() - started:.1f} s"
        except Exception as exc:  # noqa: BLE001 - any socket error means: reconnect
            if not isinstance(exc, (websocket.WebSocketException, OSError)):
                # A bug in event handling, not the network: say where (the reconnect's reconciliation then
                # repairs whatever the lost frame carried).
                log.exception("user channel: unexpected error handling a frame")
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.connected = False
            self._ws = None
            try:
                ws.close(timeout=1)
            except Exception:  # noqa: BLE001
                pass

    def _handle(self, frame: str | bytes) -> None:
        try:
            events, skipped = decode_user_frame(frame)
        except WireError as exc:
            self.bad_frames += 1
            log.warning("user channel: %s", exc)
            return
        for what in skipped:
            log.debug("user channel: skipped %s", what)
        if events:
            self._on_events(events)
