"""The book the fill model matches against: per leg, bids and asks as (price, size) levels, best first.

Source-agnostic: a backtest builds it from a tick line, paper trading from the feed's shared memory. When the
source has depth (the top N levels) every level between the best and the last one listed is known, and a price
in that range that is not listed has no liquidity. With top of book only, just the best level is known. A size
the source does not give is unknown and taken as unlimited (inf).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from polymm.trader.model import Leg

Level = tuple[float, float]  # (price, size)
BID, ASK = "bid", "ask"


def _key(price: float) -> float:
    return round(price, 6)


def _better(side: str, a: float, b: float) -> bool:
    """`a` is a strictly better price than `b` on `side` (higher bid, lower ask)."""
    return a > b + 1e-9 if side == BID else a < b - 1e-9


@dataclass(frozen=True)
class Book:
    """Both legs' bids and asks. `deep`: the levels are a depth snapshot (every level from the best to the last
    listed), not just the top of book."""

    levels: dict[tuple[Leg, str], tuple[Level, ...]] = field(default_factory=dict)
    deep: bool = False

    @classmethod
    def top(cls, up_bid=None, up_ask=None, down_bid=None, down_ask=None, up_bid_size=None, up_ask_size=None,
            down_bid_size=None, down_ask_size=None) -> "Book":
        """A top-of-book snapshot: None price = no level; None size = unknown (unlimited)."""
        def side(price, size) -> tuple[Level, ...]:
            if price is None or not math.isfinite(price):
                return ()
            return ((float(price), math.inf if size is None or not math.isfinite(size) else float(size)),)
        return cls({
            (Leg.UP, BID): side(up_bid, up_bid_size), (Leg.UP, ASK): side(up_ask, up_ask_size),
            (Leg.DOWN, BID): side(down_bid, down_bid_size), (Leg.DOWN, ASK): side(down_ask, down_ask_size),
        })

    @classmethod
    def depth(cls, sides: dict[tuple[Leg, str], Iterable[Level]]) -> "Book":
        """A depth snapshot: per (leg, side) the levels best first (empty levels are dropped)."""
        return cls({k: tuple((float(p), float(s)) for p, s in v if s > 0) for k, v in sides.items()}, deep=True)

    def side(self, leg: Leg, side: str) -> tuple[Level, ...]:
        return self.levels.get((leg, side), ())

    def best(self, leg: Leg, side: str) -> Level:
        """(price, size) of the best level; (nan, inf) for an empty side."""
        lv = self.side(leg, side)
        return lv[0] if lv else (math.nan, math.inf)

    def bid(self, leg: Leg) -> float:
        return self.best(leg, BID)[0]

    def ask(self, leg: Leg) -> float:
        return self.best(leg, ASK)[0]

    def size(self, leg: Leg, side: str) -> float:
        return self.best(leg, side)[1]

    def reachable(self, leg: Leg, side: str, limit: float) -> list[Level]:
        """The levels a taker with limit `limit` can take on `side`, best first (asks <= limit, bids >= limit)."""
        return [lv for lv in self.side(leg, side) if not _better(side, limit, lv[0])]

    def gone(self, leg: Leg, side: str, price: float) -> bool:
        """The data shows no liquidity left at `price` on `side`: the side is empty, the price is better than the
        best, or (depth) it lies within the listed range without being listed."""
        lv = self.side(leg, side)
        if not lv:
            return True
        if _better(side, price, lv[0][0]):
            return True
        if not self.deep:
            return False  # below the top we cannot see
        if _better(side, lv[-1][0], price):
            return False  # beyond the listed depth: unknown
        return all(_key(p) != _key(price) for p, _ in lv)
