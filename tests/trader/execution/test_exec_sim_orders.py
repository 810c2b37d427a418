"""Execution core against the sim: order life cycle, unknown submit outcomes, deferred cancels, restart
with open orders and positions, shutdown cancels."""
from __future__ import annotations

import logging
import time

import pytest

from tests.support.execution import book_top, live_market, make_core, marketable, running_core, wait_for, want
from polymm.sim.testing import run_sim
from polymm.trader.execution.core import ExecutionCore
from polymm.trader.venue.gateway import Gateway
from polymm.trader.model import Leg, OrderChanged, OrderState, OrderType, Side
from polymm.trader.execution.wallet_lock import WalletLocked

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=3, window_s=900) as running:
        yield running


@pytest.fixture
def core(sim, tmp_path):
    with running_core(sim, tmp_path / "state") as c:
        yield c


def order(core: ExecutionCore, client_id: str):
    return next(o for o in core.orders(working_only=False) if o.client_id == client_id)


def test_post_only_order_goes_live_and_cancel_removes_it_from_the_exchange(sim, core):
    m = live_market(sim)
    bid, _ = book_top(sim, m.up_token)
    cid = core.place(want(Leg.UP, Side.BUY, round(bid - 0.03, 2), 7))
    wait_for(lambda: order(core, cid).state is OrderState.LIVE, what="live")
    view = order(core, cid)
    assert view.order_id.startswith("0x") and len(view.order_id) == 66
    assert [o["id"] for o in sim.admin.open_orders(core.gateway.funder)] == [view.order_id]
    core.cancel(cid, "test done")
    wait_for(lambda: order(core, cid).state is OrderState.CANCELED, what="canceled")
    assert sim.admin.open_orders(core.gateway.funder) == []
    assert core.orders() == []
    events = core.poll_events()
    states = [e.order.state for e in events if isinstance(e, OrderChanged) and e.order.client_id == cid]
    assert states[0] is OrderState.PENDING_SUBMIT and states[-1] is OrderState.CANCELED


def test_cancel_while_submit_pending_is_deferred_and_then_sent(sim, core, caplog):
    m = live_market(sim)
    bid, _ = book_top(sim, m.down_token)
    with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
        cid = core.place(want(Leg.DOWN, Side.BUY, round(bid - 0.03, 2), 5))
        core.cancel(cid, "changed my mind")
        wait_for(lambda: order(core, cid).state is OrderState.CANCELED, what="canceled")
    assert sim.admin.open_orders(core.gateway.funder) == []
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("order ")]
    assert any(line.startswith("order cancel-deferred") for line in lines) or \
        any(line.startswith("order cancel ") for line in lines)
    # Every order action is one line with id, strategy, leg, side, price, size, type, post_only, reason.
    for line in lines:
        for key in ("id=", "strategy=s1", "leg=down", "side=BUY", "price=", "size=5", "type=GTC", "post_only=1",
                    "reason="):
            assert key in line, line


def test_submit_timeout_that_did_fill_is_looked_up_and_not_resent(sim, core, caplog):
    m = live_market(sim)
    _, ask = book_top(sim, m.up_token)
    sim.admin.fault("post_status", status=500, count=1)  # "order timed out" after the order was placed
    with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
        cid = core.place(want(Leg.UP, Side.BUY, marketable(ask), 6, post_only=False))
        wait_for(lambda: order(core, cid).state is OrderState.FILLED, what="filled after lookup")
    assert any(r.getMessage().startswith("order unknown") for r in caplog.records)
    wait_for(lambda: core.positions().get(("s1", Leg.UP)), what="position")
    assert core.positions()[("s1", Leg.UP)].shares == 6
    trades = sim.admin.trades(core.gateway.funder)
    assert len({t["taker_order_id"] for t in trades}) == 1  # submitted once, never resent
    assert sum(f.size for f in core.fills()) == 6


def test_a_rejected_order_is_rejected_with_the_exchange_reason(sim, core):
    m = live_market(sim)
    _, ask = book_top(sim, m.up_token)
    cid = core.place(want(Leg.UP, Side.BUY, marketable(ask), 5, post_only=True))  # post-only that crosses
    wait_for(lambda: order(core, cid).state is OrderState.REJECTED, what="rejected")
    assert core.state().mode.value == "normal"
    cid2 = core.place(want(Leg.UP, Side.BUY, 0.3, 2))  # below the minimum size: refused locally
    assert order(core, cid2).state is OrderState.REJECTED


def test_restart_with_open_orders_and_positions_doubles_nothing_and_loses_nothing(sim, tmp_path):
    sim.admin.fault("clear")
    m = live_market(sim)
    state_dir = tmp_path / "state"
    first, pk = make_core(sim, state_dir)
    first.start(m)
    bid, ask = book_top(sim, m.up_token)
    resting = first.place(want(Leg.UP, Side.BUY, round(bid - 0.04, 2), 8, strategy="s2"))
    taken = first.place(want(Leg.UP, Side.BUY, marketable(ask), 5, strategy="s1", post_only=False, order_type=OrderType.FAK))
    wait_for(lambda: order(first, resting).state is OrderState.LIVE and first.positions().get(("s1", Leg.UP)),
             what="resting order and position")
    resting_id = order(first, resting).order_id
    # Simulate a crash: threads stop, nothing is cancelled, the wallet lock is released by the "exit".
    first.stop(cancel_orders=False)

    second, _ = make_core(sim, state_dir, pk=pk)
    second.start(m)
    try:
        working = second.orders()
        assert [(o.order_id, o.strategy, o.state) for o in working] == [(resting_id, "s2", OrderState.LIVE)]
        pos = second.positions()
        assert pos[("s1", Leg.UP)].shares == 5 and ("s2", Leg.UP) not in pos
        assert len(second.fills()) == len(first.fills())
        second.reconcile("again")  # idempotent
        assert second.positions()[("s1", Leg.UP)].shares == 5 and len(second.orders()) == 1
        # The adopted order is managed as before: it can be cancelled.
        second.cancel(resting_id, "after restart")
        wait_for(lambda: second.orders() == [], what="cancelled after restart")
    finally:
        second.stop()
    assert sim.admin.open_orders(second.gateway.funder) == []


def test_a_second_core_on_the_same_wallet_refuses_to_start(sim, tmp_path):
    sim.admin.fault("clear")
    m = live_market(sim)
    first, pk = make_core(sim, tmp_path / "state")
    first.start(m)
    try:
        second, _ = make_core(sim, tmp_path / "state", pk=pk)
        with pytest.raises(WalletLocked, match="already trades wallet"):
            second.start(m)
    finally:
        first.stop()


def test_stop_cancels_every_open_order(sim, tmp_path):
    sim.admin.fault("clear")
    m = live_market(sim)
    c, _ = make_core(sim, tmp_path / "state")
    c.start(m)
    bid, _ = book_top(sim, m.up_token)
    ids = [c.place(want(Leg.UP, Side.BUY, round(bid - 0.05 - i / 100, 2), 5)) for i in range(3)]
    wait_for(lambda: all(order(c, i).state is OrderState.LIVE for i in ids), what="live")
    c.stop()
    assert sim.admin.open_orders(c.gateway.funder) == []
    assert all(order(c, i).state is OrderState.CANCELED for i in ids)


def test_gateway_posts_batches_and_reads_back(sim, core):
    m = live_market(sim)
    gw: Gateway = core.gateway
    bid, _ = book_top(sim, m.down_token)
    orders = [gw.signer.build(m.down_token, Side.BUY, round(bid - 0.05 - i / 100, 2), 5, m.tick_size) for i in range(3)]
    results = gw.post_orders([(o, "GTC", True) for o in orders])
    assert [r.order_id for r in results] == [o.order_hash for o in orders]
    assert {row["id"] for row in gw.open_orders(market=m.condition_id)} == {o.order_hash for o in orders}
    assert gw.get_order(orders[0].order_hash)["status"] == "LIVE"
    assert gw.get_order("0x" + "00" * 32) is None
    cancelled = gw.cancel_market(market=m.condition_id)
    assert set(cancelled.canceled) == {o.order_hash for o in orders}
    assert int(gw.balance_allowance()["balance"]) > 0


def test_gtd_expires_at_window_end_and_submit_sent_callback_fires(sim, tmp_path):
    sim.admin.fault("clear")
    m = live_market(sim)
    sent = []
    c, _ = make_core(sim, tmp_path / "state", on_submit_sent=lambda cid, t: sent.append((cid, t)))
    c.start(m)
    try:
        bid, _ = book_top(sim, m.up_token)
        before_place = time.time()
        cid = c.place(want(Leg.UP, Side.BUY, round(bid - 0.05, 2), 5, order_type=OrderType.GTD))
        wait_for(lambda: order(c, cid).state is OrderState.LIVE, what="GTD live")
        after_live = time.time()
        (row,) = sim.admin.open_orders(c.gateway.funder)
        left = m.window_end + 60 - sent[0][1]  # the exchange expires GTD 60 s early: this dies at the close
        if order(c, cid).order_type is OrderType.GTD:
            assert int(row["expiration"]) == m.window_end + 60 and left >= 180
        else:  # too late in the window for a GTD (needs 3 min): sent as GTC, cancelled explicitly at the close
            assert int(row["expiration"]) == 0 and left < 186
        assert [s[0] for s in sent] == [cid] and before_place <= sent[0][1] <= after_live
    finally:
        c.stop()


def test_cancel_of_an_order_with_unknown_outcome_waits_for_the_lookup_then_cancels(sim, core, caplog):
    m = live_market(sim)
    bid, _ = book_top(sim, m.up_token)
    sim.admin.fault("post_status", status=500, count=1)  # placed, but the answer is an error
    sim.admin.fault("ws_delay", seconds=3)  # and the user channel is slow to tell
    with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
        cid = core.place(want(Leg.UP, Side.BUY, round(bid - 0.04, 2), 5))
        wait_for(lambda: order(core, cid).state is OrderState.UNKNOWN, what="outcome unknown")
        core.cancel(cid, "replace")  # the first lookup is ~1 s away: this cancel must wait for it
        wait_for(lambda: order(core, cid).state is OrderState.CANCELED, what="cancelled once known")
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("order unknown") for line in lines)
    assert any(line.startswith("order cancel-deferred") for line in lines)
    assert sim.admin.open_orders(core.gateway.funder) == []


@pytest.mark.parametrize("signature_type", [0, 1, 2, 3])
def test_the_sim_accepts_our_signed_orders_for_every_signature_type(sim, signature_type):
    from eth_account import Account
    from polymm.sim.testing import new_wallet

    m = live_market(sim)
    pk, _ = new_wallet()
    funder = None if signature_type == 0 else Account.create().address
    gw = Gateway(sim.urls["clob_url"], pk, signature_type=signature_type, funder=funder)
    try:
        gw.connect()
        bid, _ = book_top(sim, m.down_token)
        signed = gw.signer.build(m.down_token, Side.BUY, round(bid - 0.05, 2), 5, m.tick_size)
        assert gw.post_order(signed, "GTC", True).status == "live"
        assert gw.cancel_order(signed.order_hash).canceled == (signed.order_hash,)
    finally:
        gw.close()
