"""S2 as pure functions: late high-confidence entry, held to expiry, stop at sl_price."""
from __future__ import annotations

from tests.support.strategy import WE, WS, book, config, order, pos

from polymm.trader.decision.decide import decide
from polymm.trader.model import Leg, OrderType, Role, Side
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.strategy.s2 import S2State, decide_s2

CFG = config(**{"s2.enabled": True})


def s2(market, orders=(), positions=None, now=WE - 300, state=None, cfg=CFG, room=float("inf")):
    return decide_s2(market, list(orders), positions or {}, cfg.s2, state or S2State(window_start=WS), now, room)


def test_s2_is_disabled_by_default():
    assert decide_s2(book(0.92, 0.93), [], {}, config().s2, S2State(window_start=WS), WE - 300)[0] == []


def test_s2_enters_only_in_the_last_window_s_seconds():
    assert s2(book(0.92, 0.93), now=WE - 421)[0] == []
    wants, _ = s2(book(0.92, 0.93), now=WE - 420)
    assert [(w.strategy, w.leg, w.side, w.price, w.size, w.post_only, w.role) for w in wants] == [
        ("s2", Leg.UP, Side.BUY, 0.92, 10.0, True, Role.ENTRY)]


def test_s2_needs_the_best_ask_at_or_above_the_threshold():
    assert s2(book(0.88, 0.89))[0] == []
    assert [w.price for w in s2(book(0.89, 0.90))[0]] == [0.89]


def test_s2_stops_adding_when_the_next_order_would_pass_target_usd():
    # 100 shares held at bid 0.92 = $92; another 10 would make $101.2 > $100.
    held = {Leg.UP: pos(Leg.UP, 100, 0.91, strategy="s2")}
    assert s2(book(0.92, 0.93), positions=held)[0] == []
    held = {Leg.UP: pos(Leg.UP, 90, 0.91, strategy="s2")}
    assert [w.size for w in s2(book(0.92, 0.93), positions=held)[0]] == [10.0]


def test_s2_keeps_one_working_entry_per_leg_and_requotes_like_s1():
    entry = order(Leg.UP, Side.BUY, 0.90, 10, Role.ENTRY, strategy="s2", created_at=WE - 300)
    wants, _ = s2(book(0.92, 0.93), [entry], now=WE - 299)
    assert [(w.price, w.size) for w in wants] == [(0.90, 10.0)]  # moved 0.02 < 0.03
    wants, _ = s2(book(0.93, 0.94), [entry], now=WE - 297)
    assert [(w.price, w.size) for w in wants] == [(0.93, 10.0)]  # moved 0.03, waited 3 s


def test_s2_cancels_its_entry_when_the_ask_falls_below_the_threshold():
    entry = order(Leg.UP, Side.BUY, 0.90, 10, Role.ENTRY, strategy="s2", created_at=WE - 300)
    d = decide(book(0.87, 0.88), [entry], {}, CFG, None, WE - 290)
    assert [a.client_id for a in d.actions if isinstance(a, Cancel)] == [entry.client_id]


def test_s2_never_places_a_take_profit():
    held = {Leg.UP: pos(Leg.UP, 10, 0.90, first_fill_at=WE - 300, strategy="s2")}
    wants, _ = s2(book(0.97, 0.98), positions=held, now=WE - 200)
    assert [w for w in wants if w.side is Side.SELL] == []


def test_s2_stops_when_bid_is_at_or_below_sl_price_and_sells_everything_fill_and_kill():
    held = {Leg.UP: pos(Leg.UP, 30, 0.90, strategy="s2")}
    assert [w for w in s2(book(0.71, 0.72), positions=held)[0] if w.side is Side.SELL] == []
    wants, state = s2(book(0.70, 0.71), positions=held)
    assert [(w.side, w.price, w.size, w.order_type, w.role) for w in wants] == [
        (Side.SELL, 0.01, 30.0, OrderType.FAK, Role.STOP_LOSS)]
    # Retried after exit_retry_s while a sellable position remains; no entry on that leg afterwards.
    assert s2(book(0.80, 0.81), positions=held, now=WE - 299.5, state=state)[0] == []
    wants, state = s2(book(0.80, 0.81), positions=held, now=WE - 299, state=state)
    assert [w.role for w in wants] == [Role.STOP_LOSS]
    _, state = s2(book(0.95, 0.96), positions={}, now=WE - 290, state=state)
    assert s2(book(0.95, 0.96), positions={}, now=WE - 280, state=state)[0] == []


def test_s2_dust_gets_no_stop():
    held = {Leg.UP: pos(Leg.UP, 2, 0.90, strategy="s2")}
    wants, state = s2(book(0.50, 0.51), positions=held)
    assert wants == [] and any("dust" in n for n in state.notes)


def test_s2_order_size_below_market_minimum_is_not_placed():
    cfg = config(**{"s2.enabled": True, "s2.order_size": 3})
    wants, state = s2(book(0.92, 0.93), cfg=cfg)
    assert wants == [] and any("below the market minimum" in n for n in state.notes)


def test_s1_and_s2_keep_separate_books():
    """S2's position and orders do not count as S1's (and vice versa)."""
    cfg = config(**{"s2.enabled": True, "s1.late_window_s": 60})
    s2_entry = order(Leg.UP, Side.BUY, 0.92, 10, Role.ENTRY, strategy="s2", created_at=WE - 300)
    positions = {("s2", Leg.UP): pos(Leg.UP, 20, 0.90, strategy="s2")}
    d = decide(book(0.92, 0.93), [s2_entry], positions, cfg, None, WE - 299)
    new = [a.want for a in d.actions if isinstance(a, Place)]
    # S1 enters its own Up entry (cap $5 at 0.92 -> 5.43 shares) although S2 holds Up; S2's entry is kept.
    assert [(w.strategy, w.role, w.size) for w in new] == [("s1", Role.ENTRY, 5.43)]
    assert not any(isinstance(a, Cancel) for a in d.actions)
