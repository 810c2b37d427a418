"""Execution core against the sim: a tick-size change mid-window. New orders follow the current tick (told
by the feed through on_tick_size, or learnt from the exchange's rejection); prices are rounded to it in
one place, towards the safe side."""
from __future__ import annotations

import logging

import pytest

from tests.support.execution import make_core, wait_for, want
from polymm.sim.testing import run_sim
from polymm.trader.execution.core import MarketIdentity
from polymm.trader.model import Leg, OrderState, Side

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def state_of(core, cid):
    return next(o for o in core.orders(working_only=False) if o.client_id == cid)


def test_tick_size_change_mid_window(tmp_path, caplog):
    with run_sim(tmp_path / "sim", seed=12, window_s=900) as sim:
        st = sim.admin.state()
        # A window listed ahead keeps the tick it is given (the live one reverts at its next step).
        m = next(x for x in st["markets"] if int(x["window_start"]) > st["live_window_start"])
        market = MarketIdentity(m["condition_id"], m["up_token"], m["down_token"], int(m["window_start"]),
                                int(m["window_end"]), float(m["tick_size"]), 5.0, 0.07)
        core, _ = make_core(sim, tmp_path / "state")
        core.start(market)
        try:
            sim.admin.fault("tick_size", tick=0.001, condition_id=market.condition_id)
            # The feed reports the change: a 0.001 price goes out as it is.
            core.on_tick_size(market.up_token, 0.001)
            fine = core.place(want(Leg.UP, Side.BUY, 0.205, 5))
            wait_for(lambda: state_of(core, fine).state is OrderState.LIVE, what="0.001-tick order live")
            assert state_of(core, fine).price == 0.205

            sim.admin.fault("tick_size", tick=0.01, condition_id=market.condition_id)
            with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
                # Not told yet: the exchange rejects the stale-tick price, and the core learns the tick.
                stale = core.place(want(Leg.UP, Side.BUY, 0.215, 5))
                wait_for(lambda: state_of(core, stale).state is OrderState.REJECTED, what="stale tick rejected")
                assert core.tick_size(market.up_token) == 0.01
                # The next order with an off-tick price is rounded down (a BUY never pays more) and accepted.
                buy = core.place(want(Leg.UP, Side.BUY, 0.215, 5))
                wait_for(lambda: state_of(core, buy).state is OrderState.LIVE, what="repriced BUY live")
                assert state_of(core, buy).price == 0.21
            assert any(r.getMessage().startswith("order reprice") for r in caplog.records)
            core.on_tick_size(market.down_token, 0.01)
            down_order = core.place(want(Leg.DOWN, Side.BUY, 0.118, 5))
            wait_for(lambda: state_of(core, down_order).state is OrderState.LIVE, what="down leg on the tick")
            assert state_of(core, down_order).price == 0.11
        finally:
            core.stop()
