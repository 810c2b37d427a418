"""Stops while the exchange is post-only: rest at bid + tick, follow the book, back to fill-and-kill after."""
from __future__ import annotations

import math

from tests.support.strategy import book, config
from polymm.trader.model import Leg, OrderType, Role, Side, Want
from polymm.trader.decision.post_only_exits import RESTING, adapt_exits

CFG = config()


def stop(price: float = 0.01, size: float = 8.0, **kw) -> Want:
    base = dict(strategy="s1", leg=Leg.UP, side=Side.SELL, price=price, size=size, role=Role.STOP_LOSS,
                order_type=OrderType.FAK, post_only=False, reason="stop: bid 0.47 < trigger 0.5")
    base.update(kw)
    return Want(**base)


def test_in_post_only_mode_a_stop_rests_post_only_one_tick_above_the_bid():
    [w] = adapt_exits([stop()], book(up_bid=0.47), CFG, post_only_only=True)
    assert (w.order_type, w.post_only, w.side, w.size, w.role) == (OrderType.GTC, True, Side.SELL, 8.0, Role.STOP_LOSS)
    assert w.price == 0.48
    assert w.reason == f"stop: bid 0.47 < trigger 0.5 ({RESTING})"


def test_it_follows_the_bid_and_its_reason_is_not_repeated():
    [first] = adapt_exits([stop()], book(up_bid=0.47), CFG, post_only_only=True)
    [moved] = adapt_exits([first], book(up_bid=0.44), CFG, post_only_only=True)  # the strategy mirrors it
    assert moved.price == 0.45 and moved.reason == first.reason


def test_flatten_too_and_other_legs_use_their_own_bid():
    flat = stop(role=Role.FLATTEN, leg=Leg.DOWN, reason="flatten by operator")
    [w] = adapt_exits([flat], book(up_bid=0.60, down_bid=0.30, down_ask=0.40), CFG, post_only_only=True)
    assert w.post_only and w.price == 0.31


def test_no_bid_rests_at_the_lowest_tick_and_a_fine_tick_is_respected():
    [w] = adapt_exits([stop()], book(up_bid=math.nan, up_ask=0.2), CFG, post_only_only=True)
    assert w.price == 0.01
    [w] = adapt_exits([stop(price=0.001)], book(up_bid=0.043, up_ask=0.05, tick=0.001), CFG, post_only_only=True)
    assert w.price == 0.044


def test_when_takers_are_allowed_again_the_resting_stop_becomes_the_fill_and_kill_stop():
    [resting] = adapt_exits([stop()], book(up_bid=0.47), CFG, post_only_only=True)
    [taker] = adapt_exits([resting], book(up_bid=0.45), config(**{"s1.sl_order_price": 0.02}), post_only_only=False)
    assert (taker.order_type, taker.post_only, taker.price) == (OrderType.FAK, False, 0.02)
    assert taker.reason == "stop: bid 0.47 < trigger 0.5"


def test_entries_take_profits_and_ordinary_stops_are_untouched():
    entry = Want(strategy="s1", leg=Leg.UP, side=Side.BUY, price=0.6, size=5, role=Role.ENTRY, post_only=True)
    tp = Want(strategy="s1", leg=Leg.UP, side=Side.SELL, price=0.7, size=5, role=Role.TAKE_PROFIT, post_only=True)
    assert adapt_exits([entry, tp], book(), CFG, post_only_only=True) == [entry, tp]
    assert adapt_exits([stop()], book(), CFG, post_only_only=False) == [stop()]


# -- through the pipeline -----------------------------------------------------------------------------------


def _stop_decision(post_only_only: bool, orders=(), up_bid: float = 0.45):
    from tests.support.strategy import WS, pos
    from polymm.trader.decision.decide import decide, new_state

    market = book(up_bid=up_bid)
    positions = {("s1", Leg.UP): pos(Leg.UP, 8.0, 0.60)}
    return decide(market, list(orders), positions, CFG, new_state(market), WS + 100, post_only_only=post_only_only)


def test_a_stop_in_post_only_mode_is_placed_resting_not_held_back():
    from polymm.trader.decision.planner import Place

    places = [a.want for a in _stop_decision(True).actions if isinstance(a, Place)]
    assert [(w.role, w.order_type, w.post_only, w.price, w.size) for w in places] == \
        [(Role.STOP_LOSS, OrderType.GTC, True, 0.46, 8.0)]


def test_without_post_only_mode_the_stop_is_fill_and_kill_as_before():
    from polymm.trader.decision.planner import Place

    places = [a.want for a in _stop_decision(False).actions if isinstance(a, Place)]
    assert [(w.role, w.order_type, w.post_only, w.price) for w in places] == [(Role.STOP_LOSS, OrderType.FAK, False, 0.01)]


def test_the_resting_stop_follows_the_bid_and_gives_way_to_the_taker_stop_after():
    from tests.support.strategy import WS, order_from
    from polymm.trader.decision.planner import Cancel, Place

    [resting] = [a.want for a in _stop_decision(True).actions if isinstance(a, Place)]
    working = order_from(resting, created_at=WS + 100)
    # The bid fell: the resting sell is replaced at the new bid + tick (cancel first: it locks the shares).
    moved = _stop_decision(True, orders=[working], up_bid=0.43).actions
    assert [type(a) for a in moved] == [Cancel] and "replace with SELL 8 @ 0.44" in moved[0].reason
    # Unchanged book: kept as it is, no churn.
    assert _stop_decision(True, orders=[working], up_bid=0.45).actions == []
    # Takers allowed again: the resting sell goes, to be replaced by the fill-and-kill stop.
    back = _stop_decision(False, orders=[working], up_bid=0.45).actions
    assert [type(a) for a in back] == [Cancel] and "FAK" not in back[0].reason and "0.01" in back[0].reason
