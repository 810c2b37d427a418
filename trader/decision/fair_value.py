"""The probability that "Up" wins, from the BTC reference price: the trader's own fair value.

Pure functions and one small rolling estimator; no I/O, no clock (times are arguments).

Model and assumptions (stated so they can be argued with):
- The market resolves Up when the reference price S_T at the window end is at or above the opening price S0
  (ties go to Up; with a continuous price they have probability zero and are ignored here).
- Over the seconds left, ln S follows a driftless Brownian motion with volatility sigma per sqrt(second):
  ln S_T - ln S_t ~ Normal(0, sigma^2 * tau). No drift: over minutes BTC's drift is negligible against its
  noise, and assuming one would be a directional bet. (Driftless in ln S rather than in S: the -sigma^2/2
  Ito term is ~1e-8 over a 15-minute window and is left out.)
- Then P(Up) = Phi(ln(S/S0) / (sigma * sqrt(tau))), Phi the standard normal CDF. At the open with no move it
  is 0.5; far above the open near the end it tends to 1; at or after the end it is 1 if S >= S0 else 0.
- sigma is estimated from the recent reference-price path (realised variance of log returns per second,
  `VolEstimator`), shrunk towards a prior so a short or flat path (Chainlink repeating a value) does not
  make the model overconfident. Fat tails and jumps are not modelled: far from 0.5 the value is too sure,
  which is why the strategy guards compare it with a margin.
- The product's own model: it does not use (or import) the sim's synthetic market.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# BTC's volatility is roughly 40-80% a year: 0.6 / sqrt(365.25 * 86400) ~ 1.07e-4 per sqrt(second).
DEFAULT_PRIOR_VOL = 1.0e-4
PRIOR_WEIGHT_S = 120.0  # the prior counts as this many seconds of observed path
DEFAULT_VOL_WINDOW_S = 300.0
SQRT2 = math.sqrt(2.0)


def fair_up(price: float, open_price: float, seconds_left: float, vol_per_sqrt_s: float) -> float:
    """P(Up wins) under the driftless lognormal model above. NaN when an input is unusable (no price, no
    opening price, non-positive volatility before the end): callers treat NaN as "no fair value"."""
    if not (price > 0 and open_price > 0) or seconds_left != seconds_left:
        return math.nan
    log_move = math.log(price / open_price)
    if seconds_left <= 0.0:
        return 1.0 if price >= open_price else 0.0
    if not vol_per_sqrt_s > 0:
        return math.nan
    z = log_move / (vol_per_sqrt_s * math.sqrt(seconds_left))
    return 0.5 * (1.0 + math.erf(z / SQRT2))


def realised_vol(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(sigma per sqrt(second), seconds covered) from (timestamp, price) points in time order: the sum of
    squared log returns over the time they span. (nan, 0) with fewer than two usable points."""
    total = 0.0
    span = 0.0
    prev_t = prev_p = None
    for t, p in points:
        if not p > 0:
            continue
        if prev_t is not None and t > prev_t:
            r = math.log(p / prev_p)
            total += r * r
            span += t - prev_t
        prev_t, prev_p = t, p
    if span <= 0.0:
        return math.nan, 0.0
    return math.sqrt(total / span), span


def shrunk_vol(observed: float, observed_s: float, prior: float = DEFAULT_PRIOR_VOL,
               prior_weight_s: float = PRIOR_WEIGHT_S) -> float:
    """Variance-weighted blend of the observed volatility and the prior, by the seconds each stands for."""
    if observed != observed or observed_s <= 0:
        return prior
    var = (observed * observed * observed_s + prior * prior * prior_weight_s) / (observed_s + prior_weight_s)
    return math.sqrt(var)


@dataclass
class VolEstimator:
    """The recent reference-price path (one point per distinct source timestamp) and its volatility."""

    window_s: float = DEFAULT_VOL_WINDOW_S
    prior: float = DEFAULT_PRIOR_VOL
    prior_weight_s: float = PRIOR_WEIGHT_S

    def __post_init__(self) -> None:
        self._points: deque[tuple[float, float]] = deque()
        self._sum_sq = 0.0  # running sums over consecutive pairs in the deque
        self._span = 0.0

    def add(self, ts: float, price: float) -> None:
        """A reference price with its source timestamp. Repeats and older points are ignored."""
        if not (price > 0) or ts != ts:
            return
        pts = self._points
        if pts:
            last_t, last_p = pts[-1]
            if ts <= last_t:
                return
            r = math.log(price / last_p)
            self._sum_sq += r * r
            self._span += ts - last_t
        pts.append((ts, price))
        horizon = ts - self.window_s
        while len(pts) > 2 and pts[1][0] <= horizon:
            (t0, p0), (t1, p1) = pts[0], pts[1]
            r = math.log(p1 / p0)
            self._sum_sq -= r * r
            self._span -= t1 - t0
            pts.popleft()

    def vol(self) -> float:
        if self._span <= 0.0:
            return self.prior
        return shrunk_vol(math.sqrt(max(self._sum_sq, 0.0) / self._span), self._span, self.prior, self.prior_weight_s)

    def __len__(self) -> int:
        return len(self._points)


def guarded_fair_up(price: float, price_ts: float, open_price: float, now: float, window_end: float,
                    vol_per_sqrt_s: float, stale_after_s: float) -> float:
    """The fair value a strategy may act on: NaN when the reference price is stale (older than `stale_after_s`
    by its own timestamp, or missing) or the window's opening price is unknown; else `fair_up`."""
    if not (price_ts == price_ts and now - price_ts <= stale_after_s) or not open_price > 0:
        return math.nan
    return fair_up(price, open_price, window_end - now, vol_per_sqrt_s)


def leg_fair(fair_up_value: float, up: bool) -> float:
    """A leg's fair value from P(Up): Down wins exactly when Up does not."""
    return fair_up_value if up else 1.0 - fair_up_value


class FairValue:
    """The trader's (and the backtest's) fair value: one VolEstimator fed with every reference price seen, and
    `guarded_fair_up` evaluated with its volatility. Same code live, in paper mode and in the backtest."""

    def __init__(self, vol_window_s: float = DEFAULT_VOL_WINDOW_S, prior_vol: float = DEFAULT_PRIOR_VOL) -> None:
        self.estimator = VolEstimator(window_s=vol_window_s, prior=prior_vol)

    def fair_up(self, price: float, price_ts: float, open_price: float, now: float, window_end: float,
                stale_after_s: float) -> float:
        self.estimator.add(price_ts, price)
        return guarded_fair_up(price, price_ts, open_price, now, window_end, self.estimator.vol(), stale_after_s)
