"""The reconnecting WebSocket client every channel is built on (polymm/ws.py), with a channel of its own against a
scripted server: the subscription first, PINGs and PONGs, the idle rule, a resync asked by a frame, reconnects with
backoff, sends from other threads. (The channels' own rules: tests/feed/test_feed_stream.py, test_rtds_stream.py,
tests/trader/execution/test_exec_sim_fills.py.)"""
from __future__ import annotations

import json
import math
import random
import socket
import threading

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.ws import Backoff, ReconnectingSocket, last_heard

OK, RESYNC = 1, 2


def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition"):
    return waiting.wait_for(predicate, timeout_s, what, every_s=0.02)


class Channel(ReconnectingSocket):
    """A channel of its own: frames {"ok": n} are data, {"resync": 1} asks for a new connection; idle when no data
    came for `idle_after_s` (None: never)."""

    name = "test channel"
    attention_bits = OK | RESYNC

    def __init__(self, url: str, idle_after_s: float | None = None, **kw) -> None:
        kw.setdefault("backoff", Backoff(0.05, 0.2, rng=random.Random(1)))
        super().__init__(url, ping_interval_s=0.1, thread_name="test-ws", **kw)
        self.idle_after_s = idle_after_s
        self.data: list[bytes] = []
        self.last_data = math.nan
        self.opened = 0
        self.closed: list[str] = []
        self.pings = 0
        self.pong_times: list[float] = []

    def subscription(self) -> str:
        return json.dumps({"subscribe": self.connections + 1})

    def on_open(self) -> None:
        super().on_open()
        self.opened += 1

    def on_frame(self, data: bytes, recv_ts: float) -> int:
        self.data.append(data)
        self.last_data = recv_ts
        message = json.loads(data)
        return RESYNC if "resync" in message else OK

    def after_frame(self, bits: int) -> str:
        if bits & RESYNC:
            return "the server asked for a resync"
        self.healthy()
        return ""

    def idle_problem(self, now: float) -> str:
        if self.idle_after_s is not None and now - last_heard(self.last_data, self.connected_at) > self.idle_after_s:
            return f"no data for {self.idle_after_s:g}s"
        return ""

    def on_ping(self, now: float) -> None:
        self.pings += 1

    def on_pong(self, recv_ts: float) -> None:
        self.pong_times.append(recv_ts)

    def on_closed(self, reason: str) -> None:
        self.closed.append(reason)


@pytest.fixture
def server():
    fake = FakePolymarket().start()
    yield fake
    fake.stop()


@pytest.fixture
def channel(server):
    ch = Channel(server.rtds_url).start()
    yield ch
    ch.stop()


def test_the_subscription_is_the_first_frame_and_pings_follow_answered_by_pongs(server, channel):
    wait_for(lambda: server.rtds_received and len(server.rtds_received[0]) >= 3, what="subscription and PINGs")
    first, *rest = server.rtds_received[0]
    assert json.loads(first) == {"subscribe": 1} and set(rest) == {"PING"}
    wait_for(lambda: channel.pongs >= 2 and len(channel.pong_times) == channel.pongs, what="PONGs counted")
    assert channel.pings >= 2 and channel.data == []  # PONGs never reach on_frame
    assert channel.connected and channel.opened == 1 and channel.connections == 1 and channel.reconnects == 0


def test_frames_reach_the_channel_and_a_drop_reconnects_and_subscribes_again(server, channel):
    wait_for(lambda: channel.connected, what="connected")
    server.push_rtds({"ok": 1})
    wait_for(lambda: channel.data == [b'{"ok": 1}'], what="the frame")
    assert channel.backoff.failures == 0
    server.drop_rtds()
    wait_for(lambda: len(server.rtds_received) == 2 and channel.connected, what="reconnected")
    assert json.loads(server.rtds_received[1][0]) == {"subscribe": 2}
    assert channel.connections == 2 and channel.reconnects == 1 and channel.opened == 2
    assert channel.closed and "close" in channel.closed[0].lower()  # the server's close frame, or the socket's end


def test_the_idle_rule_ends_a_silent_connection_and_its_words_say_why(server):
    ch = Channel(server.rtds_url, idle_after_s=0.3).start()
    try:
        wait_for(lambda: ch.reconnects >= 1, what="reconnect after silence")
        assert ch.closed[0] == "no data for 0.3s" and ch.pongs >= 1  # PONGs do not count as data
    finally:
        ch.stop()


def test_a_frame_may_ask_for_a_new_connection(server, channel):
    wait_for(lambda: channel.connected, what="connected")
    server.push_rtds({"resync": 1})
    wait_for(lambda: channel.reconnects == 1 and channel.connected, what="resync")
    assert channel.closed == ["the server asked for a resync"] and channel.last_error == "the server asked for a resync"


def test_failures_back_off_and_a_healthy_connection_starts_afresh(server, channel):
    wait_for(lambda: channel.connected, what="connected")
    server.drop_rtds()
    wait_for(lambda: channel.reconnects == 1 and channel.connected, what="reconnect")
    assert channel.backoff.failures == 1  # nothing proved the second connection yet
    server.push_rtds({"ok": 1})
    wait_for(lambda: channel.backoff.failures == 0, what="healthy")


def test_an_unreachable_server_is_retried_with_the_reason(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    ch = Channel(f"ws://127.0.0.1:{port}/", connect_timeout_s=1).start()
    try:
        wait_for(lambda: ch.reconnects >= 2, what="retries")
        assert ch.last_error.startswith("connect failed") and ch.opened == 0 and not ch.connected
    finally:
        ch.stop()
    assert not ch.is_alive()


def test_other_threads_send_on_the_live_socket_only(server):
    ch = Channel(server.rtds_url, multithread=True)
    assert ch.send("early") is False  # not connected: nothing to send on (a reconnect subscribes afresh)
    ch.start()
    try:
        wait_for(lambda: ch.connected, what="connected")
        senders = [threading.Thread(target=ch.send, args=(json.dumps({"more": i}),)) for i in range(5)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        wait_for(lambda: sum(f.startswith('{"more"') for f in server.rtds_received[0]) == 5, what="sends")
    finally:
        ch.stop()
    assert ch.send("late") is False


def test_last_heard_is_the_later_of_the_last_point_and_the_start():
    nan = math.nan
    assert last_heard(10.0, 5.0) == 10.0 and last_heard(3.0, 5.0) == 5.0
    assert last_heard(nan, 5.0) == 5.0 and last_heard(10.0, nan) == 10.0
    assert math.isnan(last_heard(nan, nan))
