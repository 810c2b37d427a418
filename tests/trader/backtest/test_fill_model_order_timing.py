"""The market info's order timing rules in the fill model (trader/fill_model/, shared by the backtest and paper
trading): no cancel takes effect before the minimum order age (`oas`; held, not dropped), and a marketable order of
a market with a taker delay (`itode`) matches the book of when the delay ends."""
from __future__ import annotations

from polymm.trader.backtest.runner import Backtest
from polymm.trader.backtest.ticks_file import TickLine
from polymm.trader.config import load_config
from polymm.trader.fill_model import WindowFillModel
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want
from tests.support.strategy import WS

T0 = WS + 300


def line(t: float, up_bid=0.40, up_ask=0.42, **rules) -> TickLine:
    return TickLine(ts=T0 + t, window_start=WS, up_bid=up_bid, up_ask=up_ask, down_bid=0.58, down_ask=0.60,
                    **rules)


def model(first: TickLine, latency_s: float = 0.0) -> WindowFillModel:
    m = WindowFillModel(first, load_config(None), latency_s, [], "t")
    m.apply_line(first)
    return m


def buy(price: float, order_type=OrderType.GTC, post_only=False) -> Want:
    return Want("s1", Leg.UP, Side.BUY, price, 10, Role.ENTRY, order_type, post_only, "test")


def test_a_cancel_before_the_minimum_order_age_is_held_and_the_order_can_still_fill_meanwhile():
    m = model(line(0, min_order_age_s=5.0), latency_s=0.1)
    o = m.place(buy(0.41), T0)
    m.settle_pending(T0 + 0.1)  # rests at 0.41 from T0 + 0.1
    assert m.cancel(o.client_id, "requote", T0 + 1)
    assert o.cancel_at == T0 + 0.1 + 5.0  # held until the order is 5 s old at the exchange, not dropped
    m.settle_pending(T0 + 3)
    assert o.state is OrderState.PENDING_CANCEL
    m.apply_line(line(4, up_bid=0.39, up_ask=0.41, min_order_age_s=5.0))  # the market trades through our bid
    assert o.filled == 10 and o.state is OrderState.FILLED  # the held cancel could not save it
    fresh = m.place(buy(0.30), T0 + 10)
    m.settle_pending(T0 + 10)
    m.cancel(fresh.client_id, "no longer wanted", T0 + 20)
    assert fresh.cancel_at == T0 + 20 + 0.1  # old enough: the cancel goes at once (after the latency)


def test_a_marketable_order_is_held_by_the_taker_delay_and_takes_the_book_of_its_end():
    m = model(line(0, taker_delay_s=0.25))
    o = m.place(buy(0.45, OrderType.FAK), T0)
    m.settle_pending(T0)
    assert o.state is OrderState.PENDING_SUBMIT and o.delayed_until == T0 + 0.25
    assert [e["action"] for e in m.events][-1] == "delayed"
    m.cancel(o.client_id, "changed my mind", T0 + 0.1)
    assert o.cancel_at == T0 + 0.25  # a delayed order cannot be cancelled before the delay ends
    m.apply_line(line(0.2, up_ask=0.44, taker_delay_s=0.25))  # the ask moves within the delay
    m2 = model(line(0, taker_delay_s=0.25))
    o2 = m2.place(buy(0.45, OrderType.FAK), T0)
    m2.settle_pending(T0)
    m2.apply_line(line(0.2, up_ask=0.44, taker_delay_s=0.25))
    m2.settle_pending(T0 + 0.25)
    assert [(f["price"], f["role"]) for f in m2.fills] == [(0.44, "taker")]  # the book of T0 + 0.25, not of T0
    assert o2.state is OrderState.FILLED


def test_post_only_and_resting_orders_are_not_delayed():
    m = model(line(0, taker_delay_s=0.25))
    maker = m.place(buy(0.41, post_only=True), T0)
    rest = m.place(buy(0.40), T0)
    m.settle_pending(T0)
    assert maker.state is OrderState.LIVE and rest.state is OrderState.LIVE and not maker.delayed_until


def test_the_backtest_applies_the_minimum_order_age_its_ticks_carry():
    """The same replay with and without oas: the stale-feed cancel of S1's entry takes effect at once, or when the
    order is 30 s old (held, never dropped)."""
    def at(t, age):
        return TickLine(ts=WS + t, window_start=WS, up_bid=0.65, up_ask=0.68, down_bid=0.32, down_ask=0.35,
                        min_order_age_s=age)

    # a recording's gap is a quiet book until risk.quiet_feed_ms (issue 27): 2 s here, so the gap is a stale feed
    config = load_config(None, {"s1.cap_schedule": "0-900:20", "risk.quiet_feed_ms": "2000"})
    cancelled = {}
    for age in (0, 30):
        rows = [at(100 + i, age) for i in range(10)]  # then the feed goes quiet: S1 cancels its resting entry
        result = Backtest(config).run(rows)
        events = {e["action"]: e for e in result.events if e["id"] == "w1-1"}
        assert events["place"]["t"] == 100 and events["cancel"]["t"] < 112
        cancelled[age] = events["cancelled"]["t"]
    assert cancelled[0] < 112 and 130 <= cancelled[30] < 130.1
