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

# (leg, side) -> {price: the remaining shares of each of our orders there, acknowledged ones (live, partly
# filled) first}: the netting subtracts them one by one (decision/net_book.py says why one by one)
OwnLevels = Mapping[tuple[Leg, Side], Mapping[float, tuple[float, ...]]]


def can_rest(order: OrderView) -> bool:
    return order.order_type in RESTING_TYPES and order.state.working and order.remaining > 1e-9


_MIRROR = {(Leg.UP, Side.BUY): (Leg.DOWN, Side.SELL), (Leg.UP, Side.SELL): (Leg.DOWN, Side.BUY),
           (Leg.DOWN, Side.BUY): (Leg.UP, Side.SELL), (Leg.DOWN, Side.SELL): (Leg.UP, Side.BUY)}
_TERMINAL = (OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED)
_ACKED = (OrderState.LIVE, OrderState.PARTIALLY_FILLED)


def own_book(orders: Iterable[OrderView]) -> dict[tuple[Leg, Side], dict[float, tuple[float, ...]]]:
    """{(leg, side): {price: (remaining, ...)}} of our orders that can rest, one entry per order (S1's and S2's
    entries may share a level), acknowledged ones first, each also mirrored into the other leg. Runs on every
    decision: written out flat."""
    book: dict[tuple[Leg, Side], dict[float, tuple[float, ...]]] = {}
    for o in orders:
        if o.order_type not in RESTING_TYPES or o.state in _TERMINAL:
            continue
        left = o.size - o.filled
        if left <= 1e-9:
            continue
        acked = o.state in _ACKED
        price = round(o.price, 6)
        slot = (o.leg, o.side)
        for slot, price in ((slot, price), (_MIRROR[slot], round(1.0 - price, 6))):
            levels = book.get(slot)
            if levels is None:
                levels = book[slot] = {}
            have = levels.get(price, ())
            levels[price] = (left,) + have if acked else have + (left,)
    return book
