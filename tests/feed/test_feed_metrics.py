"""polymm-feed's Prometheus endpoint, scraped from a real feed on the sim with prometheus_client's parser: the
values agree with `mmctl status --json`, a frozen socket moves the stale metric, a second bind is refused in
one line without touching the running feed's segment."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from tests.support.metrics import free_port, scrape
from tests.feed.test_feed_sim import Feed, wait_for

from polymm.feed.metrics import NAMES
from polymm.sim.testing import run_sim

pytestmark = pytest.mark.slow

WINDOW_S = 20


@pytest.fixture(scope="module")
def feed_with_metrics(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("feed_metrics")
    port = free_port()
    with run_sim(tmp_path, seed=5, window_s=WINDOW_S) as sim:
        feed = Feed(sim, tmp_path, WINDOW_S, "--stale-after-s", "4", "--metrics", f"127.0.0.1:{port}")
        try:
            feed.wait(lambda: feed.snapshot().status == "connected", what="the feed to connect")
            yield sim, feed, port
        finally:
            sim.admin.fault("clear")
            assert feed.stop() == 0, feed.log_text()[-3000:]


def mmctl_status(shm_name: str) -> dict:
    run = subprocess.run([sys.executable, "-m", "polymm.ctl.cli", "--shm", shm_name, "--socket", "/nonexistent.sock",
                          "status", "--json"], capture_output=True, text=True, timeout=30)
    return json.loads(run.stdout)


def test_scrape_agrees_with_mmctl_status(feed_with_metrics):
    sim, feed, port = feed_with_metrics

    def agree():
        before = mmctl_status(feed.shm_name)["feed"]
        m = scrape(port)
        after = mmctl_status(feed.shm_name)["feed"]
        if before["status"] != after["status"] or before["window_start"] != after["window_start"] \
                or before["reconnects"] != after["reconnects"] or not (before["warnings"] == after["warnings"] == []):
            return None  # something moved between the reads (a rotation, a reconnect): read again
        return before, m, after

    wait_for(lambda: scrape(port).maybe("polymm_feed_rtds_age_seconds") is not None, 30, what="an RTDS price")
    before, m, after = wait_for(agree, 30, what="a quiet moment to compare the scrape with mmctl status")
    assert set(NAMES) <= m.names()  # what the dashboard and the rules may use is really exported
    assert m.value("polymm_feed_up") == 1
    assert m.value("polymm_feed_status", status=before["status"]) == 1
    assert sum(m.value("polymm_feed_status", status=s) for s in ("starting", "connected", "stale", "rotating", "stopped")) == 1
    assert m.value("polymm_feed_healthy") == 1 and m.value("polymm_feed_stale") == 0
    assert m.value("polymm_feed_reconnects_total") == before["reconnects"]
    assert m.value("polymm_feed_window_start_timestamp_seconds") == before["window_start"]
    assert m.value("polymm_feed_window_end_timestamp_seconds") == before["window_end"]
    assert before["updates_total"] <= m.value("polymm_feed_book_updates_total") <= after["updates_total"]
    assert m.value("polymm_feed_crossed") == (1 if before["crossed"] else 0)
    assert m.value("polymm_feed_book_age_seconds") >= 0 and m.value("polymm_feed_heartbeat_age_seconds") >= 0
    # the BTC reference price (RTDS) as mmctl shows it
    assert m.value("polymm_feed_rtds_connected") == 1 and m.value("polymm_feed_rtds_age_seconds") >= 0
    if before["btc"] == after["btc"]:
        assert m.value("polymm_feed_btc_reference_usd") == before["btc"]
    if (before["btc_open"] is None) == (after["btc_open"] is None):
        assert m.value("polymm_feed_btc_open_known") == (0 if before["btc_open"] is None else 1)


def test_messages_by_type_latency_and_rotations(feed_with_metrics):
    sim, feed, port = feed_with_metrics
    first = scrape(port)
    assert first.value("polymm_feed_messages_total", type="book") >= 2  # a snapshot of each leg at least
    assert first.value("polymm_feed_messages_total", type="price_change") > 0
    types = {labels["type"] for labels in first.labelsets("polymm_feed_messages_total")}
    assert {"book", "price_change", "last_trade_price", "tick_size_change", "best_bid_ask"} <= types
    buckets = [(float(s.labels["le"]), s.value) for s in first.samples if s.name == "polymm_feed_decode_to_publish_seconds_bucket"]
    counts = [v for _le, v in sorted(buckets)]
    assert counts == sorted(counts) and counts[-1] == first.value("polymm_feed_decode_to_publish_seconds_count") > 0
    assert first.value("polymm_feed_decode_to_publish_seconds_sum") > 0
    window = first.value("polymm_feed_window_start_timestamp_seconds")
    rotations = first.value("polymm_feed_window_rotations_total")
    later = wait_for(lambda: (m := scrape(port)).value("polymm_feed_window_start_timestamp_seconds") > window and m,
                     WINDOW_S + 20, what="a rotation in the scrape")
    assert later.value("polymm_feed_window_rotations_total") > rotations
    # The count goes on growing: the sim's random market may leave a 20-s window's book alone (seen in CI: no
    # price_change from one window to the next), so the test moves the new window's book itself (a scripted step).
    changes = first.value("polymm_feed_messages_total", type="price_change")
    sim.admin.book([[0.41, 30.0], [0.40, 50.0]], [[0.59, 30.0], [0.60, 50.0]])
    later = wait_for(lambda: (m := scrape(port)).value("polymm_feed_messages_total", type="price_change") > changes
                     and m, 15, what="the scripted book's price_change in the scrape")
    # process metrics come with it (memory, CPU, open files) for the dashboard's health row
    assert later.value("process_resident_memory_bytes") > 0


def test_frozen_socket_moves_the_stale_metric(feed_with_metrics):
    sim, feed, port = feed_with_metrics
    wait_for(lambda: scrape(port).value("polymm_feed_stale") == 0, 20, what="a fresh feed")
    sim.admin.fault("freeze_market_ws", on=True)  # data stops, PONGs go on
    try:
        stale = wait_for(lambda: (m := scrape(port)).value("polymm_feed_stale") == 1 and m, 20, what="stale metric")
        assert stale.value("polymm_feed_healthy") == 0
    finally:
        sim.admin.fault("freeze_market_ws", on=False)
    wait_for(lambda: scrape(port).value("polymm_feed_stale") == 0, 30, what="the stale metric back to 0")


def test_a_second_feed_on_the_same_metrics_address_is_refused_in_one_line(feed_with_metrics):
    sim, feed, port = feed_with_metrics
    env = {**os.environ, **sim.env(), "POLYMM_SHM": feed.shm_name, "POLYMM_WINDOW_S": str(WINDOW_S),
           "POLYMM_FEED_METRICS": f"127.0.0.1:{port}"}
    env.pop("NOTIFY_SOCKET", None)
    run = subprocess.run([sys.executable, "-m", "polymm.feed.service"], env=env, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in run.stderr
    assert "Traceback" not in run.stderr
    # refused before it touched the segment: the running feed still owns it and still publishes
    assert feed.snapshot().writer_pid == feed.proc.pid
    wait_for(lambda: feed.snapshot().status == "connected", 15, what="the first feed still connected")
    assert scrape(port).value("polymm_feed_up") == 1


def test_bad_metrics_address_is_a_usage_error():
    run = subprocess.run([sys.executable, "-m", "polymm.feed.service", "--metrics", "localhost"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--metrics (POLYMM_FEED_METRICS)='localhost': expected HOST:PORT" in run.stderr
