"""No real (or mangled) trade message makes a fill disappear at the parsing edge: ISO match times are read,
and anything unreadable becomes UnreadableTrade naming the trade (the core then reconciles at once)."""
from __future__ import annotations

import json

import pytest

from tests.support.recorded import load_fixture
from polymm.trader.venue.user_wire import (
    UnreadableTrade, WireTrade, decode_rest_trades, decode_user_frame, trade_report, unix_s,
)


def test_rest_trade_report_with_iso_match_time_is_read():
    row = load_fixture("nautilus-rust/test_data/http_trade_report.json")  # match_time "2024-01-01T00:00:00Z"
    reports, bad = decode_rest_trades([row])
    assert bad == []
    (report,) = reports
    assert report.match_time == 1704067200.0
    assert [m.matched_amount for m in report.maker_orders] == [25.0, 5.0]


def test_user_channel_trade_with_iso_match_time_is_read():
    raw = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    raw["match_time"] = "2024-09-09T08:00:59.250+00:00"
    (event,), skipped = decode_user_frame(json.dumps(raw))
    assert skipped == [] and trade_report(event).match_time == pytest.approx(1725868859.25)


@pytest.mark.parametrize("value,expected", [("1725868859", 1725868859.0), ("1725868885871", 1725868885.871),
                                            (1725868859, 1725868859.0), ("2024-01-01T00:00:00Z", 1704067200.0)])
def test_unix_s_reads_every_form(value, expected):
    assert unix_s(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday", "2024-01-01T00:00:00"])  # words; an ISO time without a zone
def test_unix_s_refuses_what_it_cannot_place_in_time(value):
    with pytest.raises(ValueError):
        unix_s(value)


@pytest.mark.parametrize("field,value,words", [
    ("match_time", "soon", "field match_time 'soon'"),
    ("size", "ten", "field size 'ten'"),
    ("price", "", None),  # empty is "no value" (0), as the exchange sends for unknown amounts
])
def test_unreadable_field_names_the_trade_and_the_field(field, value, words):
    raw = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    raw[field] = value
    (event,), _ = decode_user_frame(json.dumps(raw))
    assert isinstance(event, WireTrade)
    if words is None:
        trade_report(event)
        return
    with pytest.raises(UnreadableTrade) as err:
        trade_report(event)
    assert err.value.trade_id == raw["id"] and words in str(err.value)
    assert raw["owner"] not in str(err.value)  # the owner is our API key: never in a log line


def test_unreadable_maker_leg_field_names_the_trade():
    raw = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    raw["maker_orders"][3]["matched_amount"] = "5 shares"
    (event,), _ = decode_user_frame(json.dumps(raw))
    with pytest.raises(UnreadableTrade, match="maker_orders.matched_amount"):
        trade_report(event)


def test_malformed_trade_event_in_a_frame_is_returned_not_skipped():
    good = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    bad = {**good, "id": "t-bad", "size": {"nested": 1}}
    order = load_fixture("nautilus-python/ws_messages/order_placement.json")
    broken_order = {**order, "id": "o-bad", "price": [1]}
    events, skipped = decode_user_frame(json.dumps([good, bad, broken_order]))
    assert isinstance(events[0], WireTrade)
    assert isinstance(events[1], UnreadableTrade) and events[1].trade_id == "t-bad"
    assert len(events) == 2 and len(skipped) == 1 and "o-bad" in skipped[0]  # order events: the reconcile re-reads


def test_bad_rest_trade_row_is_reported_with_its_id():
    row = {**load_fixture("nautilus-rust/test_data/http_trade_report.json"), "match_time": "never"}
    reports, bad = decode_rest_trades([row])
    assert reports == [] and len(bad) == 1 and "trade-0xabcdef1234" in bad[0] and "match_time" in bad[0]
