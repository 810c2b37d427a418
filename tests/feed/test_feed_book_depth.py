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
