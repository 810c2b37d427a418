"""mmctl status's reference-price line (ctl/reference_line.py)."""
from __future__ import annotations

import math

from polymm.ctl.reference_line import reference_line


def test_the_documented_line():
    assert reference_line(97_123.45, 0.14, 97_050.0, fair_up=0.64) == (
        "BTC 97,123.45 chainlink 140ms · open 97,050.00 (+0.08%) · fair up 0.64 down 0.36")


def test_stale_price_unknown_open_and_no_fair_value_are_said_in_words():
    line = reference_line(97_123.45, 12.34, math.nan, "unknown (feed started after the open)", None)
    assert line == "BTC 97,123.45 chainlink 12.3s STALE · open unknown (feed started after the open) · fair —"
    assert reference_line(None, None, None) == "BTC — (no chainlink price yet) · open unknown · fair —"
    assert reference_line(96_000.0, 0.5, 97_000.0, fair_up=0.02).endswith("(-1.03%) · fair up 0.02 down 0.98")


def test_mmctl_status_shows_the_line_from_the_segment_and_the_traders_fair_value(shm_name):
    from polymm.ctl import protocol as p
    from polymm.ctl.status import build_status, feed_health, render_status
    from polymm.feed import shm

    t = 1_800_000_000
    w = shm.Writer(shm_name, ring_capacity=64)
    try:
        w.set_market(window_start=t, window_end=t + 900, condition_id="0x01", up_token="1", down_token="2",
                     tick_size=0.01, min_order_size=5, fee_rate=0.07, status="connected")
        w.set_reference((97_123.45, t + 100.0, t + 100.1), (97_150.0, t + 100.0, t + 100.05), (t, 97_050.0, t + 0.0, "captured"),
                        True, 0, 10)
        with shm.Reader(shm_name) as r:
            feed = feed_health(r.snapshot(), t + 100.14)
    finally:
        w.close()
        shm.unlink(shm_name)
    trader = p.StatusReply(state="running", healthy=True, fair_up=0.64)
    text = render_status(build_status(feed, trader, None), t + 100.14)
    assert "BTC 97,123.45 chainlink 140ms · open 97,050.00 (+0.08%) · fair up 0.64 down 0.36" in text
    no_trader = render_status(build_status(feed, None, "not running"), t + 100.14)
    assert "open 97,050.00 (+0.08%) · fair —" in no_trader
