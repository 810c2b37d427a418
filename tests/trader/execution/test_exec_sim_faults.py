"""Execution core against the sim's fault injection: 425, 429, 503 (cancel-only and post-only mode),
balance errors, closed-only, heartbeats (stopped -> the sim cancels our orders; failing -> we stop and
cancel), and a tick-size change mid-window. Each reaches an explicit state with warnings in words."""
from __future__ import annotations

import time

import pytest

from tests.support.execution import book_top, live_market, running_core, wait_for, want
from polymm.sim.testing import STEADY, run_sim
from polymm.trader.execution.exchange_state import NetworkError
from polymm.trader.model import ExchangeMode, Leg, OrderState, Side, StatusChanged

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=7, window_s=900,
                 extra_args=("--heartbeat-timeout-s", "2"), script=STEADY) as running:
        yield running


@pytest.fixture
def core(sim, tmp_path):
    with running_core(sim, tmp_path / "state", post_only_after_restart_s=1.5, heartbeat_interval_s=0.5) as c:
        yield c


def wait_quietly(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def state_of(core, cid):
    return next(o for o in core.orders(working_only=False) if o.client_id == cid).state


def deep_bid(sim, core, leg=Leg.UP, below=0.05):
    m = live_market(sim)
    bid, _ = book_top(sim, m.token(leg))
    return round(bid - below, 2)


def test_425_engine_restarting_backs_off_then_post_only(sim, core):
    sim.admin.fault("post_status", status=425, count=1)
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.REJECTED, what="rejected by 425")
    st = core.state()
    assert st.mode is ExchangeMode.ENGINE_RESTARTING and not st.can_place
    assert any("restarting" in w for w in st.warnings)
    refused = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    assert state_of(core, refused) is OrderState.REJECTED  # refused locally, nothing sent
    wait_for(lambda: core.state().mode is ExchangeMode.POST_ONLY, timeout_s=5, what="post-only after back-off")
    not_post_only = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5, post_only=False))
    assert state_of(core, not_post_only) is OrderState.REJECTED
    ok = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5, post_only=True))
    wait_for(lambda: state_of(core, ok) is OrderState.LIVE, what="post-only order accepted")
    wait_for(lambda: core.state().mode is ExchangeMode.NORMAL, timeout_s=5, what="normal again")
    assert any(isinstance(e, StatusChanged) and e.status.mode is ExchangeMode.POST_ONLY for e in core.poll_events())


def test_429_rate_limited_until_retry_after(sim, core):
    sim.admin.fault("post_status", status=429, count=1, retry_after_s=2)
    t0 = time.time()
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.REJECTED, what="rejected by 429")
    st = core.state()
    assert st.mode is ExchangeMode.RATE_LIMITED and st.until is not None and 1 <= st.until - t0 <= 4
    assert any("Retry-After" in w for w in st.warnings)
    wait_for(lambda: core.state().mode is ExchangeMode.NORMAL, timeout_s=5, what="limit lifted")
    ok = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, ok) is OrderState.LIVE, what="accepted after the limit")


def test_503_cancel_only_refuses_new_orders_but_cancels_still_work(sim, core):
    resting = core.place(want(Leg.DOWN, Side.BUY, deep_bid(sim, core, Leg.DOWN), 5))
    wait_for(lambda: state_of(core, resting) is OrderState.LIVE, what="live")
    sim.admin.fault("post_status", status=503, count=1)
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.REJECTED, what="rejected by 503")
    st = core.state()
    assert st.mode is ExchangeMode.CANCEL_ONLY and any("cancel-only" in w for w in st.warnings)
    refused = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    assert state_of(core, refused) is OrderState.REJECTED
    core.cancel(resting, "cancel-only drill")
    wait_for(lambda: state_of(core, resting) is OrderState.CANCELED, what="cancel accepted in cancel-only")


def test_post_only_mode_announced_by_the_exchange(sim, core):
    sim.admin.fault("post_only_mode", seconds=2)
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5, post_only=False))
    wait_for(lambda: state_of(core, cid) is OrderState.REJECTED, what="rejected in post-only mode")
    st = core.state()
    assert st.mode is ExchangeMode.POST_ONLY and st.post_only_required and st.until is not None
    ok = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5, post_only=True))
    wait_for(lambda: state_of(core, ok) is OrderState.LIVE, what="post-only accepted")


def test_balance_error_refreshes_once_then_blocks_the_leg(sim, core):
    too_big = 2500  # x 0.4 = 1000 pUSD + more than the 1000 the sim funds
    first = core.place(want(Leg.UP, Side.BUY, 0.45, too_big))
    wait_for(lambda: state_of(core, first) is OrderState.REJECTED, what="balance rejection")
    assert core.state().blocked_legs == {}  # first time: the balance cache is refreshed, the leg stays open
    second = core.place(want(Leg.UP, Side.BUY, 0.45, too_big))
    wait_for(lambda: Leg.UP in core.state().blocked_legs, what="leg blocked")
    assert state_of(core, second) is OrderState.REJECTED
    assert any("leg up blocked" in w and "balance" in w for w in core.state().warnings)
    assert state_of(core, core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))) is OrderState.REJECTED
    other = core.place(want(Leg.DOWN, Side.BUY, deep_bid(sim, core, Leg.DOWN), 5))
    wait_for(lambda: state_of(core, other) is OrderState.LIVE, what="other leg still trades")


def test_closed_only_account_places_no_buys(sim, core):
    sim.admin.fault("closed_only", address=core.gateway.funder, on=True)
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.REJECTED, what="closed-only rejection")
    st = core.state()
    assert st.mode is ExchangeMode.CLOSED_ONLY and any("closed-only" in w for w in st.warnings)
    assert state_of(core, core.place(want(Leg.DOWN, Side.BUY, 0.3, 5))) is OrderState.REJECTED


def test_stopped_heartbeats_get_our_orders_cancelled_by_the_exchange_and_we_notice(sim, core):
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.LIVE, what="live")
    # The exchange arms its dead-man switch only once a heartbeat was accepted: pausing before the first
    # one would prove nothing (and the sim, like production, would never cancel).
    wait_for(lambda: core._heart is not None and core._heart.state.last_ok_at, what="a first accepted heartbeat")
    core.pause_heartbeats(True)
    # The exchange side: the sim cancels 2 s after the last heartbeat (checked on each of its ticks).
    wait_for(lambda: sim.admin.open_orders(core.gateway.funder) == [], timeout_s=60,
             what="the sim's dead-man switch cancelling our order",
             detail=lambda: f"; sim heartbeat ages {sim.admin.state().get('heartbeats_age_s')}")
    # Our side: the user channel's CANCELLATION normally tells us at once; should that frame be lost, the
    # REST reconciliation a gap calls for must still get us there (never a silent wrong state).
    if not wait_quietly(lambda: state_of(core, cid) is OrderState.CANCELED, timeout_s=15):
        core.request_reconcile("test: the exchange cancelled; did we notice?")
    wait_for(lambda: state_of(core, cid) is OrderState.CANCELED, timeout_s=60, what="the core noticing the cancel",
             detail=lambda: f"; our state {state_of(core, cid)}, user ws {core.state().user_stream_connected}")
    assert sim.admin.open_orders(core.gateway.funder) == []
    core.pause_heartbeats(False)


def test_failing_heartbeats_stop_placing_cancel_and_resync(sim, core, monkeypatch):
    cid = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, cid) is OrderState.LIVE, what="live")
    def broken(heartbeat_id):
        raise NetworkError(None, "POST /v1/heartbeats timed out (drill)")

    monkeypatch.setattr(core.gateway, "heartbeat", broken)
    wait_for(lambda: not core.state().heartbeat_ok, timeout_s=10, what="heartbeats tripped")
    assert any("heartbeats failing" in w for w in core.state().warnings)
    wait_for(lambda: state_of(core, cid) is OrderState.CANCELED, what="our orders cancelled")
    refused = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    assert state_of(core, refused) is OrderState.REJECTED
    monkeypatch.undo()
    wait_for(lambda: core.state().heartbeat_ok, timeout_s=10, what="heartbeats recovered")
    ok = core.place(want(Leg.UP, Side.BUY, deep_bid(sim, core), 5))
    wait_for(lambda: state_of(core, ok) is OrderState.LIVE, what="placing again")
