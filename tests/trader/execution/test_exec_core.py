"""ExecutionCore with a scripted in-process exchange (no sockets): races between the user channel's
order and trade reports, and what orders() + positions() show in between."""
from __future__ import annotations

import json
import time

import msgspec
import pytest

from tests.support.execution import ScriptedExchange, wait_for, want, open_market
from polymm.trader.execution.limits import SETTLED
from polymm.trader.execution.core import ExecutionCore, MarketIdentity
from polymm.trader.venue.gateway import CancelResult
from polymm.trader.model import Leg, OrderState, OrderType, Side
from polymm.trader.venue.user_wire import WireMakerOrder, WireOrder, WireTrade

MARKET = open_market()


@pytest.fixture(autouse=True)
def _fresh_market():
    """Each test gets a window open now (open_market: one built at import ends mid-suite)."""
    global MARKET
    MARKET = open_market()


def started_core() -> tuple[ExecutionCore, ScriptedExchange]:
    exchange = ScriptedExchange()
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    return core, exchange


def order_update(order_id: str, matched: str, size: str, status: str = "MATCHED") -> WireOrder:
    return WireOrder(id=order_id, status=status, type="UPDATE", market=MARKET.condition_id, asset_id=MARKET.up_token,
                     side="BUY", price="0.62", original_size=size, size_matched=matched, owner="key-1")


def maker_trade(order_id: str, size: str, status: str) -> WireTrade:
    return WireTrade(id="trade-1", status=status, market=MARKET.condition_id, asset_id=MARKET.up_token, side="SELL",
                     size=size, price="0.62", taker_order_id="0xsomeone", trader_side="MAKER", owner="key-1",
                     maker_orders=[WireMakerOrder(order_id=order_id, matched_amount=size, price="0.62",
                                                  asset_id=MARKET.up_token, owner="key-1", side="BUY")])


def test_order_filled_before_its_trade_arrives_still_counts_as_held():
    core, _ = started_core()
    try:
        cid = core.place(want(Leg.UP, Side.BUY, 0.62, 6.45))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        core._on_ws_events([order_update(order_id, "6.45", "6.45")])  # the UPDATE beats the trade
        assert core.orders() == []  # no longer working...
        held = core.positions()[("s1", Leg.UP)]
        assert held.shares == 6.45 and held.fees == 0.0  # ...but held (post-only: a maker, no fee)
        assert core.fills() == []  # nothing invented in the fill list
        core._on_ws_events([maker_trade(order_id, "6.45", "MATCHED")])
        assert core.positions()[("s1", Leg.UP)].shares == 6.45  # the trade replaces, never adds
        assert len(core.fills()) == 1 and core.fills()[0].client_id == cid
        core._on_ws_events([maker_trade(order_id, "6.45", "FAILED")])
        assert ("s1", Leg.UP) not in core.positions() or core.positions()[("s1", Leg.UP)].shares == 0
    finally:
        core.stop()


def test_partial_update_then_partial_trade_counts_the_rest_provisionally():
    core, _ = started_core()
    try:
        core.place(want(Leg.UP, Side.BUY, 0.62, 10, post_only=False, order_type=OrderType.GTC))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        core._on_ws_events([order_update(order_id, "7", "10", status="LIVE")])
        assert core.orders()[0].state is OrderState.PARTIALLY_FILLED and core.orders()[0].remaining == 3
        pos = core.positions()[("s1", Leg.UP)]
        assert pos.shares == 7 and pos.fees > 0  # not post-only: a taker fee is assumed until the trade says
        core._on_ws_events([maker_trade(order_id, "4", "MATCHED")])
        assert core.positions()[("s1", Leg.UP)].shares == 7
    finally:
        core.stop()


# ---- memory stays bounded over days of windows; money-safety races --------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def market_at(name: str, window_start: int) -> MarketIdentity:
    token = str(abs(hash(name)) % 10**12)  # token ids are decimal integers (they are signed into orders)
    return MarketIdentity(f"0x{name}", token + "1", token + "2", window_start, window_start + 900, 0.01, 5, 0.07)


def trade_on(market: MarketIdentity, trade_id: str, order_id: str, size: str, price: str = "0.40") -> WireTrade:
    return WireTrade(id=trade_id, status="CONFIRMED", market=market.condition_id, asset_id=market.up_token,
                     side="SELL", size=size, price=price, taker_order_id="0xsomeone", trader_side="MAKER",
                     owner="key-1", maker_orders=[WireMakerOrder(order_id=order_id, matched_amount=size, price=price,
                                                                 asset_id=market.up_token, owner="key-1", side="BUY")])


def filled_order(core: ExecutionCore, price: float = 0.40, size: float = 10) -> str:
    cid = core.place(want(Leg.UP, Side.BUY, price, size))
    wait_for(lambda: any(o.client_id == cid and o.order_id and o.state is OrderState.LIVE for o in core.orders()),
             what="order live")
    return next(o.order_id for o in core.orders() if o.client_id == cid)


def core_holding_10_up(name: str) -> tuple[Clock, MarketIdentity, ExecutionCore]:
    """A core (on a settable clock) that bought 10 Up at 0.40 in market `name`, which started a minute ago."""
    clock = Clock()
    market = market_at(name, int(clock.t) - 60)
    core = ExecutionCore(ScriptedExchange(), clock=clock, reconcile_every_s=3600)
    core.start(market)
    order_id = filled_order(core)
    core._on_ws_events([trade_on(market, f"t-{name}", order_id, "10")])
    return clock, market, core


def test_a_settled_market_is_forgotten_after_a_day_and_its_pnl_is_kept():
    clock, old, core = core_holding_10_up("old")
    try:
        core.resolve_market(old.condition_id, Leg.UP)  # 10 shares bought at 0.40 pay 1.00
        before = core.pnl()
        assert before["total"]["realised"] == 6.0
        core.set_market(market_at("new", old.window_end))
        clock.t = old.window_end + 3600  # an hour later: still shown (mmctl fills / orders --all)
        assert core.prune(clock.t) == [] and len(core.fills(condition_id=old.condition_id)) == 1
        clock.t = old.window_end + 86400 + 1
        assert core.prune(clock.t) == [old.condition_id]
        assert core.fills() == [] and core.orders(working_only=False, condition_id=old.condition_id) == []
        assert core.exec_state.known_markets() == {"0xnew"} and core.exec_state.sizes()["exchange_ids"] == 0
        assert core.pnl()["total"] == before["total"]  # forgotten, not lost
        # folded into one settled bucket, not kept per market: memory does not grow with every market traded
        assert old.condition_id not in core.pnl()["markets"] and core.pnl()["markets"][SETTLED]["realised"] == 6.0
        assert old.condition_id not in core.exec_state._resolutions
    finally:
        core.stop()


def test_a_market_still_holding_unresolved_shares_is_never_forgotten():
    clock, old, core = core_holding_10_up("held")
    try:
        core.set_market(market_at("next", old.window_end))
        clock.t = old.window_end + 3 * 86400
        assert core.prune(clock.t) == []
        (pending,) = core.pending_resolution()
        assert pending[0] == old and pending[1][("s1", Leg.UP)].shares == 10
    finally:
        core.stop()


def test_restart_reads_trades_of_an_unresolved_market_that_ended_hours_ago(tmp_path):
    from polymm.trader.execution.order_journal import JournalOrder, OrderJournal

    now = time.time()
    old = market_at("gone", int(now) - 4 * 3600)  # ended ~3 h ago: outside the usual reconcile horizon
    exchange = ScriptedExchange()
    journal = OrderJournal(tmp_path / f"orders-{exchange.funder.lower()}.jsonl")
    journal.load(now)
    journal.market(old, now - 4 * 3600)
    journal.order(JournalOrder("0xours", "s1-x-1", "s1", "up", "BUY", 0.40, 10, "entry", "GTC", True, "r",
                               old.up_token, old.condition_id, now - 4 * 3600 + 5))
    journal.close()
    asked = []

    def trades(market=None, asset_id=None, after=None, trade_id=None):
        asked.append(market)
        return [msgspec.to_builtins(trade_on(old, "t-gone", "0xours", "10"))] if market == old.condition_id else []

    exchange.trades = trades
    core = ExecutionCore(exchange, state_dir=tmp_path, reconcile_every_s=3600)
    core.start(MARKET)
    try:
        assert old.condition_id in asked
        (pending,) = core.pending_resolution()
        assert pending[0] == old and pending[1][("s1", Leg.UP)].shares == 10  # attributed to s1 via the journal
        asked.clear()
        core.reconcile("periodic")
        assert asked == [MARKET.condition_id]  # the backfill is a one-off: routine passes stay small
    finally:
        core.stop()
    # a restart does not re-journal (and so restamp and keep forever) the markets it loaded
    lines = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert [r["condition_id"] for r in lines if r["kind"] == "market"].count(old.condition_id) == 1


class SignerCancelledMidway:
    """Signs like the real signer, but the decision loop cancels the order while it is being signed."""

    def __init__(self, signer, on_build) -> None:
        self._signer = signer
        self._on_build = on_build

    def build(self, *args, **kwargs):
        self._on_build()
        return self._signer.build(*args, **kwargs)


def test_an_order_cancelled_while_being_signed_is_never_sent():
    exchange = ScriptedExchange()
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    try:
        exchange.signer = SignerCancelledMidway(
            exchange.signer, lambda: core.cancel(core.orders(working_only=False)[0].client_id, "planner"))
        core.place(want(Leg.UP, Side.BUY, 0.40, 10))
        wait_for(lambda: core.orders(working_only=False)[0].state is OrderState.CANCELED, what="cancelled unsent")
        assert exchange.posted == []
    finally:
        core.stop()


def test_a_cancel_call_that_crashes_is_retried_not_lost():
    exchange = ScriptedExchange()
    calls = []

    def cancel_order(order_id):
        calls.append(order_id)
        if len(calls) == 1:
            raise RuntimeError("bug in the gateway")
        return CancelResult((order_id,), {})

    exchange.cancel_order = cancel_order
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    try:
        order_id = filled_order(core)
        core.cancel(order_id, "planner")
        wait_for(lambda: core.orders(working_only=False)[0].state is OrderState.CANCELED, timeout_s=20,
                 what="cancel re-sent after the crash")
        assert calls == [order_id, order_id]
    finally:
        core.stop()


def test_place_racing_a_shutdown_ends_rejected_instead_of_pending_forever():
    core, exchange = started_core()
    try:
        core._pool.shutdown(wait=True)  # what stop()/restart() do between place()'s check and its submit
        cid = core.place(want(Leg.UP, Side.BUY, 0.40, 10))
        (view,) = core.orders(working_only=False)
        assert view.client_id == cid and view.state is OrderState.REJECTED and exchange.posted == []
    finally:
        core.stop()


def test_stop_cancels_every_order_in_our_markets_when_an_order_stays_unconfirmed(monkeypatch):
    # By market, never the whole wallet: other series' traders may trade other markets of it (trader/wallet/).
    exchange = ScriptedExchange()
    wallet_cancels, market_cancels = [], []
    exchange.cancel_order = lambda order_id: CancelResult((), {order_id: "exchange busy"})
    exchange.cancel_all = lambda: wallet_cancels.append(1) or CancelResult((), {})
    exchange.cancel_market = lambda market=None, asset_id=None: market_cancels.append(market) or CancelResult(
        tuple(o.order_hash for o in exchange.posted), {})
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    filled_order(core)
    monkeypatch.setattr("polymm.trader.execution.core.ExecutionCore._cancel_everything",
                        lambda self, reason, wait_s: self.cancel_all(reason))  # no 5 s wait in a unit test
    core.stop()
    assert wallet_cancels == [] and market_cancels == [MARKET.condition_id]
    assert core.orders(working_only=False)[0].state is OrderState.CANCELED


def test_place_and_cancel_return_at_once_while_the_exchange_hangs():
    import threading

    exchange = ScriptedExchange()
    release, in_flight = threading.Event(), threading.Event()
    real_post = exchange.post_order

    def hanging_post(order, order_type="GTC", post_only=False):
        in_flight.set()
        release.wait(60)  # the exchange does not answer until the test lets it
        return real_post(order, order_type, post_only)

    exchange.post_order = hanging_post
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    try:
        cid = core.place(want(Leg.UP, Side.BUY, 0.40, 10))  # returns although the POST hangs
        assert core.orders()[0].state is OrderState.PENDING_SUBMIT
        assert in_flight.wait(30), "the worker never sent the order"
        core.cancel(cid, "planner")  # returns too: deferred until the submit is answered
        assert core.orders()[0].state is OrderState.PENDING_CANCEL
        release.set()
        wait_for(lambda: core.orders(working_only=False)[0].state is OrderState.CANCELED, what="deferred cancel sent")
        assert len(exchange.posted) == 1
    finally:
        release.set()
        core.stop()


def test_a_restart_that_cannot_reach_the_exchange_keeps_retrying_instead_of_staying_stopped(monkeypatch):
    import pytest

    from polymm.trader.execution import core as execution
    from polymm.trader.execution.exchange_state import ExchangeError, NetworkError

    monkeypatch.setattr(execution, "RESTART_RETRY_S", 0.05)
    core, exchange = started_core()
    down = {"on": True}

    def open_orders(market=None, asset_id=None):
        if down["on"]:
            raise NetworkError(None, "GET /data/orders timed out")
        return []

    exchange.open_orders = open_orders
    try:
        with pytest.raises(ExchangeError):
            core.restart("operator restart")
        assert any("retrying" in w for w in core.state().warnings)
        refused = core.place(want(Leg.UP, Side.BUY, 0.40, 10))
        assert core.orders(working_only=False)[0].state is OrderState.REJECTED and refused
        down["on"] = False
        wait_for(lambda: core._running, timeout_s=30, what="the core running again after the exchange came back")
        assert not any("retrying" in w for w in core.state().warnings)
        core.place(want(Leg.UP, Side.BUY, 0.40, 10))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="orders placed again")
    finally:
        core.stop()


def test_risk_heartbeat_false_never_arms_the_dead_man_switch_and_says_so():
    """risk.heartbeat = false (start-time config, passed as heartbeat=False) must really stop the heartbeats,
    and status must say in words what that means; the default arms the switch at start."""
    from polymm.trader.execution.core import DEAD_MAN_SWITCH_OFF

    class CountingExchange(ScriptedExchange):
        def __init__(self) -> None:
            super().__init__()
            self.heartbeats = 0

        def heartbeat(self, heartbeat_id):
            self.heartbeats += 1
            return "hb"

    off = CountingExchange()
    core = ExecutionCore(off, reconcile_every_s=3600, heartbeat_interval_s=0.01, heartbeat=False)
    core.start(MARKET)
    try:
        core.place(want(Leg.UP, Side.BUY, 0.40, 10))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="the order resting")
        status = core.state()
        assert off.heartbeats == 0
        assert DEAD_MAN_SWITCH_OFF in status.warnings and status.heartbeat_ok and status.can_place
        assert DEAD_MAN_SWITCH_OFF == ("dead-man switch disabled (risk.heartbeat=false): if the trader dies its "
                                       "orders stay on the exchange")
    finally:
        core.stop()
    assert off.heartbeats == 0

    on = CountingExchange()
    core = ExecutionCore(on, reconcile_every_s=3600, heartbeat_interval_s=0.01)
    core.start(MARKET)
    try:
        wait_for(lambda: on.heartbeats >= 3, what="heartbeats sent by default")
        assert not any("dead-man switch" in w for w in core.state().warnings)
    finally:
        core.stop()


def test_forgotten_markets_fold_into_one_bucket_per_strategy_and_leg():
    # Issue 27: memory bounded per window: a month of forgotten markets is one P&L entry per (strategy, leg).
    from polymm.trader.model import PositionView

    core = ExecutionCore(ScriptedExchange())
    for i in range(50):
        core.exec_state._fold_settled({(f"0xm{i}", "s1", Leg.UP): PositionView("s1", Leg.UP, realised_pnl=1.0, fees=0.01)})
    assert list(core.exec_state._settled) == [(SETTLED, "s1", Leg.UP)]
    assert core.pnl()["total"]["realised"] == pytest.approx(50.0) and core.pnl()["total"]["fees"] == pytest.approx(0.5)


def test_user_channel_events_of_another_series_market_are_dropped():
    """Several series trade one wallet (one API key): should the user channel send events of a market this trader
    does not trade, they are another series' trader's business: neither its fills nor its orders touch ours."""
    clock, market, core = core_holding_10_up("mine")
    try:
        other = market_at("theirs", market.window_start)
        before = core.positions()
        core._on_ws_events([trade_on(other, "t-theirs", "0xtheir-order", "7"),
                            WireOrder(id="0xtheir-order", market=other.condition_id, asset_id=other.up_token,
                                      side="BUY", original_size="7", size_matched="7", price="0.40", type="UPDATE",
                                      status="MATCHED")])
        assert core.positions() == before and core._foreign_events == 2
        assert all(f.trade_id != "t-theirs" for f in core.fills())
    finally:
        core.stop(cancel_orders=False)


def _held_elsewhere(lock):
    """`lock` taken by another thread (a writer applying a burst) until the returned event is set."""
    import threading

    taken, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            taken.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(5)
    return release


def test_the_decision_loops_reads_never_wait_for_a_writer_holding_the_lock():
    """Issue 26: cash, cash moves and the loop's event poll answer at once while another thread holds the core's
    lock; the events wait for the next poll (wake stays set), and a caller that asks to wait gets them."""
    core, _exchange = started_core()
    try:
        token = core.cash_poll_asked()
        core.cash_poll_answered(token, 125.5)
        core.poll_events()  # what start() queued
        core.wake.set()
        core._events.append("an event")
        release = _held_elsewhere(core._lock)
        try:
            t0 = time.monotonic()
            assert core.cash_usd() == 125.5
            assert core.cash_moves() == 0
            assert core.poll_events(wait=False) == []
            assert time.monotonic() - t0 < 1.0  # nothing waited for the holder (it holds for up to 10 s)
            assert core.wake.is_set()  # the loop comes back for the event
        finally:
            release.set()
        assert core.poll_events() == ["an event"] and not core.wake.is_set()
    finally:
        core.stop()


def test_a_decisions_orders_placed_in_one_batch_publish_the_decision_reads_once():
    core, _exchange = started_core()
    try:
        publish, published = core.exec_state._publish, []
        core.exec_state._publish = lambda: (published.append(1), publish())[1]
        with core.batch():
            a = core.place(want(Leg.UP, Side.BUY, 0.40, 10))
            b = core.place(want(Leg.DOWN, Side.BUY, 0.30, 10))
            assert published == []  # nothing half-way: the next decision sees both or neither
        assert len(published) == 1
        assert {o.client_id for o in core.exec_state.published.orders} >= {a, b}
        core.place(want(Leg.UP, Side.BUY, 0.41, 10))
        assert len(published) >= 2  # alone, a place publishes as before
        sent = lambda: {o.client_id: o.order_id for o in core.orders(working_only=False)}  # noqa: E731
        wait_for(lambda: sent().get(a) and sent().get(b), what="both orders sent once the batch ended")
    finally:
        core.stop()


class _RecordingStream:
    """A user channel (UserStream's constructor) that records its subscriptions into the test's `seen`."""

    seen: list = []

    def __init__(self, url, auth, markets, on_events, on_connected, on_disconnected, **_options) -> None:
        self._on_connected = on_connected
        self.connected = False

    def start(self) -> None:
        self.connected = True
        self._on_connected(False)

    def stop(self) -> None:
        self.connected = False

    def subscribe(self, markets: list[str]) -> None:
        self.seen.append(("subscribe", tuple(markets)))


class _RecordingExchange(ScriptedExchange):
    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def ws_auth(self) -> dict:
        return {}

    def post_order(self, order, order_type="GTC", post_only=False):
        self.seen.append(("post", order.tokenId))
        return super().post_order(order, order_type, post_only)


def _rotating_core(tmp_path, clock: Clock):
    seen: list = []
    stream = type("Stream", (_RecordingStream,), {"seen": seen})
    core = ExecutionCore(_RecordingExchange(seen), clock=clock, state_dir=tmp_path, reconcile_every_s=3600,
                         ws_user_url="ws://recorded.invalid", user_stream=stream)
    return core, seen


def _journal_lines(tmp_path) -> list[dict]:
    (path,) = tmp_path.glob("orders-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_rotation_settled_later_journals_and_subscribes_before_the_windows_first_order(tmp_path):
    # Issue 26: at a window start the decision loop only switches markets in memory (set_market(settle_later=True))
    # and settles the paperwork after the decision. An order placed before that settles first: the journal names
    # the market before the order, and the user channel is subscribed before the order is posted.
    clock = Clock()
    old = market_at("old", int(clock.t) - 60)
    core, seen = _rotating_core(tmp_path, clock)
    core.start(old)
    try:
        new = market_at("new", old.window_end)
        clock.t = old.window_end + 1
        core.set_market(new, settle_later=True)
        assert core.exec_state.current == new and core.decision_reads()[0].condition_id == new.condition_id
        assert ("subscribe", (new.condition_id,)) not in seen
        assert new.condition_id not in {line.get("condition_id") for line in _journal_lines(tmp_path)}
        core.place(want(Leg.UP, Side.BUY, 0.40, 5))
        wait_for(lambda: ("post", new.up_token) in seen, what="the order posted")
        assert seen.index(("subscribe", (new.condition_id,))) < seen.index(("post", new.up_token))
        kinds = [(line["kind"], line.get("condition_id")) for line in _journal_lines(tmp_path)]
        assert kinds.index(("market", new.condition_id)) < kinds.index(("order", new.condition_id))
        core.settle_market()  # the loop's bookkeeping, later: nothing twice
        assert seen.count(("subscribe", (new.condition_id,))) == 1
        assert kinds.count(("market", new.condition_id)) == 1 == [
            (line["kind"], line.get("condition_id")) for line in _journal_lines(tmp_path)].count(
            ("market", new.condition_id))
    finally:
        core.stop()


def test_a_rotation_is_settled_by_the_loop_or_at_stop_whichever_comes_first(tmp_path):
    clock = Clock()
    old = market_at("old", int(clock.t) - 60)
    core, seen = _rotating_core(tmp_path, clock)
    core.start(old)
    nxt = market_at("next", old.window_end)
    core.set_market(nxt, settle_later=True)
    core.settle_market()
    assert seen == [("subscribe", (nxt.condition_id,))]
    assert ("market", nxt.condition_id) in [(r["kind"], r.get("condition_id")) for r in _journal_lines(tmp_path)]
    last = market_at("last", nxt.window_end)
    core.set_market(last, settle_later=True)
    core.stop()  # a SIGTERM right after the rotation: its records are written all the same
    assert ("market", last.condition_id) in [(r["kind"], r.get("condition_id")) for r in _journal_lines(tmp_path)]
    assert seen[-1] == ("subscribe", (last.condition_id,))


def test_a_user_channel_frame_is_applied_after_the_decision_in_progress():
    """trader/priority.py: the user channel gives way to a decision; the frame is applied once it is done, whole."""
    from polymm.trader.priority import DecisionGate
    import threading

    core, _ = started_core()
    gate = core.gate = DecisionGate(max_wait_s=30.0)
    try:
        core.place(want(Leg.UP, Side.BUY, 0.62, 6.45))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        gate.enter()  # the loop decides (this thread stands in for it)
        t = threading.Thread(target=core._on_ws_events, args=([order_update(order_id, "6.45", "6.45")],))
        t.start()
        t.join(0.05)
        assert core.orders() and core.orders()[0].state is OrderState.LIVE  # not applied during the decision
        gate.leave()
        t.join(5)
        assert core.orders() == [] and core.positions()[("s1", Leg.UP)].shares == 6.45
        assert gate.waits == 1
    finally:
        core.stop()


def test_a_frame_that_finds_the_loop_busy_half_way_is_applied_in_parts_each_published_whole():
    """A tick published while a frame of several events is applied: the rest waits for the loop's decision
    (trader/priority.py), the part already applied is published first; nothing is lost or applied twice."""
    from polymm.trader.priority import DecisionGate

    core, _ = started_core()
    pending = [False]
    sleeps: list[float] = []

    def loop_takes_the_tick(s: float) -> None:
        sleeps.append(s)
        pending[0] = False

    gate = core.gate = DecisionGate(max_wait_s=30.0, sleep=loop_takes_the_tick)
    gate.tick_pending = lambda: pending[0]
    state = core.exec_state
    publishes = [0]
    publish, apply_report = state._publish, state.apply_order_report

    def counting_publish():
        publishes[0] += 1
        publish()

    def the_feed_publishes_meanwhile(*args):
        result = apply_report(*args)
        pending[0] = True
        return result

    try:
        core.place(want(Leg.UP, Side.BUY, 0.62, 10, post_only=False, order_type=OrderType.GTC))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        state._publish, state.apply_order_report = counting_publish, the_feed_publishes_meanwhile
        core._on_ws_events([order_update(order_id, "7", "10", status="LIVE"), maker_trade(order_id, "4", "MATCHED")])
        assert publishes[0] == 2 and len(sleeps) == 1  # two parts, the loop's turn between them
        assert core.orders()[0].remaining == 3 and core.positions()[("s1", Leg.UP)].shares == 7
        assert len(core.fills()) == 1
        # The loop idle throughout: one part, one publish, as before.
        state.apply_order_report = apply_report
        publishes[0] = 0
        core._on_ws_events([order_update(order_id, "8", "10", status="LIVE"), maker_trade(order_id, "1", "MATCHED")])
        assert publishes[0] == 1
    finally:
        core.stop()


def test_orders_and_cancels_of_a_decision_go_to_the_workers_once_it_is_done():
    """trader/priority.py defer: place() and cancel() during a decision record at once (the next decision sees
    them) and hand the submit or the cancel to a worker when the decision leaves the gate."""
    from polymm.trader.priority import DecisionGate

    core, exchange = started_core()
    gate = core.gate = DecisionGate(max_wait_s=30.0)
    try:
        gate.enter()  # the loop decides (this thread stands in for it)
        cid = core.place(want(Leg.UP, Side.BUY, 0.62, 6.45))
        assert [o.client_id for o in core.orders()] == [cid]  # recorded: pending submit
        assert core.orders()[0].state is OrderState.PENDING_SUBMIT
        time.sleep(0.05)
        assert exchange.posted == []  # not handed to a worker yet
        gate.leave()
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        assert len(exchange.posted) == 1
        cancelled: list[str] = []
        cancel_order = exchange.cancel_order
        exchange.cancel_order = lambda oid: cancelled.append(oid) or cancel_order(oid)
        gate.enter()
        core.cancel(cid, "test")
        assert core.orders()[0].state is OrderState.PENDING_CANCEL
        time.sleep(0.05)
        assert cancelled == []
        gate.leave()
        wait_for(lambda: core.orders() == [], what="cancelled")
        assert len(cancelled) == 1
    finally:
        core.stop()


def test_an_order_deferred_past_a_stopping_core_is_refused_not_lost():
    """The pool shut down between the decision's place() and the end of the decision: the order ends refused,
    with the reason, never pending forever."""
    from polymm.trader.priority import DecisionGate

    core, exchange = started_core()
    gate = core.gate = DecisionGate(max_wait_s=30.0)
    try:
        gate.enter()
        cid = core.place(want(Leg.UP, Side.BUY, 0.62, 6.45))
        core._pool.shutdown(wait=True)
        gate.leave()
        states = {o.client_id: o for o in core.exec_state.all_orders(working_only=False)}
        assert states[cid].state is OrderState.REJECTED
        assert exchange.posted == []
    finally:
        core._pool = None
        core.stop(cancel_orders=False)


def test_the_loop_hands_a_rotations_paperwork_to_a_worker_after_its_decision(tmp_path):
    """settle_market_soon (the engine's bookkeeping after a window's first decision): the journal line, the ledger
    row and the user channel's subscription are done on a worker once the decision is done, not by the loop."""
    import threading

    from polymm.trader.priority import DecisionGate

    clock = Clock()
    old = market_at("old", int(clock.t) - 60)
    core, seen = _rotating_core(tmp_path, clock)
    core.start(old)
    gate = core.gate = DecisionGate(max_wait_s=30.0)
    settled_on: list[str] = []
    settle = core._settle
    core._settle = lambda *a: (settled_on.append(threading.current_thread().name), settle(*a))
    try:
        new = market_at("new", old.window_end)
        clock.t = old.window_end + 1
        gate.enter()  # the loop decides (this thread stands in for it)
        core.set_market(new, settle_later=True)
        core.settle_market_soon()
        time.sleep(0.05)
        assert settled_on == [] and ("subscribe", (new.condition_id,)) not in seen
        gate.leave()
        wait_for(lambda: ("subscribe", (new.condition_id,)) in seen, what="the subscription")
        wait_for(lambda: ("market", new.condition_id) in [(r["kind"], r.get("condition_id"))
                                                          for r in _journal_lines(tmp_path)], what="the journal line")
        assert settled_on and settled_on[0] != threading.current_thread().name
        core.settle_market_soon()  # settled: nothing again
        core.settle_market()
        assert seen.count(("subscribe", (new.condition_id,))) == 1 and len(settled_on) == 1
    finally:
        core.stop()
