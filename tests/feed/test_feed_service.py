"""polymm-feed as a real process against the scripted fake: sd_notify, signals, rotation, Gamma delays,
recording, single-writer rule."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from tests.support import waiting
from tests.support.feed import FakePolymarket

from polymm.feed import shm


def tokens(window_start: int) -> tuple[str, str]:
    return f"1{window_start}", f"2{window_start}"


def price_for(window_start: int, window_s: int) -> float:
    """Each window's book has its own best bid, so a book published under the wrong window shows."""
    return round(0.10 + (window_start // window_s) % 50 * 0.01, 2)


def list_windows(fake: FakePolymarket, window_s: int, first: int, count: int, skip: set[int] = frozenset()) -> None:
    for i in range(count):
        w = first + i * window_s
        up, down = tokens(w)
        p = price_for(w, window_s)
        fake.books[up] = ([(p, 10)], [(p + 0.3, 10)])
        fake.books[down] = ([(0.6 - p, 10)], [(0.9 - p, 10)])
        if w not in skip:
            fake.list_market(w, window_s, up, down)


class NotifySocket:
    """A fake systemd NOTIFY_SOCKET (AF_UNIX datagram) collecting every message."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except socket.timeout:
                continue
            except OSError:
                return

    def lines(self) -> list[str]:
        return [line for msg in list(self.messages) for line in msg.split("\n")]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def start_feed(fake, shm_name, window_s, tmp_path, *extra, env_extra=None) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        POLYMM_GAMMA_URL=fake.gamma_url,
        POLYMM_WS_MARKET_URL=fake.ws_url,
        POLYMM_RTDS_URL=fake.rtds_url,
        POLYMM_SHM=shm_name,
        POLYMM_WINDOW_S=str(window_s),
        PYTHONUNBUFFERED="1",
    )
    env.pop("NOTIFY_SOCKET", None)
    env.pop("JOURNAL_STREAM", None)
    env.update(env_extra or {})
    log = open(tmp_path / "feed.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "polymm.feed.service", *extra], env=env, stdout=log, stderr=log)


def stop_feed(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)



def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition"):
    return waiting.wait_for(predicate, timeout_s, what, every_s=0.02)


@pytest.fixture
def fake():
    server = FakePolymarket().start()
    yield server
    server.stop()


@pytest.fixture
def segment(shm_name):
    yield shm_name
    shm.unlink(shm_name)


@pytest.mark.slow
def test_sd_notify_ready_status_watchdog_and_stopping_and_clean_sigterm(fake, segment, tmp_path):
    window_s = 300
    now_w = int(time.time()) // window_s * window_s
    list_windows(fake, window_s, now_w, 3)
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    proc = start_feed(fake, segment, window_s, tmp_path,
                      env_extra={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    try:
        wait_for(lambda: "READY=1" in notify.lines(), what="READY=1")
        reader = shm.Reader(segment, wait_s=5)
        snap = reader.snapshot()
        # READY only after the first book was published
        assert snap.status == "connected" and snap.up.bid == price_for(now_w, window_s)
        wait_for(lambda: notify.lines().count("WATCHDOG=1") >= 3, what="watchdog pets")
        hb = reader.snapshot().heartbeat
        wait_for(lambda: reader.snapshot().heartbeat > hb, what="heartbeat while the market is quiet")
        assert stop_feed(proc) == 0
        wait_for(lambda: "STOPPING=1" in notify.lines(), timeout_s=5, what="STOPPING=1")
    finally:
        stop_feed(proc)
        notify.close()
    status = [line for line in notify.lines() if line.startswith("STATUS=")]
    assert status and f"btc-updown-15m-{now_w}" in status[-1] and "upd/s" in status[-1] and "age" in status[-1]
    assert reader.snapshot().status == "stopped" and os.path.exists(f"/dev/shm/{segment}")
    reader.close()


@pytest.mark.slow
def test_rotation_across_windows_never_publishes_a_book_under_the_wrong_window(fake, segment, tmp_path):
    window_s = 3
    first = int(time.time()) // window_s * window_s
    list_windows(fake, window_s, first, 8)
    proc = start_feed(fake, segment, window_s, tmp_path, "--stale-after-s", "30", "--record", str(tmp_path / "ticks.jsonl"))
    try:
        reader = shm.Reader(segment, wait_s=10)
        start_seq = 0
        seen = wait_for(lambda: (s := {u.window_start for u in reader.updates_since(start_seq) if u.status == "connected"})
                        and len(s) >= 3 and s, timeout_s=20, what="three windows")
        updates = reader.updates_since(start_seq)
    finally:
        assert stop_feed(proc) == 0
    connected = [u for u in updates if u.status == "connected"]
    for u in connected:
        assert u.up.bid == price_for(u.window_start, window_s), u
    # never early: no window's book is published before that window starts
    windows = sorted(seen)
    for w in windows[1:]:
        first_pub = min(max(u.up.publish_ts, u.down.publish_ts) for u in connected if u.window_start == w)
        assert first_pub >= w, (w, first_pub)
    # no gap (structural, not timed): the next market is connected ahead of its start, and at a boundary
    # the switch publishes the book that stream already holds instead of waiting for a new snapshot
    log_text = (tmp_path / "feed.log").read_text()
    assert "ahead of its start" in log_text, log_text[-3000:]
    assert re.search(r"window \d+-\d+: market .*; book published", log_text), log_text[-3000:]
    lines = [json.loads(x) for x in (tmp_path / "ticks.jsonl").read_text().splitlines()]
    assert lines and all(line["up_bid"] == price_for(line["window_start"], window_s) for line in lines)
    assert {"ts", "window_start", "up_bid", "up_ask", "down_bid", "down_ask", "up_bid_size", "up_ask_size",
            "down_bid_size", "down_ask_size", "window_end", "tick_size", "min_order_size", "fee_rate"} <= set(lines[0])
    assert {line["window_start"] for line in lines} >= set(windows[:3])


@pytest.mark.slow
def test_gamma_not_knowing_the_next_market_is_retried_logged_and_shown(fake, segment, tmp_path):
    window_s = 6
    now = time.time()
    first = int(now) // window_s * window_s
    if first + window_s - now < 2.5:  # leave time to start before the boundary
        time.sleep(first + window_s - now + 0.1)
        first += window_s
    nxt = first + window_s
    list_windows(fake, window_s, first, 4, skip={nxt})
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    proc = start_feed(fake, segment, window_s, tmp_path, env_extra={"NOTIFY_SOCKET": notify.path})
    try:
        reader = shm.Reader(segment, wait_s=10)
        wait_for(lambda: reader.snapshot().market.window_start == first and reader.snapshot().status == "connected", what="first")
        wait_for(lambda: time.time() > nxt + 1.0, timeout_s=10, what="the next window to start")
        snap = reader.snapshot()
        assert snap.status == "rotating" and snap.up.bid != snap.up.bid  # no old book shown after its window
        up, down = tokens(nxt)
        fake.list_market(nxt, window_s, up, down)  # Gamma finally lists it
        snap = wait_for(lambda: (s := reader.snapshot()).market.window_start == nxt and s.status == "connected" and s,
                        timeout_s=15, what="late market")
        assert snap.up.bid == price_for(nxt, window_s)
    finally:
        stop_feed(proc)
        notify.close()
        reader.close()
    log = (tmp_path / "feed.log").read_text()
    assert f"market btc-updown-15m-{nxt} not available: Gamma does not know btc-updown-15m-{nxt} yet" in log
    assert any("not know" in line for line in notify.lines() if line.startswith("STATUS="))


@pytest.mark.slow
def test_second_feed_on_the_same_segment_refuses_naming_the_live_pid(fake, segment, tmp_path):
    window_s = 300
    list_windows(fake, window_s, int(time.time()) // window_s * window_s, 2)
    first = start_feed(fake, segment, window_s, tmp_path)
    try:
        reader = shm.Reader(segment, wait_s=10)
        wait_for(lambda: reader.snapshot().status == "connected", what="first feed")
        second = subprocess.run(
            [sys.executable, "-m", "polymm.feed.service"],
            env={**os.environ, "POLYMM_SHM": segment, "POLYMM_GAMMA_URL": fake.gamma_url,
                 "POLYMM_WS_MARKET_URL": fake.ws_url, "POLYMM_WINDOW_S": str(window_s)},
            capture_output=True, text=True, timeout=30,
        )
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "refusing to start a second writer" in second.stderr
        assert "Traceback" not in second.stderr
        assert reader.snapshot().status == "connected" and reader.snapshot().writer_pid == first.pid
        reader.close()
    finally:
        assert stop_feed(first) == 0


def test_bad_options_are_refused_with_a_clear_message():
    out = subprocess.run([sys.executable, "-m", "polymm.feed.service", "--window-s", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--window-s must be positive" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "polymm.feed.service"], env={**os.environ, "POLYMM_WINDOW_S": "abc"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "POLYMM_WINDOW_S='abc' is not an integer" in out.stderr


def test_under_journald_lines_carry_syslog_priorities_and_no_timestamp(segment, tmp_path):
    env = {**os.environ, "JOURNAL_STREAM": "8:12345", "POLYMM_GAMMA_URL": "http://127.0.0.1:9",
           "POLYMM_WS_MARKET_URL": "ws://127.0.0.1:9/ws", "POLYMM_SHM": segment}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "polymm.feed.service"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)  # long enough to fail a Gamma lookup (connection refused) at least once
    finally:
        assert stop_feed(proc) == 0
    lines = proc.stdout.read().splitlines()
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>") for line in lines), lines
    assert any(line.startswith("<4>polymm.feed.discovery: market btc-updown-15m-") and "Gamma unreachable" in line
               for line in lines)
    assert any(line.startswith("<6>polymm.feed: SIGTERM received") for line in lines)


def test_a_misspelled_or_unknown_series_stops_the_feed_at_start_with_words():
    for name, words in (("etc-5m", "did you mean eth-5m?"), ("doge-15m", "unknown asset 'doge'")):
        out = subprocess.run([sys.executable, "-m", "polymm.feed.service", "--series", name],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_series_names_its_own_segment_and_metrics_port(monkeypatch):
    from polymm.feed.service import parse_args

    monkeypatch.delenv("POLYMM_FEED_METRICS")  # the tests' default is off
    args = parse_args(["--series", "eth-5m"])
    assert (args.series.name, args.window_s, args.shm, args.metrics) == ("eth-5m", 300, "poly_tob_shm_eth-5m",
                                                                         "127.0.0.1:9906")
    default = parse_args([])
    assert (default.series.name, default.window_s, default.shm, default.metrics) == ("btc-15m", 900, "poly_tob_shm",
                                                                                     "127.0.0.1:9891")
    monkeypatch.setenv("POLYMM_FEED_METRICS", "0.0.0.0:9891")  # one environment file for every series
    assert parse_args(["--series", "sol-1h"]).metrics == "0.0.0.0:9916"
    assert parse_args(["--series", "sol-1h", "--metrics", "127.0.0.1:7000"]).metrics == "127.0.0.1:7000"
