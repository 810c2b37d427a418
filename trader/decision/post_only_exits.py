"""Stops while the exchange accepts post-only orders only (pure).

After a 425 (matching engine restart) the exchange takes only post-only orders for about two minutes; it can
also announce a post-only period. A stop-loss or a flatten sells fill-and-kill, a taker order the exchange would
refuse then, and waiting two minutes with a falling position is the worst choice. So, for every stop and flatten:

- while takers are refused, the sell rests post-only for the whole position at the lowest price that does not
  cross: one tick above the best bid (the lowest tick when there is no bid). It is then the best ask, first in
  line for any buyer, and costs no taker fee;
- as the book moves it follows: each decision wants it at the new bid + tick, and the planner replaces it
  (cancel, then place once the cancel is confirmed: a resting sell locks its shares, so the exchange would refuse
  a second one);
- the moment takers are allowed again, the resting sell is replaced by the fill-and-kill stop at the strategy's
  `sl_order_price` (again cancel first, then the taker sell of what is left).

Strategies keep deciding stops exactly as before (the retry clock, the whole position); this only changes how
the sell is expressed, so it composes with whatever they want.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from polymm.trader.model import MarketView, OrderType, Role, Side, Want
from polymm.trader.decision.ticks import round_price

EXIT_ROLES = (Role.STOP_LOSS, Role.FLATTEN)
# Appended to the reason of a resting stop, so the log says why a stop rests instead of taking.
RESTING = "exchange post-only: resting one tick above the bid until takers are allowed"


def resting_price(market: MarketView, want: Want) -> float:
    """The lowest price a post-only SELL can rest at without crossing: best bid + one tick."""
    tick = market.market.tick_size
    bid = market.bid(want.leg)
    if bid is None or not math.isfinite(bid) or bid <= 0:
        return round_price(tick, tick)
    # round() first: 0.47 + 0.01 is 0.48000000000000004 in binary, and rounding that up would skip a tick.
    return round_price(round(bid + tick, 9), tick, "up")


def _strategy_stop_price(config, strategy: str, tick: float) -> float:
    params = getattr(config, strategy, None)
    price = getattr(params, "sl_order_price", None)
    return round_price(round(price, 9), tick, "down") if price is not None else round_price(tick, tick)


def _base_reason(reason: str) -> str:
    suffix = f" ({RESTING})"
    return reason[: -len(suffix)] if reason.endswith(suffix) else reason


def adapt_exits(wants: Sequence[Want], market: MarketView, config, post_only_only: bool) -> list[Want]:
    """Stops and flattens as the exchange's current mode allows them (see the module docstring)."""
    out: list[Want] = []
    for w in wants:
        if w.role not in EXIT_ROLES or w.side is not Side.SELL:
            out.append(w)
        elif post_only_only:
            out.append(replace(w, order_type=OrderType.GTC, post_only=True, price=resting_price(market, w),
                               reason=f"{_base_reason(w.reason)} ({RESTING})"))
        elif w.post_only:
            # A stop still resting from the post-only period (its strategy keeps it as it is): takers are back.
            out.append(replace(w, order_type=OrderType.FAK, post_only=False,
                               price=_strategy_stop_price(config, w.strategy, market.market.tick_size),
                               reason=_base_reason(w.reason)))
        else:
            out.append(w)
    return out
