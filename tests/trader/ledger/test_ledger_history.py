"""History rows and totals: what each window earned, grouped by hour or day, with win rate and drawdown."""
from __future__ import annotations

import pytest

from tests.support.ledger import fill, market
from polymm.trader.ledger.history import WindowInfo, build, window_row
from polymm.trader.model import Leg, Side
from polymm.trader.decision.positions import fold, pnl_summary

T0 = 1_800_000_000 - 1_800_000_000 % 86400  # a UTC midnight


def info(m, winner=None):
    return WindowInfo(m.condition_id, m.window_start, m.window_end, winner)


def test_a_window_held_to_resolution_splits_into_realised_and_payout():
    m = market(T0)
    fills = [fill("t1", Leg.UP, Side.BUY, 0.60, 10, T0 + 1, role="taker", fee=0.168),
             fill("t2", Leg.UP, Side.SELL, 0.70, 4, T0 + 20),
             fill("t3", Leg.DOWN, Side.BUY, 0.30, 5, T0 + 30)]
    row = window_row(info(m, "up"), fills)
    assert row.trades == 3
    assert row.volume == pytest.approx(6.0 + 2.8 + 1.5)
    assert row.maker_share == pytest.approx(round(4.3 / 10.3, 4))
    assert row.fees == pytest.approx(0.168)
    assert row.realised == pytest.approx(0.4 - 0.168)  # 4 sold 0.10 above cost, less the taker fee
    assert row.payout == pytest.approx(6 * 0.4 - 5 * 0.3)  # 6 Up held pay 1 (cost 0.60), 5 Down pay 0
    assert row.payout_pusd == pytest.approx(6.0)
    assert row.net == pytest.approx(row.realised + row.payout)
    trader = pnl_summary(fold([(m.condition_id, f) for f in fills], {m.condition_id: Leg.UP}), {})
    assert row.net == pytest.approx(trader["total"]["realised"], abs=1e-9)


def test_an_unresolved_window_counts_held_shares_as_open_not_as_pnl():
    m = market(T0)
    row = window_row(info(m), [fill("t1", Leg.UP, Side.BUY, 0.60, 10, T0 + 1)])
    assert (row.net, row.payout, row.open_shares, row.unresolved) == (0.0, 0.0, 10.0, 1)


def synthetic(nets):
    """One window per net: buy 10 Up at 0.50, sell at 0.50 + net/10 (maker, no fee)."""
    windows, fills = [], []
    for i, net in enumerate(nets):
        m = market(T0 + 60 * i * 30)  # every 30 minutes
        windows.append(info(m, "up"))
        fills.append((m.condition_id, fill(f"b{i}", Leg.UP, Side.BUY, 0.5, 10, m.window_start + 1)))
        fills.append((m.condition_id, fill(f"s{i}", Leg.UP, Side.SELL, round(0.5 + net / 10, 4), 10,
                                            m.window_start + 2)))
    return windows, fills


def test_totals_are_the_sum_of_the_rows_whatever_the_grouping():
    windows, fills = synthetic([0.5, -0.2, 0.3, -0.4, -0.1, 0.6, 0.2])
    per_window = build(windows, fills, by="window")
    for by in ("window", "hour", "day"):
        h = build(windows, fills, by=by)
        assert h.totals.net == pytest.approx(sum(r.net for r in h.rows))
        assert h.totals.trades == sum(r.trades for r in h.rows) == 14
        assert h.totals.volume == pytest.approx(sum(r.volume for r in h.rows))
        assert h.totals.net == pytest.approx(per_window.totals.net)
    assert len(build(windows, fills, by="hour").rows) == 4  # two windows an hour over 3.5 hours
    assert len(build(windows, fills, by="day").rows) == 1


def test_win_rate_best_worst_and_drawdown_of_cumulative_net():
    windows, fills = synthetic([0.5, -0.2, 0.3, -0.4, -0.1, 0.6, 0.2])
    t = build(windows, fills).totals
    assert t.win_rate == pytest.approx(4 / 7, abs=1e-4)
    assert t.best_window["net"] == pytest.approx(0.6)
    assert t.worst_window["net"] == pytest.approx(-0.4)
    # cumulative: .5 .3 .6 .2 .1 .7 .9 -> the deepest fall from a peak is .6 -> .1
    assert t.max_drawdown == pytest.approx(0.5)


def test_since_and_until_select_windows_by_their_start():
    windows, fills = synthetic([0.5, -0.2, 0.3])
    h = build(windows, fills, since=T0 + 1800, until=T0 + 3600)
    assert [r.start for r in h.rows] == [T0 + 1800]


def test_an_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="expected one of window, hour, day"):
        build([], [], by="week")
