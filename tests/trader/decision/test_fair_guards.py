"""The fair-value guards of S1 and S2 (issue 16): off by default; on, an entry needs the leg's fair value from the
BTC reference price; stale or unknown -> no entry; exits and stops unaffected."""
from __future__ import annotations

import dataclasses
import math

from tests.support.strategy import WE, WS, book, config, order, pos

from polymm.trader.model import Leg, Role, Side
from polymm.trader.decision.strategy.s1 import S1State, decide_s1
from polymm.trader.decision.strategy.s2 import S2State, decide_s2

NAN = math.nan


def with_fair(market, fair_up: float):
    return dataclasses.replace(market, fair_up=fair_up)


def s1(market, cfg, orders=(), positions=None, now=WS + 400):
    return decide_s1(market, list(orders), positions or {}, cfg.s1, S1State(window_start=WS), now)


def s2(market, cfg, orders=(), positions=None, now=WE - 300):
    return decide_s2(market, list(orders), positions or {}, cfg.s2, S2State(window_start=WS), now)


def entries(wants):
    return [(w.leg, w.side, w.price) for w in wants if w.role is Role.ENTRY]


def test_the_guards_are_off_by_default_and_then_ignore_the_fair_value():
    cfg = config()
    assert not cfg.s1.fair_guard and cfg.s2.min_fair == 0.0
    assert entries(s1(with_fair(book(0.62), 0.05), cfg)[0]) == [(Leg.UP, Side.BUY, 0.62)]
    cfg2 = config(**{"s2.enabled": True})
    assert entries(s2(with_fair(book(0.92, 0.93), NAN), cfg2)[0]) == [(Leg.UP, Side.BUY, 0.92)]


def test_s1_guard_enters_only_when_the_fair_value_is_within_the_margin_of_the_bid():
    cfg = config(**{"s1.fair_guard": True, "s1.fair_margin": 0.05})
    assert entries(s1(with_fair(book(0.62), 0.58), cfg)[0]) == [(Leg.UP, Side.BUY, 0.62)]  # 0.58 >= 0.62 - 0.05
    wants, state = s1(with_fair(book(0.62), 0.55), cfg)
    assert entries(wants) == []
    # Down's fair value is 1 - P(Up): a strong Down leg with BTC below the open is allowed.
    assert entries(s1(with_fair(book(0.30, 0.32), 0.30), cfg)[0]) == [(Leg.DOWN, Side.BUY, 0.68)]


def test_s1_guard_refuses_on_a_stale_or_unknown_reference_and_cancels_a_resting_entry():
    cfg = config(**{"s1.fair_guard": True})
    resting = order(Leg.UP, Side.BUY, 0.62, 6.45, Role.ENTRY)
    wants, state = s1(with_fair(book(0.62), NAN), cfg, orders=[resting])
    assert entries(wants) == []  # the planner cancels the resting entry
    assert "stale" in state.legs[Leg.UP].entry_note


def test_s1_guard_leaves_exits_alone():
    cfg = config(**{"s1.fair_guard": True})
    held = {Leg.UP: pos(Leg.UP, 10, 0.70)}
    wants, _ = s1(with_fair(book(0.45), NAN), cfg, positions=held)  # bid 0.45 < stop trigger 0.50
    assert [(w.side, w.role) for w in wants] == [(Side.SELL, Role.STOP_LOSS)]


def test_s2_min_fair_needs_the_legs_fair_value_known_and_high_enough():
    cfg = config(**{"s2.enabled": True, "s2.min_fair": 0.85})
    assert entries(s2(with_fair(book(0.92, 0.93), 0.90), cfg)[0]) == [(Leg.UP, Side.BUY, 0.92)]
    wants, state = s2(with_fair(book(0.92, 0.93), 0.80), cfg, orders=[order(Leg.UP, Side.BUY, 0.92, 10, Role.ENTRY, strategy="s2")])
    assert entries(wants) == [] and "below s2.min_fair 0.85" in state.legs[Leg.UP].entry_note
    assert entries(s2(with_fair(book(0.92, 0.93), NAN), cfg)[0]) == []
    # stops are unaffected
    held = {Leg.UP: pos(Leg.UP, 10, 0.92, strategy="s2")}
    assert [w.role for w in s2(with_fair(book(0.60, 0.61), NAN), cfg, positions=held)[0]] == [Role.STOP_LOSS]


def test_the_guard_keys_are_live_settable():
    from polymm.trader.config import live_keys

    assert {"s1.fair_guard", "s1.fair_margin", "s2.min_fair", "risk.stale_ref_ms"} <= live_keys()
