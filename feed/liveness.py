"""Is the market WebSocket alive? Judged from the socket itself, never from whether the book changes.

A quiet market sends no book messages for seconds, and that is not a dead feed: the socket is alive while frames
arrive (market data of any kind, or the PONG the server answers to our PING every `ping_interval_s`). It is dead
when it is closed, or when a PING stays unanswered for `pong_timeout_s` (a half-open TCP connection: the kernel
sees nothing wrong, no frame ever comes again). A *frozen* socket is the third case (Polymarket's market channel
has been seen to stop sending data while PONGs go on, polymarket-protocol.md 2.3): data silent for
`stale_after_s` while PONGs still come.

`LinkLiveness` is the small object a stream updates from its callbacks (connected, frame received, PONG received,
PING sent, closed); `facts()` is what the feed publishes in shared memory (layout.LINK) for the trader and mmctl,
who judge with `layout.Link`. The connection loop stays the stream's own: this piece does not know about sockets.
Attribute stores only on the frame path (one per frame), so it costs the hot path nothing measurable.
"""
from __future__ import annotations

import math

PING_INTERVAL_S = 10.0  # Polymarket: a text "PING" every 10 s keeps the market channel open
PONG_TIMEOUT_S = 5.0  # a PING unanswered this long: the socket is dead (half-open), reconnect


class LinkLiveness:
    """The liveness of one stream's socket. Updated from its thread; read (a few floats) from the feed's loop."""

    __slots__ = ("ping_interval_s", "pong_timeout_s", "stale_after_s", "connected", "connected_at", "activated_at",
                 "last_frame", "last_data", "last_pong", "last_ping", "frames", "_awaiting_pong_since")

    def __init__(self, ping_interval_s: float = PING_INTERVAL_S, pong_timeout_s: float = PONG_TIMEOUT_S,
                 stale_after_s: float = 15.0) -> None:
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.stale_after_s = stale_after_s
        self.connected = False
        self.connected_at = math.nan
        self.activated_at = math.nan  # when its window started being served (a stream opened ahead of it)
        self.last_frame = math.nan
        self.last_data = math.nan
        self.last_pong = math.nan
        self.last_ping = math.nan
        self.frames = 0
        self._awaiting_pong_since = math.nan

    # -- callbacks (the stream's thread) ----------------------------------------------------------------------

    def on_connected(self, now: float) -> None:
        self.connected = True
        self.connected_at = now
        self._awaiting_pong_since = math.nan

    def on_activated(self, now: float) -> None:
        """The stream starts serving the current window (at the boundary, for one connected ahead)."""
        self.activated_at = now

    def on_closed(self) -> None:
        self.connected = False
        self._awaiting_pong_since = math.nan

    def on_data(self, now: float) -> None:
        """A market-data frame (any type, whether or not it moved the top of book)."""
        self.last_frame = self.last_data = now
        self.frames += 1

    def on_pong(self, now: float) -> None:
        self.last_frame = self.last_pong = now
        self.frames += 1
        self._awaiting_pong_since = math.nan

    def on_ping(self, now: float) -> None:
        self.last_ping = now
        since = self._awaiting_pong_since
        # The oldest PING nothing has answered yet: a frame since the outstanding one proved the socket alive, so
        # the clock starts again at this PING.
        if since != since or self.last_frame >= since:
            self._awaiting_pong_since = now

    # -- judgement --------------------------------------------------------------------------------------------

    def dead_reason(self, now: float) -> str:
        """Why the open socket must be given up now ("" while it is alive): a PING unanswered too long. Any frame
        after the PING proves the socket alive too (a server that answers data first, PONG later)."""
        since = self._awaiting_pong_since
        if since == since and now - since > self.pong_timeout_s and not self.last_frame >= since:
            return (f"no PONG {now - since:.1f}s after our PING and no other frame (pong timeout "
                    f"{self.pong_timeout_s:g}s): the socket is dead")
        return ""

    def facts(self) -> tuple:
        """What the feed publishes (layout.LINK, in field order). Service starts at the later of the connection and
        the activation: silence before the window opened says nothing about the socket now."""
        serving = max((t for t in (self.connected_at, self.activated_at) if t == t), default=math.nan)
        return (1 if self.connected else 0, serving if self.connected else math.nan, self.last_frame, self.last_data, self.last_pong,
                self.last_ping, self.ping_interval_s, self.pong_timeout_s, self.stale_after_s, self.frames)


NOT_CONNECTED = LinkLiveness().facts()  # no active stream (starting, between windows without a successor)
