"""The feed book's depth: the sorted price ladder the DEPTH block is cut from stays equal to the level map
through snapshots, changes and removals, and each leg's packed depth decodes to its best N levels."""
from __future__ import annotations

import random

from polymm.feed import book as bk
from polymm.feed import shm
from polymm.feed.wire import Book, Level, PriceChange, PriceChangeEntry

UP, DOWN = "111", "222"


def change(asset, side, price, size):
    return PriceChange(market="0xm", timestamp=1, price_changes=[
        PriceChangeEntry(asset_id=asset, price=price, size=size, side=side)])


def test_depth_is_the_best_levels_of_the_book_through_random_changes():
    rng = random.Random(11)
    m = bk.MarketBook(UP, DOWN, depth=4)
    g = shm.geometry(4)
    m.apply(Book(market="0xm", asset_id=UP, timestamp=1,
                 bids=[Level(0.40, 5.0), Level(0.45, 1.0)], asks=[Level(0.55, 2.0)]), 1.0)
    m.apply(Book(market="0xm", asset_id=DOWN, timestamp=1, bids=[], asks=[]), 1.0)
    for _ in range(2000):
        side = rng.choice(["BUY", "SELL"])
        price = round(rng.randint(30, 49) / 100 if side == "BUY" else rng.randint(51, 70) / 100, 2)
        m.apply(change(UP, side, price, rng.choice([0.0, 0.0, 1.0, 2.5, 10.0])), 1.0)
        for s in (m.up.bids, m.up.asks):
            assert s.prices == sorted(s.levels)
        bids, asks, _, _ = g.unpack(m.up.depth() + m.down.depth())
        assert bids == tuple(sorted(m.up.bids.levels.items(), reverse=True)[:4])
        assert asks == tuple(sorted(m.up.asks.levels.items())[:4])
        assert (bids[0][0] if bids else None) == (m.up.bids.best if m.up.bids.levels else None)


def test_a_leg_without_a_trusted_book_has_an_all_nan_depth():
    m = bk.MarketBook(UP, DOWN, depth=3)
    assert m.up.depth() == shm.geometry(3).nan_leg_depth
    m.apply(Book(market="0xm", asset_id=UP, timestamp=1, bids=[Level(0.4, 5.0)], asks=[]), 1.0)
    assert shm.geometry(3).unpack(m.up.depth() + m.down.depth())[0] == ((0.4, 5.0),)


def test_the_stream_publishes_each_legs_depth_with_its_top(shm_name):
    import json

    from polymm.feed.discovery import MarketInfo
    from polymm.feed.stream import MarketStream

    info = MarketInfo(slug="t", condition_id="0xm", up_token=UP, down_token=DOWN, window_start=1_800_000_000,
                      window_end=1_800_000_900, tick_size=0.01, min_order_size=5, fee_rate=0.07)
    w = shm.Writer(shm_name, ring_capacity=64, depth=2)
    try:
        w.set_market(window_start=info.window_start, window_end=info.window_end, condition_id="0xm", up_token=UP,
                     down_token=DOWN, tick_size=0.01, min_order_size=5, fee_rate=0.07)
        stream = MarketStream("ws://unused", info, w)
        stream.connected = stream.live = True
        for asset, bids, asks in ((UP, [["0.40", "5"], ["0.45", "1"], ["0.44", "2"]], [["0.55", "2"]]),
                                  (DOWN, [["0.44", "3"]], [["0.60", "4"], ["0.56", "1"]])):
            frame = {"event_type": "book", "asset_id": asset, "market": "0xm", "timestamp": "1",
                     "bids": [{"price": p, "size": s} for p, s in bids],
                     "asks": [{"price": p, "size": s} for p, s in asks]}
            stream.on_frame(json.dumps(frame).encode(), 1.0)
        change = {"event_type": "price_change", "market": "0xm", "timestamp": "2", "price_changes": [
            {"asset_id": UP, "price": "0.45", "size": "7", "side": "BUY", "best_bid": "0.45", "best_ask": "0.55"}]}
        stream.on_frame(json.dumps(change).encode(), 2.0)
        with shm.Reader(shm_name) as r:
            snap = r.snapshot()
            assert snap.up.bids == ((0.45, 7.0), (0.44, 2.0)) and snap.up.asks == ((0.55, 2.0),)
            assert snap.down.bids == ((0.44, 3.0),) and snap.down.asks == ((0.56, 1.0), (0.6, 4.0))
            assert snap.up.bid == 0.45 and snap.up.bid_size == 7.0
    finally:
        w.close()
        shm.unlink(shm_name)
