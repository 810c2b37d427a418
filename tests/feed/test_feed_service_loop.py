"""The feed service's main loop in-process (FeedService.step), against the scripted fake: the loop's own
safety nets that a subprocess test cannot provoke."""
from __future__ import annotations

import threading
import time

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.feed import discovery as disc
from polymm.feed import shm
from polymm.feed.service import FeedService, parse_args
from polymm.notify import Notifier

WINDOW_S = 300


@pytest.fixture
def loop(shm_name, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    fake = FakePolymarket().start()
    w = int(time.time()) // WINDOW_S * WINDOW_S
    for t in (w, w + WINDOW_S):
        up, down = f"1{t}", f"2{t}"
        fake.books[up] = ([(0.45, 10)], [(0.55, 10)])
        fake.books[down] = ([(0.44, 10)], [(0.56, 10)])
        fake.list_market(t, WINDOW_S, up, down)
    args = parse_args(["--gamma-url", fake.gamma_url, "--ws-market-url", fake.ws_url, "--shm", shm_name,
                       "--window-s", str(WINDOW_S), "--stale-after-s", "0.5"])
    writer = shm.Writer(shm_name, ring_capacity=256)
    discoverer = disc.Discoverer(disc.GammaClient(args.gamma_url, WINDOW_S).fetch).start()
    service = FeedService(args, writer, discoverer, Notifier())
    stop = threading.Event()

    def run():
        while not stop.is_set():
            service.step(time.time())
            stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    reader = shm.Reader(shm_name)
    yield service, reader
    stop.set()
    thread.join(5)
    service.shutdown()
    discoverer.stop()
    writer.close()
    reader.close()
    fake.stop()
    shm.unlink(shm_name)



def wait_for(predicate, timeout_s: float = 15.0, what: str = "condition"):
    return waiting.wait_for(predicate, timeout_s, what, every_s=0.02)


@pytest.mark.slow
def test_a_stuck_stream_thread_is_replaced_and_the_segment_flagged_stale_meanwhile(loop):
    service, reader = loop
    wait_for(lambda: reader.snapshot().status == "connected" and service.ready_sent, what="connected")
    stuck = service.active
    start = reader.seq()
    release = threading.Event()
    stuck.on_frame = lambda data, recv_ts: release.wait(30)  # the thread hangs in its work, socket alive
    try:
        wait_for(lambda: service.active is not stuck and reader.snapshot().status == "connected", timeout_s=20,
                 what="replacement stream")
        assert "stale" in [u.status for u in reader.updates_since(start)]
        assert reader.snapshot().up.bid == 0.45
    finally:
        release.set()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_stream_thread_is_replaced(loop):
    service, reader = loop
    wait_for(lambda: reader.snapshot().status == "connected", what="connected")
    dead = service.active

    def die(data, recv_ts):
        raise SystemExit("thread killed for the test")  # escapes the stream's own error handling

    dead.on_frame = die
    dead._ws.abort()  # make it reconnect, so the next frame (the snapshot) kills it
    wait_for(lambda: service.active is not dead and reader.snapshot().status == "connected", what="replacement")
    assert not dead.is_alive()
