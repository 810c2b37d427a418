"""polymm-sim's RTDS (sim/rtds.py) end to end: the documented shapes for both topics, the history dump, the
opening price at the window start, and the freeze/drop faults; then the feed's RTDS stream against it."""
from __future__ import annotations

import json
import time

import pytest
import websocket
from tests.support import waiting

from polymm.feed.rtds import reference as ref
from polymm.feed.rtds import wire
from polymm.feed.rtds.stream import RtdsStream
from polymm.ws import Backoff
from polymm.sim.testing import run_sim

pytestmark = pytest.mark.slow

WINDOW_S = 5


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim-rtds"), seed=5, window_s=WINDOW_S) as s:
        yield s


def frames(ws: websocket.WebSocket, n: int, timeout_s: float = 10.0) -> list[dict]:
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        try:
            text = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        if text.startswith("{"):
            out.append(json.loads(text))
    assert len(out) >= n, f"only {len(out)} of {n} RTDS messages"
    return out


def test_history_then_updates_for_both_topics_in_the_documented_shapes(sim):
    ws = websocket.create_connection(sim.urls["ws_rtds_url"], timeout=1)
    try:
        time.sleep(1.2)  # let the walk make a few whole-second points for the history
        ws.send(wire.subscription())
        got = frames(ws, 6)
    finally:
        ws.close()
    history = [m for m in got if m["type"] == "subscribe"]
    assert {m["topic"] for m in history} == {"crypto_prices", "crypto_prices_chainlink"}
    for m in history:
        assert set(m) == {"topic", "type", "timestamp", "payload"} and set(m["payload"]) == {"symbol", "data"}
        assert all(set(p) == {"timestamp", "value"} and isinstance(p["timestamp"], int) for p in m["payload"]["data"])
    updates = [m for m in got if m["type"] == "update"]
    link = next(m for m in updates if m["topic"] == "crypto_prices_chainlink")
    assert set(link["payload"]) == {"symbol", "timestamp", "value"} and link["payload"]["symbol"] == "btc/usd"
    assert link["payload"]["timestamp"] % 1000 == 0 and isinstance(link["timestamp"], int)
    binance = next(m for m in updates if m["topic"] == "crypto_prices")
    assert set(binance["payload"]) == {"symbol", "timestamp", "value", "full_accuracy_value"}
    assert binance["payload"]["symbol"] == "btcusdt"
    assert all(wire.Decoder().decode(json.dumps(m)) for m in got)


def test_a_bad_filter_is_answered_in_plain_text_and_nothing_is_sent_for_it(sim):
    ws = websocket.create_connection(sim.urls["ws_rtds_url"], timeout=5)
    try:
        ws.send(json.dumps({"action": "subscribe", "subscriptions": [{"topic": "crypto_prices_chainlink", "type": "*",
                                                                     "filters": "btc/usd"}]}))
        assert ws.recv().startswith("invalid Subscription.Filters")
        ws.send("PING")
        assert ws.recv() == "PONG"
    finally:
        ws.close()


def test_the_feed_stream_captures_the_sims_opening_price_and_survives_freeze_and_drop(sim):
    book = ref.ReferenceBook(WINDOW_S)
    stream = RtdsStream(sim.urls["ws_rtds_url"], book, stale_after_s=1.5, backoff=Backoff(0.05, 0.2)).start()
    try:
        waiting.wait_for(lambda: any(o.how == ref.CAPTURED for o in book.openings.values()), 20, "a captured opening")
        captured = next(o for o in book.openings.values() if o.how == ref.CAPTURED)
        markets = {m["window_start"]: m for m in sim.admin.state()["markets"]}
        assert captured.price == markets[captured.window_start]["open_price"]
        assert book.binance.price == pytest.approx(book.chainlink.price * 1.0003, abs=0.01)

        sim.admin.fault("freeze_rtds", on=True)
        waiting.wait_for(lambda: stream.reconnects >= 1, 15, "reconnect after the RTDS freeze")
        assert "no Chainlink price" in stream.last_error
        sim.admin.fault("freeze_rtds", on=False)
        before = book.chainlink.updates
        waiting.wait_for(lambda: book.chainlink.updates > before, 15, "prices again after the freeze")

        dropped = sim.admin.fault("drop_ws", channel="rtds")["dropped"]
        assert dropped >= 1
        after_drop = stream.connections
        waiting.wait_for(lambda: stream.connections > after_drop and book.chainlink.updates > before + 2, 15,
                         "resubscribed after the drop")
    finally:
        stream.stop()


def test_feed_process_records_the_reference_price_and_the_backtest_reads_it(sim, tmp_path):
    """sim RTDS -> polymm-feed -> shared memory REF block -> recorder lines -> backtest reader."""
    import os
    import signal
    import subprocess
    import sys
    import uuid

    from polymm.feed import shm
    from polymm.trader.backtest.ticks_file import read_ticks

    name = f"polymm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    ticks = tmp_path / "ticks.jsonl"
    env = {**os.environ, **sim.env(), "POLYMM_SHM": name, "POLYMM_WINDOW_S": str(WINDOW_S)}
    env.pop("NOTIFY_SOCKET", None)
    log = tmp_path / "feed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "polymm.feed.service", "--record", str(ticks)], env=env,
                                stdout=out, stderr=out)
    try:
        def opened_lines():
            if not ticks.exists():
                return []
            rows = [json.loads(x) for x in ticks.read_text().splitlines() if x.strip()]
            return [r for r in rows if r.get("btc_open") is not None]

        rows = waiting.wait_for(opened_lines, 30, "recorded lines with the window's opening price",
                                detail=lambda: "\n" + log.read_text()[-2000:])
        markets = {m["window_start"]: m for m in sim.admin.state()["markets"]}
        row = rows[0]
        assert row["btc_open"] == markets[row["window_start"]]["open_price"] and row["btc"] > 0 and row["btc_ts"] <= row["ts"]
        with shm.Reader(name) as reader:
            assert reader.snapshot().ref.rtds_connected
        # the capture is cross-checked against Gamma's stated price to beat (the sim states its own open)
        waiting.wait_for(lambda: "agrees with Gamma's price to beat" in log.read_text(), 30, "the cross-check",
                         detail=lambda: "\n" + log.read_text()[-2000:])
        assert "differs from the exchange's stated price to beat" not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-3000:]
        shm.unlink(name)
    parsed = [line for _, line in read_ticks(ticks)]
    assert any(line.btc_open is not None for line in parsed)
