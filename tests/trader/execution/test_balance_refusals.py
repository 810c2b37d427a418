"""Balance refusals are recognised in every wording the exchange and the official clients have shown
(case-insensitively), so the leg blocking and the status warning happen whatever the wording."""
from __future__ import annotations

import pytest

from polymm.trader.execution.exchange_state import ExchangeState, InsufficientBalance, Rejected, classify
from polymm.trader.model import Leg


@pytest.mark.parametrize("message", [
    "not enough balance / allowance",
    "not enough balance / allowance: the balance is not enough -> balance: 4893500, order amount: 5000000",
    "not enough balance / allowance: the allowance is not enough -> allowance: 0, order amount: 5000000",
    "not enough balance / allowances",
    "Insufficient balance",
    "insufficient funds for this order",
    "Not Enough Balance / Allowance",
    "NOT ENOUGH BALANCE / ALLOWANCE",
])
def test_every_balance_wording_is_insufficient_balance(message):
    err = classify(400, message)
    assert isinstance(err, InsufficientBalance) and err.message == message


@pytest.mark.parametrize("message", [
    "invalid post-only order: order crosses book",
    "order 0xab is invalid. Size (1) lower than the minimum: 5",
    "maker address not allowed, please use the deposit wallet flow",  # "allowed" is not "allowance"
])
def test_other_refusals_are_not_balance_refusals(message):
    assert type(classify(400, message)) is Rejected


def test_a_reworded_refusal_still_refreshes_then_blocks_the_leg():
    state = ExchangeState()
    err = classify(400, "Insufficient balance")
    assert state.on_error(err, 0.0, Leg.UP) == "refresh_balance"
    assert state.on_error(err, 1.0, Leg.UP) is None
    assert any(w.startswith("leg up blocked: not enough balance / allowance") for w in state.warnings())

