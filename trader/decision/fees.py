"""The taker fee: the one definition every part of polymm uses (strategies' net-of-fee rule, fills, P&L,
the fill model of the backtest and paper trading). Pure.

The exchange charges takers `fee = shares x rate x (p x (1 - p)) ^ exponent` in pUSD, rounded to 5 decimals;
makers pay nothing. Sources: docs.polymarket.com/trading/fees ("Trading fees"), and py-clob-client-v2's
fees.adjust_buy_amount_for_fees, which applies `rate * (price * (1 - price)) ** exponent` with the market's
`fd.r` / `fd.e` from GET /clob-markets/{condition_id} (ClobClient.get_clob_market_info; the gateway reads
them, trader/venue/gateway.py `fee_details`). Rate and exponent
are per market and have changed before (the 15-minute crypto markets launched their fees with rate 0.25 /
exponent 2; the V2-era docs give 0.07 / exponent 1), so they are read from each market, never assumed.

When a market's schedule cannot be read, DEFAULT_SCHEDULE is used and the trader says so in `mmctl status`:
rate 0.07 with exponent 1 is the larger of the two schedules documented for these markets at every price
(0.25 x (p(1-p))^2 <= 0.0625 x p(1-p) < 0.07 x p(1-p)), so the default over-estimates what a taker trade costs
rather than under-estimates it: a take-profit taken on the default never nets less than the strategy thinks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class FeeSchedule:
    """A market's taker fee parameters. `source` says where they came from, in words (status/logs)."""

    rate: float
    exponent: float = 1.0
    source: str = "exchange"

    def __post_init__(self) -> None:
        for name in ("rate", "exponent"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"fee {name} must be a finite number, got {value!r}")
        if not 0 <= self.rate < 1:
            raise ValueError(f"fee rate must be in [0, 1), got {self.rate!r}")
        if self.exponent < 0:
            raise ValueError(f"fee exponent must be >= 0, got {self.exponent!r}")


DEFAULT_SCHEDULE = FeeSchedule(0.07, 1.0, source="conservative default (the market's schedule could not be read)")
FEE_DECIMALS = 5  # the exchange rounds fees to 0.00001 pUSD


def fee_per_share(price: float, schedule: FeeSchedule) -> float:
    """The taker fee of one share traded at `price` (unrounded: a rate, for per-share decisions)."""
    if not 0 < price < 1:
        return 0.0
    return schedule.rate * (price * (1.0 - price)) ** schedule.exponent


def taker_fee(shares: float, price: float, schedule: FeeSchedule) -> float:
    """pUSD the exchange charges a taker for `shares` at `price`, rounded as the exchange rounds it."""
    return round(shares * fee_per_share(price, schedule), FEE_DECIMALS)


def net_sell_price(price: float, schedule: FeeSchedule) -> float:
    """What one share sold as a taker at `price` brings after the fee."""
    return price - fee_per_share(price, schedule)


def market_fee(market) -> FeeSchedule:
    """The schedule of a MarketView (trader/model.py), which carries it as fee_rate and fee_exponent."""
    return _schedule(market.fee_rate, market.fee_exponent)


@lru_cache(maxsize=64)
def _schedule(rate: float, exponent: float) -> FeeSchedule:
    # One schedule per market, asked for several times per decision: built and checked once (issue 26).
    return FeeSchedule(rate, exponent)
