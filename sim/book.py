"""The order book in "Up space" (sim/engine.py, implementation notes): one book per market, where BUY Up @p and
SELL Down @(1-p) are Up bids at p, SELL Up @p and BUY Down @(1-p) Up asks at p; FIFO levels, price-time
priority across both tokens. Plain data structures and pure questions about them (does an order cross, how
much could it fill)."""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from decimal import Decimal

from polymm.sim.records import ONE, ZERO, MarketSpec, SimOrder


class _Level:
    __slots__ = ("total", "orders")

    def __init__(self) -> None:
        self.total = ZERO
        self.orders: deque[SimOrder] = deque()


class _BookSide:
    """One side of the Up-space book: price -> FIFO level, plus an ascending price list."""

    __slots__ = ("levels", "prices", "is_bid")

    def __init__(self, is_bid: bool) -> None:
        self.levels: dict[Decimal, _Level] = {}
        self.prices: list[Decimal] = []  # ascending
        self.is_bid = is_bid

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def best_first(self) -> list[Decimal]:
        return self.prices[::-1] if self.is_bid else list(self.prices)

    def add(self, price: Decimal, order: SimOrder) -> None:
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = _Level()
            insort(self.prices, price)
        level.orders.append(order)
        level.total += order.remaining

    def reduce(self, price: Decimal, amount: Decimal) -> None:
        self.levels[price].total -= amount

    def remove_order(self, price: Decimal, order: SimOrder) -> None:
        level = self.levels[price]
        level.orders.remove(order)
        level.total -= order.remaining
        self.drop_if_empty(price)

    def drop_if_empty(self, price: Decimal) -> None:
        level = self.levels.get(price)
        if level is not None and not level.orders:
            del self.levels[price]
            del self.prices[bisect_left(self.prices, price)]

    def total_at(self, price: Decimal) -> Decimal:
        level = self.levels.get(price)
        return level.total if level is not None else ZERO


class _Market:
    __slots__ = ("spec", "bids", "asks")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.bids = _BookSide(is_bid=True)  # Up-space bids: BUY Up, SELL Down
        self.asks = _BookSide(is_bid=False)  # Up-space asks: SELL Up, BUY Down


def _up_price(order: SimOrder, spec: MarketSpec) -> Decimal:
    return order.price if order.token_id == spec.up_token else ONE - order.price


def _is_up_bid(order: SimOrder, spec: MarketSpec) -> bool:
    """BUY Up and SELL Down both want Up-space price to be low: they are Up bids."""
    return (order.side == "BUY") == (order.token_id == spec.up_token)


def _crosses(opposite: _BookSide, is_bid: bool, limit: Decimal) -> bool:
    best = opposite.best()
    if best is None:
        return False
    return best <= limit if is_bid else best >= limit


def _fillable(opposite: _BookSide, is_bid: bool, limit: Decimal, wanted: Decimal) -> Decimal:
    """How much of `wanted` the book can fill up to `limit` (stops counting once enough)."""
    total = ZERO
    for price in opposite.best_first():
        if (price > limit) if is_bid else (price < limit):
            break
        total += opposite.levels[price].total
        if total >= wanted:
            return wanted
    return total
