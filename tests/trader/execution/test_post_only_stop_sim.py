"""A stop during the post-only period after a 425, on the sim: the decision pipeline (as the engine runs it) with the
real execution core. The stop rests post-only one tick above the bid while the exchange refuses takers, and the
fill-and-kill stop takes over the moment they are allowed again, until the position is gone."""
from __future__ import annotations

import time

import pytest

from tests.support.execution import book_top, live_market, marketable, running_core, wait_for, want
from polymm.sim.testing import run_sim
from polymm.trader.decision.decide import decide, new_state
from polymm.trader.engine import halt_reason
from polymm.trader.model import ExchangeMode, Leg, MarketView, OrderState, OrderType, Role, Side
from polymm.trader.decision.planner import Place
from tests.support.strategy import config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

POST_ONLY_S = 4.0
# Every position of S1 is stopped at once (its bid is below the floor); no entries (the threshold is out of reach).
CFG = config(**{"s1.sl_floor": 0.98, "s1.entry_threshold": 0.99, "s1.exit_retry_s": 0.5, "s1.late_window_s": 0})


def view(sim, m) -> MarketView:
    up_bid, up_ask = book_top(sim, m.up_token)
    down_bid, down_ask = book_top(sim, m.down_token)
    return MarketView(market=m, fee_rate=m.fee_rate, up_bid=up_bid, up_bid_size=100.0,
                      up_ask=up_ask, up_ask_size=100.0, down_bid=down_bid, down_bid_size=100.0, down_ask=down_ask,
                      down_ask_size=100.0, age_ms=0.0, fresh=True)


def held(core, m) -> float:
    pos = core.positions(m.condition_id).get(("s1", Leg.UP))
    return pos.shares if pos is not None else 0.0


def test_a_stop_rests_post_only_after_a_425_and_takes_when_takers_are_back(tmp_path):
    with run_sim(tmp_path / "sim", seed=11, window_s=900) as sim, \
            running_core(sim, tmp_path / "state", post_only_after_restart_s=POST_ONLY_S,
                         heartbeat_interval_s=0.5) as core:
        m = live_market(sim)
        _, ask = book_top(sim, m.up_token)
        core.place(want(Leg.UP, Side.BUY, marketable(ask), 6, post_only=False, order_type=OrderType.FAK))
        wait_for(lambda: held(core, m) >= 5, what="a position of S1 on Up")
        # The engine restarts: the next post gets 425, then the exchange takes post-only orders only.
        sim.admin.fault("post_status", status=425, count=1)
        bid, _ = book_top(sim, m.up_token)
        core.place(want(Leg.UP, Side.BUY, round(bid - 0.1, 2), 5, strategy="test"))
        wait_for(lambda: core.state().mode is ExchangeMode.POST_ONLY, timeout_s=30, what="post-only after the 425")

        state = new_state(view(sim, m))
        placed = []  # (post-only mode at the time, the want)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and held(core, m) >= m.min_order_size:
            exchange = core.state()
            d = decide(view(sim, m), core.orders(working_only=True), core.positions(m.condition_id), CFG, state,
                       time.time(), halt_reason=halt_reason(exchange), post_only_only=exchange.post_only_required)
            state = d.state
            for action in d.actions:
                if isinstance(action, Place):
                    placed.append((exchange.post_only_required, action.want))
                    core.place(action.want)
                else:
                    core.cancel(action.client_id, action.reason)
            time.sleep(0.1)

        assert held(core, m) < m.min_order_size, f"position not sold: {held(core, m)} shares; placed {placed}"
        stops = [(mode, w) for mode, w in placed if w.role is Role.STOP_LOSS]
        # While takers were refused: resting post-only sells, one tick above the bid, accepted by the exchange.
        during = [w for mode, w in stops if mode]
        assert during and all(w.post_only and w.order_type is OrderType.GTC for w in during), stops
        assert all(w.reason.endswith("(exchange post-only: resting one tick above the bid until takers are allowed)")
                   for w in during)
        # ...and the exchange took them (post-only mode accepts them; none refused as taking).
        resting = [o for o in core.orders(working_only=False) if o.role is Role.STOP_LOSS and o.post_only]
        assert any(o.state in (OrderState.LIVE, OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELED)
                   for o in resting), resting
        # After: fill-and-kill (unless the resting sell had already sold everything).
        after = [w for mode, w in stops if not mode]
        assert all(w.order_type is OrderType.FAK and not w.post_only for w in after), stops
