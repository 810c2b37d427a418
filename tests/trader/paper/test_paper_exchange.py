"""The paper exchange in-process: the execution core over PaperGateway + the paper user channel, fed by a real
shared-memory segment. Orders fill against the published book with the fill model, the balance is enforced as
the exchange would, nothing needs a key, and a resolution pays 1/0."""
from __future__ import annotations

import math
import time
import uuid

import pytest
from tests.support.waiting import wait_for

from polymm.feed import shm
from polymm.feed.market import MarketIdentity
from polymm.trader.decision.fees import FeeSchedule, taker_fee as _taker_fee
from polymm.trader.config import load_config
from polymm.trader.execution.core import ExecutionCore
from polymm.trader.execution.exchange_state import InsufficientBalance
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want
from polymm.trader.paper.exchange import PaperExchange
from polymm.trader.paper.gateway import PaperGateway, paper_user_stream

WINDOW_S = 900


@pytest.fixture
def segment():
    name = f"polymm_paper_test_{uuid.uuid4().hex[:8]}"
    writer = shm.Writer(name)
    start = int(time.time() // WINDOW_S * WINDOW_S)
    market = MarketIdentity("0x" + "cd" * 32, "111", "222", start, start + WINDOW_S, 0.01, 5.0, 0.07)
    writer.set_market(window_start=start, window_end=start + WINDOW_S, condition_id=market.condition_id,
                      up_token="111", down_token="222", tick_size=0.01, min_order_size=5.0, fee_rate=0.07)

    def publish(up_bid, up_ask, size=50.0):
        t = time.time()
        writer.publish(start, (up_bid, size, up_ask, size, math.nan, t, t),
                       (round(1 - up_ask, 2), size, round(1 - up_bid, 2), size, math.nan, t, t), status="connected")

    publish(0.60, 0.62)
    yield name, market, publish
    writer.close()
    writer.unlink()


def taker_fee(shares, price, rate):
    """The one fee formula (trader/decision/fees.py) at the markets' exponent 1."""
    return _taker_fee(shares, price, FeeSchedule(rate, 1.0))


def paper_core(name, balance=1000.0, tmp_path=None):
    cfg = load_config(None)
    exchange = PaperExchange(name, cfg, balance_usd=balance, latency_s=0.0025)
    core = ExecutionCore(PaperGateway(exchange), ws_user_url="paper://user-channel", state_dir=tmp_path,
                         user_stream=paper_user_stream(exchange))
    return exchange, core


def want(side, price, size, order_type=OrderType.GTC, post_only=True, leg=Leg.UP, role=Role.ENTRY):
    return Want("s1", leg, side, price, size, role, order_type, post_only, "test")


def state_of(core, cid):
    return next(o for o in core.orders(working_only=False) if o.client_id == cid).state


def test_orders_rest_fill_against_the_published_book_and_the_core_books_them_like_live(segment, tmp_path):
    name, market, publish = segment
    exchange, core = paper_core(name, tmp_path=tmp_path)
    core.start(market)
    try:
        cid = core.place(want(Side.BUY, 0.61, 10))
        wait_for(lambda: state_of(core, cid) is OrderState.LIVE, 5)
        assert [r["price"] for r in exchange.open_orders(market.condition_id)] == ["0.61"]
        publish(0.59, 0.61, size=4.0)  # the asks come down to our bid: 4 shares there
        wait_for(lambda: state_of(core, cid) is OrderState.PARTIALLY_FILLED, 5)
        publish(0.59, 0.61, size=4.0)  # the same 4 shares again: already taken
        publish(0.58, 0.60, size=20.0)
        wait_for(lambda: state_of(core, cid) is OrderState.FILLED, 5)
        pos = core.positions()[("s1", Leg.UP)]
        assert pos.shares == pytest.approx(10) and pos.avg_price == pytest.approx(0.61)
        assert [(f.role, f.price, f.size, f.fee) for f in core.fills()] == [("maker", 0.61, 4.0, 0.0), ("maker", 0.61, 6.0, 0.0)]
        # A stop: fill-and-kill at 0.01 takes the bid (taker fee), the answer is the exchange's.
        stop = core.place(want(Side.SELL, 0.01, 10, OrderType.FAK, False, role=Role.STOP_LOSS))
        wait_for(lambda: state_of(core, stop) is OrderState.FILLED, 5)
        sell = [f for f in core.fills() if f.side is Side.SELL]
        assert [(f.role, f.price, f.size) for f in sell] == [("taker", 0.58, 10.0)]
        assert sell[0].fee == pytest.approx(taker_fee(10, 0.58, 0.07), abs=1e-5)
        assert exchange.balance() == pytest.approx(1000 - 6.1 + 5.8 - taker_fee(10, 0.58, 0.07))
        # Nothing left to take: a FAK is refused with the exchange's words.
        again = core.place(want(Side.BUY, 0.40, 5, OrderType.FAK, False))
        wait_for(lambda: state_of(core, again) is OrderState.REJECTED, 5)
    finally:
        core.stop()
        exchange.stop()


def test_the_paper_balance_is_enforced_like_the_exchange_would(segment, tmp_path):
    name, market, _publish = segment
    exchange, core = paper_core(name, balance=10.0, tmp_path=tmp_path)
    gateway = core.gateway
    exchange.start()
    try:
        first = gateway.post_order(gateway.signer.build("111", Side.BUY, 0.60, 10, 0.01), "GTC", True)
        assert first.status == "live"
        with pytest.raises(InsufficientBalance, match="not enough balance"):  # 6.00 locked, 4.00 free
            gateway.post_order(gateway.signer.build("111", Side.BUY, 0.60, 8, 0.01), "GTC", True)
        assert gateway.cancel_order(first.order_id).canceled == (first.order_id,)
        assert gateway.post_order(gateway.signer.build("111", Side.BUY, 0.60, 8, 0.01), "GTC", True).status == "live"
        with pytest.raises(InsufficientBalance, match="not enough balance"):  # selling shares the wallet does not hold
            gateway.post_order(gateway.signer.build("111", Side.SELL, 0.70, 5, 0.01), "GTC", True)
        assert int(gateway.balance_allowance()["balance"]) == 10_000_000
    finally:
        exchange.stop()


def test_a_resolution_pays_the_winning_leg_and_reports_the_backtest_result(segment, tmp_path, caplog):
    name, market, publish = segment
    exchange, core = paper_core(name, tmp_path=tmp_path)
    exchange.start()
    try:
        gw = core.gateway
        gw.post_order(gw.signer.build("111", Side.BUY, 0.62, 10, 0.01), "FAK", False)
        assert exchange.pending_resolution() == []  # the window has not ended
        exchange.advance(market.window_end + 1)
        (pending, _), = exchange.pending_resolution()
        assert pending == market
        with caplog.at_level("INFO", logger="polymm.trader.paper"):
            exchange.resolve_market(market.condition_id, Leg.UP)
        pnl = exchange.pnl()
        assert pnl["realised"] == pytest.approx(10 - 6.2 - taker_fee(10, 0.62, 0.07))
        assert '"winner":"up"' in caplog.text and '"pnl":{"paper"' in caplog.text
    finally:
        exchange.stop()


def test_paper_mode_needs_no_key_and_never_reads_one(tmp_path, monkeypatch):
    from polymm import env
    from polymm.trader import service
    from polymm.trader.venue import gateway

    monkeypatch.delenv(env.PK, raising=False)

    def no_live_gateway(*_a, **_k):
        raise AssertionError("paper mode built a live gateway")

    monkeypatch.setattr(gateway.Gateway, "from_env", classmethod(no_live_gateway))
    core = service.build_core(load_config(None, {"mode": "paper"}), tmp_path, "polymm_paper_none")
    assert isinstance(core.gateway, PaperGateway) and "paper" in repr(core.gateway)
    with pytest.raises(service.StartupError, match="PK"):
        monkeypatch.undo()
        monkeypatch.delenv(env.PK, raising=False)
        service.build_core(load_config(None), tmp_path)


def test_the_paper_flag_sets_the_mode_for_this_start_only():
    from polymm.trader import service

    assert service.endpoint_settings(service.parse_args(["--paper"]))["mode"] == "paper"
    assert "mode" not in service.endpoint_settings(service.parse_args([]))


def paper_core_reading(name, tmp_path, market_info: dict):
    """A paper core whose exchange's public market info (GET /clob-markets) answers `market_info`; `seen` lists the
    paths asked (no network in unit tests)."""
    import httpx

    seen = []

    def clob(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=market_info)

    exchange = PaperExchange(name, load_config(None), balance_usd=1000.0, latency_s=0.0025)
    gateway = PaperGateway(exchange, "http://clob.invalid")
    gateway._http = httpx.Client(transport=httpx.MockTransport(clob))  # noqa: SLF001
    core = ExecutionCore(gateway, ws_user_url="paper://user-channel", state_dir=tmp_path,
                         user_stream=paper_user_stream(exchange))
    return exchange, core, seen


def test_paper_fees_follow_the_markets_schedule_from_the_exchanges_public_market_info(segment, tmp_path):
    """The feed publishes Gamma's rate only; the core asks the exchange's public GET /clob-markets for rate and
    exponent as live does, and the paper exchange charges exactly that (here rate 0.25, exponent 2)."""
    name, market, _publish = segment
    exchange, core, seen = paper_core_reading(name, tmp_path, {"fd": {"r": 0.25, "e": 2, "to": True}})
    core.start(market)
    try:
        assert seen == [f"/clob-markets/{market.condition_id}"]
        schedule = core.fee_schedule(market.condition_id)
        assert (schedule.rate, schedule.exponent) == (0.25, 2.0)
        cid = core.place(want(Side.BUY, 0.62, 10, OrderType.FAK, False))  # takes the ask at 0.62
        wait_for(lambda: state_of(core, cid) is OrderState.FILLED, 5)
        [fill] = core.fills()
        expected = _taker_fee(10, 0.62, FeeSchedule(0.25, 2.0))
        assert fill.fee == pytest.approx(expected, abs=1e-5) and expected != pytest.approx(taker_fee(10, 0.62, 0.07))
        assert exchange.balance() == pytest.approx(1000 - 6.2 - expected, abs=1e-5)
    finally:
        core.stop()
        exchange.stop()


def test_without_an_exchange_to_ask_paper_fees_use_the_documented_default_and_status_says_so(segment, tmp_path):
    name, market, _publish = segment
    exchange, core = paper_core(name, tmp_path=tmp_path)
    core.start(market)
    try:
        assert core.fee_schedule(market.condition_id).rate == 0.07
        assert any("fee schedule" in w for w in core.state().warnings)
    finally:
        core.stop()
        exchange.stop()


def test_each_state_directory_is_its_own_paper_wallet(tmp_path):
    # Issue 27: a fixed paper address made every paper trader on a host one wallet, so two test runs (or two paper
    # traders) locked each other out machine-wide (WalletLocked). The paper wallet is now named by the state
    # directory: two directories trade side by side, one directory is still one trader.
    from polymm.trader.execution.wallet_lock import WalletLock, WalletLocked
    from polymm.trader.paper.exchange import paper_address

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert paper_address(a) == paper_address(a) != paper_address(b)
    assert paper_address() != paper_address()  # no state directory: a wallet of its own
    first, second = WalletLock(a, paper_address(a)), WalletLock(b, paper_address(b))
    first.acquire()
    second.acquire()
    try:
        with pytest.raises(WalletLocked):
            WalletLock(a, paper_address(a)).acquire()
    finally:
        first.release()
        second.release()


def test_paper_applies_the_markets_minimum_order_age_and_taker_delay_from_the_same_read(segment, tmp_path):
    """Issue 21: `oas` and `itode` come with the fee schedule (one GET /clob-markets). A paper taker is answered
    `delayed` and fills when the delay ends; a resting order's cancel is held until it is `oas` old."""
    name, market, _publish = segment
    exchange, core, seen = paper_core_reading(name, tmp_path, {"fd": {"r": 0.07, "e": 1, "to": True}, "oas": 1,
                                                               "itode": True})
    core.start(market)
    try:
        assert seen == [f"/clob-markets/{market.condition_id}"]  # one read for the fee and the timing rules
        taker = core.place(want(Side.BUY, 0.62, 10, OrderType.FAK, False))
        wait_for(lambda: state_of(core, taker) is OrderState.FILLED, 5)
        delayed = [e for e in exchange._current.model.events if e["action"] == "delayed"]  # noqa: SLF001
        assert [e["id"] for e in delayed] == [core.orders(working_only=False)[0].order_id]
        resting = core.place(want(Side.BUY, 0.50, 10))
        wait_for(lambda: state_of(core, resting) is OrderState.LIVE, 5)
        asked = time.time()
        core.cancel(resting, "test")
        wait_for(lambda: state_of(core, resting) is OrderState.CANCELED, 5)
        order = next(o for o in exchange._current.model.events  # noqa: SLF001
                     if o["action"] == "cancelled" and o["id"] == core.orders(working_only=False)[-1].order_id)
        placed = next(o for o in exchange._current.model.events if o["action"] == "place"  # noqa: SLF001
                      and o["id"] == order["id"])
        assert order["ts"] - placed["ts"] >= 1.0 and order["ts"] > asked  # held until 1 s old
    finally:
        core.stop()
        exchange.stop()
