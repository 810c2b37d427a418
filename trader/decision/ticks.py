"""The one place prices meet the tick.

Polymarket rejects any price that is not a multiple of the market's current tick or lies outside
[tick, 1 - tick]. The tick changes mid-window (0.01 -> 0.001 when the book trades above 0.96 or below
0.04, `tick_size_change`), so callers pass the current tick every time; nothing caches it.
"""
from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from functools import lru_cache

_ROUNDING = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}


def tick_decimals(tick: float) -> int:
    """Decimal places of a tick: 0.01 -> 2, 0.001 -> 3, 0.0001 -> 4."""
    return max(0, -Decimal(str(tick)).normalize().as_tuple().exponent)


# round_price and floor_size are exact decimal arithmetic (~3-4 us each) asked several times per decision, mostly
# for the same few prices and sizes: remembered (bounded; pure functions of their arguments). Issue 26.
@lru_cache(maxsize=4096)
def round_price(price: float, tick: float, direction: str = "nearest") -> float:
    """Round to a multiple of tick ("down", "up" or "nearest") and clamp into [tick, 1 - tick]."""
    d_tick = Decimal(str(tick))
    units = (Decimal(repr(price)) / d_tick).quantize(Decimal(1), rounding=_ROUNDING[direction])
    p = units * d_tick
    p = min(max(p, d_tick), Decimal(1) - d_tick)
    return float(p)


def on_tick(price: float, tick: float) -> bool:
    d_tick = Decimal(str(tick))
    q = Decimal(repr(price)) / d_tick
    return q == q.to_integral_value() and d_tick <= Decimal(repr(price)) <= 1 - d_tick


@lru_cache(maxsize=4096)
def floor_size(size: float, decimals: int = 2) -> float:
    """Sizes go to the exchange with 2 decimals; always round down (never buy more than afforded)."""
    if not math.isfinite(size) or size <= 0:
        return 0.0
    q = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(size)).quantize(q, rounding=ROUND_FLOOR))
