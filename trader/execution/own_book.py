"""Our own book: per leg and side, the price and remaining size of every order of ours that can rest on the
exchange's book, as the decision loop must subtract them from the published book (strategies.md: "best bid"
means the market without us; trader/decision/net_book.py does the subtraction).

What counts (the exchange shows it, or may show it any moment now):
- limit orders that rest (GTC, GTD); fill-and-kill / fill-or-kill orders never rest;
- in every working state: pending submit (the feed may show it before our POST's answer arrives), unknown
  (a timed-out submit may rest), live, partly filled (its remainder), pending cancel (it rests until the
  cancel is confirmed).
Built from the same order views the decision uses, so the view and the decision agree on what is ours.

Exchange quirk: Up and Down are one book. The exchange displays an order on one token in the other token's
book too, mirrored (a BUY Up at p is also a SELL Down at 1 - p: the two can be matched by minting; a SELL Up
at p is a BUY Down at 1 - p: merging), and its market channel sends one price_change with an entry per token
for it. So each of our orders is subtracted from both legs: at its own price and side, and mirrored.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from polymm.trader.model import Leg, OrderState, OrderType, OrderView, Side

RESTING_TYPES = (OrderType.GTC, OrderType.GTD)

OwnLevels = Mapping[tuple[Leg, Side], Mapping[float, float]]  # (leg, side) -> {price: our remaining shares}


def can_rest(order: OrderView) -> bool:
    return order.order_type in RESTING_TYPES and order.state.working and order.remaining > 1e-9


_MIRROR = {(Leg.UP, Side.BUY): (Leg.DOWN, Side.SELL), (Leg.UP, Side.SELL): (Leg.DOWN, Side.BUY),
           (Leg.DOWN, Side.BUY): (Leg.UP, Side.SELL), (Leg.DOWN, Side.SELL): (Leg.UP, Side.BUY)}
_TERMINAL = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED)


def own_book(orders: Iterable[OrderView]) -> dict[tuple[Leg, Side], dict[float, float]]:
    """{(leg, side): {price: remaining}} of our orders that can rest, summed per price (S1's and S2's entries
    may share a level), each also mirrored into the other leg. Runs on every decision: written out flat."""
    book: dict[tuple[Leg, Side], dict[float, float]] = {}
    for o in orders:
        if o.order_type not in RESTING_TYPES or o.state in _TERMINAL:
            continue
        left = o.size - o.filled
        if left <= 1e-9:
            continue
        price = round(o.price, 6)
        slot = (o.leg, o.side)
        levels = book.get(slot)
        if levels is None:
            levels = book[slot] = {}
        levels[price] = levels.get(price, 0.0) + left
        mirrored = book.get(_MIRROR[slot])
        if mirrored is None:
            mirrored = book[_MIRROR[slot]] = {}
        price = round(1.0 - price, 6)
        mirrored[price] = mirrored.get(price, 0.0) + left
    return book
