"""The market-channel stream (feed/stream.py) against a scripted fake server: protocol details exactly."""
from __future__ import annotations

import contextlib
import time
import json

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.feed import shm
from polymm.feed.discovery import MarketInfo
from polymm.feed.stream import MarketStream
from polymm.ws import Backoff

UP, DOWN = "1" * 70, "2" * 70
WINDOW = 1_800_000_000


def info(window_start: int = WINDOW) -> MarketInfo:
    return MarketInfo(
        slug=f"btc-updown-15m-{window_start}", condition_id="0x01", up_token=UP, down_token=DOWN,
        window_start=window_start, window_end=window_start + 900, tick_size=0.01, min_order_size=5, fee_rate=0.07,
    )


def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition"):
    return waiting.wait_for(predicate, timeout_s, what, every_s=0.02)


@pytest.fixture
def fake():
    server = FakePolymarket().start()
    server.books[UP] = ([(0.48, 100), (0.47, 50)], [(0.52, 80)])
    server.books[DOWN] = ([(0.47, 30)], [(0.51, 70), (0.53, 5)])
    yield server
    server.stop()


@pytest.fixture
def writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=256)
    w.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x01", up_token=UP, down_token=DOWN,
                 tick_size=0.01, min_order_size=5, fee_rate=0.07, status="starting")
    yield w
    w.close()
    shm.unlink(shm_name)


def make_stream(fake, writer, **kw) -> MarketStream:
    kw.setdefault("stale_after_s", 30.0)
    kw.setdefault("ping_interval_s", 0.3)
    return MarketStream(fake.ws_url, info(), writer, backoff=Backoff(0.05, 0.2), **kw)


@contextlib.contextmanager
def live_stream(fake, writer, shm_name, **kw):
    """A started, publishing stream and a reader of its segment; both closed afterwards."""
    stream = make_stream(fake, writer, **kw)
    stream.activate()
    stream.start()
    reader = shm.Reader(shm_name)
    try:
        yield stream, reader
    finally:
        stream.stop()
        reader.close()


def test_subscription_is_the_first_frame_and_pings_follow(fake, writer):
    stream = make_stream(fake, writer).start()
    try:
        wait_for(lambda: fake.received and len(fake.received[0]) >= 3, what="subscription and two PINGs")
    finally:
        stream.stop()
    first, *rest = fake.received[0]
    sub = json.loads(first)
    assert sub["assets_ids"] == [UP, DOWN] and sub["type"] == "market" and sub["initial_dump"] is True
    assert rest[:2] == ["PING", "PING"]
    assert stream.pongs >= 1


def test_live_stream_publishes_the_snapshot_then_each_change(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name) as (stream, reader):
        assert stream.first_publish.wait(10)
        snap = reader.snapshot()
        assert snap.status == "connected"
        assert (snap.up.bid, snap.up.bid_size, snap.up.ask, snap.up.ask_size) == (0.48, 100, 0.52, 80)
        assert (snap.down.bid, snap.down.ask, snap.down.ask_size) == (0.47, 0.51, 70)
        seq = snap.seq
        fake.push({"event_type": "price_change", "market": "0xm", "timestamp": "5000", "price_changes": [
            {"asset_id": UP, "price": "0.49", "size": "7", "side": "BUY", "best_bid": "0.49", "best_ask": "0.52"},
            {"asset_id": DOWN, "price": "0.51", "size": "0", "side": "SELL", "best_bid": "0.47", "best_ask": "0.53"},
        ]})
        reader.wait_update(seq, 5)
        snap = wait_for(lambda: (s := reader.snapshot()).up.bid == 0.49 and s, what="the change")
        assert (snap.up.bid_size, snap.down.ask, snap.down.ask_size) == (7, 0.53, 5)
        assert snap.up.exchange_ts == 5.0 and snap.up.seq == snap.down.seq and snap.disagreements == 0


def test_shadow_stream_keeps_its_book_without_publishing_until_activated(fake, writer, shm_name):
    stream = make_stream(fake, writer).start()
    reader = shm.Reader(shm_name)
    try:
        wait_for(lambda: stream.book.ready(), what="shadow book")
        assert reader.snapshot().status == "starting" and reader.snapshot().up.bid != 0.48
        stream.activate()
        snap = reader.snapshot()
        assert snap.status == "connected" and snap.up.bid == 0.48
    finally:
        stream.stop()
        reader.close()


def test_dropped_connection_flags_stale_then_resubscribes_and_rebuilds_from_the_new_snapshot(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name) as (stream, reader):
        assert stream.first_publish.wait(10)
        start = reader.seq()
        fake.books[UP] = ([(0.40, 9)], [(0.45, 9)])  # the book moved while we were away
        fake.drop()
        wait_for(lambda: fake.connections() >= 2 and stream.book.ready() and reader.snapshot().status == "connected",
                 what="reconnect")
        statuses = [u.status for u in reader.updates_since(start)]
        assert "stale" in statuses and statuses.index("stale") < len(statuses) - 1
        assert json.loads(fake.received[1][0])["assets_ids"] == [UP, DOWN]
        snap = reader.snapshot()
        assert (snap.up.bid, snap.up.ask) == (0.40, 0.45) and stream.reconnects == 1


def test_silent_freeze_with_pongs_still_flowing_is_detected_from_data_age(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name, stale_after_s=0.8, ping_interval_s=0.2) as (stream, reader):
        assert stream.first_publish.wait(10)
        start = reader.seq()
        fake.frozen = True
        wait_for(lambda: reader.snapshot().status == "stale", what="stale flag")
        assert "no data for" in stream.last_error and stream.pongs > 0
        fake.frozen = False
        wait_for(lambda: reader.snapshot().status == "connected", what="recovery")
        assert [u.status for u in reader.updates_since(start)][-1] == "connected"
        assert stream.reconnects >= 1 and fake.connections() >= 2


def test_a_dead_socket_is_given_up_within_the_ping_interval_plus_the_pong_timeout(fake, writer, shm_name):
    # Issue 27: a half-open connection (nothing at all comes back, not even a PONG) is dead: flagged and reconnected
    # within ping interval + PONG timeout, long before the data-age rule (stale_after_s 30 s here) would.
    with live_stream(fake, writer, shm_name, stale_after_s=30.0, ping_interval_s=0.2, pong_timeout_s=0.5) as (
            stream, reader):
        assert stream.first_publish.wait(10)
        fake.muted = True
        t0 = time.monotonic()
        wait_for(lambda: reader.snapshot().status == "stale", timeout_s=10, what="stale flag")
        assert time.monotonic() - t0 < 0.2 + 0.5 + 0.5  # ping, PONG timeout, the 0.1 s check cadence and slack
        assert "no PONG" in stream.last_error and "socket is dead" in stream.last_error
        fake.muted = False
        wait_for(lambda: reader.snapshot().status == "connected", what="recovery")


def test_a_quiet_market_keeps_a_live_socket_and_its_liveness_says_so(fake, writer, shm_name):
    # No market data for well over a second, PONGs answering: not stale, no reconnect; the liveness the service
    # publishes (layout.Link) calls it alive, with the data age growing and the last frame recent.
    with live_stream(fake, writer, shm_name, stale_after_s=30.0, ping_interval_s=0.2, pong_timeout_s=0.5) as (
            stream, reader):
        assert stream.first_publish.wait(10)
        time.sleep(1.5)
        writer.heartbeat(link=stream.link.facts())
        snap = reader.snapshot()
        now = time.time()
        assert snap.status == "connected" and stream.reconnects == 0
        assert snap.link.connected and snap.link.dead_reason(now) == "" and snap.link.frozen_reason(now, 5.0) == ""
        assert snap.link.data_age_s(now) >= 1.4 and snap.link.frame_age_s(now) < 0.5
        assert snap.link.last_pong > snap.link.last_data


def test_tick_size_change_reaches_the_segment(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name) as (stream, reader):
        assert stream.first_publish.wait(10)
        fake.push([{"event_type": "tick_size_change", "asset_id": UP, "market": "0xm", "old_tick_size": "0.01",
                    "new_tick_size": "0.001", "timestamp": "7000"}])
        snap = wait_for(lambda: (s := reader.snapshot()).market.tick_size == 0.001 and s, what="tick")
        assert snap.up.bid != snap.up.bid  # withheld (NaN) until consistent
        fake.push({"event_type": "price_change", "market": "0xm", "timestamp": "8000", "price_changes": [
            {"asset_id": UP, "price": "0.485", "size": "3", "side": "BUY", "best_bid": "0.485", "best_ask": "0.52"}]})
        snap = wait_for(lambda: (s := reader.snapshot()).up.bid == 0.485 and s, what="re-verified leg")
        assert snap.market.tick_size == 0.001


def test_malformed_and_unknown_frames_are_skipped_and_the_stream_goes_on(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name) as (stream, reader):
        assert stream.first_publish.wait(10)
        fake.push({"event_type": "brand_new_thing"})
        fake.push({"event_type": "book"})
        fake.push({"event_type": "last_trade_price", "asset_id": UP, "price": "0.5", "timestamp": "9000"})
        wait_for(lambda: reader.snapshot().up.last_trade == 0.5, what="trade after junk")
        assert stream.decoder.unknown == 1 and stream.decoder.malformed == 1 and stream.reconnects == 0


def test_reconnect_backoff_grows_with_jitter_up_to_its_cap_and_resets():
    import random

    backoff = Backoff(0.25, 4.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    caps = [min(4.0, 0.25 * 2**i) for i in range(8)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps))
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def test_crossed_book_is_flagged_in_the_segment_and_cleared_when_it_uncrosses(fake, writer, shm_name):
    with live_stream(fake, writer, shm_name) as (stream, reader):
        assert stream.first_publish.wait(10)
        assert not reader.snapshot().crossed
        fake.push({"event_type": "price_change", "market": "0xm", "timestamp": "1", "price_changes": [
            {"asset_id": DOWN, "price": "0.53", "size": "4", "side": "BUY"}]})  # Up bid 0.48 + Down bid 0.53 > 1
        wait_for(lambda: reader.snapshot().crossed, what="crossed flag")
        fake.push({"event_type": "price_change", "market": "0xm", "timestamp": "2", "price_changes": [
            {"asset_id": DOWN, "price": "0.53", "size": "0", "side": "BUY"}]})
        wait_for(lambda: not reader.snapshot().crossed, what="crossed flag cleared")
