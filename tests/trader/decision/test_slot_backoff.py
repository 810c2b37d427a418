"""Per-slot back-off after a place whose order is gone, and the throttle never starving protective orders.

Live, the exchange rejected a post-only entry ("crosses book") and the next decision, ~5 ms later, wanted the
same order again: 120 rejected orders in a second, then `risk.max_orders_per_min` blocked everything, stops
included. These tests drive decide() like the loop does (a decision every few ms) with an exchange that
rejects every order, and pin what goes out.
"""
from __future__ import annotations

from tests.support.strategy import WE, WS, book, config, order, order_from, pos

from polymm.trader.decision import risk
from polymm.trader.decision.decide import decide
from polymm.trader.model import Leg, OrderType, Role, Side
from polymm.trader.decision.planner import Cancel, Place

STEP = 0.005  # the live loop decides every few milliseconds while orders come back rejected


def places(d):
    return [a.want for a in d.actions if isinstance(a, Place)]


def run_rejecting(market, cfg, start, seconds, positions=None, step=STEP, **kw):
    """Decide every `step` for `seconds`; every order placed is rejected at once (never working, no fill).
    Returns [(t, want)] of what was placed, and the last decision."""
    state, sent, d = None, [], None
    positions = positions or {}
    for i in range(int(round(seconds / step)) + 1):
        t = start + i * step
        d = decide(market, [], positions, cfg, state, t, **kw)
        state = d.state
        sent += [(t, w) for w in places(d)]
    return sent, d


def test_a_rejected_entry_is_placed_at_most_once_per_requote_wait():
    cfg = config()  # s1.requote_wait_s 2
    sent, d = run_rejecting(book(0.61), cfg, WS + 300, 5.0)
    times = [t - (WS + 300) for t, _w in sent]
    assert [w.role for _t, w in sent] == [Role.ENTRY] * 3
    assert [round(t, 3) for t in times] == [0.0, 2.0, 4.0]
    assert any(n.startswith("s1 up entry: retry in") and "rejected/vanished" in n for n in d.notes)


def test_the_back_off_note_counts_down_and_shows_in_the_leg_notes():
    d = decide(book(0.61), [], {}, config(), None, WS + 300)
    assert places(d)
    d = decide(book(0.61), [], {}, config(), d.state, WS + 300.6)  # the entry came back rejected
    assert places(d) == []
    assert "s1 up entry: retry in 1.4 s after a rejected/vanished order (s1.requote_wait_s 2 s)" in d.notes
    assert "retry in 1.4 s" in d.leg_notes["s1 up entry"]


def test_a_storm_of_rejections_never_fills_the_throttle():
    """A minute of rejected entries on both legs leaves the throttle nearly empty (the live storm filled it)."""
    cfg = config(**{"s1.leg_mode": "both"})
    sent, d = run_rejecting(book(0.62, down_bid=0.75, down_ask=0.76), cfg, WS + 300, 60.0, step=0.02)
    per_slot = {}
    for t, w in sent:
        per_slot.setdefault((w.strategy, w.leg, w.side, w.role), []).append(t)
    for times in per_slot.values():
        assert all(b - a >= cfg.s1.requote_wait_s - 1e-9 for a, b in zip(times, times[1:]))
    assert len(sent) <= 2 * 31
    assert not any("throttled" in n for n in d.notes)


def test_a_rejected_stop_is_retried_exactly_every_exit_retry_s():
    cfg = config()  # s1.exit_retry_s 1
    held = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    sent, _ = run_rejecting(book(0.45), cfg, WS + 450, 3.0, positions=held)
    assert [w.role for _t, w in sent] == [Role.STOP_LOSS] * 4
    assert [round(t - (WS + 450), 3) for t, _w in sent] == [0.0, 1.0, 2.0, 3.0]


def test_a_partly_filled_stop_is_repeated_after_exit_retry_s_not_sooner_and_not_later():
    cfg = config()
    d = decide(book(0.45), [], {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}, cfg, None, WS + 450)
    assert [w.role for w in places(d)] == [Role.STOP_LOSS]
    rest = {("s1", Leg.UP): pos(Leg.UP, 5.2, 0.62)}  # the FAK sold 1.35, the rest was killed
    d = decide(book(0.45), [], rest, cfg, d.state, WS + 450.5)
    assert places(d) == []
    d = decide(book(0.45), [], rest, cfg, d.state, WS + 451.0)
    assert [(w.role, w.size) for w in places(d)] == [(Role.STOP_LOSS, 5.2)]


def test_stops_go_out_when_entries_have_used_up_the_throttle():
    cfg = config(**{"risk.max_orders_per_min": 2, "s1.leg_mode": "both"})
    d = decide(book(0.62, down_bid=0.75, down_ask=0.76), [], {}, cfg, None, WS + 400)
    assert len(places(d)) == 2  # the throttle is now full
    up_entry, down_entry = sorted(places(d), key=lambda w: w.leg.value, reverse=True)
    # Up's entry filled and its bid collapses; Down's entry was rejected and Down still wants one.
    held = {("s1", Leg.UP): pos(Leg.UP, up_entry.size, 0.62, first_fill_at=WS + 401)}
    d = decide(book(0.40, down_bid=0.75, down_ask=0.76), [], held, cfg, d.state, WS + 405)
    assert [(w.leg, w.role, w.order_type) for w in places(d)] == [(Leg.UP, Role.STOP_LOSS, OrderType.FAK)]
    assert any("throttled" in n and "down BUY" in n for n in d.notes)  # the entry is still throttled
    # The stop comes back partly filled; its retry a second later is not throttled either.
    held = {("s1", Leg.UP): pos(Leg.UP, 5.0, 0.62, first_fill_at=WS + 401)}
    d = decide(book(0.40, down_bid=0.75, down_ask=0.76), [], held, cfg, d.state, WS + 406)
    assert [w.role for w in places(d)] == [Role.STOP_LOSS]


def test_flatten_goes_out_when_the_throttle_is_full():
    cfg = config(**{"risk.max_orders_per_min": 1})
    d = decide(book(0.70), [], {}, cfg, None, WS + 400)
    assert [w.role for w in places(d)] == [Role.ENTRY]
    held = {("s1", Leg.UP): pos(Leg.UP, 6.0, 0.62)}
    d = decide(book(0.70), [], held, cfg, d.state, WS + 401, flatten=True)
    assert [w.role for w in places(d)] == [Role.FLATTEN]


def test_take_profits_stay_throttled():
    cfg = config(**{"risk.max_orders_per_min": 1})
    d = decide(book(0.70), [], {}, cfg, None, WS + 400)
    held = {("s1", Leg.UP): pos(Leg.UP, 5.71, 0.70, first_fill_at=WS + 400.1)}
    d = decide(book(0.70, 0.72), [], held, cfg, d.state, WS + 402)
    assert places(d) == [] and any("throttled" in n and "take_profit" in n for n in d.notes)


def test_a_filled_entry_is_not_a_vanished_one_the_next_entry_is_not_held_back():
    cfg = config(**{"s2.enabled": True})
    market = book(0.92, 0.93)
    d = decide(market, [], {}, cfg, None, WE - 300)
    s2_entry = [w for w in places(d) if w.strategy == "s2"]
    assert [w.size for w in s2_entry] == [10.0]
    held = {("s2", Leg.UP): pos(Leg.UP, 10.0, 0.92, strategy="s2")}  # it filled at once
    d = decide(market, [], held, cfg, d.state, WE - 299.9)
    assert [(w.strategy, w.size) for w in places(d) if w.strategy == "s2"] == [("s2", 10.0)]


def test_a_working_order_of_the_slot_is_left_to_the_planner():
    d = decide(book(0.61), [], {}, config(), None, WS + 300)
    resting = order_from(places(d)[0], created_at=WS + 300)
    d = decide(book(0.61), [resting], {}, config(), d.state, WS + 300.5)
    assert d.actions == [] and not any("retry in" in n for n in d.notes)


def test_a_requote_is_not_slowed_by_the_back_off():
    d = decide(book(0.61), [], {}, config(), None, WS + 300)
    resting = order_from(places(d)[0], created_at=WS + 300)
    d = decide(book(0.65), [resting], {}, config(), d.state, WS + 302)
    assert [type(a) for a in d.actions] == [Cancel]
    d = decide(book(0.65), [], {}, config(), d.state, WS + 302.05)  # the cancel is confirmed
    assert [(w.price, w.size) for w in places(d)] == [(0.65, 6.15)]


def test_a_rejected_take_profit_is_retried_after_exit_retry_s():
    held = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    sent, _ = run_rejecting(book(0.61, 0.64), config(), WS + 401, 2.5, positions=held)
    assert [(round(t - (WS + 401), 3), w.role) for t, w in sent] == [
        (0.0, Role.TAKE_PROFIT), (1.0, Role.TAKE_PROFIT), (2.0, Role.TAKE_PROFIT)]


def test_a_stop_in_post_only_mode_is_not_held_back_it_rests_at_once():
    held = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    d = decide(book(0.45), [], held, config(), None, WS + 450, post_only_only=True)
    assert [(w.role, w.post_only) for w in places(d)] == [(Role.STOP_LOSS, True)]
    # (Its replacement by the fill-and-kill stop when the mode ends: test_post_only_exits.py.)


def test_a_flatten_held_back_by_a_halt_goes_out_as_soon_as_the_halt_ends():
    held = {("s1", Leg.UP): pos(Leg.UP, 6.55, 0.62)}
    d = decide(book(0.70), [], held, config(), None, WS + 450, flatten=True, halt_reason="exchange cancel-only")
    assert places(d) == []
    d = decide(book(0.70), [], held, config(), d.state, WS + 450.05, flatten=True)
    assert [w.role for w in places(d)] == [Role.FLATTEN]


def test_the_back_off_never_goes_below_its_floor_even_with_a_zero_requote_wait():
    cfg = config(**{"s1.requote_wait_s": 0})
    sent, _ = run_rejecting(book(0.61), cfg, WS + 300, 1.0)
    assert [round(t - (WS + 300), 3) for t, _w in sent] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert risk.MIN_SLOT_RETRY_S == 0.25


def test_a_new_window_forgets_the_old_markets_back_offs_but_not_the_throttle():
    cfg = config(**{"s1.requote_wait_s": 10, "s1.late_window_s": 0, "s1.entry_threshold": 0.55})
    d = decide(book(0.58), [], {}, cfg, None, WE - 6)
    assert [w.role for w in places(d)] == [Role.ENTRY]
    # 6.5 s later, inside the old slot's 10 s back-off, the next window's market: its entry goes out.
    d = decide(book(0.58, window_start=WE), [], {}, cfg, d.state, WE + 0.5)
    assert [(w.role, w.size) for w in places(d)] == [(Role.ENTRY, 5.17)]
    assert d.state.risk.place_times == (WE - 6, WE + 0.5)


def test_back_off_is_per_slot():
    """Rejected entries on both legs hold back those entries only, not a stop on the same leg."""
    cfg = config(**{"s1.leg_mode": "both"})
    d = decide(book(0.62, down_bid=0.75, down_ask=0.76), [], {}, cfg, None, WS + 400)
    assert sorted(w.leg.value for w in places(d)) == ["down", "up"]
    # Both came back rejected. Up holds a position from earlier (avg 0.80: trigger 0.60) and its bid drops.
    held = {("s1", Leg.UP): pos(Leg.UP, 6.0, 0.80)}
    d = decide(book(0.55, down_bid=0.75, down_ask=0.76), [], held, cfg, d.state, WS + 400.5)
    assert [(w.leg, w.role) for w in places(d)] == [(Leg.UP, Role.STOP_LOSS)]
    assert any(n.startswith("s1 down entry: retry in 1.5 s") for n in d.notes)
