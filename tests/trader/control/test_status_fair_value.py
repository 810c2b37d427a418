"""The trader's fair value in its status (issue 16): the engine's market view carries it from the snapshot's BTC
reference price; the status reply and the STATUS= line show it; unknown when the price is stale."""
from __future__ import annotations

import dataclasses
import math
import time

from tests.support.engine import FakeCore, FakeReader, snapshot

from polymm.ctl import protocol as p
from polymm.feed.shm import Reference
from polymm.trader.control.handler import ConfigStore, TraderControlHandler, summary_line
from polymm.trader.decision.fair_value import FairValue
from polymm.trader.engine import Engine, market_view


def ref(now: float, window_start: int, price: float, age_s: float = 0.2, open_price: float = 97_000.0) -> Reference:
    return Reference(price, now - age_s, now - age_s + 0.05, math.nan, math.nan, math.nan, window_start, open_price,
                     float(window_start), "captured", True, 0, 10)


def test_market_view_carries_btc_open_and_fair_value_and_no_fair_value_when_stale():
    now = time.time()
    w = int(now) - 10
    snap = dataclasses.replace(snapshot(now=now, window_start=w, window_s=900), ref=ref(now, w, 97_000.0))
    view = market_view(snap, now=now, stale_feed_ms=2000, fair=FairValue(), stale_ref_ms=5000)
    assert (view.btc, view.btc_open, view.fair_up) == (97_000.0, 97_000.0, 0.5)
    assert 150 <= view.btc_age_ms <= 250
    stale = dataclasses.replace(snap, ref=ref(now, w, 97_000.0, age_s=6.0))
    assert math.isnan(market_view(stale, now=now, stale_feed_ms=2000, fair=FairValue(), stale_ref_ms=5000).fair_up)
    other_window = dataclasses.replace(snap, ref=ref(now, w - 900, 97_000.0))
    assert math.isnan(market_view(other_window, now=now, stale_feed_ms=2000, fair=FairValue()).btc_open)


def test_status_reply_and_status_line_show_the_fair_value(tmp_path):
    store = ConfigStore(None, tmp_path / "overrides.json")
    store.load()
    now = time.time()
    w = int(now) - 10
    snap = dataclasses.replace(snapshot(now=now, window_start=w, window_s=900), ref=ref(now, w, 97_100.0))
    engine = Engine(FakeReader(snap), FakeCore(), store.current)
    view = market_view(snap, now=now, stale_feed_ms=2000, fair=FairValue(), stale_ref_ms=5000)
    engine.status = dataclasses.replace(engine.status, market_view=view, config=store.current)
    handler = TraderControlHandler(engine, engine.core, store)
    reply = handler.status(p.StatusRequest())
    assert reply.fair_up is not None and 0.5 < reply.fair_up < 1.0
    assert f"fair up {reply.fair_up:.2f}" in summary_line(handler)
