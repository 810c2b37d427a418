"""The execution core's order and fill state alone (trader/execution/state.py ExecutionState): no core, no
exchange, no threads, no clock. Each test drives it the way the core's parts do (intents, submit outcomes, the
exchange's reports) and checks what its readers get."""
from __future__ import annotations

import dataclasses
import threading

import pytest

from polymm.trader.decision.fees import FeeSchedule
from polymm.trader.execution.fills import MakerLeg, TradeReport
from polymm.trader.execution.order_journal import JournalContents, JournalOrder
from polymm.trader.execution.state import ExecutionState, StateReads
from polymm.trader.model import Leg, MarketIdentity, OrderState, OrderType, Role, Side, Want
from polymm.trader.venue.gateway import FeeDetails, MarketRules
from polymm.trader.venue.user_wire import OrderReport

T0 = 1_800_000_000.0
OWNER, FUNDER = "key-1", "0xfunder"
MARKET = MarketIdentity("0xcond", "111", "222", int(T0) - 60, int(T0) + 840, 0.01, 5, 0.07)


def market_at(name: str, window_start: int) -> MarketIdentity:
    return MarketIdentity(f"0x{name}", f"{name}-up", f"{name}-down", window_start, window_start + 900, 0.01, 5, 0.07)


def want(leg: Leg = Leg.UP, side: Side = Side.BUY, price: float = 0.62, size: float = 10, *, post_only: bool = True,
         order_type: OrderType = OrderType.GTC, role: Role = Role.ENTRY, strategy: str = "s1") -> Want:
    return Want(strategy, leg, side, price, size, role, order_type, post_only, "test")


def state_on(market: MarketIdentity = MARKET) -> ExecutionState:
    state = ExecutionState()
    state.set_identity(OWNER, FUNDER)
    state.set_current(market)
    return state


def live(state: ExecutionState, w: Want, now: float = T0, order_id: str | None = None) -> str:
    """An order placed, signed and accepted resting: its exchange id."""
    order = state.new_order(w, now)
    order_id = order_id or f"0x{order.client_id}"
    state.signed(order.client_id, order_id)
    state.submit_accepted(order.client_id, order_id, order_id, "live", 0.0, now)
    return order_id


def order_report(order_id: str, matched: float, size: float, status: str = "MATCHED", market: MarketIdentity = MARKET,
                 kind: str = "UPDATE") -> OrderReport:
    return OrderReport(order_id=order_id, status=status, kind=kind, market=market.condition_id,
                       asset_id=market.up_token, side="BUY", price=0.62, original_size=size, size_matched=matched,
                       owner=OWNER, maker_address=FUNDER, order_type="GTC", created_at=T0)


def maker_trade(order_id: str, size: float, status: str, trade_id: str = "trade-1", price: float = 0.62,
                market: MarketIdentity = MARKET) -> TradeReport:
    return TradeReport(trade_id=trade_id, status=status, market=market.condition_id, asset_id=market.up_token,
                       side="SELL", size=size, price=price, fee_rate_bps=0, match_time=T0 + 1,
                       taker_order_id="0xsomeone", trader_side="MAKER", owner=OWNER, maker_address=FUNDER,
                       maker_orders=(MakerLeg(order_id, OWNER, FUNDER, market.up_token, price, size, "BUY"),))


def test_it_is_what_the_readers_read():
    """The engine, control handler, metrics and resolution watcher read through StateReads; the state is one."""
    state = state_on()
    assert isinstance(state, StateReads)
    from polymm.trader.execution.core import ExecutionCore  # which passes them through

    reads = [name for name in vars(StateReads) if not name.startswith("_")]
    assert len(reads) == 9 and all(callable(getattr(ExecutionCore, name)) for name in reads)
    assert state.orders() == [] and state.positions() == {} and state.fills() == [] and state.pending_resolution() == []
    assert state.pnl()["total"]["realised"] == 0
    assert state.tick_size(MARKET.up_token) == 0.01 and state.current is MARKET


def test_an_order_needs_a_market():
    with pytest.raises(RuntimeError, match="before start"):
        ExecutionState().new_order(want(), T0)


def test_reads_are_the_callers_to_keep_and_never_change_under_them():
    state = state_on()
    order_id = live(state, want())
    orders, positions = state.orders(), state.positions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        orders[0].price = 0.99  # type: ignore[misc]
    orders.clear()
    positions[("s1", Leg.UP)] = None  # type: ignore[assignment]
    assert len(state.orders()) == 1 and state.positions() == {}
    before = state.orders()[0]
    state.apply_trade(maker_trade(order_id, 4, "MATCHED"), T0 + 1)
    assert before.filled == 0 and before.state is OrderState.LIVE  # the view taken earlier did not move
    assert state.orders()[0].filled == 4 and state.orders()[0].state is OrderState.PARTIALLY_FILLED


def test_an_order_report_ahead_of_its_trade_counts_as_held_until_the_trade_replaces_it():
    state = state_on()
    order_id = live(state, want(post_only=True))
    t, due = state.apply_order_report(order_report(order_id, 10, 10), T0 + 1)
    assert t.after.state is OrderState.FILLED and not due
    assert state.orders() == []  # no longer working...
    held = state.positions()[("s1", Leg.UP)]
    assert held.shares == 10 and held.fees == 0.0  # ...but held (post-only: a maker, no fee)
    assert state.fills() == []  # nothing invented in the fill list
    changes = state.apply_trade(maker_trade(order_id, 10, "MATCHED"), T0 + 2)
    assert [c.previous for c in changes] == [None] and changes[0].fill.strategy == "s1"
    assert state.positions()[("s1", Leg.UP)].shares == 10  # the trade replaces, never adds
    state.apply_trade(maker_trade(order_id, 10, "FAILED"), T0 + 3)
    assert state.positions().get(("s1", Leg.UP)) is None or state.positions()[("s1", Leg.UP)].shares == 0


def test_a_provisional_taker_fill_is_charged_the_markets_fee_schedule():
    state = state_on()
    state.set_fee_schedule(MARKET.condition_id, FeeSchedule(0.07, 1.0, source="test"))
    order_id = live(state, want(post_only=False))
    state.apply_order_report(order_report(order_id, 7, 10, status="LIVE"), T0 + 1)
    assert state.orders()[0].remaining == 3
    assert state.positions()[("s1", Leg.UP)].fees > 0  # not post-only: the taker fee until the trade says
    assert state.fee_schedule(MARKET.condition_id).rate == 0.07
    assert state.fee_schedule("0xother").source != "test"  # unknown market: the conservative default


@pytest.mark.parametrize("w, words", [
    (want(order_type=OrderType.FAK, post_only=True), "post-only is only possible"),
    (want(size=4), "below the market minimum"),
    (want(size=0), "not positive"),
    (want(price=0.995), "outside [0.01, 0.99]"),
])
def test_the_markets_rules_refuse_an_order_in_words(w, words):
    state = state_on()
    order = state.new_order(w, T0)
    assert words in state.refusal(order.client_id, T0)
    t = state.reject(order.client_id, state.refusal(order.client_id, T0), T0)
    assert t.after.state is OrderState.REJECTED and state.orders() == []


def test_no_order_after_the_window_ends():
    state = state_on()
    order = state.new_order(want(), T0)
    assert state.refusal(order.client_id, T0) is None
    assert state.refusal(order.client_id, MARKET.window_end) == "market window has ended"


def test_a_submit_goes_out_on_the_current_tick_at_a_size_the_exchange_accepts():
    state = state_on()
    state.set_tick(MARKET.up_token, 0.01)
    buy = state.new_order(want(price=0.6234, size=10), T0)
    sub = state.prepare_submit(buy.client_id, T0)
    assert sub.ended is None and sub.order.price == 0.62 and sub.tick == 0.01  # a BUY rounds down
    assert sub.notes[0][0] == "reprice" and "0.6234" in sub.notes[0][1]
    sell = state.new_order(want(side=Side.SELL, price=0.6201, size=10), T0)
    assert state.prepare_submit(sell.client_id, T0).order.price == 0.63  # a SELL rounds up
    assert state.orders()[0].price == 0.62  # what is recorded is what went out


def test_a_gtd_too_close_to_the_end_goes_as_a_gtc():
    state = state_on()
    early = state.new_order(want(order_type=OrderType.GTD), T0)
    sub = state.prepare_submit(early.client_id, T0)
    assert sub.order_type is OrderType.GTD and sub.expiration == MARKET.window_end + 60
    late = state.new_order(want(order_type=OrderType.GTD), MARKET.window_end - 100)
    sub = state.prepare_submit(late.client_id, MARKET.window_end - 100)
    assert sub.order_type is OrderType.GTC and sub.expiration == 0 and sub.order.order_type is OrderType.GTC


def test_a_cancel_before_the_send_ends_the_order_unsent():
    state = state_on()
    order = state.new_order(want(), T0)
    action, t = state.request_cancel(order.client_id, "stale", T0)
    assert action == "deferred" and t.after.state is OrderState.PENDING_CANCEL and t.after.cancel_reason == "stale"
    sub = state.prepare_submit(order.client_id, T0)
    assert sub.ended is not None and sub.end_action == "canceled" and sub.ended.after.state is OrderState.CANCELED


def test_a_cancel_while_signing_ends_the_order_before_it_is_sent():
    state = state_on()
    order = state.new_order(want(), T0)
    assert state.prepare_submit(order.client_id, T0).ended is None
    assert state.cancelled_before_send(order.client_id, T0) is None
    state.request_cancel(order.client_id, "stale", T0)
    t = state.cancelled_before_send(order.client_id, T0)
    assert t.after.state is OrderState.CANCELED


def test_a_cancel_deferred_while_the_submit_is_unanswered_is_due_once_it_rests():
    state = state_on()
    order = state.new_order(want(), T0)
    entry = state.signed(order.client_id, "0xabc")
    assert entry.order_id == "0xabc" and entry.strategy == "s1"  # journaled before the send
    assert state.request_cancel("0xabc", "stale", T0)[0] == "deferred"  # by exchange id as well
    accepted = state.submit_accepted(order.client_id, "0xabc", "0xabc", "live", 0.0, T0 + 1)
    assert accepted.cancel_due and accepted.journal is None
    assert state.exchange_ids([order.client_id]) == ["0xabc"]
    t = state.cancel_result("0xabc", True, "", T0 + 2)
    assert t.after.state is OrderState.CANCELED and state.orders() == []


def test_an_answer_naming_the_order_differently_is_followed_and_journaled_again():
    state = state_on()
    order = state.new_order(want(), T0)
    state.signed(order.client_id, "0xhash")
    accepted = state.submit_accepted(order.client_id, "0xhash", "0xTHEIRS", "live", 0.0, T0 + 1)
    assert accepted.journal is not None and accepted.journal.order_id == "0xTHEIRS"
    assert state.orders()[0].order_id == "0xTHEIRS" and state.has_order("0xhash")


def test_a_refused_cancel_stays_requested_and_is_resent():
    state = state_on()
    order_id = live(state, want())
    assert state.request_cancel(order_id, "stale", T0)[0] == "send"
    state.cancel_result(order_id, False, "matching engine busy", T0 + 1)
    (again,) = state.cancels_to_resend(T0 + 2)
    assert again.order_id == order_id and again.cancel_reason == "stale"
    state.mark_cancel_sent(again.client_id)
    assert state.cancels_to_resend(T0 + 2) == []


def test_a_cancel_waits_for_the_markets_minimum_order_age_and_a_taker_delay():
    state = state_on()
    rules = MarketRules(FeeDetails(0.07, 1.0), min_order_age_s=2.0, taker_delay_s=0.25)
    state.set_fee_schedule(MARKET.condition_id, FeeSchedule(0.07, 1.0, source="test"), rules)
    young = live(state, want())  # accepted at T0
    action, t = state.request_cancel(young, "stale", T0 + 1)
    assert action == "held" and t.after.hold_until == T0 + 2 and t.after.state is OrderState.PENDING_CANCEL
    assert state.cancels_to_resend(T0 + 1.9) == []
    (due,) = state.cancels_to_resend(T0 + 2)
    assert due.order_id == young
    no_age = MarketRules(FeeDetails(0.07, 1.0), min_order_age_s=0.0, taker_delay_s=0.25)
    state.set_fee_schedule(MARKET.condition_id, FeeSchedule(0.07, 1.0, source="test"), no_age)
    assert state.request_cancel(live(state, want(price=0.5)), "stale", T0 + 0.1)[0] == "send"  # no minimum age
    order = state.new_order(want(price=0.7, post_only=False), T0)
    state.signed(order.client_id, "0xdelayed")
    state.submit_accepted(order.client_id, "0xdelayed", "0xdelayed", "delayed", 0.0, T0)
    action, t = state.request_cancel("0xdelayed", "stale", T0 + 0.1)
    assert action == "held" and t.after.hold_until == T0 + 0.25  # a delayed order: not before the taker delay


def test_an_unknown_submit_is_rejected_only_after_the_lookups_find_nothing():
    state = state_on()
    order = state.new_order(want(), T0)
    state.signed(order.client_id, "0xabc")
    assert state.submit_unknown(order.client_id, "timeout", T0).after.state is OrderState.UNKNOWN
    assert state.unknown_orders() == ["0xabc"] and state.order_state("0xabc") is OrderState.UNKNOWN
    assert state.lookup_missing("0xabc", 2, T0 + 1)[0] is None
    t, why = state.lookup_missing("0xabc", 2, T0 + 2)
    assert t.after.state is OrderState.REJECTED and "no record of the order after 2 lookups" in why
    # the exchange shows it after all: the inferred rejection is revived
    t = state.exchange_order("0xabc", order_report("0xabc", 0, 10, status="LIVE"), T0 + 3)
    assert t.after.state is OrderState.LIVE


def test_a_restart_knows_its_orders_from_the_journal():
    old = market_at("old", int(T0) - 4000)
    entry = JournalOrder("0xj", "s2-x-1", "s2", "up", "BUY", 0.4, 10, "entry", "GTC", True, "test", old.up_token,
                         old.condition_id, T0 - 3900)
    gone = market_at("gone", int(T0) - 9000)
    state = ExecutionState()
    registered = state.restore(JournalContents(orders={"0xj": entry}, markets={old.condition_id: old,
                                                                              gone.condition_id: gone},
                                               resolutions={gone.condition_id: "up"}, fills={"t-known"}), T0)
    assert {m.condition_id for m in registered} == {old.condition_id, gone.condition_id}
    assert state.known_markets() == {old.condition_id}  # resolved over an hour ago: not followed again
    assert state.backfill_markets() == [old.condition_id]  # unresolved with our orders: its trades are read
    state.set_current(MARKET)
    # a trade on the journaled order is attributed to its strategy (the order is adopted)
    (change,) = state.apply_trade(maker_trade("0xj", 10, "CONFIRMED", "t-new", 0.4, market=old), T0)
    assert change.fill.strategy == "s2" and change.fill.client_id == "s2-x-1"
    assert state.note_recorded("t-new") and not state.note_recorded("t-known")
    assert state.condition_of(change.fill) == old.condition_id
    (pending,) = state.pending_resolution()
    assert pending[0] == old and pending[1][("s2", Leg.UP)].shares == 10
    assert set(state.reconcile_scope(T0)) == {MARKET.condition_id, old.condition_id}


def test_reconciliation_adopts_an_order_on_our_wallet_we_did_not_place():
    state = state_on()
    res = state.reconcile([order_report("0xext", 0, 8, status="LIVE", kind="REST")], [], {MARKET.condition_id}, T0)
    assert any("not placed by this trader" in d for d in res.differences)
    (order,) = state.orders()
    assert order.strategy == "external" and order.order_id == "0xext"
    assert state.cancels_due(T0) == []


def test_a_settled_market_is_forgotten_after_a_day_and_its_pnl_is_kept():
    old = market_at("old", int(T0) - 60)
    state = state_on(old)
    order_id = live(state, want(price=0.40))
    state.apply_trade(maker_trade(order_id, 10, "CONFIRMED", "t-old", 0.40, market=old), T0)
    assert state.resolve(old.condition_id, Leg.UP) and not state.resolve(old.condition_id, Leg.UP)
    before = state.pnl()
    assert before["total"]["realised"] == 6.0  # 10 shares bought at 0.40 pay 1.00
    state.set_current(market_at("new", old.window_end))
    assert state.prune(old.window_end + 3600) == []  # an hour later: still shown
    assert state.prune(old.window_end + 86400 + 1) == [old.condition_id]
    assert state.known_markets() == {"0xnew"} and state.fills() == [] and state.sizes()["exchange_ids"] == 0
    assert state.pnl()["total"] == before["total"]  # forgotten, not lost
    assert state.tick_size(old.up_token) is None


def test_an_unresolved_market_still_held_is_never_forgotten():
    old = market_at("old", int(T0) - 60)
    state = state_on(old)
    order_id = live(state, want(price=0.40))
    state.apply_trade(maker_trade(order_id, 10, "CONFIRMED", "t-old", 0.40, market=old), T0)
    state.set_current(market_at("new", old.window_end))
    assert state.prune(old.window_end + 10 * 86400) == []
    assert state.pending_resolution()[0][0] == old


def test_tracked_markets_are_the_current_the_working_and_the_recently_ended():
    old = market_at("old", int(T0) - 60)
    state = state_on(old)
    live(state, want())
    state.set_current(market_at("new", old.window_end))
    assert set(state.tracked_markets(old.window_end + 10 * 3600)) == {"0xnew", old.condition_id}  # working order
    state.request_cancel_all("rotation", T0)
    state.cancel_result(state.exchange_ids([o.client_id for o in state.all_orders()])[0], True, "", T0)
    assert set(state.tracked_markets(old.window_end + 10)) == {"0xnew", old.condition_id}  # ended a moment ago
    assert state.tracked_markets(old.window_end + 10 * 3600) == ["0xnew"]


def test_readers_on_other_threads_see_consistent_answers_while_fills_arrive():
    state = state_on()
    order_ids = [live(state, want(size=10)) for _ in range(20)]
    errors: list[BaseException] = []
    done = threading.Event()

    def read():
        try:
            while not done.is_set():
                # the engine's order: orders, then positions; a share is working or held, never neither
                working = state.orders()
                held = state.positions().get(("s1", Leg.UP))
                assert round((held.shares if held else 0.0) + sum(o.remaining for o in working), 6) >= 200
                with state.lock:  # one read under the state's lock: exactly one of the two
                    working, held = state.orders(), state.positions().get(("s1", Leg.UP))
                assert round((held.shares if held else 0.0) + sum(o.remaining for o in working), 6) == 200
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i, order_id in enumerate(order_ids):
        state.apply_trade(maker_trade(order_id, 10, "MATCHED", f"t{i}"), T0 + i)
    done.set()
    reader.join()
    assert not errors, errors[0]
    assert state.positions()[("s1", Leg.UP)].shares == 200 and state.orders() == []


def _locked_reads(state: ExecutionState):
    """What the decision reads, computed the slow way under the lock (as every read did before issue 26)."""
    from polymm.trader.decision.positions import fold

    with state.lock:
        cond = state.current.condition_id
        orders = [o.view() for o in state._book.by_client.values() if o.condition_id == cond and not o.state.terminal]
        folded = fold(state._holdings(cond), state._resolutions)
        return orders, {(s, leg): p for (c, s, leg), p in folded.items() if c == cond}


def test_the_decision_reads_are_published_whole_by_every_write_and_read_without_building_anything():
    state = state_on()
    assert state.published.condition_id == MARKET.condition_id and state.published.orders == ()
    order_id = live(state, want(size=10))
    second = live(state, want(leg=Leg.DOWN, size=6, price=0.3))
    state.apply_trade(maker_trade(order_id, 4, "MATCHED"), T0 + 1)
    state.apply_order_report(order_report(second, 6, 6), T0 + 2)  # matched before its trade: held provisionally
    state.set_fee_schedule(MARKET.condition_id, FeeSchedule(0.05, 1.5, source="test"))
    reads = state.published
    orders, positions = _locked_reads(state)
    assert list(reads.orders) == orders and dict(reads.positions) == positions
    assert reads.fee == FeeSchedule(0.05, 1.5, source="test") == state.fee_schedule(MARKET.condition_id)
    assert state.orders() == orders and state.positions() == positions  # the readers' answers come from it
    assert state.published is reads  # reads build nothing: the same object until the next write
    with pytest.raises(TypeError):
        reads.positions[("s1", Leg.UP)] = None  # type: ignore[index]  # shared: read-only
    state.request_cancel(order_id, "test", T0 + 3)
    assert state.published is not reads and state.published.orders[0].state is OrderState.PENDING_CANCEL
    assert reads.orders[0].state is OrderState.PARTIALLY_FILLED  # what a decision already holds never moves


def test_the_decision_reads_follow_the_market_being_traded():
    state = state_on()
    live(state, want())
    other = market_at("next", int(T0) + 840)
    state.set_current(other)
    assert state.published.condition_id == other.condition_id and state.published.orders == ()
    assert len(state.orders(condition_id=MARKET.condition_id)) == 1  # another market: read under the lock
    assert state.fee_schedule(other.condition_id) is state.published.fee


def test_the_decision_reads_take_no_lock_while_a_writer_holds_it():
    state = state_on()
    live(state, want())
    holding, release = threading.Event(), threading.Event()

    def writer():
        with state.lock:
            holding.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert holding.wait(10)
        answers: list = []
        reader = threading.Thread(target=lambda: answers.append(
            (state.orders(), state.positions(), state.fee_schedule(MARKET.condition_id), state.published)))
        reader.start()
        reader.join(5)
        assert answers and len(answers[0][0]) == 1  # answered while the lock is held elsewhere
    finally:
        release.set()
        t.join()
