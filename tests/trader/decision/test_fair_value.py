"""The trader's fair value (trader/decision/fair_value.py), on known values."""
from __future__ import annotations

import math
import random

import pytest

from polymm.trader.decision import fair_value as fv

S0 = 97_000.0


def test_at_the_open_with_no_move_it_is_one_half():
    assert fv.fair_up(S0, S0, 900.0, 1e-4) == 0.5


def test_one_standard_deviation_above_is_phi_of_one():
    sigma, tau = 1e-4, 400.0
    price = S0 * math.exp(sigma * math.sqrt(tau))  # ln(S/S0) = sigma * sqrt(tau)
    assert fv.fair_up(price, S0, tau, sigma) == pytest.approx(0.841344746, abs=1e-9)
    assert fv.fair_up(S0 * math.exp(-sigma * math.sqrt(tau)), S0, tau, sigma) == pytest.approx(0.158655254, abs=1e-9)


def test_far_above_the_open_near_the_end_tends_to_one_and_below_to_zero():
    assert fv.fair_up(S0 * 1.001, S0, 5.0, 1e-4) > 0.99
    assert fv.fair_up(S0 * 0.999, S0, 5.0, 1e-4) < 0.01
    # the same move early in the window is far less certain
    assert 0.6 < fv.fair_up(S0 * 1.001, S0, 900.0, 1e-4) < 0.9


def test_at_or_after_the_end_it_is_the_outcome_ties_to_up():
    assert fv.fair_up(S0, S0, 0.0, 1e-4) == 1.0
    assert fv.fair_up(S0 - 0.01, S0, -3.0, 1e-4) == 0.0


def test_unusable_inputs_give_nan_not_a_number_that_looks_real():
    for args in ((math.nan, S0, 10.0, 1e-4), (S0, math.nan, 10.0, 1e-4), (S0, 0.0, 10.0, 1e-4),
                 (S0, S0, math.nan, 1e-4), (S0, S0, 10.0, 0.0)):
        assert math.isnan(fv.fair_up(*args))


def test_realised_vol_recovers_the_volatility_of_a_known_walk():
    rng = random.Random(7)
    sigma, price, points = 1.5e-4, S0, []
    for t in range(3600):
        points.append((float(t), price))
        price *= math.exp(sigma * rng.gauss(0.0, 1.0))
    observed, span = fv.realised_vol(points)
    assert span == 3599.0 and observed == pytest.approx(sigma, rel=0.05)
    assert fv.realised_vol([(1.0, S0)]) == (pytest.approx(math.nan, nan_ok=True), 0.0)


def test_a_flat_or_short_path_is_shrunk_towards_the_prior():
    assert fv.shrunk_vol(math.nan, 0.0) == fv.DEFAULT_PRIOR_VOL
    flat = fv.shrunk_vol(0.0, 120.0, prior=1e-4, prior_weight_s=120.0)
    assert flat == pytest.approx(1e-4 / math.sqrt(2))
    assert fv.shrunk_vol(2e-4, 1e6, prior=1e-4) == pytest.approx(2e-4, rel=1e-3)


def test_the_rolling_estimator_matches_the_batch_one_over_its_window_and_ignores_repeats():
    rng = random.Random(3)
    est = fv.VolEstimator(window_s=60.0, prior_weight_s=0.0)
    price, points = S0, []
    for t in range(200):
        est.add(float(t), price)
        est.add(float(t), price * 2)  # same timestamp again: ignored
        points.append((float(t), price))
        price *= math.exp(1e-4 * rng.gauss(0.0, 1.0))
    recent = [p for p in points if p[0] >= 199 - 60]
    assert len(est) == len(recent)
    assert est.vol() == pytest.approx(fv.realised_vol(recent)[0], rel=1e-9)
    assert fv.VolEstimator().vol() == fv.DEFAULT_PRIOR_VOL


def test_a_stale_price_or_an_unknown_open_gives_no_fair_value_to_act_on():
    end = 1_000.0
    assert fv.guarded_fair_up(S0, 990.0, S0, 991.0, end, 1e-4, 5.0) == 0.5
    assert math.isnan(fv.guarded_fair_up(S0, 980.0, S0, 991.0, end, 1e-4, 5.0))  # 11 s old
    assert math.isnan(fv.guarded_fair_up(S0, math.nan, S0, 991.0, end, 1e-4, 5.0))  # never had one
    assert math.isnan(fv.guarded_fair_up(S0, 990.0, math.nan, 991.0, end, 1e-4, 5.0))  # open unknown
    assert fv.leg_fair(0.64, up=False) == pytest.approx(0.36)


def test_fair_value_feeds_its_estimator_from_what_it_is_asked():
    f = fv.FairValue(prior_vol=1e-4)
    for t in range(10):
        f.fair_up(S0 * (1 + 1e-4 * (t % 2)), float(t), S0, float(t), 900.0, 5.0)
    assert len(f.estimator) == 10 and f.estimator.vol() != 1e-4
