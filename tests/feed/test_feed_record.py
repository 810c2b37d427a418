"""`polymm-feed --record FILE` lines (contract 2), from ring entries."""
from __future__ import annotations

import dataclasses
import json
import math

from polymm.feed import record, shm
from polymm.feed.market import MarketIdentity


def update(status="connected", up_bid=0.48, window_start=1_800_000_000) -> shm.Update:
    up = shm.Leg(up_bid, 10.0, 0.52, 20.0, math.nan, 1.0, 2.0, 100.0, 5)
    down = shm.Leg(math.nan, math.nan, 0.53, 7.0, 0.5, 1.0, 2.0, 101.0, 5)
    return shm.Update(seq=5, window_start=window_start, status=status, crossed=False, tick_size=0.01, up=up, down=down)


def test_tick_line_has_contract_fields_with_null_for_empty_sides():
    line = record.tick_line(update(), None)
    assert line == {
        "ts": 101.0, "window_start": 1_800_000_000, "up_bid": 0.48, "up_ask": 0.52, "down_bid": None,
        "down_ask": 0.53, "up_bid_size": 10.0, "up_ask_size": 20.0, "down_bid_size": None, "down_ask_size": 7.0,
        "tick_size": 0.01,
    }
    json.dumps(line, allow_nan=False)  # strict JSON: no NaN anywhere


def test_tick_line_adds_market_parameters_of_the_same_window_only():
    market = MarketIdentity("0xc", "1", "2", window_start=1_800_000_000, window_end=1_800_000_900, tick_size=0.01,
                            min_order_size=5.0, fee_rate=0.07)

    class Snap:
        pass

    snap = Snap()
    snap.market = market
    line = record.tick_line(update(), snap)
    assert (line["window_end"], line["min_order_size"], line["fee_rate"]) == (1_800_000_900, 5.0, 0.07)
    snap.market = dataclasses.replace(market, window_start=1_800_000_900)
    assert "window_end" not in record.tick_line(update(), snap)


def test_entries_without_a_live_book_are_not_recorded():
    assert record.tick_line(update(status="rotating"), None) is None
    assert record.tick_line(update(status="stale"), None) is None
    assert record.tick_line(update(window_start=0), None) is None


def ref(price: float, ts: float, recv: float, open_price: float = 97_000.0, status: str = "captured") -> shm.Reference:
    return shm.Reference(price, ts, recv, math.nan, math.nan, math.nan, 1_800_000_000, open_price, 1_800_000_000.0,
                         status, True, 0, 1)


def test_tick_line_carries_the_btc_reference_price_and_the_windows_opening():
    line = record.tick_line(update(), None, ref(97_123.45, 99.0, 99.2))
    assert (line["btc"], line["btc_ts"], line["btc_open"]) == (97_123.45, 99.0, 97_000.0)
    unknown = record.tick_line(update(), None, ref(97_123.45, 99.0, 99.2, math.nan, "unknown"))
    assert unknown["btc_open"] is None
    json.dumps(unknown, allow_nan=False)
    assert "btc" not in record.tick_line(update(), None, None)


def test_each_line_gets_the_newest_reference_received_by_its_publish_time_never_a_later_one():
    refs = [ref(97_000.0, 98.0, 98.1), ref(97_010.0, 99.0, 99.1), ref(97_020.0, 100.0, 101.5)]
    assert record.reference_at(refs, 101.0).chainlink == 97_010.0  # the third arrived after the line
    assert record.reference_at(refs, 98.0) is None


def test_tick_line_records_each_legs_depth_best_first_when_the_segment_has_depth():
    base = update()
    up = shm.Leg(*[getattr(base.up, f) for f in ("bid", "bid_size", "ask", "ask_size", "last_trade", "exchange_ts",
                                               "recv_ts", "publish_ts", "seq")],
                 bids=((0.48, 10.0), (0.47, 3.0)), asks=((0.52, 20.0),))
    line = record.tick_line(shm.Update(seq=5, window_start=base.window_start, status="connected", crossed=False,
                                       tick_size=0.01, up=up, down=base.down), None)
    assert line["up_bids"] == [[0.48, 10.0], [0.47, 3.0]] and line["up_asks"] == [[0.52, 20.0]]
    assert "down_bids" not in line  # a leg without depth (top-of-book-only segment) records none


def test_recorder_writes_the_depth_the_feed_published_and_the_backtest_reads_it(tmp_path, shm_name):
    from polymm.trader.backtest.ticks_file import read_ticks

    w = shm.Writer(shm_name, ring_capacity=64, depth=3)
    try:
        w.set_market(window_start=1_800_000_000, window_end=1_800_000_900, condition_id="0x01", up_token="1",
                     down_token="2", tick_size=0.01, min_order_size=5.0, fee_rate=0.07)
        rec = record.Recorder(str(tmp_path / "ticks.jsonl"), shm_name)
        w.publish(1_800_000_000, (0.48, 10.0, 0.52, 20.0, math.nan, 1.0, 2.0),
                  (0.47, 5.0, 0.53, 7.0, math.nan, 1.0, 2.0), status="connected",
                  up_depth=([(0.48, 10.0), (0.47, 3.0), (0.46, 1.0), (0.45, 9.0)], [(0.52, 20.0)]),
                  down_depth=([(0.47, 5.0)], [(0.53, 7.0), (0.54, 1.0)]))
        rec.drain()
        rec.stop()
    finally:
        w.close()
        shm.unlink(shm_name)
    [(_, line)] = list(read_ticks(tmp_path / "ticks.jsonl"))
    assert line.depth("up") == ([(0.48, 10.0), (0.47, 3.0), (0.46, 1.0)], [(0.52, 20.0)])
    assert line.depth("down") == ([(0.47, 5.0)], [(0.53, 7.0), (0.54, 1.0)])
