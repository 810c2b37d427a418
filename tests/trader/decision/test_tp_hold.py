"""The take-profit's ask-drift hold (issue 24, `s1.tp_reprice_hold_s`), as pure decisions over time: a drift
reprices only once it has held in one direction for the hold, to the least-moved target of that time; an
oscillation never holds; never more than one reprice per exit_retry_s; a size change is not held back. Time is
the `now` each decision is given (the drift's start is S1's state), never a clock."""
from __future__ import annotations

from tests.support.strategy import WS, book, config, order, pos
from tests.trader.decision.test_tp_reprice import Exchange

from polymm.trader.decision.strategy.s1 import S1LegState, S1State, decide_s1
from polymm.trader.model import Leg, Role, Side

HOLD = config().s1.tp_reprice_hold_s


def run(ex: Exchange, asks: list[tuple[float, float]], until: float, step: float = 0.1) -> None:
    """Decide every `step` seconds from the first ask's time to `until`; asks: (from t, ask) steps. Cancels are
    confirmed at the next decision (the replacement then goes, as live)."""
    t = asks[0][0]
    while t < until - 1e-9:
        ask = [a for at, a in asks if at <= t + 1e-9][-1]
        ex.confirm_cancels()
        ex.decide(book(0.61, ask), t)
        t = round(t + step, 6)


def tp_prices(ex: Exchange) -> list[float]:
    return [w.price for _, w in ex.placed if w.role is Role.TAKE_PROFIT]


def tp_exchange(**settings) -> Exchange:
    return Exchange([order(Leg.UP, Side.SELL, 0.63, 6.45, Role.TAKE_PROFIT, created_at=WS + 200)], 6.45, 0.62,
                    cfg=config(**settings))


def test_the_default_hold_is_at_least_three_seconds():
    assert HOLD >= 3.0


def test_a_sustained_drift_reprices_once_after_the_hold():
    ex = tp_exchange()
    run(ex, [(WS + 300, 0.63), (WS + 301, 0.70)], until=WS + 400)
    assert tp_prices(ex) == [0.70]
    (at, _), = [(t, w) for t, w in ex.placed]
    assert WS + 301 + HOLD <= at < WS + 301 + HOLD + 0.3


def test_an_ask_oscillating_every_second_keeps_the_take_profit_in_place():
    # 0.63 <-> 0.65/0.66: 2-3 ticks away every other second, never for HOLD seconds in a row.
    asks = [(WS + 300 + i, 0.63 if i % 2 == 0 else (0.65, 0.66)[(i // 2) % 2]) for i in range(600)]
    ex = tp_exchange()
    run(ex, asks, until=WS + 890)  # ten minutes, to risk.cancel_before_end_s
    assert ex.placed == [] and ex.cancelled == []
    at_once = tp_exchange(**{"s1.tp_reprice_hold_s": 0})
    run(at_once, asks, until=WS + 400)
    assert len(at_once.placed) > 40  # the same 100 s without the hold: a reprice about every second or two


def test_a_drift_broken_before_the_hold_restarts_its_timing():
    ex = tp_exchange()
    half = HOLD / 2
    run(ex, [(WS + 300, 0.70), (WS + 300 + half, 0.64), (WS + 300 + half + 1, 0.70)], until=WS + 300 + half + 1 + HOLD - 0.2)
    assert ex.placed == []  # drifted for HOLD/2, back within exit_drift, drifted again: not held yet
    run(ex, [(WS + 300 + half + 1 + HOLD - 0.2, 0.70)], until=WS + 300 + half + 1 + HOLD + 0.3)
    assert tp_prices(ex) == [0.70]


def test_the_reprice_goes_to_the_least_moved_target_of_the_hold():
    # Up: the ask went 0.70, 0.72, 0.71 during the hold: it held at or above 0.70 throughout.
    ex = tp_exchange()
    run(ex, [(WS + 300, 0.70), (WS + 301, 0.72), (WS + 302, 0.71)], until=WS + 300 + HOLD + 0.3)
    assert tp_prices(ex) == [0.70]
    # Down: a take-profit at 0.80 above an ask that went 0.75, 0.73, 0.74: it held at or below 0.75.
    ex = Exchange([order(Leg.UP, Side.SELL, 0.80, 6.45, Role.TAKE_PROFIT, created_at=WS + 200)], 6.45, 0.62)
    run(ex, [(WS + 300, 0.75), (WS + 301, 0.73), (WS + 302, 0.74)], until=WS + 300 + HOLD + 0.3)
    assert tp_prices(ex) == [0.75]


def test_a_drift_toward_the_floor_is_no_drift_at_tp():
    # The ask fell far below tp (0.63): the take-profit at tp stays (never below tp), nothing is timed.
    ex = tp_exchange()
    run(ex, [(WS + 300, 0.58)], until=WS + 330)
    assert ex.placed == [] and ex.state.s1.legs[Leg.UP].drift_dir == 0


def test_never_more_than_one_reprice_per_exit_retry_s():
    cfg = config(**{"s1.exit_retry_s": 30})
    tp = order(Leg.UP, Side.SELL, 0.63, 6.45, Role.TAKE_PROFIT, created_at=WS + 200)
    position = {Leg.UP: pos(Leg.UP, 6.45, 0.62, first_fill_at=WS + 100)}
    # The last exit action was 10 s ago: the drift holds at 5 s but the reprice waits for exit_retry_s (30 s).
    state = S1State(window_start=WS, legs={Leg.UP: S1LegState(last_exit_at=WS + 290), Leg.DOWN: S1LegState()})
    prices = []
    t = WS + 300.0
    while t < WS + 325:
        wants, state = decide_s1(book(0.61, 0.70), [tp], position, cfg.s1, state, t)
        prices.append((t, [w.price for w in wants if w.side is Side.SELL]))
        t = round(t + 0.1, 6)
    # The order is never seen cancelled here (no planner): after the reprice at last exit + 30 s (not drift
    # start + 5 s) the old one is kept, and nothing else may happen until WS + 350.
    assert [(t, p) for t, p in prices if p != [0.63]] == [(WS + 320, [0.70])]
    assert state.legs[Leg.UP].last_exit_at == WS + 320


def test_a_size_change_reprices_at_once_during_a_drift_being_timed():
    ex = Exchange([order(Leg.UP, Side.SELL, 0.63, 6.45, Role.TAKE_PROFIT, created_at=WS + 200)], 10.0, 0.62)
    ex.decide(book(0.61, 0.70), WS + 300)
    assert [len(ex.cancelled), ex.state.s1.legs[Leg.UP].tp_reprice] == [1, 0.63]  # same price, the new size
