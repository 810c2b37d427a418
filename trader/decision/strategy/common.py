"""Helpers S1 and S2 share: exposure, sizes, their own working orders, stop-loss and requote rules (the fee is
trader/decision/fees.py's).

Pure functions of their arguments: no I/O, no clock reads. Prices go through trader/decision/ticks.py only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from polymm.trader.model import Leg, MarketView, OrderType, OrderView, PositionView, Role, Side, Want
from polymm.trader.decision.ticks import floor_size, round_price

EPS = 1e-9
LEGS = (Leg.UP, Leg.DOWN)
NEVER = float("-inf")  # "no exit action yet" for the strategies' exit clocks


def finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def fair_guard(market: MarketView, leg: Leg, minimum: float, what: str) -> str:
    """Why the fair-value guard refuses an entry on `leg` ('' when it allows): the leg's fair value (from the BTC
    reference price, trader/decision/fair_value.py) must be known and at least `minimum` (`what` names that bound)."""
    fair = market.fair(leg)
    if not finite(fair):
        return "fair-value guard: BTC reference price stale or the window's opening price unknown"
    if fair + EPS < minimum:
        return f"fair-value guard: fair {fair:.2f} below {what}"
    return ""


def mark_price(market: MarketView, leg: Leg, fallback: float) -> float:
    """The price exposure is valued at: the leg's best bid, or `fallback` (the average entry price or the order
    price) while that side of the book is empty (near resolution it can be)."""
    bid = market.bid(leg)
    return bid if finite(bid) and bid > 0 else fallback


def shares_of(positions: Mapping[Leg, PositionView], leg: Leg) -> float:
    p = positions.get(leg)
    return p.shares if p is not None else 0.0


def sellable(shares: float, market: MarketView) -> bool:
    """A position below the market's minimum order size is dust: it cannot be sold, only held to resolution."""
    return shares > EPS and shares + EPS >= market.market.min_order_size


def working(orders: Iterable[OrderView], strategy: str, leg: Leg, side: Side | None = None) -> list[OrderView]:
    return [
        o
        for o in orders
        if o.strategy == strategy and o.leg is leg and o.state.working and (side is None or o.side is side)
    ]


def working_role(orders: Iterable[OrderView], strategy: str, leg: Leg, role: Role) -> OrderView | None:
    for o in working(orders, strategy, leg):
        if o.role is role:
            return o
    return None


def open_buy_shares(orders: Iterable[OrderView], strategy: str, leg: Leg) -> float:
    return sum(o.remaining for o in working(orders, strategy, leg, Side.BUY))


def leg_exposure(market: MarketView, leg: Leg, held: float, open_buys: float, avg_price: float) -> float:
    """Exposure of a leg = (shares held + shares on open buy orders) x best bid (strategies.md)."""
    return (held + open_buys) * mark_price(market, leg, avg_price)


def mirror(order: OrderView) -> Want:
    """The want that keeps a working order exactly as it is (the planner matches it and does nothing)."""
    return Want(
        strategy=order.strategy,
        leg=order.leg,
        side=order.side,
        price=order.price,
        size=round(order.remaining, 2),
        role=order.role,
        order_type=order.order_type,
        post_only=order.post_only,
        reason=order.reason,
    )


def entry_size(room_usd: float, bid: float) -> float:
    """Shares a new entry may buy at `bid` within `room_usd`, floored to the exchange's 2 decimals."""
    if room_usd <= 0 or not finite(bid) or bid <= 0:
        return 0.0
    # A hair of slack so 4.00 / 0.5 is 8.00, not 7.99 from binary float error.
    return floor_size(room_usd / bid + 1e-9)


def stop_want(strategy: str, leg: Leg, shares: float, order_price: float, tick: float, reason: str, role: Role = Role.STOP_LOSS) -> Want:
    """Sell the whole position now: fill-and-kill at an aggressive limit (default 0.01), so it takes every bid
    down to that price and never rests."""
    return Want(
        strategy=strategy,
        leg=leg,
        side=Side.SELL,
        price=round_price(round(order_price, 9), tick, "down"),
        size=floor_size(shares),
        role=role,
        order_type=OrderType.FAK,
        post_only=False,
        reason=reason,
    )


def repeated_sell(
    strategy: str,
    leg: Leg,
    role: Role,
    shares: float,
    sells: Sequence[OrderView],
    last_at: float,
    retry_s: float,
    order_price: float,
    tick: float,
    now: float,
    reason: str,
) -> tuple[list[Want], float]:
    """One step of a stop-loss or flatten: sell the whole position fill-and-kill, again every `retry_s` while a
    sellable position remains. `sells`: the strategy's working sells on the leg; `last_at`: when the last such
    sell went out. Returns (wants, new last_at).

    A sell of this role still in flight is kept (its outcome decides what remains). The retry clock starts only
    when the new sell can go at once, i.e. no other sell of the leg is working: the planner holds it back until
    those are gone (a resting sell locks the shares), and it must then go at the first decision, not retry_s later.
    """
    pending = [o for o in sells if o.role is role]
    if pending:
        return [mirror(pending[0])], last_at
    if now - last_at + EPS < retry_s:
        return [], last_at
    want = stop_want(strategy, leg, shares, order_price, tick, reason, role)
    if not any(o.role is not role for o in sells):
        last_at = now
    return [want], last_at


def entry_want(strategy: str, leg: Leg, bid: float, size: float, tick: float, reason: str) -> Want:
    """A post-only BUY resting at the best bid (a maker: no fee)."""
    return Want(
        strategy=strategy,
        leg=leg,
        side=Side.BUY,
        price=round_price(round(bid, 9), tick, "down"),
        size=size,
        role=Role.ENTRY,
        order_type=OrderType.GTC,
        post_only=True,
        reason=reason,
    )


def new_buy_usd(wants: Iterable[Want], existing: OrderView | None, bid: float) -> float:
    """What an entry decision's wants add to the exposure: a want that keeps the existing entry adds nothing; a
    new or replacing order adds its size at the bid (the replaced one was already credited as room)."""
    return sum(w.size * bid for w in wants if existing is None or w.price != existing.price)


@dataclass(frozen=True)
class EntryRule:
    """How one strategy's entry order on one leg is (re)quoted."""

    strategy: str
    requote_wait_s: float
    requote_min_improve: float
    min_size: float  # shares: the larger of the strategy's and the market's minimum


def entry_decision(
    rule: EntryRule,
    market: MarketView,
    leg: Leg,
    existing: OrderView | None,
    new_size: float,
    now: float,
    reason: str,
) -> tuple[list[Want], str]:
    """The entry want of an eligible leg, and words for what happened.

    No working entry: a new post-only BUY of `new_size` at the best bid, if that is at least the minimum size.
    A working entry with a fill is kept as it is (strategies.md: only an entry with no fill is requoted).
    A working entry with no fill is replaced at the new best bid when the bid moved at least
    `requote_min_improve` and `requote_wait_s` passed since it was placed; otherwise kept.
    """
    bid = market.bid(leg)
    tick = market.market.tick_size
    if existing is None:
        if new_size + EPS >= rule.min_size:
            return [entry_want(rule.strategy, leg, bid, new_size, tick, reason)], "entry"
        return [], f"entry too small: {new_size:.2f} < {rule.min_size:g} shares"
    if existing.filled > EPS:
        return [mirror(existing)], "entry partly filled, kept"
    moved = abs(bid - existing.price) + EPS >= rule.requote_min_improve
    waited = now - existing.created_at + EPS >= rule.requote_wait_s
    if moved and waited:
        if new_size + EPS >= rule.min_size:
            return [entry_want(rule.strategy, leg, bid, new_size, tick, f"requote {reason}")], "requote"
        return [], f"requote too small: {new_size:.2f} < {rule.min_size:g} shares"
    return [mirror(existing)], "entry resting"
