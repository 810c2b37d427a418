"""Risk spends cash, not winnings awaiting redemption: new buys stay within the wallet's pUSD after what the
working buys commit (the exchange would refuse the rest: "not enough balance / allowance")."""
from __future__ import annotations

from tests.support.strategy import WS, book, config, order

from polymm.trader.decision.decide import decide
from polymm.trader.model import Leg, Role, Side
from polymm.trader.decision.planner import Place


def places(d):
    return [a.want for a in d.actions if isinstance(a, Place)]


def test_unknown_cash_leaves_the_exposure_cap_in_charge():
    d = decide(book(0.61), [], {}, config(), None, WS + 700)
    assert [w.size for w in places(d)] == [8.19]  # the $5 cap of the schedule


def test_little_cash_trims_an_entry_to_what_the_wallet_can_pay():
    d = decide(book(0.61), [], {}, config(), None, WS + 700, cash_usd=3.5)
    (want,) = places(d)
    assert want.size == 5.73 and "cash $3.50" in want.reason  # floor(3.5 / 0.61)


def test_cash_committed_to_working_buys_is_not_spent_twice():
    # Another strategy's resting buy commits $3.70 (10 x 0.37) of the cash.
    resting = order(Leg.DOWN, Side.BUY, 0.37, 10, Role.ENTRY, strategy="s2", created_at=WS + 690)
    market = book(0.61, down_bid=0.37, down_ask=0.39)
    d = decide(market, [resting], {}, config(), None, WS + 700, cash_usd=5.5)
    assert places(d) == []  # $1.80 left buys less than the minimum order
    assert any("no entry, the wallet's cash $5.50 pUSD is spent or committed" in n for n in d.notes)
    d = decide(market, [resting], {}, config(), None, WS + 700, cash_usd=100.0)
    assert [w.leg for w in places(d)] == [Leg.UP]
