"""The take-profit reprice is one cancel/replace across decisions: the replacement goes at the first decision
after the old one's cancel is confirmed, at the price the rule chose, with the position's size then; never a
gap of exit_retry_s with nothing resting, never churn."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from tests.support.strategy import WS, book, config, order, pos, write_ticks

from polymm.trader.decision.decide import decide, new_state
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.model import Leg, OrderState, Role, Side

CFG = config()  # exit_retry_s 1, exit_drift 0.02, tp_increment 0.01


class Exchange:
    """Our working orders as decisions see them: places rest at once; cancels stay pending until confirmed."""

    def __init__(self, orders, shares: float, avg: float, cfg=CFG) -> None:
        self.cfg = cfg
        self.orders = list(orders)
        self.shares, self.avg = shares, avg
        self.state = None
        self.placed: list = []
        self.cancelled: list = []

    def positions(self):
        return {("s1", Leg.UP): pos(Leg.UP, self.shares, self.avg, first_fill_at=WS + 100)} if self.shares else {}

    def decide(self, market, now):
        d = decide(market, self.orders, self.positions(), self.cfg, self.state or new_state(market), now)
        self.state = d.state
        for a in d.actions:
            if isinstance(a, Cancel):
                self.cancelled.append((now, a))
                self.orders = [dataclasses.replace(o, state=OrderState.PENDING_CANCEL) if o.client_id == a.client_id
                               else o for o in self.orders]
            else:
                self.placed.append((now, a.want))
                w = a.want
                self.orders.append(order(w.leg, w.side, w.price, w.size, w.role, created_at=now,
                                         order_type=w.order_type, post_only=w.post_only))
        return d

    def confirm_cancels(self):
        self.orders = [o for o in self.orders if o.state is not OrderState.PENDING_CANCEL]

    def fill(self, client_id: str, shares: float):
        self.orders = [dataclasses.replace(o, filled=o.filled + shares) if o.client_id == client_id else o
                       for o in self.orders]
        self.shares = round(self.shares - shares, 6)
        self.orders = [o for o in self.orders if o.remaining > 1e-9]

    def tps(self):
        return [o for o in self.orders if o.role is Role.TAKE_PROFIT]


def resting_tp(price=0.63, size=6.45):
    return order(Leg.UP, Side.SELL, price, size, Role.TAKE_PROFIT, created_at=WS + 200)


def hold_drift(ex: Exchange, market, t: float) -> float:
    """Decide every 0.1 s while the ask drift has not held s1.tp_reprice_hold_s yet (nothing happens: the
    take-profit keeps its place); returns the time it has held, when the reprice goes."""
    held_at = t + CFG.s1.tp_reprice_hold_s
    while t < held_at - 1e-9:
        assert ex.decide(market, t).actions == []
        t = round(t + 0.1, 6)
    return held_at


def test_ask_drift_reprice_places_the_replacement_as_soon_as_the_cancel_is_confirmed_then_rests():
    ex = Exchange([resting_tp()], 6.45, 0.62)
    market = book(0.61, 0.70)  # the ask is 0.07 above the take-profit: follow it, once that has held
    t = hold_drift(ex, market, WS + 300.0)
    d = ex.decide(market, t)
    assert [c.reason for c in d.actions if isinstance(c, Cancel)] == [
        "replace with SELL 6.45 @ 0.7 (tp reprice 0.63->0.7 size 6.45 (ask drift held 5.0s))"]
    assert not [a for a in d.actions if isinstance(a, Place)]
    assert ex.decide(market, t + 0.05).actions == []  # cancel in flight: nothing (the replacement waits for it)
    ex.confirm_cancels()
    d = ex.decide(market, t + 0.1)  # well within exit_retry_s of the reprice: no gap
    assert [(a.want.price, a.want.size, a.want.post_only) for a in d.actions] == [(0.7, 6.45, True)]
    for i in range(1, 300):  # thirty seconds of the same book: the take-profit just rests
        assert ex.decide(market, t + 0.1 + i * 0.1).actions == []
    assert [(o.price, o.size) for o in ex.tps()] == [(0.7, 6.45)]
    assert len(ex.placed) == 1 and len(ex.cancelled) == 1


def test_reprice_while_a_fill_arrives_replaces_with_what_is_left():
    ex = Exchange([resting_tp()], 6.45, 0.62)
    market = book(0.61, 0.70)
    t = hold_drift(ex, market, WS + 300.0)
    ex.decide(market, t)
    old = ex.tps()[0]
    ex.fill(old.client_id, 1.0)  # a buyer takes 1 share of the old take-profit before the cancel lands
    assert ex.decide(market, t + 0.05).actions == []
    ex.confirm_cancels()
    d = ex.decide(market, t + 0.1)
    assert [(a.want.side, a.want.price, a.want.size) for a in d.actions] == [(Side.SELL, 0.7, 5.45)]
    assert all(ex.decide(market, t + 0.1 + i * 0.1).actions == [] for i in range(1, 50))


def test_reprice_whose_old_take_profit_filled_whole_places_nothing_and_forgets_it():
    ex = Exchange([resting_tp()], 6.45, 0.62)
    market = book(0.61, 0.70)
    t = hold_drift(ex, market, WS + 300.0)
    ex.decide(market, t)
    assert len(ex.cancelled) == 1 and ex.state.s1.legs[Leg.UP].tp_reprice == 0.7
    ex.fill(ex.tps()[0].client_id, 6.45)  # the cancel comes too late: all sold at 0.63
    for i in range(1, 30):
        ex.decide(market, t + i * 0.1)  # (flat again: S1 may enter anew, but sells nothing)
    assert not [w for _, w in ex.placed if w.side is Side.SELL]
    assert ex.state.s1.legs[Leg.UP].tp_reprice == 0.0


def test_size_change_reprice_is_one_cancel_replace_at_the_same_price():
    # Another part of the entry filled: the position is now 10 shares, the take-profit still sells 6.45.
    ex = Exchange([resting_tp()], 10.0, 0.62)
    market = book(0.61, 0.63)
    t = WS + 300.0
    d = ex.decide(market, t)
    assert len([a for a in d.actions if isinstance(a, Cancel)]) == 1
    ex.confirm_cancels()
    d = ex.decide(market, t + 0.1)
    assert [(a.want.price, a.want.size) for a in d.actions] == [(0.63, 10.0)]
    assert all(ex.decide(market, t + 0.1 + i * 0.1).actions == [] for i in range(1, 50))


def test_a_stop_during_a_reprice_wins_and_the_replacement_is_never_placed():
    ex = Exchange([resting_tp()], 6.45, 0.62)
    t = hold_drift(ex, book(0.61, 0.70), WS + 300.0)
    ex.decide(book(0.61, 0.70), t)
    ex.confirm_cancels()
    d = ex.decide(book(0.40, 0.70), t + 0.1)  # the bid broke the stop trigger (0.50) meanwhile
    assert [(a.want.role, a.want.price) for a in d.actions if isinstance(a, Place)] == [(Role.STOP_LOSS, 0.01)]
    assert not [w for _, w in ex.placed if w.role is Role.TAKE_PROFIT]


def test_three_line_tick_file_places_a_handful_of_take_profits_not_hundreds(tmp_path):
    # Entry at 0.62, filled at 301 s, then the ask jumps to 0.70 and the file ends: the book stays there to the
    # end of the window. Before: 270 take-profit placements (cancel, wait exit_retry_s, place at plain tp, drift,
    # cancel, ...). Now: tp at 0.63, one reprice to 0.70 (once the jump has held s1.tp_reprice_hold_s), done.
    rows = [
        {"ts": WS + 300, "window_start": WS, "up_bid": 0.62, "up_ask": 0.63, "down_bid": 0.37, "down_ask": 0.38},
        {"ts": WS + 301, "window_start": WS, "up_bid": 0.61, "up_ask": 0.62, "down_bid": 0.38, "down_ask": 0.39},
        {"ts": WS + 302, "window_start": WS, "up_bid": 0.61, "up_ask": 0.70, "down_bid": 0.30, "down_ask": 0.39},
    ]
    path = write_ticks(tmp_path / "ticks.jsonl", rows)
    r = subprocess.run([sys.executable, "-m", "polymm.trader.backtest", str(path), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    tps = [e for e in json.loads(r.stdout)["orders"] if e["role"] == "take_profit"]
    places = [(e["t"], e["price"]) for e in tps if e["action"] == "place"]
    assert [p for _, p in places] == [0.63, 0.7]
    cancel_at = next(e["t"] for e in tps if e["action"] == "cancelled")
    assert places[1][0] - cancel_at < CFG.s1.exit_retry_s  # the replacement follows the confirmed cancel
