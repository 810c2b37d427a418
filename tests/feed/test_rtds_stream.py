"""The RTDS connection (feed/rtds/stream.py) against a scripted fake: subscription, PING keepalive as documented,
history dump, reconnect after a drop and after a silent freeze."""
from __future__ import annotations

import json

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.feed.rtds import reference as ref
from polymm.feed.rtds import wire
from polymm.feed.rtds.stream import RtdsStream
from polymm.ws import Backoff

T = 1_800_000_000


def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition"):
    return waiting.wait_for(predicate, timeout_s, what, every_s=0.02)


def chainlink(ts: float, value: float) -> dict:
    return {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": int(ts * 1000) + 30,
            "payload": {"symbol": "btc/usd", "timestamp": int(ts * 1000), "value": value}}


@pytest.fixture
def fake():
    server = FakePolymarket().start()
    yield server
    server.stop()


@pytest.fixture
def stream(fake):
    updates: list[int] = []
    s = RtdsStream(fake.rtds_url, ref.ReferenceBook(900), updates.append, ping_interval_s=0.3, stale_after_s=30.0,
                   backoff=Backoff(0.05, 0.2))
    s.updates = updates  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


def test_subscription_is_the_first_frame_and_text_pings_follow(fake, stream):
    wait_for(lambda: fake.rtds_received and len(fake.rtds_received[0]) >= 3, what="subscription and two PINGs")
    first, *rest = fake.rtds_received[0]
    assert json.loads(first) == json.loads(wire.subscription())
    assert rest[:2] == ["PING", "PING"]
    wait_for(lambda: stream.pongs >= 1, what="a PONG counted (and not decoded)")
    assert stream.decoder.malformed == 0


def test_prices_reach_the_reference_book_and_the_update_callback(fake, stream):
    wait_for(lambda: stream.connected and fake.rtds_received, what="connection")
    fake.push_rtds(chainlink(T - 1, 97_000.0))
    fake.push_rtds(chainlink(T, 97_050.0))
    fake.push_rtds({"topic": "crypto_prices", "type": "update", "timestamp": T * 1000,
                    "payload": {"symbol": "btcusdt", "timestamp": T * 1000, "value": 97_080.0}})
    wait_for(lambda: stream.book.binance.updates == 1, what="the Binance price")
    assert stream.book.chainlink.price == 97_050.0 and stream.book.opening(T).price == 97_050.0
    assert ref.OPEN_BIT in [b & ref.OPEN_BIT for b in stream.updates] and ref.BINANCE_BIT in stream.updates


def test_after_a_drop_it_resubscribes_and_the_history_dump_recovers_the_open(fake, stream):
    wait_for(lambda: stream.connected and fake.rtds_received, what="connection")
    fake.push_rtds(chainlink(T - 2, 97_000.0))
    wait_for(lambda: stream.book.chainlink.updates == 1, what="first point")
    fake.rtds_history = [{"topic": "crypto_prices_chainlink", "type": "subscribe", "timestamp": (T + 2) * 1000,
                          "payload": {"symbol": "btc/usd", "data": [{"timestamp": (T - 1) * 1000, "value": 97_001.0},
                                                                     {"timestamp": T * 1000, "value": 97_002.0},
                                                                     {"timestamp": (T + 1) * 1000, "value": 97_003.0}]}}]
    fake.drop_rtds()
    wait_for(lambda: len(fake.rtds_received) >= 2 and stream.book.chainlink.updates == 4, what="resubscribed with history")
    assert json.loads(fake.rtds_received[1][0])["action"] == "subscribe"
    assert stream.book.opening(T).price == 97_002.0 and stream.reconnects >= 1


def test_a_silent_freeze_with_pongs_flowing_is_caught_from_chainlink_silence(fake):
    s = RtdsStream(fake.rtds_url, ref.ReferenceBook(900), ping_interval_s=0.1, stale_after_s=0.6,
                   backoff=Backoff(0.05, 0.2)).start()
    try:
        wait_for(lambda: s.connected, what="connection")
        fake.frozen = True
        wait_for(lambda: s.reconnects >= 1, what="reconnect after a silent freeze")
        assert "no Chainlink price" in s.last_error and s.pongs >= 1
    finally:
        s.stop()
