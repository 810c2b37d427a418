"""Both legs' books from snapshots and deltas (feed/book.py), on recorded and small hand-built messages."""
from __future__ import annotations

import json
import math

from tests.support.recorded import FIXTURES

from polymm.feed import book as bk
from polymm.feed import wire

UP, DOWN = "111", "222"


def decode(doc) -> list:
    return wire.FrameDecoder().decode(json.dumps(doc).encode())


def book_msg(asset: str, bids, asks, ts: int = 1_000) -> dict:
    return {
        "event_type": "book",
        "asset_id": asset,
        "market": "0xm",
        "timestamp": str(ts),
        "bids": [{"price": str(p), "size": str(s)} for p, s in bids],
        "asks": [{"price": str(p), "size": str(s)} for p, s in asks],
    }


def change(asset: str, side: str, price, size, best_bid="", best_ask="") -> dict:
    return {"asset_id": asset, "price": str(price), "size": str(size), "side": side, "hash": "h",
            "best_bid": str(best_bid), "best_ask": str(best_ask)}


def price_change(*changes, ts: int = 2_000) -> dict:
    return {"event_type": "price_change", "market": "0xm", "timestamp": str(ts), "price_changes": list(changes)}


def apply(market: bk.MarketBook, doc, recv_ts: float = 100.0) -> int:
    bits = 0
    for ev in decode(doc):
        bits |= market.apply(ev, recv_ts)
    return bits


def two_leg_book() -> bk.MarketBook:
    m = bk.MarketBook(UP, DOWN)
    apply(m, book_msg(UP, [(0.48, 100), (0.47, 50)], [(0.52, 80), (0.53, 40)]))
    apply(m, book_msg(DOWN, [(0.47, 30), (0.46, 10)], [(0.51, 70)]))
    return m


def test_recorded_snapshot_with_best_level_last_gives_the_true_top_of_book():
    doc = json.loads((FIXTURES / "nautilus-python/ws_messages/book.json").read_text())
    m = bk.MarketBook(doc["asset_id"], "0")
    bits = apply(m, doc, recv_ts=5.0)
    assert bits & bk.UP and bits & bk.SNAPSHOT
    bid, bid_size, ask, ask_size, last, exch, recv = m.up.top()
    assert (bid, bid_size, ask, ask_size) == (0.511, 1304.72, 0.514, 20230.87)
    assert exch == int(doc["timestamp"]) / 1000 and recv == 5.0 and math.isnan(last)


def test_snapshot_order_does_not_matter_best_first_or_best_last():
    bids, asks = [(0.48, 1), (0.50, 2), (0.49, 3)], [(0.55, 1), (0.52, 2), (0.60, 3)]
    for order in (sorted, lambda xs: sorted(xs, reverse=True), list):
        m = bk.MarketBook(UP, DOWN)
        apply(m, book_msg(UP, order(bids), order(asks)))
        assert m.up.top()[:4] == (0.50, 2.0, 0.52, 2.0)


def test_price_change_size_is_the_new_level_total_and_zero_removes_it():
    m = two_leg_book()
    apply(m, price_change(change(UP, "BUY", 0.48, 25)))
    assert m.up.top()[:2] == (0.48, 25.0)
    apply(m, price_change(change(UP, "BUY", 0.48, 0)))
    assert m.up.top()[:2] == (0.47, 50.0)
    apply(m, price_change(change(UP, "SELL", 0.51, 5)))
    assert m.up.top()[2:4] == (0.51, 5.0)
    apply(m, price_change(change(UP, "SELL", 0.51, 0), change(UP, "SELL", 0.52, 0), change(UP, "SELL", 0.53, 0)))
    assert math.isnan(m.up.top()[2]) and math.isnan(m.up.top()[3])


def test_removing_a_level_that_is_not_there_changes_nothing():
    m = two_leg_book()
    apply(m, price_change(change(UP, "BUY", 0.30, 0)))
    assert m.up.top()[:2] == (0.48, 100.0)


def test_one_message_updates_both_legs_and_reports_both():
    m = two_leg_book()
    bits = apply(m, price_change(change(UP, "BUY", 0.49, 10), change(DOWN, "SELL", 0.50, 7)), recv_ts=7.0)
    assert bits & bk.UP and bits & bk.DOWN
    assert m.up.top()[0] == 0.49 and m.down.top()[2:4] == (0.50, 7.0)
    assert m.up.top()[5:] == (2.0, 7.0) and m.down.top()[5:] == (2.0, 7.0)


def test_old_single_level_schema_applies_like_the_new_one():
    m = two_leg_book()
    apply(m, {"event_type": "price_change", "asset_id": UP, "price": "0.49", "size": "5", "side": "BUY",
              "timestamp": "3000", "market": "0xm"})
    assert m.up.top()[:2] == (0.49, 5.0)


def test_changes_for_other_tokens_are_ignored_and_counted():
    m = two_leg_book()
    bits = apply(m, price_change(change("999", "BUY", 0.9, 1)))
    assert bits == 0 and m.foreign == 1 and m.up.top()[0] == 0.48


def test_agreeing_best_prices_count_no_disagreement():
    m = two_leg_book()
    apply(m, price_change(change(UP, "BUY", 0.49, 10, best_bid=0.49, best_ask=0.52)))
    assert m.disagreements == 0


def test_disagreeing_best_prices_are_counted_and_persisting_ones_ask_for_a_resync():
    m = two_leg_book()
    bits = apply(m, price_change(change(UP, "BUY", 0.49, 10, best_bid=0.45, best_ask=0.52)))
    assert m.disagreements == 1 and not bits & bk.RESYNC
    apply(m, price_change(change(UP, "BUY", 0.49, 11, best_bid=0.45, best_ask=0.52)))
    bits = apply(m, price_change(change(UP, "BUY", 0.49, 12, best_bid=0.45, best_ask=0.52)))
    assert m.disagreements == 3 and bits & bk.RESYNC


def test_recorded_v2_change_is_cross_checked_after_the_whole_message():
    # price_change_v2.json (hand-made upstream) ends with a BUY at 0.7 while saying best_bid 0.6: our book
    # has 0.7 as best bid, so this is one disagreement, counted once for the message.
    doc = json.loads((FIXTURES / "nautilus-python/ws_messages/price_change_v2.json").read_text())
    asset = doc["price_changes"][0]["asset_id"]
    m = bk.MarketBook(asset, "0")
    apply(m, book_msg(asset, [(0.4, 1)], [(0.7, 5)]))
    apply(m, doc)
    assert m.up.bids.best == 0.7 and m.disagreements == 1


def test_exchange_empty_side_markers_agree_with_our_empty_side():
    m = bk.MarketBook(UP, DOWN)
    apply(m, book_msg(UP, [(0.4, 1)], []))
    for best_ask in ("", "1", "0"):
        apply(m, price_change(change(UP, "BUY", 0.4, 2, best_bid=0.4, best_ask=best_ask)))
    apply(m, price_change(change(UP, "BUY", 0.4, 0, best_bid=0, best_ask="")))
    assert m.disagreements == 0


def test_tick_size_change_publishes_the_tick_and_withholds_the_leg_until_consistent():
    m = two_leg_book()
    bits = apply(m, {"event_type": "tick_size_change", "asset_id": UP, "market": "0xm",
                     "old_tick_size": "0.01", "new_tick_size": "0.001", "timestamp": "5000"}, recv_ts=10.0)
    assert bits & bk.TICK and bits & bk.UP and m.tick_size == 0.001
    assert math.isnan(m.up.top()[0]) and math.isnan(m.up.top()[2])
    assert m.down.top()[0] == 0.47  # the other leg is not affected by this message
    assert m.unverified_for(12.0) == 2.0
    # a change whose exchange best prices match our (kept) levels re-verifies the leg
    bits = apply(m, price_change(change(UP, "BUY", 0.475, 5, best_bid=0.48, best_ask=0.52)))
    assert bits & bk.UP and m.up.top()[:4] == (0.48, 100.0, 0.52, 80.0) and m.unverified_for(20.0) == 0


def test_tick_size_change_leg_is_confirmed_by_a_fresh_snapshot_too():
    m = two_leg_book()
    apply(m, {"event_type": "tick_size_change", "asset_id": DOWN, "new_tick_size": "0.001", "timestamp": "1"})
    assert math.isnan(m.down.top()[0])
    apply(m, book_msg(DOWN, [(0.041, 10)], [(0.043, 10)]))
    assert m.down.top()[:4] == (0.041, 10.0, 0.043, 10.0)


def test_a_snapshot_of_the_book_we_hold_publishes_nothing_but_keeps_its_time():
    """After a trade the exchange sends each leg's `book` behind the price_change that already moved it (issue 26):
    the same book is no publish (no decision woken for nothing); any difference, even one size, is."""
    m = two_leg_book()
    held = book_msg(UP, [(0.47, 50), (0.48, 100)], [(0.53, 40), (0.52, 80), (0.54, 0)], ts=5_000)  # any order, a 0
    bits = apply(m, held, recv_ts=200.0)
    assert bits == bk.SNAPSHOT and not bits & (bk.UP | bk.DOWN)
    assert m.up.top()[:4] == (0.48, 100.0, 0.52, 80.0) and m.up.top()[5:] == (5.0, 200.0)
    for bids, asks in (([(0.48, 101), (0.47, 50)], [(0.52, 80), (0.53, 40)]),  # one size
                       ([(0.48, 100)], [(0.52, 80), (0.53, 40)]),  # a level gone
                       ([(0.48, 100), (0.47, 50)], [(0.52, 80), (0.53, 40), (0.55, 1)])):  # a level more
        assert apply(m, book_msg(UP, bids, asks)) & bk.UP, (bids, asks)


def test_a_snapshot_of_the_same_book_still_confirms_a_leg_after_a_tick_change():
    m = two_leg_book()
    apply(m, {"event_type": "tick_size_change", "asset_id": UP, "market": "0xm", "old_tick_size": "0.01",
              "new_tick_size": "0.001", "timestamp": "3000"})
    assert not m.up.verified
    bits = apply(m, book_msg(UP, [(0.48, 100), (0.47, 50)], [(0.52, 80), (0.53, 40)], ts=4_000))
    assert bits & bk.UP and m.up.verified


def test_last_trade_price_is_kept_per_leg():
    m = two_leg_book()
    bits = apply(m, {"event_type": "last_trade_price", "asset_id": DOWN, "price": "0.47", "side": "BUY",
                     "size": "5", "timestamp": "9000"}, recv_ts=11.0)
    assert bits == bk.DOWN and m.down.top()[4:] == (0.47, 9.0, 11.0) and math.isnan(m.up.top()[4])


def test_crossed_book_is_detected_within_a_leg_and_across_legs():
    m = two_leg_book()
    assert not m.crossed()
    apply(m, price_change(change(UP, "BUY", 0.52, 1)))
    assert m.crossed()  # bid == ask on Up
    m = two_leg_book()
    apply(m, price_change(change(DOWN, "BUY", 0.5, 1)))  # Up bid 0.48 + Down bid 0.50 < 1: fine
    assert not m.crossed()
    apply(m, price_change(change(DOWN, "BUY", 0.52, 1), change(DOWN, "SELL", 0.53, 1), change(DOWN, "SELL", 0.51, 0)))
    assert m.crossed()  # 0.48 + 0.52 >= 1: a BUY Up and a BUY Down that should have minted


def test_leg_without_snapshot_publishes_nan_prices_and_ready_needs_both_legs():
    m = bk.MarketBook(UP, DOWN)
    apply(m, book_msg(UP, [(0.4, 1)], [(0.6, 1)]))
    assert not m.ready() and math.isnan(m.down.top()[0])
    apply(m, book_msg(DOWN, [], []))
    assert m.ready() and math.isnan(m.down.top()[0])


def test_reset_forgets_the_books_until_the_next_snapshot():
    m = two_leg_book()
    m.reset()
    assert not m.ready() and math.isnan(m.up.top()[0])
    apply(m, price_change(change(UP, "BUY", 0.49, 10)))
    assert math.isnan(m.up.top()[0])  # deltas alone never make a publishable book


def test_a_change_without_exchange_best_prices_does_not_confirm_a_leg_after_a_tick_change():
    m = two_leg_book()
    apply(m, {"event_type": "tick_size_change", "asset_id": UP, "new_tick_size": "0.001", "timestamp": "1"})
    # the pre-2025-09 single-level schema carries no best_bid/best_ask: nothing to confirm against
    apply(m, {"event_type": "price_change", "asset_id": UP, "price": "0.47", "size": "9", "side": "BUY",
              "timestamp": "2"})
    assert math.isnan(m.up.top()[0])


def test_best_bid_ask_event_confirms_or_counts_a_disagreement():
    m = two_leg_book()
    apply(m, {"event_type": "best_bid_ask", "asset_id": UP, "best_bid": "0.48", "best_ask": "0.52", "timestamp": "1"})
    assert m.disagreements == 0
    apply(m, {"event_type": "best_bid_ask", "asset_id": UP, "best_bid": "0.40", "best_ask": "0.52", "timestamp": "2"})
    assert m.disagreements == 1


def test_market_resolved_for_this_market_is_reported():
    m = bk.MarketBook(UP, DOWN, condition_id="0xm")
    bits = apply(m, {"event_type": "market_resolved", "market": "0xm", "assets_ids": [UP, DOWN],
                     "winning_asset_id": UP, "winning_outcome": "Up", "timestamp": "1"})
    assert bits & bk.RESOLVED and m.resolved_winner == UP
    assert apply(m, {"event_type": "market_resolved", "market": "0xother", "assets_ids": ["7", "8"],
                     "winning_asset_id": "7", "timestamp": "1"}) == 0
