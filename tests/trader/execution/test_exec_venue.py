"""The execution core follows the exchange as it changes (scripted exchange, no sockets): an order-version
switch costs one re-sign, an unknown version stops placing with words, the market's fee schedule is read once
(a conservative default with a warning when it cannot be), an unreadable trade reconciles at once, and a
sideless maker fill of ours is looked up instead of dropped."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.recorded import load_fixture
from tests.support.execution import ScriptedExchange, wait_for, want, open_market
from polymm.trader.execution import limits
from polymm.trader.execution.exchange_state import NetworkError, Rejected
from polymm.trader.execution.core import ExecutionCore, MarketIdentity
from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule
from polymm.trader.venue.gateway import FeeDetails, OrderVersionMismatch, PostResult
from polymm.trader.model import Leg, OrderState, OrderType, Side
from polymm.trader.venue.user_wire import UnreadableTrade, decode_user_frame

MARKET = open_market()


@pytest.fixture(autouse=True)
def _fresh_market():
    """Each test gets a window open now (open_market: one built at import ends mid-suite)."""
    global MARKET
    MARKET = open_market()
UNSIGNABLE = "exchange order version 4 is not one polymm can sign (2, 3): no new orders until it is; upgrade polymm"


class VersionedExchange(ScriptedExchange):
    """Serves one order version; refuses orders signed for another as production does."""

    def __init__(self, served: int = 2) -> None:
        super().__init__()
        self.served = served
        self.refused = 0

    def refresh_version(self):
        self.order_version = self.served
        self.version_problem = None if self.served in (2, 3) else UNSIGNABLE
        return self.served

    def post_order(self, order, order_type="GTC", post_only=False):
        if order.version != self.served:
            self.refused += 1
            now = self.refresh_version()
            resign = now if now in (2, 3) and now != order.version else None
            raise OrderVersionMismatch(400, "order_version_mismatch", order.version, resign)
        return super().post_order(order, order_type, post_only)


def started(exchange) -> ExecutionCore:
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    return core


def test_version_switch_costs_one_resign_and_the_order_rests(caplog):
    exchange = VersionedExchange()
    core = started(exchange)
    try:
        exchange.served = 3  # the exchange moves on; the gateway still believes 2
        core.place(want(Leg.UP, Side.BUY, 0.4, 5))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live after one re-sign")
        assert exchange.refused == 1 and [o.version for o in exchange.posted] == [3]
        assert core.orders()[0].order_id == exchange.posted[0].order_hash  # the re-signed order is the one tracked
        assert any(r.getMessage().startswith("order resubmit") for r in caplog.records)
        assert core.state().warnings == []
    finally:
        core.stop()


def test_unknown_version_stops_placing_with_words_and_resumes_when_it_is_known_again(monkeypatch, caplog):
    monkeypatch.setattr(limits, "VERSION_PROBE_EVERY_S", 0.2)
    exchange = VersionedExchange()
    core = started(exchange)
    try:
        exchange.served = 4
        cid = core.place(want(Leg.UP, Side.BUY, 0.4, 5))
        wait_for(lambda: core.orders(working_only=False)[0].state is OrderState.REJECTED, what="rejected")
        assert exchange.refused == 1  # one refusal, never a loop of them
        assert UNSIGNABLE in core.state().warnings
        second = core.place(want(Leg.UP, Side.BUY, 0.41, 5))
        refused = next(o for o in core.orders(working_only=False) if o.client_id == second)
        assert refused.state is OrderState.REJECTED
        assert any(r.getMessage().startswith(f"order refused id={second}") and UNSIGNABLE in r.getMessage()
                   for r in caplog.records)
        assert exchange.refused == 1 and cid != second  # refused locally: nothing sent
        exchange.served = 2
        wait_for(lambda: UNSIGNABLE not in core.state().warnings, what="version probe clears the block")
        core.place(want(Leg.UP, Side.BUY, 0.42, 5))
        wait_for(lambda: any(o.state is OrderState.LIVE for o in core.orders()), what="placing again")
    finally:
        core.stop()


class FeeExchange(ScriptedExchange):
    def __init__(self, schedule=None, error=None) -> None:
        super().__init__()
        self.schedule, self.error, self.reads = schedule, error, 0

    def fee_details(self, condition_id):
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.schedule


def test_the_markets_fee_schedule_is_read_once_and_charged_on_taker_fills():
    exchange = FeeExchange(FeeDetails(0.25, 2.0))
    core = started(exchange)
    try:
        assert core.fee_schedule(MARKET.condition_id) == FeeSchedule(0.25, 2.0, "exchange market info")
        assert core.fee_schedule("0xother") is DEFAULT_SCHEDULE
        core.set_market(MARKET)  # same market again: no second read
        time.sleep(0.6)
        assert exchange.reads == 1
        trade = {**load_fixture("nautilus-python/ws_messages/user_trade2.json"), "asset_id": MARKET.up_token,
                 "market": MARKET.condition_id, "owner": exchange.api_key, "trader_side": "TAKER",
                 "fee_rate_bps": "0", "maker_orders": []}
        events, _ = decode_user_frame(json.dumps(trade))
        core._on_ws_events(events)
        (fill,) = core.fills()
        p, n = float(trade["price"]), float(trade["size"])
        assert fill.role == "taker" and fill.fee == round(n * 0.25 * (p * (1 - p)) ** 2, 5)
        assert core.state().warnings == []
    finally:
        core.stop()


@pytest.mark.parametrize("error", [NetworkError(None, "GET /clob-markets timed out"),
                                   ValueError("market info has no fee details (fd)")])
def test_an_unreadable_fee_schedule_is_the_conservative_default_and_says_so(monkeypatch, error):
    monkeypatch.setattr(limits, "FEE_RETRY_EVERY_S", 0.2)
    exchange = FeeExchange(error=error)
    core = started(exchange)
    try:
        assert core.fee_schedule(MARKET.condition_id) is DEFAULT_SCHEDULE
        (warning,) = [w for w in core.state().warnings if w.startswith("fee schedule")]
        assert "could not be read" in warning and "conservative default rate 0.07, exponent 1" in warning
        exchange.error, exchange.schedule = None, FeeDetails(0.07, 1.0)
        wait_for(lambda: not any(w.startswith("fee schedule") for w in core.state().warnings),
                 what="the retry reads it and the warning goes")
        assert core.fee_schedule(MARKET.condition_id).source == "exchange market info"
    finally:
        core.stop()


class CountingTrades(ScriptedExchange):
    def __init__(self) -> None:
        super().__init__()
        self.trade_reads = 0
        self.order_rows: dict[str, dict] = {}

    def trades(self, market=None, asset_id=None, after=None, trade_id=None):
        self.trade_reads += 1
        return []

    def get_order(self, order_id):
        return self.order_rows.get(order_id)


def test_an_unreadable_trade_message_is_logged_with_its_id_and_reconciled_at_once(caplog):
    exchange = CountingTrades()
    core = started(exchange)  # reconcile_every_s is an hour: only the unreadable trade can trigger one
    try:
        before = exchange.trade_reads
        core._on_ws_events([UnreadableTrade("trade-77", "field match_time 'soon'")])
        wait_for(lambda: exchange.trade_reads > before, what="a REST reconcile right away")
        assert any("id='trade-77'" in r.getMessage() and "reconciling over REST now" in r.getMessage()
                   for r in caplog.records)
    finally:
        core.stop()


def test_recorded_user_trade1_after_a_restart_is_resolved_by_looking_the_order_up():
    """Our maker leg of the recorded user_trade1 has no side and our (restarted) book does not know the order:
    the fill waits, the order is looked up, and the fill appears with the exchange's side."""
    exchange = CountingTrades()
    raw = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    ours = raw["maker_orders"][3]  # 5 @ 0.518 on the taker's own token
    exchange.api_key = ours["owner"]
    market = MarketIdentity(raw["market"], raw["asset_id"], raw["maker_orders"][0]["asset_id"],
                            int(time.time()) - 60, int(time.time()) + 840, 0.01, 5, 0.07)
    exchange.order_rows[ours["order_id"]] = {"id": ours["order_id"], "status": "MATCHED", "market": raw["market"],
                                             "asset_id": raw["asset_id"], "side": "SELL", "price": "0.518",
                                             "original_size": "5", "size_matched": "5", "owner": ours["owner"]}
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(market)
    try:
        events, _ = decode_user_frame(json.dumps(raw))
        core._on_ws_events(events)
        wait_for(lambda: core.fills(), what="the pending fill resolved by the lookup")
        (fill,) = core.fills()
        assert (fill.order_id, fill.side, fill.size, fill.price, fill.role) == (ours["order_id"], Side.SELL, 5.0,
                                                                                0.518, "maker")
    finally:
        core.stop()


def test_a_sideless_fill_whose_order_the_exchange_forgot_takes_the_matching_rule():
    exchange = CountingTrades()  # get_order answers nothing
    raw = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    ours = raw["maker_orders"][0]  # 10 @ 0.482 on the other token: a mint opposite a BUY taker
    exchange.api_key = ours["owner"]
    market = MarketIdentity(raw["market"], raw["asset_id"], ours["asset_id"], int(time.time()) - 60,
                            int(time.time()) + 840, 0.01, 5, 0.07)
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(market)
    try:
        events, _ = decode_user_frame(json.dumps(raw))
        core._on_ws_events(events)
        wait_for(lambda: core.fills(), what="resolved by the matching rule")
        (fill,) = core.fills()
        assert (fill.leg, fill.side, fill.size) == (Leg.DOWN, Side.BUY, 10.0)
    finally:
        core.stop()


def test_after_a_restart_unresolved_journal_markets_get_their_own_fee_schedule(tmp_path):
    """A market of yesterday with journaled orders and no resolution is reconciled at start (its missed fills
    are booked then): its schedule is read first, so those fills are charged its fee, not the default."""
    from polymm.trader.execution.order_journal import JournalOrder, OrderJournal

    exchange = FeeExchange(FeeDetails(0.25, 2.0))
    old = MarketIdentity("0xold", "333", "444", int(time.time()) - 4000, int(time.time()) - 3100, 0.01, 5, 0.07)
    journal = OrderJournal(tmp_path / f"orders-{exchange.funder.lower()}.jsonl")
    journal.load(time.time())  # opens it for appending
    journal.market(old, time.time())
    journal.order(JournalOrder("0xoldorder", "c1", "s1", "up", "BUY", 0.5, 5, "entry", "GTC", True, "r", "333",
                               "0xold", time.time() - 3500))
    journal.close()
    seen = []
    exchange.fee_details = lambda cond: seen.append(cond) or FeeDetails(0.25, 2.0)
    core = ExecutionCore(exchange, reconcile_every_s=3600, state_dir=tmp_path)
    core.start(MARKET)
    try:
        assert seen == [MARKET.condition_id, "0xold"]
        assert core.fee_schedule("0xold") == FeeSchedule(0.25, 2.0, "exchange market info")
    finally:
        core.stop()
