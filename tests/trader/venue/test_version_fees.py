"""The exchange's order version and fee schedule, end to end against the sim: GET /version, a version switch
at runtime (re-sign once), a version polymm cannot sign (no orders, a warning in words), and the market's
fee schedule from GET /clob-markets."""
from __future__ import annotations

import httpx
import pytest
from eth_account import Account

from tests.support.execution import book_top, live_market
from polymm.sim.testing import new_wallet, run_sim
from polymm.trader.execution.exchange_state import ExchangeError, ExchangeState, Rejected
from polymm.trader.venue.gateway import FeeDetails, Gateway, OrderVersionMismatch
from polymm.trader.model import Leg, Side
from polymm.trader.venue.signing import UnsupportedOrderVersion

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=12, window_s=900) as running:
        yield running


@pytest.fixture
def clean(sim):
    sim.admin.fault("clear")
    yield sim
    sim.admin.fault("clear")


def gateway(sim, signature_type: int = 0) -> Gateway:
    pk, _ = new_wallet()
    funder = None if signature_type == 0 else Account.create().address
    gw = Gateway(sim.urls["clob_url"], pk, signature_type=signature_type, funder=funder)
    gw.connect()
    return gw


def resting_buy(sim, gw: Gateway, version: int | None = None):
    m = live_market(sim)
    bid, _ = book_top(sim, m.down_token)
    return gw.sign(m.down_token, Side.BUY, round(max(0.01, bid - 0.05), 2), 5, m.tick_size, version=version)


def test_sim_serves_version_2_by_default_and_the_gateway_learns_it(clean):
    assert httpx.get(clean.urls["clob_url"] + "/version", timeout=5).json() == {"version": 2}
    gw = gateway(clean)
    try:
        assert gw.order_version == 2 and gw.version_problem is None
    finally:
        gw.close()


@pytest.mark.parametrize("signature_type", [0, 3])
def test_a_version_switch_costs_one_resign(clean, signature_type):
    gw = gateway(clean, signature_type)
    try:
        stale = resting_buy(clean, gw)
        assert stale.version == 2
        clean.admin.set_order_version(3)
        with pytest.raises(OrderVersionMismatch) as err:
            gw.post_order(stale, "GTC", True)
        assert err.value.status == 400 and err.value.message == "order_version_mismatch"
        assert (err.value.signed_version, err.value.resign_version) == (2, 3)
        assert gw.order_version == 3  # learnt from GET /version on the refusal
        fresh = resting_buy(clean, gw)
        assert fresh.version == 3 and fresh.order_hash != stale.order_hash
        assert gw.post_order(fresh, "GTC", True).order_id == fresh.order_hash
        assert gw.cancel_order(fresh.order_hash).canceled == (fresh.order_hash,)
    finally:
        gw.close()


def test_a_mismatch_when_version_already_matches_is_not_retried(clean, monkeypatch):
    """/version names the version the order was signed for, yet the exchange says mismatch: re-signing would
    only be refused again, so the gateway does not ask for it (no loop of rejects)."""
    gw = gateway(clean)
    try:
        order = resting_buy(clean, gw)
        monkeypatch.setattr(gw, "refresh_version", lambda: 2)
        err = gw._version_mismatch(Rejected(400, "order_version_mismatch"), order)
        assert isinstance(err, OrderVersionMismatch) and err.resign_version is None
        other = gw._version_mismatch(Rejected(400, "not enough balance / allowance"), order)
        assert type(other) is Rejected  # every other refusal passes through untouched
    finally:
        gw.close()


def test_an_unknown_version_stops_signing_with_words(clean):
    gw = gateway(clean)
    try:
        order = resting_buy(clean, gw)
        clean.admin.set_order_version(4)
        with pytest.raises(OrderVersionMismatch) as err:
            gw.post_order(order, "GTC", True)
        assert err.value.resign_version is None
        assert gw.order_version == 4
        assert gw.version_problem == ("exchange order version 4 is not one polymm can sign (2, 3): no new orders "
                                      "until it is; upgrade polymm")
        with pytest.raises(UnsupportedOrderVersion, match="order version 4"):
            resting_buy(clean, gw)
        clean.admin.set_order_version(2)
        assert gw.refresh_version() == 2 and gw.version_problem is None
    finally:
        gw.close()


def test_a_bad_signature_is_still_invalid_signature_not_a_version_mismatch(clean):
    gw = gateway(clean)
    try:
        order = resting_buy(clean, gw)
        forged = type(order)(**{**order.__dict__, "signature": "0x" + "11" * 65})
        with pytest.raises(Rejected) as err:
            gw.post_order(forged, "GTC", True)
        assert not isinstance(err.value, OrderVersionMismatch) and err.value.message == "invalid signature"
    finally:
        gw.close()


def test_batch_rows_refused_for_their_version_say_so(clean):
    gw = gateway(clean)
    try:
        orders = [resting_buy(clean, gw), resting_buy(clean, gw)]
        clean.admin.set_order_version(3)
        results = gw.post_orders([(o, "GTC", True) for o in orders])
        assert all(isinstance(r, OrderVersionMismatch) and r.resign_version == 3 for r in results)
    finally:
        gw.close()


def test_fee_details_are_read_from_the_market_info_and_follow_the_sim(clean):
    gw = gateway(clean)
    try:
        m = live_market(clean)
        assert gw.fee_details(m.condition_id) == FeeDetails(0.07, 1.0, True)
        clean.admin.set_fee_schedule(0.25, 2)
        assert gw.fee_details(m.condition_id) == FeeDetails(0.25, 2.0, True)
        info = httpx.get(f"{clean.urls['clob_url']}/clob-markets/{m.condition_id}", timeout=5).json()
        assert info["fd"] == {"r": 0.25, "e": 2, "to": True}
        with pytest.raises(ExchangeError, match="market not found"):
            gw.fee_details("0x" + "00" * 32)
    finally:
        gw.close()


def test_sim_cli_fee_options_and_version(tmp_path):
    with run_sim(tmp_path, seed=5, window_s=900, extra_args=["--order-version", "3", "--fee-rate", "0.25",
                                                              "--fee-exponent", "2"]) as sim:
        gw = gateway(sim)
        try:
            assert gw.order_version == 3
            m = live_market(sim)
            assert gw.fee_details(m.condition_id).e == 2.0
            order = resting_buy(sim, gw)
            assert order.version == 3 and gw.post_order(order, "GTC", True).status == "live"
        finally:
            gw.close()


def test_an_order_version_we_cannot_sign_stops_every_new_order_with_words():
    state = ExchangeState()
    words = "exchange order version 4 is not one polymm can sign (2, 3): no new orders until it is; upgrade polymm"
    state.order_version_problem = words
    assert state.refuse_reason(Leg.UP, Side.SELL, True, 0.0) == words
    assert words in state.warnings() and words in state.status().warnings
    state.order_version_problem = None
    assert state.refuse_reason(Leg.UP, Side.SELL, True, 0.0) is None


def test_the_execution_core_rides_a_version_switch_and_charges_the_sims_fee_schedule(sim, tmp_path):
    """Done-when of issue 12 against the sim: the exchange moves from order version 2 to 3 mid-session and the
    next order costs one re-sign, not an outage; the market's fee schedule is the sim's."""
    from polymm.trader.model import OrderState
    from tests.support.execution import running_core, wait_for, want

    with running_core(sim, tmp_path) as core:
        m = live_market(sim)
        bid, _ = book_top(sim, m.down_token)
        price = round(max(0.01, bid - 0.05), 2)
        first = core.place(want(Leg.DOWN, Side.BUY, price, 5))
        wait_for(lambda: any(o.client_id == first and o.state is OrderState.LIVE for o in core.orders()),
                 what="a V2 order rests")
        sim.admin.set_order_version(3)
        second = core.place(want(Leg.DOWN, Side.BUY, round(price - 0.01, 2), 5))
        wait_for(lambda: any(o.client_id == second and o.state is OrderState.LIVE for o in core.orders()),
                 what="the next order rests after one re-sign")
        assert core.gateway.order_version == 3 and core.state().warnings == []
        assert len(sim.admin.open_orders(core.gateway.funder)) == 2
        assert core.fee_schedule(m.condition_id).rate == 0.07 and core.fee_schedule(m.condition_id).exponent == 1


def test_a_switch_to_a_version_whose_approvals_are_missing_blocks_orders_with_words_until_they_are_set(
        sim, tmp_path, monkeypatch):
    """Issue 21: the exchange moves to order version 3 and the wallet has only the V2 approvals. The trader
    re-checks the approvals before re-signing: no order is sent only to be refused as balance/allowance, status
    says why, and trading resumes by itself once the approvals are set."""
    from polymm.trader.execution import limits
    from polymm.trader.model import OrderState
    from polymm.trader.preflight.start import approvals_check
    from polymm.trader.venue.chain import ChainRpc
    from tests.support.execution import running_core, wait_for, want

    monkeypatch.setattr(limits, "VERSION_PROBE_EVERY_S", 0.2)
    with running_core(sim, tmp_path) as core:
        m = live_market(sim)
        gw = core.gateway
        rpc = ChainRpc(sim.urls["rpc_url"])
        gw.approvals_check = approvals_check(gw, lambda: m.up_token, rpc)
        sim.admin.set_chain(address=gw.funder, only="v2")
        bid, _ = book_top(sim, m.down_token)
        price = round(max(0.01, bid - 0.05), 2)
        sim.admin.set_order_version(3)
        first = core.place(want(Leg.DOWN, Side.BUY, price, 5))
        wait_for(lambda: any(o.client_id == first and o.state is OrderState.REJECTED
                             for o in core.orders(working_only=False)), what="the V2 order refused, not re-signed")
        words = ("the exchange moved to order version 3 but the wallet lacks its approvals (pUSD → Exchange V3 (buys),"
                 " the position manager → Exchange V3 (sells)): no new orders until they are set "
                 "(polymm-preflight --fix-approvals)")
        assert words in core.state().warnings
        requests = sim.admin.state()["requests"].get("POST /order", 0)
        second = core.place(want(Leg.DOWN, Side.BUY, round(price - 0.01, 2), 5))
        assert next(o for o in core.orders(working_only=False) if o.client_id == second).state is OrderState.REJECTED
        assert sim.admin.state()["requests"].get("POST /order", 0) == requests  # refused here: nothing sent
        sim.admin.set_chain(address=gw.funder, only="all")
        wait_for(lambda: words not in core.state().warnings, what="the probe sees the approvals set")
        third = core.place(want(Leg.DOWN, Side.BUY, round(price - 0.02, 2), 5))
        wait_for(lambda: any(o.client_id == third and o.state is OrderState.LIVE for o in core.orders()),
                 what="a V3 order rests")
        rpc.close()
