"""The sim's scripted book (admin /_sim/book, /_sim/take): a test sets exactly the background levels of a window
and trades into it when it says; the synthetic ladder and random takers leave that window alone."""
from __future__ import annotations

from decimal import Decimal as D

from polymm.sim.engine import SimOrder

from tests.sim.test_sim_market import T0, make_sim, run


def test_a_scripted_book_is_exactly_its_levels_and_stays_so_while_time_passes():
    engine, calendar, market = make_sim(taker_rate_per_s=50.0)
    run(market, T0, T0 + 2, 0.25)
    spec = calendar.spec_for(int(T0))
    market.script_book(spec.condition_id, [(D("0.61"), D("20")), (D("0.58"), D("40"))], [(D("0.63"), D("10"))], T0 + 2)
    run(market, T0 + 2.25, T0 + 20, 0.25)  # busy random takers elsewhere: not here
    bids, asks = engine.book(spec.up_token)
    assert bids == [(D("0.61"), D("20")), (D("0.58"), D("40"))] and asks == [(D("0.63"), D("10"))]
    # again: the previous script's levels go, ours stay
    engine.fund("0xabc", D(100))
    mine = SimOrder(order_id="0xmine", owner="k", maker_address="0xabc", market=spec.condition_id,
                    token_id=spec.up_token, side="BUY", price=D("0.61"), original_size=D("6.55"), order_type="GTC",
                    created_at=T0 + 20)
    assert engine.submit(mine, T0 + 20).ok
    market.script_book(spec.condition_id, [(D("0.55"), D("40"))], [(D("0.62"), D("10"))], T0 + 21)
    bids, asks = engine.book(spec.up_token)
    assert bids == [(D("0.61"), D("6.55")), (D("0.55"), D("40"))] and asks == [(D("0.62"), D("10"))]
    # a scripted taker sells into the bids down to its limit
    assert market.take(spec.condition_id, "SELL", D("0.55"), D("10"), T0 + 22)
    assert engine.book(spec.up_token)[0] == [(D("0.55"), D("36.55"))]
