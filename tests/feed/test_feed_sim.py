"""polymm-feed (a real `python -m polymm.feed.service` process) against polymm-sim.

One sim and one feed serve the tests of the first module fixture (20 s windows); they run in file order,
and each test puts the faults it set back. Gamma-not-knowing-the-next-market uses its own sim started with
`--listed-ahead 0`: there the next market appears in Gamma only when its window starts.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid

import pytest
from tests.support import waiting

from polymm.feed import shm
from polymm.sim.testing import run_sim

pytestmark = pytest.mark.slow

WINDOW_S = 20


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition", log=None):
    def log_tail() -> str:
        if log is None or not os.path.exists(log):
            return ""
        return "\n--- feed log ---\n" + "\n".join(open(log).read().splitlines()[-30:])
    return waiting.wait_for(predicate, timeout_s, what, detail=log_tail)


class Feed:
    def __init__(self, sim, tmp_path, window_s: int, *extra: str) -> None:
        self.shm_name = f"polymm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.log = str(tmp_path / f"feed-{self.shm_name}.log")
        env = {**os.environ, **sim.env(), "POLYMM_SHM": self.shm_name, "POLYMM_WINDOW_S": str(window_s)}
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "polymm.feed.service", *extra], env=env,
                                         stdout=out, stderr=out)
        self.reader = shm.Reader(self.shm_name, wait_s=20)

    def snapshot(self) -> shm.Snapshot:
        return self.reader.snapshot()

    def wait(self, predicate, timeout_s: float = 30.0, what: str = "condition"):
        return wait_for(predicate, timeout_s, what, self.log)

    def log_text(self) -> str:
        return open(self.log).read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.reader.close()
        shm.unlink(self.shm_name)
        return code


def rest_top(sim, token: str) -> tuple[float, float, float, float]:
    """The sim's top of book from CLOB GET /book (sorted here: never trust the order)."""
    with urllib.request.urlopen(f"{sim.urls['clob_url']}/book?token_id={token}", timeout=5) as r:
        book = json.loads(r.read())
    bids = [(float(lv["price"]), float(lv["size"])) for lv in book["bids"]]
    asks = [(float(lv["price"]), float(lv["size"])) for lv in book["asks"]]
    bid = max(bids) if bids else (math.nan, math.nan)
    ask = min(asks) if asks else (math.nan, math.nan)
    return bid[0], bid[1], ask[0], ask[1]


def leg_top(leg: shm.Leg) -> tuple[float, float, float, float]:
    return leg.bid, leg.bid_size, leg.ask, leg.ask_size


@pytest.fixture(scope="module")
def sim_feed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("feed_sim")
    with run_sim(tmp_path, seed=7, window_s=WINDOW_S) as sim:
        # short enough for the freeze test; the sim's quiet spells can also trip it (a reconnect, harmless)
        feed = Feed(sim, tmp_path, WINDOW_S, "--stale-after-s", "4")
        try:
            feed.wait(lambda: feed.snapshot().status == "connected", what="the feed to connect")
            yield sim, feed
        finally:
            sim.admin.fault("clear")
            code = feed.stop()
            assert code == 0, feed.log_text()[-3000:]


def test_feed_publishes_the_sims_top_of_book_for_both_legs(sim_feed):
    sim, feed = sim_feed
    live = sim.admin.live_market()
    snap = feed.wait(lambda: (s := feed.snapshot()).market.window_start == live["window_start"] and s, what="live window")
    market = snap.market
    assert (market.up_token, market.down_token, market.condition_id) == (live["up_token"], live["down_token"],
                                                                  live["condition_id"])
    assert market.window_end == live["window_end"] and market.min_order_size == 5 and market.fee_rate == 0.07

    def same_as_sim():
        # the sim requotes continuously: compare a REST read taken between two identical feed reads
        before = feed.snapshot()
        sim_up, sim_down = rest_top(sim, before.market.up_token), rest_top(sim, before.market.down_token)
        after = feed.snapshot()
        if before.seq != after.seq or after.status != "connected":
            return False
        return leg_top(after.up) == sim_up and leg_top(after.down) == sim_down

    feed.wait(same_as_sim, timeout_s=20, what="shm top of book == sim /book for both legs")
    assert not feed.snapshot().crossed


def test_dropped_connection_is_flagged_stale_and_recovered(sim_feed):
    sim, feed = sim_feed
    feed.wait(lambda: feed.snapshot().status == "connected", what="connected")
    start, reconnects = feed.reader.seq(), feed.snapshot().reconnects
    sim.admin.fault("drop_ws", channel="market")
    feed.wait(lambda: (s := feed.snapshot()).status == "connected" and s.reconnects > reconnects,
              what="reconnect after drop")
    statuses = [u.status for u in feed.reader.updates_since(start)]
    assert "stale" in statuses, statuses
    assert statuses.index("stale") < max(i for i, s in enumerate(statuses) if s == "connected")
    assert "connection closed" in feed.log_text() or "server sent close" in feed.log_text()


def test_silent_freeze_is_detected_from_data_age_and_recovered(sim_feed):
    sim, feed = sim_feed
    feed.wait(lambda: feed.snapshot().status == "connected", what="connected")
    reconnects = feed.snapshot().reconnects
    sim.admin.fault("freeze_market_ws", on=True)  # data stops, PONGs go on
    try:
        # the trader sees it in the segment's status (no assertion on measured ages: the status is the signal)
        feed.wait(lambda: feed.snapshot().status == "stale", timeout_s=15, what="stale flag")
    finally:
        sim.admin.fault("freeze_market_ws", on=False)
    feed.wait(lambda: (s := feed.snapshot()).status == "connected" and s.reconnects > reconnects and s.data_age_s() < 4,
              timeout_s=30, what="recovery after the freeze")
    assert "no data for" in feed.log_text() and "socket may be frozen" in feed.log_text()


def test_tick_size_change_is_published_for_the_current_window(sim_feed):
    sim, feed = sim_feed
    feed.wait(lambda: feed.snapshot().status == "connected" and feed.snapshot().market.tick_size == 0.01, what="tick 0.01")
    start = feed.reader.seq()
    window = feed.snapshot().market.window_start
    sim.admin.fault("tick_size", tick=0.001)
    # the synthetic market flips the live window back to 0.01 on its next step: both changes must show
    feed.wait(lambda: any(u.tick_size == 0.001 and u.window_start == window for u in feed.reader.updates_since(start)),
              timeout_s=10, what="tick 0.001 in the segment")
    feed.wait(lambda: (s := feed.snapshot()).market.tick_size == 0.01 and s.up.bid == s.up.bid and s.status == "connected",
              timeout_s=15, what="tick back to 0.01 with a confirmed book")


def test_rotation_across_two_windows_without_a_book_under_the_wrong_window(sim_feed):
    sim, feed = sim_feed
    start = feed.reader.seq()
    first = feed.snapshot().market.window_start
    feed.wait(lambda: feed.snapshot().market.window_start >= first + 2 * WINDOW_S and feed.snapshot().status == "connected",
              timeout_s=2 * WINDOW_S + 15, what="two rotations")
    updates = feed.reader.updates_since(start)
    assert updates and updates[0].seq == start + 1  # the ring still holds all of them
    windows = sorted({u.window_start for u in updates})
    assert {first + WINDOW_S, first + 2 * WINDOW_S} <= set(windows)
    for u in updates:
        if u.status != "connected":
            continue
        published = max(u.up.publish_ts, u.down.publish_ts)
        assert u.window_start <= published < u.window_start + WINDOW_S, u
    # No gap at the boundary: the next window's stream was connected ahead of time, so between the old
    # window's last book and the new window's first one the segment never went stale (how many seconds that
    # took is the machine's business, not this test's: no timing is asserted).
    for w in (first + WINDOW_S, first + 2 * WINDOW_S):
        around = [u for u in updates if w - WINDOW_S <= u.window_start <= w]
        old = [i for i, u in enumerate(around) if u.window_start == w - WINDOW_S and u.status == "connected"]
        if not old and w == first + WINDOW_S:
            # the test began as the first window was already handing over (after its last connected book): that
            # boundary was not seen from its old side; the next one always is, whole
            continue
        last_old = max(old)
        first_new = min(i for i, u in enumerate(around) if u.window_start == w and u.status == "connected")
        between = around[last_old + 1:first_new]
        assert all(u.status in ("connected", "rotating") for u in between), [u.status for u in between]
        new_book = around[first_new]
        assert new_book.up.bid == new_book.up.bid or new_book.down.bid == new_book.down.bid, new_book
    log = feed.log_text()
    assert f"connecting to the next window's market btc-updown-15m-{first + WINDOW_S} ahead of its start" in log
    # A shadow stream's pre-window quiet is not held against it when it goes live: every silence detection
    # fires on time (~stale-after), never with the pre-connect period added.
    ages = [float(m) for m in re.findall(r"no data for \w+ leg for ([0-9.]+)s", log)]
    assert all(age < 4 + 0.8 for age in ages), ages


def test_gamma_not_knowing_the_next_market_is_retried_and_the_feed_catches_up(tmp_path):
    window_s = 20
    with run_sim(tmp_path, seed=3, window_s=window_s, extra_args=("--listed-ahead", "0")) as sim:
        feed = Feed(sim, tmp_path, window_s, "--stale-after-s", "5")
        try:
            first = feed.wait(lambda: (s := feed.snapshot()).status == "connected" and s.market.window_start, what="connect")
            nxt = first + window_s
            snap = feed.wait(lambda: (s := feed.snapshot()).market.window_start == nxt and s.status == "connected" and s,
                             timeout_s=window_s + 15, what="the next window's market once Gamma lists it")
            assert snap.market.up_token == sim.admin.live_market()["up_token"]
        finally:
            code = feed.stop()
        log = feed.log_text()
        assert code == 0
        assert f"market btc-updown-15m-{nxt} not available: Gamma does not know btc-updown-15m-{nxt} yet" in log
        # no gap longer than the urgent retry period once the window began
        found = [line for line in log.splitlines() if f"market btc-updown-15m-{nxt} found" in line]
        assert found, log[-2000:]
