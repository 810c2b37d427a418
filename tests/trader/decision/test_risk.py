"""Risk and the window lifecycle through decide(): exposure cap, stale feed, throttle, pause, flatten, end of window."""
from __future__ import annotations

import dataclasses

import pytest
from tests.support.strategy import WE, WS, book, config, order, pos

from polymm.trader.decision import risk
from polymm.trader.decision.decide import decide
from polymm.trader.model import Leg, OrderType, Role, Side, Want
from polymm.trader.decision.planner import Cancel, Place

CFG = config()


def places(d):
    return [a.want for a in d.actions if isinstance(a, Place)]


def cancelled(d):
    return sorted(a.client_id for a in d.actions if isinstance(a, Cancel))


def test_exposure_is_held_plus_open_buys_at_the_best_bid():
    market = book(0.60)
    e = risk.exposure(
        market,
        [order(Leg.UP, Side.BUY, 0.58, 5, Role.ENTRY), order(Leg.UP, Side.SELL, 0.70, 4, Role.TAKE_PROFIT)],
        {("s1", Leg.UP): pos(Leg.UP, 4, 0.55)},
        unresolved_usd=2.5,
    )
    assert e.by_leg[("s1", Leg.UP)] == pytest.approx((4 + 5) * 0.60)
    assert e.total_usd == pytest.approx(9 * 0.60 + 2.5)


def test_total_exposure_cap_trims_a_new_entry():
    cfg = config(**{"risk.max_exposure_usd": 3.5})
    d = decide(book(0.61), [], {}, cfg, None, WS + 700)
    assert [w.size for w in places(d)] == [5.73]  # floor(3.5 / 0.61), not the $5 cap's 8.19


def test_total_exposure_cap_counts_other_strategies_and_positions_awaiting_resolution():
    cfg = config(**{"risk.max_exposure_usd": 10, "s1.leg_mode": "up_only"})
    market = book(0.61, down_bid=0.75, down_ask=0.76)
    positions = {("s2", Leg.DOWN): pos(Leg.DOWN, 5, 0.74, strategy="s2")}  # $3.75 at Down bid 0.75
    d = decide(market, [], positions, cfg, None, WS + 700, unresolved_usd=3.0)
    # room = 10 - 3.75 - 3.0 = 3.25 -> floor(3.25 / 0.61) = 5.32 shares (the $5 cap alone would allow 8.19)
    assert [w.size for w in places(d)] == [5.32]
    d = decide(market, [], positions, cfg, None, WS + 700, unresolved_usd=4.0)
    assert places(d) == [] and any("risk.max_exposure_usd" in n for n in d.notes)


def test_total_cap_never_trims_an_order_it_merely_keeps():
    cfg = config(**{"risk.max_exposure_usd": 5})
    entry = order(Leg.UP, Side.BUY, 0.61, 8.19, Role.ENTRY, created_at=WS + 690)
    d = decide(book(0.62), [entry], {}, cfg, None, WS + 700)  # 8.19 x 0.62 = 5.08 > 5, but it is resting
    assert d.actions == []


def test_total_cap_lets_a_requote_use_the_room_of_the_entry_it_replaces():
    # $4.26 of the $5 total is the resting entry (6.55 at bid 0.65); its requote at 0.65 (6.15 shares, $4.00) goes
    # out only once that entry is cancelled, so it is neither trimmed nor dropped.
    cfg = config(**{"risk.max_exposure_usd": 5})
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    d = decide(book(0.65), [entry], {}, cfg, None, WS + 305)
    assert [(w.price, w.size) for w in d.wants if w.role is Role.ENTRY] == [(0.65, 6.15)]
    assert not any("risk.max_exposure_usd" in n for n in d.notes)
    assert cancelled(d) == [entry.client_id] and places(d) == []


def test_room_an_entry_frees_by_its_requote_is_not_given_to_another_leg():
    # Up's resting entry ($4.26 at bid 0.65) is being replaced; a Down entry could go out while that cancel is in
    # flight, so it may only use what is free now: $7 - $4.26 = $2.74 -> 3.91 shares < 5, none.
    cfg = config(**{"risk.max_exposure_usd": 7})
    market = book(0.65, down_bid=0.70, down_ask=0.71)
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    up = Want("s1", Leg.UP, Side.BUY, 0.65, 6.15, Role.ENTRY, OrderType.GTC, True, "requote")
    down = Want("s1", Leg.DOWN, Side.BUY, 0.70, 5.0, Role.ENTRY, OrderType.GTC, True, "entry")
    for wants in ([up, down], [down, up]):
        allowed, notes = risk.gate(wants, market, [entry], {}, cfg)
        assert [(w.leg, w.size) for w in allowed] == [(Leg.UP, 6.15)]
        assert any("down: no entry" in n for n in notes)


def test_stale_feed_cancels_resting_entries_and_places_none():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    d = decide(book(0.61, fresh=False, age_ms=2100), [entry], {}, CFG, None, WS + 301)
    assert cancelled(d) == [entry.client_id] and places(d) == []
    assert any("stale" in n for n in d.notes)
    d = decide(book(0.61, fresh=False, age_ms=2100), [], {}, CFG, d.state, WS + 302)
    assert d.actions == []


def test_a_quiet_book_is_not_stale_by_its_age_alone():
    # Issue 27: the engine judges the feed from its liveness (MarketView.fresh); a book that has not changed for
    # longer than risk.stale_feed_ms on a live socket is a quiet market: entries stand.
    cfg = config(**{"risk.stale_feed_ms": 500})
    assert places(decide(book(0.61, age_ms=6000), [], {}, cfg, None, WS + 301))


def test_a_stale_feed_says_why_in_the_notes():
    view = dataclasses.replace(book(0.61, fresh=False, age_ms=100), stale_reason="feed dead: no PONG")
    d = decide(view, [], {}, CFG, None, WS + 301)
    assert places(d) == []
    d = decide(view, [order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY)], {}, CFG, None, WS + 301)
    assert any("feed stale (feed dead: no PONG)" in n for n in d.notes)


def test_crossed_book_places_no_entry():
    assert places(decide(book(0.61, crossed=True), [], {}, CFG, None, WS + 301)) == []


def test_stale_feed_keeps_exits_working():
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT)
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    d = decide(book(0.61, 0.63, fresh=False, age_ms=3000), [tp], positions, CFG, None, WS + 500)
    assert d.actions == []


def test_paused_cancels_everything_places_nothing_and_keeps_positions():
    entry = order(Leg.DOWN, Side.BUY, 0.61, 6.55, Role.ENTRY)
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT)
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    d = decide(book(0.40), [entry, tp], positions, CFG, None, WS + 500, paused=True)  # even below the stop
    assert cancelled(d) == sorted([entry.client_id, tp.client_id])
    assert places(d) == []


def test_flatten_cancels_everything_and_sells_every_sellable_position_fill_and_kill():
    cfg = config(**{"s2.enabled": True})
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT)
    positions = {
        ("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62),
        ("s2", Leg.DOWN): pos(Leg.DOWN, 20, 0.30, strategy="s2"),
        ("s1", Leg.DOWN): pos(Leg.DOWN, 2, 0.30),  # dust: held
    }
    d = decide(book(0.70), [tp], positions, cfg, None, WS + 500, flatten=True)
    assert cancelled(d) == [tp.client_id]
    assert [(w.strategy, w.leg, w.size, w.price, w.order_type, w.role) for w in places(d)] == [
        ("s2", Leg.DOWN, 20.0, 0.01, OrderType.FAK, Role.FLATTEN)]
    assert not d.flat
    d = decide(book(0.70), [], positions, cfg, d.state, WS + 500.1, flatten=True)
    assert [(w.strategy, w.leg, w.size) for w in places(d)] == [("s1", Leg.UP, 6.55)]
    # Retried every exit_retry_s until nothing sellable is left; dust does not count.
    d = decide(book(0.70), [], positions, cfg, d.state, WS + 500.5, flatten=True)
    assert places(d) == []
    d = decide(book(0.70), [], positions, cfg, d.state, WS + 501.2, flatten=True)
    assert len(places(d)) == 2
    d = decide(book(0.70), [], {("s1", Leg.DOWN): positions[("s1", Leg.DOWN)]}, cfg, d.state, WS + 502, flatten=True)
    assert d.flat and d.actions == []


def test_every_order_is_cancelled_cancel_before_end_s_before_the_window_ends():
    entry = order(Leg.DOWN, Side.BUY, 0.61, 6.55, Role.ENTRY)
    tp = order(Leg.UP, Side.SELL, 0.96, 5.2, Role.TAKE_PROFIT)
    positions = {("s1", Leg.UP): pos(Leg.UP, 5.2, 0.95)}
    d = decide(book(0.95), [entry, tp], positions, CFG, None, WE - 5.01)
    assert entry.client_id in cancelled(d)  # late: the entry goes anyway
    d = decide(book(0.95), [entry, tp], positions, CFG, None, WE - 5)
    assert cancelled(d) == sorted([entry.client_id, tp.client_id]) and places(d) == []
    assert d.phase == "closing"


def test_nothing_is_placed_after_cancel_before_end_not_even_a_stop():
    positions = {("s1", Leg.UP): pos(Leg.UP, 5.2, 0.95)}
    d = decide(book(0.20), [], positions, CFG, None, WE - 3)
    assert d.actions == []
    assert decide(book(0.20), [], positions, CFG, None, WE + 1).actions == []


def test_nothing_is_placed_before_the_window_starts():
    assert decide(book(0.70), [], {}, CFG, None, WS - 1).actions == []


def test_order_rate_throttle_holds_back_places_but_never_cancels():
    cfg = config(**{"risk.max_orders_per_min": 2, "s1.leg_mode": "both"})
    market = book(0.62, down_bid=0.75, down_ask=0.76)
    d = decide(market, [], {}, cfg, None, WS + 400)
    assert len(places(d)) == 2
    d = decide(book(0.70), [], {}, cfg, d.state, WS + 410)  # both were cancelled/filled; a third entry
    assert places(d) == [] and any("throttled" in n for n in d.notes)
    entry = order(Leg.UP, Side.BUY, 0.62, 6.45, Role.ENTRY)
    d2 = decide(book(0.50), [entry], {}, cfg, d.state, WS + 411)
    assert cancelled(d2) == [entry.client_id]
    d = decide(book(0.70), [], {}, cfg, d.state, WS + 461)  # a minute later
    assert len(places(d)) == 1


def test_throttle_lets_stops_out_before_entries():
    cfg = config(**{"risk.max_orders_per_min": 1, "s1.leg_mode": "both"})
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.0, 0.62)}
    market = book(0.40, down_bid=0.75, down_ask=0.76)
    d = decide(market, [], positions, cfg, None, WS + 400)
    assert [w.role for w in places(d)] == [Role.STOP_LOSS]


def test_exchange_halt_blocks_places_but_not_cancels():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY)
    d = decide(book(0.50), [entry], {}, CFG, None, WS + 400, halt_reason="exchange cancel-only")
    assert cancelled(d) == [entry.client_id]
    d = decide(book(0.70), [], {}, CFG, None, WS + 400, halt_reason="exchange cancel-only")
    assert d.actions == [] and any("cancel-only" in n for n in d.notes)


def test_post_only_mode_sends_post_only_orders_only_and_stops_rest_above_the_bid():
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.0, 0.62)}
    d = decide(book(0.40), [], positions, CFG, None, WS + 400, post_only_only=True)
    # The stop does not wait out the post-only period: it rests post-only at bid + tick (post_only_exits.py).
    assert [(w.role, w.post_only, w.price) for w in places(d)] == [(Role.STOP_LOSS, True, 0.41)]
    d = decide(book(0.70), [], {}, CFG, None, WS + 400, post_only_only=True)
    assert [w.post_only for w in places(d)] == [True]


def test_blocked_leg_gets_no_new_orders():
    d = decide(book(0.70), [], {}, CFG, None, WS + 400, blocked_legs={Leg.UP: "balance too low"})
    assert places(d) == [] and any("balance too low" in n for n in d.notes)


def test_blocked_legs_may_be_keyed_by_the_legs_name():
    d = decide(book(0.70), [], {}, CFG, None, WS + 400, blocked_legs={"up": "engine restarting"})
    assert places(d) == []


def test_window_rotation_starts_the_strategies_afresh():
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    d = decide(book(0.45), [], positions, CFG, None, WS + 450)
    assert d.state.s1.legs[Leg.UP].stopped
    nxt = book(0.70, window_start=WE)
    d = decide(nxt, [], {}, CFG, d.state, WE + 400)
    assert d.state.window_start == WE and not d.state.s1.legs[Leg.UP].stopped
    assert [w.role for w in places(d)] == [Role.ENTRY]


def test_empty_book_sides_neither_stop_nor_enter_nor_crash():
    nan = float("nan")
    empty = book(0.5, up_ask=nan, down_bid=nan, down_ask=nan)
    empty = type(empty)(**{**empty.__dict__, "up_bid": nan})
    positions = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT)
    d = decide(empty, [tp], positions, CFG, None, WS + 450)
    assert places(d) == [] and cancelled(d) == []
    assert d.exposure_usd == pytest.approx(6.55 * 0.62)  # valued at cost while the bid side is empty
