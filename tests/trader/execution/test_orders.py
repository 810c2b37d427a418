"""Order state machine (pure): identities, submit outcomes, unknown outcomes, deferred cancels, sticky
terminal states, exchange truth winning over inference."""
from __future__ import annotations

from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want
from polymm.trader.execution.orders import OrderBook, normalise_order_status


def want(size: float = 10, order_type: OrderType = OrderType.GTC, side: Side = Side.BUY) -> Want:
    return Want("s1", Leg.UP, side, 0.5, size, Role.ENTRY, order_type, post_only=order_type is OrderType.GTC,
                reason="test")


def placed(book: OrderBook, **kw):
    order = book.new(want(**kw), "tok", "cond", now=1.0)
    book.signed(order.client_id, "0xhash" + order.client_id)
    return order


def test_client_id_before_sending_and_exchange_id_after_signing():
    book = OrderBook()
    order = book.new(want(), "tok", "cond", now=1.0)
    assert order.client_id.startswith("s1-") and order.order_id is None
    assert order.view().state is OrderState.PENDING_SUBMIT
    book.signed(order.client_id, "0xabc")
    assert book.get("0xabc") is order and book.get(order.client_id) is order
    assert book.new(want(), "tok", "cond", now=1.0).client_id != order.client_id


def test_live_partial_filled_life_cycle():
    book = OrderBook()
    o = placed(book)
    assert book.on_submit_accepted(o.client_id, "live", 0, 2.0).after.state is OrderState.LIVE
    t = book.on_exchange_order(o.order_id, "LIVE", 4, 3.0)
    assert t.after.state is OrderState.PARTIALLY_FILLED and t.after.filled == 4 and t.after.remaining == 6
    assert book.on_exchange_order(o.order_id, "MATCHED", 10, 4.0).after.state is OrderState.FILLED


def test_timeout_makes_outcome_unknown_and_lookup_resolves_it_to_what_the_exchange_says():
    book = OrderBook()
    o = placed(book)
    assert book.on_submit_unknown(o.client_id, "timed out", 2.0).after.state is OrderState.UNKNOWN
    assert [u.client_id for u in book.unknown()] == [o.client_id]
    t = book.on_exchange_order(o.order_id, "MATCHED", 10, 3.0)
    assert t.after.state is OrderState.FILLED


def test_unknown_becomes_rejected_only_after_repeated_missing_lookups_and_revives_if_it_shows_up():
    book = OrderBook()
    o = placed(book)
    book.on_submit_unknown(o.client_id, "503", 2.0)
    assert book.on_lookup_missing(o.client_id, 3, 3.0) is None
    assert book.on_lookup_missing(o.client_id, 3, 4.0) is None
    assert book.on_lookup_missing(o.client_id, 3, 5.0).after.state is OrderState.REJECTED
    # The exchange shows it after all: its truth wins over our inference.
    assert book.on_exchange_order(o.order_id, "LIVE", 0, 6.0).after.state is OrderState.LIVE


def test_cancel_of_pending_submit_is_deferred_then_due_once_live():
    book = OrderBook()
    o = placed(book)
    action, t = book.request_cancel(o.client_id, "replace", 2.0)
    assert action == "deferred" and t.after.state is OrderState.PENDING_CANCEL
    assert book.cancel_due(o.client_id) is False
    assert book.request_cancel(o.client_id, "again", 2.5)[0] == "noop"
    book.on_submit_accepted(o.client_id, "live", 0, 3.0)
    assert book.cancel_due(o.client_id) is True
    assert book.cancel_due(o.client_id) is False  # sent once
    assert book.on_cancel_result(o.order_id, True, "", 4.0).after.state is OrderState.CANCELED


def test_deferred_cancel_of_rejected_order_is_dropped():
    book = OrderBook()
    o = placed(book)
    book.request_cancel(o.client_id, "x", 2.0)
    book.on_submit_rejected(o.client_id, "crosses book", 3.0)
    assert book.cancel_due(o.client_id) is False
    assert book.by_client[o.client_id].view().state is OrderState.REJECTED


def test_refused_cancel_stays_requested_for_resend_and_lookup():
    book = OrderBook()
    o = placed(book)
    book.on_submit_accepted(o.client_id, "live", 0, 2.0)
    assert book.request_cancel(o.client_id, "stop", 3.0)[0] == "send"
    book.on_cancel_result(o.order_id, False, "Trading is currently cancel-only", 4.0)
    assert [r.client_id for r in book.cancels_to_resend()] == [o.client_id]
    assert book.by_client[o.client_id].view().state is OrderState.PENDING_CANCEL


def test_terminal_states_are_sticky_against_late_events():
    book = OrderBook()
    o = placed(book)
    book.on_submit_accepted(o.client_id, "live", 0, 2.0)
    book.on_exchange_order(o.order_id, "CANCELED", 3, 3.0)
    t = book.on_exchange_order(o.order_id, "LIVE", 0, 4.0)  # a late PLACEMENT
    assert t.after.state is OrderState.CANCELED and t.after.filled == 3


def test_fak_remainder_is_cancelled_and_full_match_is_filled():
    book = OrderBook()
    o = placed(book, order_type=OrderType.FAK)
    assert book.on_submit_accepted(o.client_id, "matched", 4, 2.0).after.state is OrderState.CANCELED
    o2 = placed(book, order_type=OrderType.FOK)
    assert book.on_submit_accepted(o2.client_id, "matched", 10, 2.0).after.state is OrderState.FILLED


def test_fill_seen_before_the_submit_answer_counts():
    book = OrderBook()
    o = placed(book)
    assert book.on_fill(o.order_id, 6, 2.0).after.state is OrderState.PARTIALLY_FILLED
    t = book.on_submit_accepted(o.client_id, "matched", 6, 3.0)
    assert t.after.state is OrderState.PARTIALLY_FILLED and t.after.filled == 6


def test_order_status_spellings_are_normalised():
    assert normalise_order_status("ORDER_STATUS_LIVE") == "LIVE"
    assert normalise_order_status("CANCELED_MARKET_RESOLVED") == "CANCELED"
    assert normalise_order_status("live") == "LIVE"


def test_cancel_before_the_order_is_sent_cancels_it_without_sending():
    book = OrderBook()
    o = book.new(want(), "tok", "cond", now=1.0)
    assert book.request_cancel(o.client_id, "never mind", 1.5)[0] == "deferred"
    t = book.on_cancelled_before_send(o.client_id, 2.0)
    assert t.after.state is OrderState.CANCELED and o.order_id is None


def test_prune_forgets_old_done_orders_under_every_key_and_keeps_working_and_recent_ones():
    book = OrderBook()
    old_done = placed(book)
    book.alias(old_done.client_id, "0xexchange-id")  # the exchange answered with another id: two keys
    book.on_submit_accepted(old_done.client_id, "live", 0, now=1.0)
    book.on_cancel_result("0xexchange-id", True, "", now=2.0)
    recent_done = placed(book)
    book.on_submit_rejected(recent_done.client_id, "no", now=5000.0)
    working = placed(book)
    book.on_submit_accepted(working.client_id, "live", 0, now=2.0)
    book.prune(keep_terminal_s=3600, now=4000.0)
    assert set(book.by_client) == {recent_done.client_id, working.client_id}
    assert all(o is not old_done for o in book.by_exchange.values())
    assert book.get(working.order_id) is working and book.get(recent_done.order_id) is recent_done


def test_a_view_built_without_the_dataclass_init_is_a_whole_equal_frozen_order_view():
    import dataclasses

    import pytest

    from polymm.trader.model import OrderView

    book = OrderBook()
    o = placed(book)
    book.request_cancel(o.client_id, "requote", 2.0)
    view = o.view()
    expected = OrderView(
        client_id=o.client_id, order_id=o.order_id, strategy="s1", leg=Leg.UP, side=Side.BUY, price=0.5, size=10,
        filled=0.0, state=OrderState.PENDING_CANCEL, role=Role.ENTRY, order_type=OrderType.GTC, post_only=True,
        created_at=1.0, updated_at=o.updated_at, reason="test", condition_id="cond", token_id="tok",
        cancel_reason="requote", hold_until=0.0)
    assert view == expected and hash(view) == hash(expected) and repr(view) == repr(expected)
    assert set(vars(view)) == {f.name for f in dataclasses.fields(OrderView)}  # no field left out
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.price = 0.6


def test_orders_are_indexed_by_market_through_new_adopt_prune_and_forget():
    from polymm.trader.execution.orders import Order

    book = OrderBook()
    a = book.new(want(), "tok", "m1", now=1.0)
    b = book.new(want(), "tok", "m2", now=1.0)
    adopted = Order(client_id="x-1", strategy="s1", leg=Leg.UP, side=Side.BUY, price=0.5, size=5, role=Role.ENTRY,
                    order_type=OrderType.GTC, post_only=True, reason="", token_id="tok", condition_id="m1",
                    created_at=1.0, updated_at=1.0, order_id="0xadopted")
    book.adopt(adopted)
    assert list(book.in_market("m1")) == [a, adopted] and list(book.in_market("m2")) == [b]
    assert list(book.in_market("nowhere")) == []
    book.signed(b.client_id, "0xb")
    book.on_submit_rejected(b.client_id, "refused", 2.0)  # terminal, then old enough to prune
    book.prune(keep_terminal_s=10, now=100.0)
    assert "m2" not in book.by_market and book.get("0xb") is None and book.get(b.client_id) is None
    book.forget_market("m1")
    assert book.by_market == {} and book.by_client == {} and book.by_exchange == {}
