"""Market-channel parsing on the real recorded messages (tests/fixtures/polymarket-recorded)."""
from __future__ import annotations

import json

import pytest

from tests.support.recorded import FIXTURES, load_fixture

from polymm.feed import wire

PY_WS = "nautilus-python/ws_messages/"
RS = "nautilus-rust/test_data/"


def raw(relpath: str) -> bytes:
    return (FIXTURES / relpath).read_bytes()


def decode_one(relpath: str):
    decoder = wire.FrameDecoder()
    events = decoder.decode(raw(relpath))
    assert len(events) == 1 and decoder.malformed == 0 and decoder.unknown == 0, decoder.last_error
    return events[0]


def test_book_snapshot_decodes_with_every_level_and_numbers_from_strings():
    doc = load_fixture(PY_WS + "book.json")
    ev = decode_one(PY_WS + "book.json")
    assert isinstance(ev, wire.Book)
    assert ev.asset_id == doc["asset_id"] and ev.market == doc["market"] and ev.hash == doc["hash"]
    assert ev.timestamp == int(doc["timestamp"])
    assert len(ev.bids) == 76 and len(ev.asks) == 86
    assert ev.bids[0] == wire.Level(0.001, 9000023.58)
    # the real feed lists the best level LAST on both sides
    assert ev.bids[-1].price == max(l.price for l in ev.bids) == 0.511
    assert ev.asks[-1].price == min(l.price for l in ev.asks) == 0.514


def test_current_price_change_schema_has_per_entry_asset_and_best_prices():
    ev = decode_one(PY_WS + "price_change_v2.json")
    assert isinstance(ev, wire.PriceChange)
    assert ev.timestamp == 1729084877448 and len(ev.price_changes) == 3
    first = ev.price_changes[0]
    assert (first.price, first.size, first.side, first.best_bid, first.best_ask) == (0.6, 3300.0, "BUY", "0.6", "0.7")
    assert ev.entries() is ev.price_changes


def test_old_single_level_price_change_is_still_understood():
    doc = load_fixture(PY_WS + "price_change.json")
    ev = decode_one(PY_WS + "price_change.json")
    assert ev.price_changes == []
    (entry,) = ev.entries()
    assert (entry.asset_id, entry.price, entry.size, entry.side) == (doc["asset_id"], 0.514, 21574.08, "SELL")


def test_two_leg_price_change_carries_both_tokens():
    doc = load_fixture(RS + "ws_quotes.json")
    doc["event_type"] = "price_change"  # the nautilus sample omits the tag; the wire always has it
    ev = wire.FrameDecoder().decode(json.dumps(doc).encode())[0]
    assert {e.asset_id for e in ev.price_changes} == {e["asset_id"] for e in doc["price_changes"]}


def test_tick_size_change_last_trade_and_custom_events():
    tick = decode_one(PY_WS + "tick_size_change.json")
    assert isinstance(tick, wire.TickSizeChange) and (tick.old_tick_size, tick.new_tick_size) == (0.01, 0.001)
    trade = decode_one(PY_WS + "last_trade_price.json")
    assert isinstance(trade, wire.LastTradePrice) and (trade.price, trade.side, trade.size) == (0.491, "SELL", 85.36)
    bba = decode_one(RS + "ws_market_best_bid_ask_msg.json")
    assert isinstance(bba, wire.BestBidAsk) and (bba.best_bid, bba.best_ask) == ("0.73", "0.77")
    new = decode_one(RS + "ws_market_new_market_msg.json")
    assert isinstance(new, wire.NewMarket) and new.outcomes == ["Yes", "No"] and len(new.assets_ids) == 2
    resolved = decode_one(RS + "ws_market_resolved_msg.json")
    assert isinstance(resolved, wire.MarketResolved)
    assert resolved.winning_asset_id == resolved.assets_ids[0] and resolved.winning_outcome == "Yes"


def test_list_wrapped_frame_yields_every_event_in_order():
    frame = b"[" + raw(PY_WS + "book.json") + b"," + raw(PY_WS + "price_change_v2.json") + b"," + raw(
        PY_WS + "last_trade_price.json"
    ) + b"]"
    events = wire.FrameDecoder().decode(frame)
    assert [type(e) for e in events] == [wire.Book, wire.PriceChange, wire.LastTradePrice]


def test_unknown_event_type_is_counted_and_skipped_without_losing_its_neighbours():
    decoder = wire.FrameDecoder()
    frame = b'[{"event_type":"mystery","x":1},' + raw(PY_WS + "last_trade_price.json") + b"]"
    events = decoder.decode(frame)
    assert [type(e) for e in events] == [wire.LastTradePrice]
    assert decoder.unknown == 1 and decoder.malformed == 0 and "mystery" in decoder.last_error


def test_malformed_frames_are_counted_and_never_raise():
    decoder = wire.FrameDecoder()
    bad = [
        b"not json",
        b'{"event_type":"book"}',  # missing asset_id
        b'{"event_type":"price_change","price_changes":[{"asset_id":"1","price":"abc","size":"1","side":"BUY"}]}',
        b'{"event_type":"price_change","price_changes":[{"asset_id":"1","price":"0.5","size":"1","side":"SIDEWAYS"}]}',
        b'{"no_type":1}',
        b"[1, 2]",
        raw(RS + "ws_quotes.json"),  # a nautilus-internal sample without event_type
    ]
    for frame in bad:
        assert decoder.decode(frame) == []
    assert decoder.malformed == len(bad) + 1  # "[1, 2]" holds two bad items
    assert decoder.unknown == 0


def test_empty_best_price_text_does_not_reject_the_change():
    frame = b'{"event_type":"price_change","timestamp":"1","price_changes":[{"asset_id":"1","price":"0.5","size":"0","side":"SELL","best_bid":"","best_ask":""}]}'
    (ev,) = wire.FrameDecoder().decode(frame)
    assert ev.price_changes[0].size == 0.0 and ev.price_changes[0].best_ask == ""


RECORDED_MARKET_CHANNEL = [
    (PY_WS + "book.json", wire.Book),
    (PY_WS + "price_change.json", wire.PriceChange),
    (PY_WS + "price_change_v2.json", wire.PriceChange),
    (PY_WS + "tick_size_change.json", wire.TickSizeChange),
    (PY_WS + "last_trade_price.json", wire.LastTradePrice),
    (RS + "ws_market_book_msg.json", wire.Book),
    (RS + "ws_market_price_change_msg.json", wire.PriceChange),
    (RS + "ws_market_tick_size_msg.json", wire.TickSizeChange),
    (RS + "ws_market_last_trade_msg.json", wire.LastTradePrice),
    (RS + "ws_market_best_bid_ask_msg.json", wire.BestBidAsk),
    (RS + "ws_market_new_market_msg.json", wire.NewMarket),
    (RS + "ws_market_resolved_msg.json", wire.MarketResolved),
]


@pytest.mark.parametrize("relpath,kind", RECORDED_MARKET_CHANNEL, ids=[p.split("/")[-1] for p, _ in RECORDED_MARKET_CHANNEL])
def test_every_recorded_market_channel_message_decodes_to_its_type_alone_and_list_wrapped(relpath, kind):
    doc = load_fixture(relpath)
    single = decode_one(relpath)
    assert isinstance(single, kind) and kind.__struct_config__.tag == doc["event_type"]
    decoder = wire.FrameDecoder()
    wrapped = decoder.decode(b"[" + raw(relpath) + b"]")
    assert wrapped == [single] and decoder.malformed == decoder.unknown == 0
