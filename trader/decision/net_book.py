"""The book without us: subtract our own resting orders from the published book (pure).

strategies.md: "best bid" and "best ask" mean the market without our own orders. The feed publishes the book
the exchange displays, ours included; an entry resting alone at the top would otherwise read as "the best
bid" and keep itself alive while the market falls away from it (adverse selection).

    net_side(levels, ours, complete) -> (price, size, known)
    net_levels(levels, ours) -> [(price, size), ...]
    net_view(view, up_depth, down_depth, own, depth_levels) -> MarketView

`net_levels` is the whole side without us, level by level, by the same rule: what `polymm-backtest --own-orders`
replays a recording made while we were live against (our orders then come from the ledger of that period).

`levels` is one side of one leg as published, best first: the shm depth (`Leg.bids`/`Leg.asks`), or just the
top of book when the feed publishes no depth. At each level our orders there are subtracted; the first level
with something left is the net best. When the published levels run out before that:
- the side was published whole (fewer levels than the feed's depth N): nothing but us -> no level (NaN);
- the depth was cut at N: what lies beyond is unknown -> `known` False, price NaN (never our own price).

Our orders are subtracted one by one, each only where the level still holds it (what is left >= its size).
The displayed book lags our own state: an order we just placed (pending, or even acknowledged by the REST
answer) may not be in the market channel's book yet. Subtracting it anyway from a level of others smaller than
it would empty that level, read as "the bid dropped", cancel the entry, show the level again, place it again:
churn. An order that does not fit is taken as not displayed yet. Acknowledged orders go first (they are the
likelier to be displayed). What stays ambiguous: others exactly as large as our undisplayed order (the level
reads as ours alone for the moment), and a fill of ours the feed shows before our user channel does (the level
reads as others' until the fill arrives, milliseconds).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from polymm.trader.model import Leg, LegTop, MarketView, Side

NAN = math.nan
_EPS = 1e-9


def net_side(levels: Sequence[tuple[float, float]], ours: Mapping[float, Sequence[float]] | None,
             complete: bool) -> tuple[float, float, bool]:
    """(price, size, known) of the best level without our orders. `ours`: {price: (shares of each order, ...)},
    prices compared within 1e-9 (ours went through the tick rounding, the feed's were parsed from text)."""
    if not ours:
        if levels:
            return levels[0][0], levels[0][1], True
        return NAN, NAN, True
    mine = ours.items()
    for price, size in levels:
        left = _left(price, size, mine)
        if left > _EPS:
            return price, (size if left == size else round(left, 6)), True
    return NAN, NAN, complete


def net_levels(levels: Sequence[tuple[float, float]],
               ours: Mapping[float, Sequence[float]] | None) -> list[tuple[float, float]]:
    """Every published level of one side without our orders, best first (net_side's rule at each level); a level
    that held only ours is gone."""
    if not ours:
        return list(levels)
    mine = ours.items()
    out = []
    for price, size in levels:
        left = _left(price, size, mine)
        if left > _EPS:
            out.append((price, size if left == size else round(left, 6)))
    return out


def _left(price: float, size: float, mine) -> float:
    """What is left of one published level once each of our orders at its price that it still holds is taken out."""
    left = size
    for p, sizes in mine:  # one or two prices of ours per side
        if -_EPS < price - p < _EPS:
            for s in sizes:
                if left + _EPS >= s:  # the level holds it: displayed (see the module docstring)
                    left -= s
    return left


def _side_levels(depth: Sequence[tuple[float, float]], top_price: float, top_size: float,
                 depth_levels: int) -> tuple[Sequence[tuple[float, float]], bool]:
    """The published levels of one side and whether they are the whole side."""
    if depth:
        return depth, len(depth) < depth_levels
    if top_price == top_price:  # no depth published (N = 0, or an old feed): the top is all we know
        return ((top_price, top_size),), False
    return (), True  # an empty side


_UP = ("up_bid", "up_bid_size", "up_ask", "up_ask_size", "up_raw")
_DOWN = ("down_bid", "down_bid_size", "down_ask", "down_ask_size", "down_raw")


def _same(x: float, y: float) -> bool:
    return x == y or (x != x and y != y)


def net_view(
    view: MarketView,
    up_depth: tuple[Sequence[tuple[float, float]], Sequence[tuple[float, float]]],
    down_depth: tuple[Sequence[tuple[float, float]], Sequence[tuple[float, float]]],
    own: Mapping[tuple[Leg, Side], Mapping[float, float]],
    depth_levels: int,
) -> MarketView:
    """`view` (the published book) with its book fields replaced by the book without `own` orders; the
    published top moves to `up_raw`/`down_raw` for each leg where that changes it. Runs on every decision:
    written out flat."""
    if not own:
        return view
    changes: dict = {}
    unknown = set()
    published = view.__dict__
    for leg, (bids, asks), names in ((Leg.UP, up_depth, _UP), (Leg.DOWN, down_depth, _DOWN)):
        our_bids, our_asks = own.get((leg, Side.BUY)), own.get((leg, Side.SELL))
        if not our_bids and not our_asks:
            continue
        k_bid, k_bid_size, k_ask, k_ask_size, k_raw = names
        raw_bid, raw_bid_size = published[k_bid], published[k_bid_size]
        raw_ask, raw_ask_size = published[k_ask], published[k_ask_size]
        levels, complete = _side_levels(bids, raw_bid, raw_bid_size, depth_levels)
        bid, bid_size, bid_known = net_side(levels, our_bids, complete)
        levels, complete = _side_levels(asks, raw_ask, raw_ask_size, depth_levels)
        ask, ask_size, ask_known = net_side(levels, our_asks, complete)
        if not bid_known:
            unknown.add((leg, Side.BUY))
        if not ask_known:
            unknown.add((leg, Side.SELL))
        if (_same(bid, raw_bid) and _same(bid_size, raw_bid_size) and _same(ask, raw_ask)
                and _same(ask_size, raw_ask_size)):
            continue  # none of ours is displayed on this leg: the published top is the market without us
        changes[k_bid], changes[k_bid_size], changes[k_ask], changes[k_ask_size] = bid, bid_size, ask, ask_size
        changes[k_raw] = LegTop(raw_bid, raw_bid_size, raw_ask, raw_ask_size)
    if not changes and not unknown:
        return view
    # dataclasses.replace would re-run the frozen __init__ (one object.__setattr__ per field, ~8 us on every
    # decision): copy the fields instead. The result is an ordinary MarketView (equality, repr, frozen).
    net = object.__new__(MarketView)
    fields = net.__dict__
    fields.update(published)
    fields.update(changes)
    fields["net_unknown"] = frozenset(unknown)
    return net
