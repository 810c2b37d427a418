"""S1 as pure functions: every scenario of strategies.md plus the rules around them."""
from __future__ import annotations

import pytest
from tests.support.strategy import WE, WS, book, config, down_book, order, order_from, pos

from polymm.trader.decision.decide import decide
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.strategy.s1 import S1LegState, S1State, decide_s1, stop_trigger, take_profit_price

CFG = config()


def s1(market, orders=(), positions=None, now=WS + 100, state=None, cfg=CFG):
    return decide_s1(market, list(orders), positions or {}, cfg.s1, state or S1State(window_start=WS), now)


def places(decision):
    return [a.want for a in decision.actions if isinstance(a, Place)]


def cancels(decision):
    return [a for a in decision.actions if isinstance(a, Cancel)]


# --- entry and caps by time ----------------------------------------------------------------------------


def test_no_entry_while_bid_is_below_entry_threshold():
    wants, _ = s1(book(0.55), now=WS + 100)
    assert wants == []


def test_no_entry_at_100s_when_the_3_dollar_cap_buys_fewer_than_5_shares():
    # floor(3 / 0.61) = 4.91 shares < 5
    wants, state = s1(book(0.61), now=WS + 100)
    assert wants == []
    assert "4.91" in state.legs[Leg.UP].entry_note


def test_entry_at_300s_rests_post_only_buy_of_6_55_up_at_the_bid_under_the_4_dollar_cap():
    state = S1State(window_start=WS)
    _, state = s1(book(0.55), now=WS + 99, state=state)
    _, state = s1(book(0.61), now=WS + 100, state=state)
    wants, _ = s1(book(0.61), now=WS + 300, state=state)
    assert len(wants) == 1
    w = wants[0]
    assert (w.leg, w.side, w.price, w.size, w.role, w.order_type, w.post_only) == (
        Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, OrderType.GTC, True)


def test_entry_is_never_below_the_markets_own_minimum_size():
    # The market's minimum (10) is above s1.min_order_size (5): 8.19 shares under the $5 cap is too small.
    wants, state = s1(book(0.61, min_size=10), now=WS + 700)
    assert wants == [] and "8.19 < 10" in state.legs[Leg.UP].entry_note
    cfg = config(**{"s1.cap_schedule": "0-900:10"})
    assert [w.size for w in s1(book(0.61, min_size=10), now=WS + 700, cfg=cfg)[0]] == [16.39]


def test_cap_schedule_changes_the_entry_size_by_seconds_since_window_start():
    assert s1(book(0.61), now=WS + 299.9)[0] == []
    assert s1(book(0.61), now=WS + 600)[0][0].size == 8.19  # floor(5 / 0.61)


def test_entry_size_counts_shares_already_held():
    # Holding 3 shares at bid 0.61 ($1.83 of the $5 cap): floor(3.17 / 0.61) = 5.19
    wants, _ = s1(book(0.61), positions={Leg.UP: pos(Leg.UP, 3, 0.60)}, now=WS + 700)
    entries = [w for w in wants if w.role is Role.ENTRY]
    assert [w.size for w in entries] == [5.19]


def test_entry_respects_exposure_room_from_the_total_cap():
    wants, _ = decide_s1(book(0.61), [], {}, CFG.s1, S1State(window_start=WS), WS + 700, exposure_room_usd=3.5)
    assert [w.size for w in wants] == [5.73]


def test_highest_bid_mode_enters_the_leg_with_the_higher_bid():
    wants, _ = s1(down_book(0.70), now=WS + 400)
    assert [(w.leg, w.price) for w in wants] == [(Leg.DOWN, 0.70)]


def test_highest_bid_mode_keeps_the_leg_in_play():
    # Up holds a position; Down's bid is higher and eligible, but one leg at a time.
    market = book(0.62, down_bid=0.75, down_ask=0.76)
    wants, _ = s1(market, positions={Leg.UP: pos(Leg.UP, 6.0, 0.61, first_fill_at=None)}, now=WS + 700)
    assert all(w.leg is Leg.UP for w in wants)


def test_both_mode_enters_every_eligible_leg():
    cfg = config(**{"s1.leg_mode": "both"})
    market = book(0.62, down_bid=0.75, down_ask=0.76)
    wants, _ = s1(market, now=WS + 400, cfg=cfg)
    assert sorted(w.leg.value for w in wants) == ["down", "up"]


@pytest.mark.parametrize("mode,leg", [("up_only", Leg.UP), ("down_only", Leg.DOWN)])
def test_single_leg_modes_never_enter_the_other_leg(mode, leg):
    cfg = config(**{"s1.leg_mode": mode})
    for market in (book(0.70), down_book(0.70)):
        wants, _ = s1(market, now=WS + 400, cfg=cfg)
        assert all(w.leg is leg for w in wants)
    assert s1(book(0.70) if leg is Leg.DOWN else down_book(0.70), now=WS + 400, cfg=cfg)[0] == []


def test_disabled_s1_places_no_entry_but_still_stops_out():
    cfg = config(**{"s1.enabled": False})
    assert s1(book(0.70), now=WS + 400, cfg=cfg)[0] == []
    wants, _ = s1(book(0.45), positions={Leg.UP: pos(Leg.UP, 6.55, 0.62)}, now=WS + 400, cfg=cfg)
    assert [(w.role, w.order_type) for w in wants] == [(Role.STOP_LOSS, OrderType.FAK)]


# --- requote -------------------------------------------------------------------------------------------


def test_unfilled_entry_is_kept_while_bid_moved_less_than_requote_min_improve():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    wants, _ = s1(book(0.63), [entry], now=WS + 310)
    assert [(w.price, w.size) for w in wants] == [(0.61, 6.55)]


def test_unfilled_entry_is_requoted_at_the_new_bid_after_requote_wait():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    assert [w.price for w in s1(book(0.64), [entry], now=WS + 301)[0]] == [0.61]  # too early
    wants, _ = s1(book(0.64), [entry], now=WS + 302)
    assert [(w.price, w.size) for w in wants] == [(0.64, 6.25)]


def test_partly_filled_entry_is_not_requoted():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300, filled=1.0)
    wants, _ = s1(book(0.66), [entry], positions={Leg.UP: pos(Leg.UP, 1.0, 0.61, first_fill_at=None)}, now=WS + 320)
    assert [(w.price, w.size) for w in wants if w.role is Role.ENTRY] == [(0.61, 5.55)]


def test_entry_is_cancelled_when_bid_drops_below_entry_threshold():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    d = decide(book(0.59), [entry], {}, CFG, None, WS + 301)
    assert [c.client_id for c in cancels(d)] == [entry.client_id]
    assert places(d) == []


def test_requote_cancels_first_and_places_only_after_the_cancel_is_confirmed():
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    d = decide(book(0.65), [entry], {}, CFG, None, WS + 305)
    assert [c.client_id for c in cancels(d)] == [entry.client_id] and places(d) == []
    d = decide(book(0.65), [], {}, CFG, d.state, WS + 305.1)
    assert [(w.price, w.size) for w in places(d)] == [(0.65, 6.15)]


# --- take-profit ---------------------------------------------------------------------------------------


def test_take_profit_rests_at_entry_plus_increment_one_second_after_the_fill():
    filled_at = WS + 400
    position = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=filled_at)}
    market = book(0.62, 0.64)
    assert s1(market, positions=position, now=filled_at + 0.5)[0] == []
    wants, _ = s1(market, positions=position, now=filled_at + 1.0)
    tp = [w for w in wants if w.role is Role.TAKE_PROFIT]
    assert [(w.side, w.price, w.size, w.order_type, w.post_only) for w in tp] == [
        (Side.SELL, 0.63, 6.55, OrderType.GTC, True)]


def test_take_profit_price_is_capped_and_rounded_up_to_the_tick():
    assert take_profit_price(CFG.s1, 0.985, 0.01) == 0.99
    assert take_profit_price(CFG.s1, 0.612, 0.01) == 0.63
    assert take_profit_price(CFG.s1, 0.62, 0.01) == 0.63


def test_take_profit_sells_into_the_bid_when_it_nets_tp_after_the_taker_fee():
    position = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    # bid 0.65: 0.65 - 0.07*0.65*0.35 = 0.6341 >= 0.63
    wants, _ = s1(book(0.65), positions=position, now=WS + 402)
    assert [(w.side, w.price, w.size, w.order_type, w.role) for w in wants if w.side is Side.SELL] == [
        (Side.SELL, 0.65, 6.55, OrderType.FAK, Role.TAKE_PROFIT)]


def test_take_profit_rests_above_the_bid_when_the_bid_does_not_net_tp():
    position = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    # bid 0.64 nets 0.6239 < 0.63 but resting at 0.63 would cross it: rest at 0.65
    wants, _ = s1(book(0.64), positions=position, now=WS + 402)
    assert [(w.price, w.post_only) for w in wants if w.side is Side.SELL] == [(0.65, True)]


def test_take_profit_is_repriced_when_the_position_grows():
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT, created_at=WS + 401)
    position = {Leg.UP: pos(Leg.UP, 9.0, 0.615, first_fill_at=WS + 400)}
    state = S1State(window_start=WS)
    wants, _ = s1(book(0.61, 0.63), [tp], position, now=WS + 410, state=state)
    sells = [w for w in wants if w.side is Side.SELL]
    assert [(w.price, w.size) for w in sells] == [(0.63, 9.0)]


def test_take_profit_is_repriced_at_most_every_exit_retry_s():
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT, created_at=WS + 401)
    position = {Leg.UP: pos(Leg.UP, 9.0, 0.615, first_fill_at=WS + 400)}
    state = S1State(window_start=WS, legs={Leg.UP: S1LegState(last_exit_at=WS + 409.5), Leg.DOWN: S1LegState()})
    wants, state = s1(book(0.61, 0.63), [tp], position, now=WS + 410, state=state)
    assert [(w.price, w.size) for w in wants if w.side is Side.SELL] == [(0.63, 6.55)]  # kept: 0.5 s < 1 s
    wants, _ = s1(book(0.61, 0.63), [tp], position, now=WS + 410.5, state=state)
    assert [(w.price, w.size) for w in wants if w.side is Side.SELL] == [(0.63, 9.0)]


def test_take_profit_follows_the_ask_when_it_drifts_but_never_below_tp():
    tp = order(Leg.UP, Side.SELL, 0.70, 6.55, Role.TAKE_PROFIT, created_at=WS + 401)
    position = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    at_once = config(**{"s1.tp_reprice_hold_s": 0})
    wants, _ = s1(book(0.60, 0.66), [tp], position, now=WS + 410, cfg=at_once)
    assert [w.price for w in wants if w.side is Side.SELL] == [0.66]
    wants, _ = s1(book(0.58, 0.60), [tp], position, now=WS + 410, cfg=at_once)
    assert [w.price for w in wants if w.side is Side.SELL] == [0.63]
    # With the default hold the same drift first has to hold for s1.tp_reprice_hold_s (tests/trader/decision/
    # test_tp_hold.py has the rule in full).
    hold = CFG.s1.tp_reprice_hold_s
    wants, state = s1(book(0.58, 0.60), [tp], position, now=WS + 410)
    assert [w.price for w in wants if w.side is Side.SELL] == [0.70]
    wants, _ = s1(book(0.58, 0.60), [tp], position, now=WS + 410 + hold, state=state)
    assert [w.price for w in wants if w.side is Side.SELL] == [0.63]


def test_take_profit_is_kept_when_nothing_changed():
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT, created_at=WS + 401)
    position = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    d = decide(book(0.61, 0.63), [tp], {("s1", Leg.UP): position[Leg.UP]}, CFG, None, WS + 420)
    assert d.actions == []


# --- stop-loss -----------------------------------------------------------------------------------------


def test_stop_trigger_is_entry_minus_offset_or_the_floor():
    assert stop_trigger(CFG.s1, 0.62, hold=False) == 0.50
    assert stop_trigger(CFG.s1, 0.85, hold=False) == 0.65
    assert stop_trigger(CFG.s1, 0.85, hold=True) == 0.70


def test_stop_loss_cancels_leg_orders_then_sells_whole_position_fill_and_kill_at_0_01():
    p = pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT, created_at=WS + 401)
    d = decide(book(0.49), [tp], {("s1", Leg.UP): p}, CFG, None, WS + 450)
    assert [c.client_id for c in cancels(d)] == [tp.client_id]
    assert "stop" in cancels(d)[0].reason
    assert places(d) == []  # the take-profit still locks the shares
    d = decide(book(0.49), [], {("s1", Leg.UP): p}, CFG, d.state, WS + 450.05)
    assert [(w.side, w.price, w.size, w.order_type, w.role) for w in places(d)] == [
        (Side.SELL, 0.01, 6.55, OrderType.FAK, Role.STOP_LOSS)]


def test_bid_at_the_floor_does_not_stop():
    p = {Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)}
    wants, _ = s1(book(0.50, 0.55), positions=p, now=WS + 450)
    assert all(w.role is not Role.STOP_LOSS for w in wants)


def test_stop_fires_at_entry_minus_offset_even_above_the_floor():
    p = {Leg.UP: pos(Leg.UP, 6.0, 0.85, first_fill_at=WS + 400)}
    wants, _ = s1(book(0.64), positions=p, now=WS + 450)
    assert [(w.role, w.price, w.size) for w in wants] == [(Role.STOP_LOSS, 0.01, 6.0)]
    wants, _ = s1(book(0.65), positions=p, now=WS + 450)
    assert all(w.role is not Role.STOP_LOSS for w in wants)


def test_stop_cancels_the_entry_order_too_without_waiting_for_it():
    p = pos(Leg.UP, 6.55, 0.62, first_fill_at=WS + 400)
    entry = order(Leg.UP, Side.BUY, 0.55, 1.0, Role.ENTRY, created_at=WS + 420)
    d = decide(book(0.45), [entry], {("s1", Leg.UP): p}, CFG, None, WS + 450)
    assert [c.client_id for c in cancels(d)] == [entry.client_id]
    assert [w.role for w in places(d)] == [Role.STOP_LOSS]


def test_stop_repeats_every_exit_retry_while_a_sellable_position_remains():
    p = {Leg.UP: pos(Leg.UP, 6.55, 0.62)}
    wants, state = s1(book(0.45), positions=p, now=WS + 450)
    assert [w.role for w in wants] == [Role.STOP_LOSS]
    # The FAK came back partly filled: 5.2 shares left, bid recovered: the stop goes on.
    p = {Leg.UP: pos(Leg.UP, 5.2, 0.62)}
    assert s1(book(0.55), positions=p, now=WS + 450.5, state=state)[0] == []
    wants, state = s1(book(0.55), positions=p, now=WS + 451.0, state=state)
    assert [(w.role, w.size) for w in wants] == [(Role.STOP_LOSS, 5.2)]


def test_no_new_entry_on_a_stopped_leg_for_the_rest_of_the_window():
    _, state = s1(book(0.45), positions={Leg.UP: pos(Leg.UP, 6.55, 0.62)}, now=WS + 450)
    _, state = s1(book(0.70), positions={}, now=WS + 460, state=state)
    wants, state = s1(book(0.70), positions={}, now=WS + 700, state=state)
    assert wants == []
    assert state.legs[Leg.UP].stopped


def test_stopped_leg_trades_again_in_the_next_window():
    _, state = s1(book(0.45), positions={Leg.UP: pos(Leg.UP, 6.55, 0.62)}, now=WS + 450)
    wants, _ = s1(book(0.70, window_start=WE), positions={}, now=WE + 400, state=state)
    assert [w.role for w in wants] == [Role.ENTRY]


# --- late window, hold, late stop, re-entry ----------------------------------------------------------------


def test_late_window_places_no_new_normal_entry_and_cancels_a_resting_one():
    assert s1(book(0.70), now=WE - 100)[0] == []
    entry = order(Leg.UP, Side.BUY, 0.70, 7.14, Role.ENTRY, created_at=WE - 130)
    d = decide(book(0.70), [entry], {}, CFG, None, WE - 100)
    assert [c.client_id for c in cancels(d)] == [entry.client_id]


def test_late_position_with_high_bid_cancels_take_profit_holds_then_stops_reenters_once():
    """strategies.md: 100 s before the end, holding Up bought at 0.91, bid 0.93: take-profit cancelled, held;
    bid drops to 0.69 -> stop; bid recovers to 0.91 -> one re-entry; a second stop-out -> no further entry."""
    t = WE - 100
    held = pos(Leg.UP, 5.49, 0.91, first_fill_at=WE - 200)
    tp = order(Leg.UP, Side.SELL, 0.92, 5.49, Role.TAKE_PROFIT, created_at=WE - 199)
    d = decide(book(0.93, 0.94), [tp], {("s1", Leg.UP): held}, CFG, None, t)
    assert [c.client_id for c in cancels(d)] == [tp.client_id] and places(d) == []
    assert d.state.s1.legs[Leg.UP].hold
    # Held: no take-profit even when it would be time for one.
    d = decide(book(0.93, 0.94), [], {("s1", Leg.UP): held}, CFG, d.state, t + 5)
    assert d.actions == []
    # 0.71 is above the late trigger 0.70 (and the normal trigger 0.71 no longer applies): still held.
    d = decide(book(0.71, 0.72), [], {("s1", Leg.UP): held}, CFG, d.state, t + 10)
    assert d.actions == []
    d = decide(book(0.69, 0.70), [], {("s1", Leg.UP): held}, CFG, d.state, t + 20)
    assert [(w.role, w.size, w.price) for w in places(d)] == [(Role.STOP_LOSS, 5.49, 0.01)]
    # The stop filled: flat. Bid below late_hold_threshold: no re-entry yet.
    d = decide(book(0.85, 0.86), [], {}, CFG, d.state, t + 21)
    assert places(d) == []
    d = decide(book(0.91, 0.92), [], {}, CFG, d.state, t + 30)
    reentry = places(d)
    assert [(w.role, w.side, w.price, w.size, w.post_only) for w in reentry] == [
        (Role.ENTRY, Side.BUY, 0.91, 5.49, True)]
    # The re-entry fills: held from the start, no take-profit.
    entry = order_from(reentry[0], created_at=t + 30, filled=5.49, state=OrderState.FILLED)
    filled = pos(Leg.UP, 5.49, 0.91, first_fill_at=t + 31)
    d = decide(book(0.95, 0.96), [entry], {("s1", Leg.UP): filled}, CFG, d.state, t + 40)
    assert d.actions == [] and d.state.s1.legs[Leg.UP].hold and d.state.s1.legs[Leg.UP].reentries == 1
    # Second stop-out, then no further entry whatever the bid.
    d = decide(book(0.65, 0.66), [], {("s1", Leg.UP): filled}, CFG, d.state, t + 50)
    assert [w.role for w in places(d)] == [Role.STOP_LOSS]
    d = decide(book(0.93, 0.94), [], {}, CFG, d.state, t + 60)
    d = decide(book(0.93, 0.94), [], {}, CFG, d.state, t + 70)
    assert d.actions == []


def test_max_late_reentries_counts_reentries_per_leg():
    cfg = config(**{"s1.max_late_reentries": 2})
    t = WE - 100
    held = {Leg.UP: pos(Leg.UP, 5.49, 0.91, first_fill_at=WE - 200)}
    _, state = s1(book(0.93, 0.94), positions=held, now=t, cfg=cfg)
    assert state.legs[Leg.UP].hold
    for n in (1, 2):
        t += 10
        wants, state = s1(book(0.69, 0.70), positions=held, now=t, state=state, cfg=cfg)  # late stop
        assert [w.role for w in wants] == [Role.STOP_LOSS]
        wants, state = s1(book(0.91, 0.92), positions={}, now=t + 1, state=state, cfg=cfg)  # flat, bid back
        assert [(w.role, w.price) for w in wants] == [(Role.ENTRY, 0.91)], n
        _, state = s1(book(0.93, 0.94), positions=held, now=t + 2, state=state, cfg=cfg)  # re-entry filled
        assert state.legs[Leg.UP].reentries == n and state.legs[Leg.UP].hold
    _, state = s1(book(0.69, 0.70), positions=held, now=t + 10, state=state, cfg=cfg)
    assert s1(book(0.95, 0.96), positions={}, now=t + 11, state=state, cfg=cfg)[0] == []


def test_late_position_below_hold_threshold_keeps_normal_take_profit_and_stop():
    p = pos(Leg.UP, 6.0, 0.80, first_fill_at=WE - 300)
    tp = order(Leg.UP, Side.SELL, 0.81, 6.0, Role.TAKE_PROFIT, created_at=WE - 299)
    d = decide(book(0.80, 0.81), [tp], {("s1", Leg.UP): p}, CFG, None, WE - 100)
    assert d.actions == [] and not d.state.s1.legs[Leg.UP].hold


def test_no_late_reentry_after_a_normal_time_stop():
    _, state = s1(book(0.45), positions={Leg.UP: pos(Leg.UP, 6.55, 0.62)}, now=WS + 450)
    _, state = s1(book(0.95), positions={}, now=WE - 100, state=state)
    assert s1(book(0.95), positions={}, now=WE - 90, state=state)[0] == []


def test_late_reentry_disabled_means_no_reentry():
    cfg = config(**{"s1.late_reentry": False})
    _, state = s1(book(0.65), positions={Leg.UP: pos(Leg.UP, 5.49, 0.91)}, now=WE - 100, cfg=cfg)
    assert state.legs[Leg.UP].stopping
    _, state = s1(book(0.95), positions={}, now=WE - 90, state=state, cfg=cfg)
    assert s1(book(0.95), positions={}, now=WE - 80, state=state, cfg=cfg)[0] == []


# --- dust ----------------------------------------------------------------------------------------------


def test_dust_position_gets_no_exit_orders_and_is_reported():
    dust = {Leg.UP: pos(Leg.UP, 3.2, 0.62, first_fill_at=WS + 400)}
    wants, state = s1(book(0.40), positions=dust, now=WS + 500)  # far below the stop trigger
    assert [w for w in wants if w.side is Side.SELL] == []
    assert any("dust 3.20" in n for n in state.notes)
    wants, _ = s1(book(0.66), positions=dust, now=WS + 500)  # would take profit if it could
    assert [w for w in wants if w.side is Side.SELL] == []


def test_take_profit_that_partly_filled_down_to_dust_is_kept_not_cancelled():
    # 6.55 offered, 3.00 sold: 3.55 shares left (< the market minimum 5). No new exit order may be placed for it,
    # but the resting one is valid and may sell the rest at tp.
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT, created_at=WS + 401, filled=3.0)
    position = {("s1", Leg.UP): pos(Leg.UP, 3.55, 0.62, first_fill_at=WS + 400)}
    d = decide(book(0.61, 0.63), [tp], position, CFG, None, WS + 420)
    assert d.actions == []


def test_position_without_a_first_fill_time_gets_its_take_profit_at_once():
    wants, _ = s1(book(0.61, 0.64), positions={Leg.UP: pos(Leg.UP, 6.55, 0.62, first_fill_at=None)}, now=WS + 400)
    assert [(w.role, w.price) for w in wants if w.side is Side.SELL] == [(Role.TAKE_PROFIT, 0.63)]


def test_position_with_unknown_entry_price_gets_no_take_profit_but_keeps_the_floor_stop():
    p = {Leg.UP: pos(Leg.UP, 6.55, 0.0)}
    assert [w for w in s1(book(0.61, 0.64), positions=p, now=WS + 400)[0] if w.side is Side.SELL] == []
    assert [w.role for w in s1(book(0.49), positions=p, now=WS + 400)[0]] == [Role.STOP_LOSS]
