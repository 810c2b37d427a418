"""The trader's background watchers, as pure functions: who won a window (Gamma's answer) and what the wallet
balance says."""
from __future__ import annotations

import json

from polymm.trader.execution.balance import balance_warnings, parse_balance
from polymm.trader.model import Leg
from polymm.trader.execution.resolution import slug_of, winner_from_gamma

COND = "0x" + "ab" * 32


def gamma_market(prices, closed=True, outcomes=("Up", "Down"), condition=COND) -> dict:
    # Gamma quirk: outcomes and outcomePrices are JSON strings holding arrays.
    return {"conditionId": condition, "closed": closed, "outcomes": json.dumps(list(outcomes)),
            "outcomePrices": json.dumps(list(prices))}


def test_a_closed_market_paying_one_names_the_winning_leg():
    assert winner_from_gamma(gamma_market(["1", "0"]), COND) is Leg.UP
    assert winner_from_gamma(gamma_market(["0", "1"]), COND) is Leg.DOWN
    assert winner_from_gamma(gamma_market(["0", "1"], outcomes=("Down", "Up")), COND) is Leg.UP


def test_no_winner_until_closed_and_settled_at_exactly_one_and_zero():
    assert winner_from_gamma(gamma_market(["1", "0"], closed=False), COND) is None
    assert winner_from_gamma(gamma_market(["0.97", "0.03"]), COND) is None
    assert winner_from_gamma(gamma_market(["1", "0"], condition="0x" + "cd" * 32), COND) is None
    assert winner_from_gamma({"conditionId": COND, "closed": True, "outcomePrices": "not json"}, COND) is None


def test_slug_keeps_15m_whatever_the_window_length():
    assert slug_of(1795469520) == "btc-updown-15m-1795469520"


def test_balance_is_read_from_base_units_and_allowances_checked():
    assert parse_balance({"balance": "12500000", "allowances": {"a": "0", "b": "5"}}) == (12.5, False)
    assert parse_balance({"balance": "bad"}) == (None, None)


def test_balance_warnings_in_words():
    assert balance_warnings(12.5, True, 50) == [
        "balance low: $12.50 pUSD in the wallet, below risk.max_exposure_usd $50"]
    assert "allowance missing" in balance_warnings(100.0, False, 50)[0]
    assert balance_warnings(100.0, True, 50) == [] and balance_warnings(None, None, 50) == []
