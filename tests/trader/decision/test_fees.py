"""The one taker-fee function: pinned values for exponent 1 and 2, parity with the SDK's fee arithmetic, and
the `fd` parsing of GET /clob-markets."""
from __future__ import annotations

import pytest
from py_clob_client_v2.fees import adjust_buy_amount_for_fees

from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule, fee_per_share, market_fee, net_sell_price, taker_fee

V2_ERA = FeeSchedule(0.07, 1)  # docs.polymarket.com/trading/fees for crypto markets since CLOB V2
LAUNCH = FeeSchedule(0.25, 2)  # the 15-minute crypto markets' first schedule


@pytest.mark.parametrize("price,fee", [
    (0.5, 1.75),  # the docs' peak: $1.75 per 100 shares
    (0.3, 1.47),
    (0.1, 0.63),
    (0.9, 0.63),  # symmetric
    (0.99, 0.0693),
    (0.01, 0.0693),
])
def test_exponent_1_fee_for_100_shares(price, fee):
    assert taker_fee(100, price, V2_ERA) == pytest.approx(fee, abs=1e-12)


@pytest.mark.parametrize("price,fee", [
    (0.5, 1.5625),  # the launch announcement's ~$1.56 per 100 shares at 0.50
    (0.1, 0.2025),  # ... $0.20 at 0.10
    (0.99, 0.00245),  # ... $0.0025 at 0.99 (0.00245025, rounded to 5 decimals as the exchange does)
    (0.3, 1.1025),
])
def test_exponent_2_fee_for_100_shares(price, fee):
    assert taker_fee(100, price, LAUNCH) == pytest.approx(fee, abs=1e-12)


def test_fee_is_rounded_to_five_decimals_and_zero_outside_the_price_range():
    assert taker_fee(1, 0.5, FeeSchedule(0.0000123)) == 0.0  # 0.0000031 pUSD rounds away
    assert taker_fee(7.77, 0.37, V2_ERA) == round(7.77 * 0.07 * 0.37 * 0.63, 5)
    assert fee_per_share(0.0, V2_ERA) == fee_per_share(1.0, V2_ERA) == 0.0


@pytest.mark.parametrize("schedule", [V2_ERA, LAUNCH, FeeSchedule(0.02, 2), FeeSchedule(0.03, 1.5)])
@pytest.mark.parametrize("price", [0.05, 0.23, 0.5, 0.61, 0.97])
def test_same_fee_as_the_sdk_fee_arithmetic(schedule, price):
    """py-clob-client-v2's adjust_buy_amount_for_fees charges (amount / price) x rate x (p(1-p))^exponent; with
    the balance equal to the amount it returns amount - that fee."""
    shares = 40.0
    amount = shares * price
    sdk_fee = amount - adjust_buy_amount_for_fees(amount, price, amount, schedule.rate, schedule.exponent, 0.0)
    assert shares * fee_per_share(price, schedule) == pytest.approx(sdk_fee, rel=1e-9, abs=1e-12)


def test_net_sell_price_subtracts_the_per_share_fee():
    assert net_sell_price(0.5, V2_ERA) == pytest.approx(0.5 - 0.0175)
    assert net_sell_price(0.5, LAUNCH) == pytest.approx(0.5 - 0.015625)


def test_default_schedule_is_at_least_every_documented_schedule_at_every_price():
    for cents in range(1, 100):
        p = cents / 100
        assert fee_per_share(p, DEFAULT_SCHEDULE) >= max(fee_per_share(p, V2_ERA), fee_per_share(p, LAUNCH))
    assert "default" in DEFAULT_SCHEDULE.source


def test_a_schedule_refuses_absurd_parameters_in_words():
    for rate, exponent, words in ((1.5, 1, r"in \[0, 1\)"), (0.07, -1, "exponent must be >= 0"),
                                  (float("nan"), 1, "finite"), ("0.07", 1, "finite number")):
        with pytest.raises(ValueError, match=words):
            FeeSchedule(rate, exponent)


def test_market_fee_is_the_views_schedule():
    class View:
        fee_rate, fee_exponent = 0.25, 2.0
    assert market_fee(View()) == FeeSchedule(0.25, 2.0)
