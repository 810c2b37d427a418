"""The taker fee as production charges it: size * fee_rate * (p * (1 - p)) ^ fee_exponent, rounded to 5 dp, in
pUSD, at match time; makers pay nothing."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, ROUND_UP, Decimal

from polymm.sim.records import FEE_QUANTUM, ONE, MarketSpec


def _fee_per_share(spec: MarketSpec, price: Decimal) -> Decimal:
    return spec.fee_rate * (price * (ONE - price)) ** spec.fee_exponent


def _fee(size: Decimal, spec: MarketSpec, price: Decimal, *, up: bool = False) -> Decimal:
    exact = size * _fee_per_share(spec, price)
    return exact.quantize(FEE_QUANTUM, rounding=ROUND_UP if up else ROUND_HALF_UP)


def _round_fee(exact: Decimal) -> Decimal:
    return exact.quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)
