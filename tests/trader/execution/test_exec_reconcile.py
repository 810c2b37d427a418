"""Reconciliation (pure part): REST truth repairs local state, and the differences are reported in words."""
from __future__ import annotations

from polymm.trader.execution import reconcile
from polymm.trader.execution.fills import FillStore, MakerLeg, OrderInfo, TokenInfo, TradeReport
from polymm.trader.decision.fees import FeeSchedule
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want
from polymm.trader.execution.order_journal import JournalOrder
from polymm.trader.execution.orders import OrderBook
from polymm.trader.venue.user_wire import OrderReport

COND, UP, DOWN = "0xcond", "111", "222"
TOKENS = {UP: TokenInfo(COND, Leg.UP, FeeSchedule(0.07)), DOWN: TokenInfo(COND, Leg.DOWN, FeeSchedule(0.07))}


def setup():
    book = OrderBook()

    def info(order_id):
        o = book.by_exchange.get(order_id)
        return OrderInfo(o.client_id, o.strategy, o.leg, o.side) if o else None

    return book, FillStore(info, TOKENS.get, "our-key", "0xfunder")


def token_leg(token):
    t = TOKENS.get(token)
    return (t.condition_id, t.leg) if t else None


def report(order_id, status="LIVE", matched=0.0, size=10.0, token=UP):
    return OrderReport(order_id, status, "REST", COND, token, "BUY", 0.4, size, matched, "our-key", "0xfunder", "GTC", 1.0)


def live_order(book, order_id, now=1.0):
    o = book.new(Want("s1", Leg.UP, Side.BUY, 0.4, 10, Role.ENTRY, OrderType.GTC, True, "r"), UP, COND, now)
    book.signed(o.client_id, order_id)
    book.on_submit_accepted(o.client_id, "live", 0, now)
    return o


def test_in_agreement_reports_nothing():
    book, fills = setup()
    live_order(book, "0xa")
    res = reconcile.apply(book, fills, [report("0xa")], [], {}, token_leg, {COND}, 2.0)
    assert res.differences == [] and res.need_lookup == []


def test_partial_fill_seen_only_by_rest_is_taken_and_reported():
    book, fills = setup()
    live_order(book, "0xa")
    res = reconcile.apply(book, fills, [report("0xa", matched=4)], [], {}, token_leg, {COND}, 2.0)
    assert book.by_exchange["0xa"].view().state is OrderState.PARTIALLY_FILLED
    assert "local live filled=0 -> exchange partially_filled filled=4" in res.differences[0]


def test_missed_trade_is_added_once_and_reported():
    book, fills = setup()
    live_order(book, "0xa")
    trade = TradeReport("t1", "CONFIRMED", COND, DOWN, "BUY", 10, 0.6, 0, 5.0, "0xtaker", "MAKER", "x", "0xother",
                        (MakerLeg("0xa", "our-key", "0xfunder", UP, 0.4, 10, None),))
    res = reconcile.apply(book, fills, [], [trade], {}, token_leg, {COND}, 2.0)
    assert any("fill missed by the user channel" in d for d in res.differences)
    assert book.by_exchange["0xa"].view().state is OrderState.FILLED
    again = reconcile.apply(book, fills, [], [trade], {}, token_leg, {COND}, 3.0)
    assert again.differences == [] and len(fills) == 1


def test_local_live_order_missing_on_the_exchange_is_looked_up_not_assumed():
    book, fills = setup()
    live_order(book, "0xa")
    res = reconcile.apply(book, fills, [], [], {}, token_leg, {COND}, 2.0)
    assert res.need_lookup == ["0xa"]
    assert book.by_exchange["0xa"].view().state is OrderState.LIVE


def test_unknown_submit_is_looked_up():
    book, fills = setup()
    o = book.new(Want("s1", Leg.UP, Side.BUY, 0.4, 10, Role.ENTRY), UP, COND, 1.0)
    book.signed(o.client_id, "0xu")
    book.on_submit_unknown(o.client_id, "timeout", 1.5)
    assert reconcile.apply(book, fills, [], [], {}, token_leg, {COND}, 2.0).need_lookup == ["0xu"]


def test_open_order_from_the_journal_is_adopted_with_its_strategy():
    book, fills = setup()
    j = JournalOrder("0xj", "s2-old-7", "s2", "down", "SELL", 0.7, 6, "take_profit", "GTC", True, "tp", DOWN, COND, 0.5)
    res = reconcile.apply(book, fills, [report("0xj", token=DOWN, size=6)], [], {"0xj": j}, token_leg, {COND}, 2.0)
    adopted = book.by_exchange["0xj"].view()
    assert (adopted.client_id, adopted.strategy, adopted.leg, adopted.side, adopted.role, adopted.state) == \
           ("s2-old-7", "s2", Leg.DOWN, Side.SELL, Role.TAKE_PROFIT, OrderState.LIVE)
    assert "adopted from the journal" in res.differences[0]


def test_unknown_open_order_on_our_wallet_is_tracked_as_external_and_other_markets_ignored():
    book, fills = setup()
    res = reconcile.apply(book, fills, [report("0xe"), report("0xz", token="999")], [], {}, token_leg, {COND}, 2.0)
    assert book.by_exchange["0xe"].strategy == "external" and "0xz" not in book.by_exchange
    assert "not placed by this trader" in res.differences[0]
