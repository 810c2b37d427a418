"""The market info's order timing rules live, against the sim (`order_rules` fault): the execution core never
sends a cancel before the market's minimum order age (it holds it, then sends it), and a taker the exchange
answers `delayed` is expected: it fills when the delay ends and cannot be cancelled meanwhile."""
from __future__ import annotations

import logging
import time

import pytest

from polymm.sim.testing import run_sim
from polymm.trader.model import Leg, OrderState, OrderType, Side
from contextlib import contextmanager

from tests.support.execution import book_top, live_market, make_core, wait_for, want

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=41, window_s=900) as running:
        yield running


@contextmanager
def core_under(sim, state_dir, **rules):
    """A started core on a sim whose markets have these order rules (read with the fee schedule at start)."""
    sim.admin.fault("clear")
    sim.admin.fault("order_rules", **rules)
    core, _ = make_core(sim, state_dir)
    core.start(live_market(sim))
    try:
        yield core
    finally:
        core.stop()
        sim.admin.fault("clear")


def order(core, client_id):
    return next(o for o in core.orders(working_only=False) if o.client_id == client_id)


def test_a_cancel_before_the_minimum_order_age_is_held_then_sent(sim, tmp_path, caplog):
    with core_under(sim, tmp_path / "state", min_order_age_s=2) as core:
        m = live_market(sim)
        bid, _ = book_top(sim, m.up_token)
        cid = core.place(want(Leg.UP, Side.BUY, round(bid - 0.05, 2), 5))
        wait_for(lambda: order(core, cid).state is OrderState.LIVE, what="live")
        live_at = time.time()
        with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
            core.cancel(cid, "requote")
            assert order(core, cid).state is OrderState.PENDING_CANCEL  # held, shown as being cancelled
            wait_for(lambda: order(core, cid).state is OrderState.CANCELED, timeout_s=10, what="cancelled")
        assert time.time() - live_at >= 1.9
        assert sim.admin.state()["order_rules"]["early_cancels"] == 0  # the exchange never saw it early
        lines = [r.getMessage() for r in caplog.records]
        assert any(line.startswith("order cancel-held") and "minimum order age" in line for line in lines)
        assert any(line.startswith("order cancel ") and "held until" in line for line in lines)


def test_a_delayed_taker_is_expected_and_fills_when_the_delay_ends(sim, tmp_path, caplog):
    with core_under(sim, tmp_path / "state", taker_delay=True) as core:
        m = live_market(sim)
        sim.admin.book(bids=[[0.50, 100]], asks=[[0.55, 100]], condition_id=m.condition_id)  # scripted: it stays
        with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
            cid = core.place(want(Leg.UP, Side.BUY, 0.55, 5, post_only=False, order_type=OrderType.FAK))
            wait_for(lambda: order(core, cid).state is OrderState.FILLED, timeout_s=10, what="the delayed take filled")
        # A delayed take that finds nothing when its delay ends is killed, and the user channel says so (the POST
        # answer was only `delayed`). The sim holds it 2 s here, so the book can move within the delay.
        sim.admin.fault("order_rules", delay_s=2.0)
        killed = core.place(want(Leg.UP, Side.BUY, 0.55, 5, post_only=False, order_type=OrderType.FAK))
        wait_for(lambda: order(core, killed).state is OrderState.LIVE, what="accepted, delayed")
        sim.admin.book(bids=[[0.50, 100]], asks=[[0.60, 100]], condition_id=m.condition_id)
        wait_for(lambda: order(core, killed).state is OrderState.CANCELED, timeout_s=10, what="killed")
        assert order(core, killed).filled == 0
        lines = [r.getMessage() for r in caplog.records]
        assert any("accepted status=delayed" in line for line in lines)  # answered delayed, not an error
        assert not any("refused" in line or "rejected" in line for line in lines)
        fill = next(f for f in core.fills() if f.order_id == order(core, cid).order_id)
        assert fill.role == "taker" and fill.size == 5
