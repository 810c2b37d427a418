"""The user WebSocket (our orders and trades), in its own thread, via websocket-client.

- Subscribes right after connecting (the server may close an idle socket) with the API credentials
  and our markets; the auth object holds secrets and is never logged.
- Sends the text frame `PING` every 10 s (the server drops a silent client after ~10 s); `PONG` frames
  are keep-alive answers, not events.
- The channel does not replay missed events: every reconnect calls `on_connected(reconnect=True)` and
  the execution core reconciles against REST before trusting the stream again.
- Reconnects with jittered exponential back-off (0.5 s doubling to 15 s) forever until stopped; a connection that
  subscribed starts the back-off afresh.
- Its idle rule: none. With no orders of ours the channel is legitimately silent for hours; a dead socket is closed
  by the network or the server (the PINGs keep it open while it lives), and the reconnect's reconciliation repairs
  whatever was missed.

The connection loop is polymm/ws.py's, shared with the feed's market channel and RTDS.
"""
from __future__ import annotations

import json
import logging
from typing import Callable

from polymm.trader.venue.user_wire import UserEvent, WireError, decode_user_frame
from polymm.ws import Backoff, ReconnectingSocket

log = logging.getLogger("polymm.trader.user_stream")

PING_EVERY_S = 10.0
CONNECT_TIMEOUT_S = 5.0


class UserStream(ReconnectingSocket):
    name = "user channel"

    def __init__(self, url: str, auth: Callable[[], dict], markets: Callable[[], list[str]],
                 on_events: Callable[[list[UserEvent]], None], on_connected: Callable[[bool], None],
                 on_disconnected: Callable[[str], None], *, ping_every_s: float = PING_EVERY_S,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 15.0) -> None:
        # subscribe() sends from the execution core's threads: sends share a lock (multithread).
        super().__init__(url, ping_interval_s=ping_every_s, connect_timeout_s=CONNECT_TIMEOUT_S,
                         backoff=Backoff(backoff_initial_s, backoff_max_s), thread_name="polymm-user-ws",
                         multithread=True)
        self._auth = auth
        self._markets = markets
        self._on_events = on_events
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._subscribed_to = 0
        self.frames = 0
        self.bad_frames = 0

    def subscribe(self, markets: list[str]) -> None:
        """Add markets on the live socket (window rotation); a reconnect subscribes to all anyway."""
        self.send(json.dumps({"operation": "subscribe", "markets": markets}))

    # -- the connection's hooks (its thread; the loop is polymm/ws.py's) ------------------------------------

    def subscription(self) -> str:
        subscribe = {"auth": self._auth(), "type": "user"}
        markets = self._markets()
        if markets:
            subscribe["markets"] = markets
        self._subscribed_to = len(markets)
        return json.dumps(subscribe)

    def on_open(self) -> None:
        super().on_open()
        self.healthy()  # subscribed: the next reconnect's back-off starts afresh
        log.info("user channel connected (%d markets)", self._subscribed_to)
        self._on_connected(self.connections > 1)

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        self.frames += 1
        try:
            events, skipped = decode_user_frame(data)
        except WireError as exc:
            self.bad_frames += 1
            log.warning("user channel: %s", exc)
            return 0
        for what in skipped:
            log.debug("user channel: skipped %s", what)
        if events:
            self._on_events(events)
        return 0

    def on_closed(self, reason: str) -> None:
        self._on_disconnected(reason)
