"""The feed service's BTC reference prices (issue 16), in-process against the scripted fake: RTDS prices reach the
segment's REF block with the window's opening price, and a restarted feed recovers that opening mid-window."""
from __future__ import annotations

import math
import time

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.feed import discovery as disc
from polymm.feed import shm
from polymm.feed.service import FeedService, parse_args
from polymm.notify import Notifier

WINDOW_S = 300


def chainlink(ts: float, value: float) -> dict:
    return {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": int(ts * 1000) + 20,
            "payload": {"symbol": "btc/usd", "timestamp": int(ts * 1000), "value": value}}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    server = FakePolymarket().start()
    yield server
    server.stop()


def service_for(fake, shm_name) -> tuple[FeedService, shm.Writer]:
    args = parse_args(["--gamma-url", fake.gamma_url, "--ws-market-url", fake.ws_url, "--rtds-url", fake.rtds_url,
                       "--shm", shm_name, "--window-s", str(WINDOW_S)])
    writer = shm.Writer(shm_name, ring_capacity=64)
    service = FeedService(args, writer, disc.Discoverer(lambda w: None), Notifier())
    return service, writer


def test_rtds_prices_and_the_opening_reach_the_segment_and_survive_a_feed_restart(fake, shm_name):
    t = int(time.time()) // WINDOW_S * WINDOW_S
    service, writer = service_for(fake, shm_name)
    service.start_rtds()
    reader = shm.Reader(shm_name)
    try:
        waiting.wait_for(lambda: service.rtds.connected and fake.rtds_received, 10, "RTDS connection")
        fake.push_rtds(chainlink(t - 1, 97_000.0))
        fake.push_rtds(chainlink(t, 97_050.0))
        fake.push_rtds(chainlink(t + 1, 97_060.0))
        ref = waiting.wait_for(lambda: (r := reader.snapshot().ref).chainlink == 97_060.0 and r, 10, "REF block")
        assert ref.opening_for(t) == 97_050.0 and ref.open_status == "captured" and ref.rtds_connected
        assert "btc 97,060.00" in service.status_line(time.time()) and "open 97,050.00" in service.status_line(time.time())
    finally:
        service.shutdown()
        writer.close()
    # A new process, mid-window: the stream's first point is long after the open, but the segment remembers it.
    service, writer = service_for(fake, shm_name)
    service.start_rtds()
    try:
        assert service.reference.opening(t).price == 97_050.0 and service.reference.opening(t).how == "recovered"
        waiting.wait_for(lambda: service.rtds.connected, 10, "RTDS reconnection")
        fake.push_rtds(chainlink(t + 100, 97_200.0))
        ref = waiting.wait_for(lambda: (r := reader.snapshot().ref).chainlink == 97_200.0 and r, 10, "REF block")
        assert ref.opening_for(t) == 97_050.0 and ref.open_status == "recovered"
    finally:
        service.shutdown()
        writer.close()
        reader.close()
        shm.unlink(shm_name)


def test_without_a_previous_segment_a_mid_window_start_marks_the_open_unknown(fake, shm_name):
    t = int(time.time()) // WINDOW_S * WINDOW_S
    service, writer = service_for(fake, shm_name)
    service.start_rtds()
    reader = shm.Reader(shm_name)
    try:
        waiting.wait_for(lambda: service.rtds.connected and fake.rtds_received, 10, "RTDS connection")
        fake.push_rtds(chainlink(t + 100, 97_200.0))
        ref = waiting.wait_for(lambda: (r := reader.snapshot().ref).chainlink == 97_200.0 and r, 10, "REF block")
        assert ref.open_status == "unknown" and math.isnan(ref.opening_for(t))
        assert "open unknown" in service.status_line(time.time())
    finally:
        service.shutdown()
        writer.close()
        reader.close()
        shm.unlink(shm_name)
