"""The control handler reports each leg's top as displayed and without our orders; "behind" counts ours."""
from __future__ import annotations

import time

import pytest

from polymm.ctl import protocol as p

from tests.support.engine import order
from tests.trader.control.test_engine_control import trader  # noqa: F401 - the fixture


def wait_for_view(engine, predicate, timeout_s: float = 3.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = engine.status.market_view
        if view is not None and predicate(view):
            return view
        time.sleep(0.01)
    raise AssertionError("no decision saw the expected view")


def test_status_and_orders_carry_the_raw_top_and_the_top_without_us(trader):  # noqa: F811
    handler, engine, core, _, _, _ = trader
    core.working = [order("c1", price=0.6)]  # 6 of the 100 shares displayed at the best bid 0.60 are ours
    wait_for_view(engine, lambda v: v.up_raw is not None)
    st = handler.status(p.StatusRequest())
    up = next(b for b in st.book if b.leg == "up")
    assert (up.bid, up.bid_size, up.net_bid, up.net_bid_size) == (0.6, 100.0, 0.6, 94.0)
    assert up.net_bid_known and (up.ask, up.net_ask) == (0.61, 0.61)
    assert st.orders[0].distance == pytest.approx(0.0)  # at the displayed top: nothing ahead of us but the queue
    orders = handler.orders(p.OrdersRequest())
    assert orders.book == st.book


def test_the_top_is_unknown_without_us_when_the_published_book_shows_only_ours(trader):  # noqa: F811
    handler, engine, core, _, _, _ = trader
    big = order("c1", price=0.6)
    core.working = [type(big)(**{**big.__dict__, "size": 100.0})]  # the whole displayed level is ours
    wait_for_view(engine, lambda v: v.up_raw is not None)
    up = next(b for b in handler.status(p.StatusRequest()).book if b.leg == "up")
    assert up.bid == 0.6 and up.net_bid is None and up.net_bid_known is False
