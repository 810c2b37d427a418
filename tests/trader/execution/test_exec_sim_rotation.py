"""Execution core against the sim: window rotation keeps the old market's positions until it resolves,
resolution realises them, the exchange's resolution cancels are noticed, and an in-process restart keeps
fills and positions."""
from __future__ import annotations

import pytest

from tests.support.execution import book_top, live_market, make_core, marketable, wait_for, want
from polymm.sim.testing import run_sim
from polymm.trader.execution.core import MarketIdentity
from polymm.trader.model import Leg, MarketResolvedEvent, OrderState, OrderType, Side

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def market_from(m: dict) -> MarketIdentity:
    return MarketIdentity(m["condition_id"], m["up_token"], m["down_token"], int(m["window_start"]),
                          int(m["window_end"]), float(m["tick_size"]), 5.0, 0.07)


def test_rotation_keeps_old_positions_until_resolution_which_realises_them(tmp_path):
    with run_sim(tmp_path / "sim", seed=9, window_s=900) as sim:
        old = live_market(sim)
        nxt = market_from(next(m for m in sim.admin.state()["markets"] if int(m["window_start"]) == old.window_end))
        core, _ = make_core(sim, tmp_path / "state")
        core.start(old)
        try:
            _, ask = book_top(sim, old.up_token)
            core.place(want(Leg.UP, Side.BUY, marketable(ask), 10, post_only=False, order_type=OrderType.FAK))
            bid, _ = book_top(sim, old.down_token)
            resting = core.place(want(Leg.DOWN, Side.BUY, round(bid - 0.05, 2), 5))
            wait_for(lambda: core.positions().get(("s1", Leg.UP))
                     and [o.state for o in core.orders()] == [OrderState.LIVE], what="fill + resting order")
            # A FAK takes what the book shows at that instant: the synthetic market may show fewer than 10.
            held = core.positions()[("s1", Leg.UP)].shares
            assert 0 < held <= 10
            cost = core.positions()[("s1", Leg.UP)].avg_price * held + core.positions()[("s1", Leg.UP)].fees

            core.set_market(nxt)
            assert core.positions() == {} and core.orders() == []
            ((pending_market, pending),) = core.pending_resolution()
            assert pending_market.condition_id == old.condition_id and pending[("s1", Leg.UP)].shares == held
            assert core.positions(condition_id=old.condition_id)[("s1", Leg.UP)].shares == held
            assert [o.client_id for o in core.orders(condition_id=old.condition_id)] == [resting]

            sim.admin.resolve_now(condition_id=old.condition_id, winner="Up")
            # The exchange cancels what rests in a resolved market; we notice on the user channel.
            wait_for(lambda: not core.orders(condition_id=old.condition_id), what="resolution cancel noticed")
            assert core.orders(working_only=False, condition_id=old.condition_id)[-1].state is OrderState.CANCELED
            core.resolve_market(old.condition_id, Leg.UP)
            assert core.pending_resolution() == []
            summary = core.pnl()
            assert summary["markets"][old.condition_id]["resolved"] == "up"
            assert abs(summary["markets"][old.condition_id]["realised"] - (held - cost)) < 1e-6
            assert summary["markets"][old.condition_id]["open_shares"] == 0
            assert any(isinstance(e, MarketResolvedEvent) for e in core.poll_events())
        finally:
            core.stop()


def test_in_process_restart_cancels_reconnects_and_keeps_fills(tmp_path):
    with run_sim(tmp_path / "sim", seed=10, window_s=900) as sim:
        m = live_market(sim)
        core, _ = make_core(sim, tmp_path / "state")
        core.start(m)
        try:
            _, ask = book_top(sim, m.down_token)
            core.place(want(Leg.DOWN, Side.BUY, marketable(ask), 5, strategy="s2", post_only=False, order_type=OrderType.FAK))
            bid, _ = book_top(sim, m.up_token)
            resting = core.place(want(Leg.UP, Side.BUY, round(bid - 0.05, 2), 5))
            wait_for(lambda: core.positions().get(("s2", Leg.DOWN))
                     and [o.state for o in core.orders()] == [OrderState.LIVE], what="fill + resting order")
            fills_before = core.fills()
            core.restart("operator asked")
            assert core.orders() == [] and sim.admin.open_orders(core.gateway.funder) == []
            assert core.fills() == fills_before
            assert core.positions()[("s2", Leg.DOWN)].shares == 5
            assert core.state().user_stream_connected and core.state().heartbeat_ok
            again = core.place(want(Leg.UP, Side.BUY, round(bid - 0.05, 2), 5))
            wait_for(lambda: any(o.client_id == again and o.state is OrderState.LIVE for o in core.orders()),
                     what="placing after restart")
            assert resting != again
        finally:
            core.stop()
