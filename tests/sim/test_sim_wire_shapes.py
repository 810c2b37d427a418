"""Every message shape polymm-sim emits has the keys and JSON value types of the recorded real message of
that type (tests/fixtures/polymarket-recorded). The messages here are rendered from real engine events;
test_sim_server.py checks the frames a live sim actually sends the same way."""
from __future__ import annotations

import json
import time
from decimal import Decimal
from types import SimpleNamespace

import pytest
from tests.support.recorded import load_fixture

from polymm.sim import gamma, ws
from polymm.sim.clob import book_json, clob_market_json, order_json, trade_json
from polymm.sim.engine import Engine, LastTrade, LevelChange, OrderEvent, SimOrder, TickSizeChange, TradeEvent
from polymm.sim.market import MarketCalendar
from polymm.sim.testing import shape_diff

# Keys production added after the recordings were made, or that the SDK needs (documented per use).
REST_BOOK_EXTRAS = {"min_order_size", "tick_size", "neg_risk", "last_trade_price"}  # SDK's OrderBookSummary reads them
GAMMA_EXTRAS = {"feeSchedule", "version"}  # V2-era fields (polymarket-protocol.md section 3)
POST_ORDER_EXTRAS = {"status", "makingAmount", "takingAmount", "tradeIDs"}  # section 6 "POST /order result"


def rest(name: str):
    return load_fixture(f"nautilus-rust/test_data/{name}")


def real_ws(name: str):
    return load_fixture(f"nautilus-python/ws_messages/{name}")


class Exchange:
    """An engine with one market; the fixture rests a maker order and crosses it with a taker."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.spec = MarketCalendar(seed=5, window_s=900).spec_for(1_800_000_000 - 1_800_000_000 % 900)
        self.engine.add_market(self.spec)
        self.now = float(self.spec.window_start + 10)
        self.sim = SimpleNamespace(engine=self.engine, last_trade={})

    def order(self, oid: str, owner: str, side: str, price: str, size: str, token: str | None = None) -> SimOrder:
        return SimOrder(order_id=oid, owner=owner, maker_address=f"0x{owner}", market=self.spec.condition_id,
                        token_id=token or self.spec.up_token, side=side, price=Decimal(price),
                        original_size=Decimal(size), created_at=self.now)

    def events_of(self, kind):
        return [e for e in self.engine.events if isinstance(e, kind)]


@pytest.fixture
def exchange() -> Exchange:
    ex = Exchange()
    assert ex.engine.submit(ex.order("0x" + "aa" * 32, "maker-key", "BUY", "0.48", "10"), ex.now).ok
    # A BUY Down at 0.52 crosses the Up bid at 0.48: the pair is minted (a cross-token fill).
    assert ex.engine.submit(ex.order("0x" + "bb" * 32, "taker-key", "BUY", "0.52", "6", token=ex.spec.down_token),
                            ex.now + 1).ok
    ex.engine.advance(ex.now + 5)
    return ex


def test_book_snapshot_matches_the_recorded_ws_book(exchange):
    message = ws.book_msg(exchange.sim, exchange.spec.up_token, exchange.now)
    assert shape_diff(message, real_ws("book.json")) == []


def test_book_levels_put_the_best_price_last(exchange):
    ex = exchange
    for i, price in enumerate(("0.40", "0.41", "0.42")):
        ex.engine.submit(ex.order(f"0x{i:064x}", "maker-key", "BUY", price, "5"), ex.now)
        ex.engine.submit(ex.order(f"0x{i + 9:064x}", "maker-key", "SELL", str(1 - Decimal(price)), "5",
                                  token=ex.spec.down_token), ex.now)
    message = ws.book_msg(ex.sim, ex.spec.up_token, ex.now)
    bids = [Decimal(level["price"]) for level in message["bids"]]
    assert bids == sorted(bids) and bids[-1] == max(bids)


def test_rest_book_matches_the_recorded_rest_book_and_the_sdk_hash(exchange):
    from py_clob_client_v2.utilities import generate_orderbook_summary_hash, parse_raw_orderbook_summary

    body = book_json(exchange.sim, exchange.spec.up_token, exchange.now)
    assert shape_diff(body, load_fixture("nautilus-python/http_responses/book.json"), allow_extra=REST_BOOK_EXTRAS) == []
    assert generate_orderbook_summary_hash(parse_raw_orderbook_summary(dict(body))) == body["hash"]


def test_price_change_matches_the_current_price_changes_schema(exchange):
    changes = exchange.events_of(LevelChange)
    entries = [ws.price_change_entry(c, i) for i, c in enumerate(changes)]
    message = ws.price_change_msg(exchange.spec.condition_id, entries, exchange.now)
    assert shape_diff(message, real_ws("price_change_v2.json")) == []
    assert {e["asset_id"] for e in entries} == {exchange.spec.up_token, exchange.spec.down_token}


def test_last_trade_price_matches_the_recording(exchange):
    (last,) = exchange.events_of(LastTrade)
    assert shape_diff(ws.last_trade_msg(last), real_ws("last_trade_price.json")) == []


def test_tick_size_change_matches_the_recording(exchange):
    exchange.engine.set_tick_size(exchange.spec.condition_id, Decimal("0.001"), exchange.now)
    change = exchange.events_of(TickSizeChange)[0]
    message = ws.tick_size_msg(change)
    assert shape_diff(message, real_ws("tick_size_change.json")) == []
    assert (message["old_tick_size"], message["new_tick_size"]) == ("0.01", "0.001")


def test_custom_feature_messages_match_the_recordings(exchange):
    spec = exchange.spec
    assert shape_diff(ws.new_market_msg(spec, exchange.now), rest("ws_market_new_market_msg.json")) == []
    assert shape_diff(ws.market_resolved_msg(spec, spec.up_token, exchange.now),
                      rest("ws_market_resolved_msg.json")) == []
    best = ws.best_bid_ask_msg(spec.condition_id, spec.up_token, Decimal("0.47"), Decimal("0.49"), exchange.now)
    assert shape_diff(best, rest("ws_market_best_bid_ask_msg.json")) == []


@pytest.mark.parametrize("kind, recording, extras", [
    ("PLACEMENT", "nautilus-python/ws_messages/order_placement.json", set()),
    # No real UPDATE was recorded; the hand-written one omits event_type, which every real user message has.
    ("UPDATE", "nautilus-rust/test_data/ws_user_order_update.json", {"event_type"}),
    ("CANCELLATION", "nautilus-python/ws_messages/order_cancel.json", set()),
])
def test_user_order_events_match_the_recordings(exchange, kind, recording, extras):
    ex = exchange
    if kind == "CANCELLATION":
        assert ex.engine.cancel("0x" + "aa" * 32, "maker-key", ex.now + 6) is None
    event = next(e for e in ex.engine.events if isinstance(e, OrderEvent) and e.kind == kind)
    trades = [t.trade_id for t in ex.engine.trades("0xmaker-key")]
    message = ws.order_msg(event, trades if kind == "UPDATE" else None)
    assert shape_diff(message, load_fixture(recording), allow_extra=extras) == []
    assert message["type"] == kind


def test_user_trade_as_taker_and_as_maker_match_the_recordings(exchange):
    events = exchange.events_of(TradeEvent)
    assert [e.trade.status for e in events] == ["MATCHED", "MINED", "CONFIRMED"]
    trade = events[0].trade
    as_taker = ws.trade_msg(trade, "taker-key", exchange.now)
    as_maker = ws.trade_msg(trade, "maker-key", exchange.now)
    assert shape_diff(as_taker, real_ws("user_trade2.json"), allow_extra={"side"}) == []
    assert shape_diff(as_maker, real_ws("user_trade3.json")) == []
    assert (as_taker["trader_side"], as_maker["trader_side"]) == ("TAKER", "MAKER")
    assert as_maker["maker_orders"][0]["owner"] == "maker-key"
    assert as_maker["maker_orders"][0]["matched_amount"] == "6"


def test_transaction_hash_appears_once_the_trade_is_mined(exchange):
    matched, mined, _ = [e.trade for e in exchange.events_of(TradeEvent)]
    assert ws.trade_msg(matched, "taker-key", exchange.now)["transaction_hash"] == ""
    assert ws.trade_msg(mined, "taker-key", exchange.now)["transaction_hash"].startswith("0x")


def test_rest_order_and_trade_rows_match_the_recordings(exchange):
    order = exchange.engine.get_order("0x" + "aa" * 32)
    (trade,) = exchange.engine.trades("0xtaker-key")
    assert shape_diff(order_json(order, [trade.trade_id]), rest("http_open_order.json")) == []
    # trades.json is a real /data/trades row; its maker_orders predate the `side` field.
    assert shape_diff(trade_json(trade, "taker-key"), real_ws("trades.json"), allow_extra={"side"}) == []


def test_gamma_market_matches_the_recorded_btc_updown_market():
    spec = MarketCalendar(seed=5, window_s=900).spec_for(1_800_000_000 - 1_800_000_000 % 900)
    live = gamma.LivePrices(Decimal("0.5"), Decimal("0.51"), Decimal("0.51"), 95000.0)
    market = gamma.market_json(spec, live, now=spec.window_start - 30, listed_at=spec.window_start - 3600)
    recorded = rest("gamma_market.json")
    assert shape_diff(market, recorded, allow_extra=GAMMA_EXTRAS | {"eventMetadata"}) == []
    # The quirks: arrays inside JSON strings, Up first and aligned with the token ids.
    assert json.loads(market["outcomes"]) == ["Up", "Down"]
    assert json.loads(market["clobTokenIds"]) == [spec.up_token, spec.down_token]
    assert len(json.loads(market["outcomePrices"])) == 2
    assert market["eventStartTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.window_start))
    assert market["endDate"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.window_end))
    assert market["feeSchedule"] == {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2}


def test_gamma_event_nests_the_market_like_production():
    spec = MarketCalendar(seed=5, window_s=900).spec_for(1_800_000_000 - 1_800_000_000 % 900)
    event = gamma.event_json(spec, gamma.LivePrices(), now=spec.window_start, listed_at=spec.window_start - 3600)
    recorded_event = rest("gamma_market.json")["events"][0]
    assert shape_diff(event, recorded_event, allow_extra={"markets"}) == []
    (market,) = event["markets"]
    assert market["slug"] == event["slug"] == spec.slug
    assert "events" not in market


def test_resolved_gamma_market_shows_the_winner_in_outcome_prices():
    spec = MarketCalendar(seed=5, window_s=900).spec_for(1_800_000_000 - 1_800_000_000 % 900)
    spec.closed, spec.accepting_orders, spec.winning_token = True, False, spec.down_token
    market = gamma.market_json(spec, gamma.LivePrices(), now=spec.window_end + 60, listed_at=spec.window_start)
    assert (market["closed"], market["acceptingOrders"]) == (True, False)
    assert json.loads(market["outcomePrices"]) == ["0", "1"]


@pytest.mark.parametrize("slug, window", [("btc-updown-15m-1800000000", 1800000000), ("btc-updown-15m-", None),
                                          ("eth-updown-15m-1800000000", None), ("btc-updown-15m-12a", None)])
def test_only_btc_updown_slugs_name_a_window(slug, window):
    assert gamma.window_of_slug(slug) == window


def test_shape_diff_names_missing_extra_and_mistyped_keys():
    recorded = {"a": "1", "b": 2, "nested": [{"x": "y"}], "maybe": None}
    ours = {"a": 1, "c": True, "nested": [{"x": "y", "z": 0}], "maybe": [1]}
    assert shape_diff(ours, recorded) == [
        "$.b: missing (recorded has it)",
        "$.c: extra (recorded lacks it)",
        "$.a: ours is int (1), recorded is str ('1')",
        "$.nested[0].z: extra (recorded lacks it)",
    ]


def test_clob_market_object_matches_the_recording(exchange):
    market = clob_market_json(exchange.spec, (Decimal("0.47"), Decimal("0.49")))
    assert shape_diff(market, load_fixture("nautilus-python/http_responses/market.json")) == []
    assert [t["outcome"] for t in market["tokens"]] == ["Up", "Down"]
    assert market["tokens"][0]["price"] == 0.48


def test_trade_timestamps_are_seconds_like_the_newest_recording_and_order_events_milliseconds(exchange):
    trade = exchange.events_of(TradeEvent)[0].trade
    recorded = real_ws("user_trade3.json")
    message = ws.trade_msg(trade, "taker-key", exchange.now)
    assert len(message["timestamp"]) == len(recorded["timestamp"]) == 10  # unix seconds
    placement = next(e for e in exchange.engine.events if isinstance(e, OrderEvent) and e.kind == "PLACEMENT")
    assert len(ws.order_msg(placement, None)["timestamp"]) == len(real_ws("order_placement.json")["timestamp"]) == 13
