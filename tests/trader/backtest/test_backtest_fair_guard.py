"""The fair-value guard in the backtest (issue 16): a recording where S1, unguarded, buys the leg the BTC reference
price says is losing late in the window, and loses; with `s1.fair_guard` it does not enter."""
from __future__ import annotations

from tests.support.strategy import WS, config, write_ticks

from polymm.trader.backtest.runner import Backtest
from polymm.trader.backtest.ticks_file import read_ticks

OPEN = 97_000.0


def recording(with_btc: bool = True) -> list[dict]:
    """Two-second lines over one window. BTC falls from the open to -0.31% by t=600 s and stays there, so Down is
    all but certain; the book nevertheless bids Up at 0.62 from t=700 s (a stale quoter) and Up's ask touches
    0.62 at t=704 s: an S1 entry there fills. The market resolves Down."""
    rows = []
    for t in range(0, 900, 2):
        btc = OPEN * (1 - 0.0031 * min(t, 600) / 600)
        if t < 700:
            up_bid, up_ask = 0.50, 0.51
        elif t == 704:
            up_bid, up_ask = 0.61, 0.62
        else:
            up_bid, up_ask = 0.62 if t < 704 else 0.60, 0.63
        row = {"ts": WS + t, "window_start": WS, "up_bid": up_bid, "up_ask": up_ask,
               "down_bid": round(1 - up_ask, 2), "down_ask": round(1 - up_bid, 2)}
        if with_btc:
            row.update(btc=round(btc, 2), btc_ts=WS + t - 0.3, btc_open=OPEN)
        rows.append(row)
    rows[-1]["winner"] = "down"
    return rows


def run(tmp_path, rows, **settings):
    path = write_ticks(tmp_path / "ticks.jsonl", rows)
    return Backtest(config(**settings), step_s=0.25).run(read_ticks(path))


def test_unguarded_s1_buys_up_late_and_loses_guarded_s1_stays_out(tmp_path):
    plain = run(tmp_path, recording())
    (window,) = plain.windows
    assert window["winner"] == "down"
    bought = [f for f in window["fills"] if f["side"] == "BUY"]
    assert bought and all(f["leg"] == "up" and f["price"] == 0.62 for f in bought)
    assert plain.pnl()["s1"] < 0

    guarded = run(tmp_path, recording(), **{"s1.fair_guard": True})
    assert guarded.windows[0]["fills"] == [] and guarded.pnl().get("s1", 0.0) == 0.0


def test_guarded_s1_does_not_enter_on_a_recording_without_the_reference_price(tmp_path):
    guarded = run(tmp_path, recording(with_btc=False), **{"s1.fair_guard": True})
    assert guarded.windows[0]["fills"] == []
    unguarded = run(tmp_path, recording(with_btc=False))
    assert unguarded.windows[0]["fills"]
