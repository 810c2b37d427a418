"""Planner: wants -> place/cancel with tolerances, cancels first, one order per strategy/leg/side."""
from __future__ import annotations

from dataclasses import replace

from tests.support.strategy import order

from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want
from polymm.trader.decision.planner import Cancel, Place, plan

TICK = 0.01


def entry(price=0.61, size=6.55, leg=Leg.UP, strategy="s1"):
    return Want(strategy, leg, Side.BUY, price, size, Role.ENTRY, OrderType.GTC, True, "entry")


def test_new_want_is_placed():
    assert plan([entry()], [], TICK) == [Place(entry())]


def test_working_order_matching_the_want_is_kept_without_churn():
    o = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY)
    assert plan([entry()], [o], TICK) == []
    # Binary float noise in price or size is the same order.
    assert plan([entry(price=0.6100000001, size=6.554)], [o], TICK) == []


def test_partly_filled_order_is_matched_on_its_remaining_size():
    o = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, filled=1.55, state=OrderState.PARTIALLY_FILLED)
    assert plan([entry(size=5.0)], [o], TICK) == []


def test_unwanted_order_is_cancelled_with_the_reason_given():
    o = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY)
    actions = plan([], [o], TICK, reasons={("s1", Leg.UP): "bid below entry threshold"})
    assert actions == [Cancel(o.client_id, "bid below entry threshold")]


def test_changed_want_cancels_first_and_never_has_two_entries_per_leg():
    o = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY)
    actions = plan([entry(price=0.65, size=6.15)], [o], TICK)
    assert len(actions) == 1 and isinstance(actions[0], Cancel) and "replace" in actions[0].reason
    # While the cancel is pending the old order still works: still no second entry.
    pending = replace(o, state=OrderState.PENDING_CANCEL)
    assert plan([entry(price=0.65, size=6.15)], [pending], TICK) == []
    # Once it is gone, the new entry goes out.
    assert plan([entry(price=0.65, size=6.15)], [], TICK) == [Place(entry(price=0.65, size=6.15))]


def test_order_already_being_cancelled_is_not_cancelled_again():
    o = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, state=OrderState.PENDING_CANCEL)
    assert plan([], [o], TICK) == []


def test_fill_and_kill_orders_are_never_cancelled_and_not_sent_twice():
    stop = Want("s1", Leg.UP, Side.SELL, 0.01, 6.55, Role.STOP_LOSS, OrderType.FAK, False, "stop")
    in_flight = order(Leg.UP, Side.SELL, 0.01, 6.55, Role.STOP_LOSS, order_type=OrderType.FAK, post_only=False,
                      state=OrderState.PENDING_SUBMIT)
    assert plan([], [in_flight], TICK) == []
    assert plan([stop], [in_flight], TICK) == []


def test_a_new_sell_waits_until_the_resting_sell_of_that_leg_is_gone():
    tp = order(Leg.UP, Side.SELL, 0.63, 6.55, Role.TAKE_PROFIT)
    stop = Want("s1", Leg.UP, Side.SELL, 0.01, 6.55, Role.STOP_LOSS, OrderType.FAK, False, "stop")
    actions = plan([stop], [tp], TICK, reasons={("s1", Leg.UP): "stop: bid 0.49 < trigger 0.5"})
    assert actions == [Cancel(tp.client_id, "stop: bid 0.49 < trigger 0.5")]
    assert plan([stop], [], TICK) == [Place(stop)]


def test_strategies_and_legs_do_not_block_each_other():
    s2_entry = order(Leg.UP, Side.BUY, 0.90, 10, Role.ENTRY, strategy="s2")
    down = order(Leg.DOWN, Side.BUY, 0.61, 6.55, Role.ENTRY)
    actions = plan([entry(), entry(price=0.90, size=10, strategy="s2"), entry(leg=Leg.DOWN)], [s2_entry, down], TICK)
    assert actions == [Place(entry())]


def test_terminal_orders_are_ignored():
    done = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, state=OrderState.FILLED, filled=6.55)
    assert plan([entry()], [done], TICK) == [Place(entry())]


def test_two_wants_for_one_slot_place_only_the_first():
    actions = plan([entry(), entry(price=0.62)], [], TICK)
    assert actions == [Place(entry())]
