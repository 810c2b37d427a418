"""One money truth (trader/execution/cash.py): our fills move cash at once, every balance poll puts it right (the
exchange wins), a fill in doubt asks for an early poll, and only a disagreement that lasts two polls is a warning
with both figures."""
from __future__ import annotations

import pytest

from polymm.trader.execution.cash import REPOLL_AFTER_S, CashBook, fill_cash
from polymm.trader.model import FillView, Leg, Side


def fill(trade: str, side: Side = Side.BUY, price: float = 0.6, size: float = 10.0, fee: float = 0.0,
         status: str = "MATCHED", order: str = "o1") -> FillView:
    return FillView(trade_id=trade, order_id=order, client_id="c1", strategy="s1", leg=Leg.UP, side=side, price=price,
                    size=size, fee=fee, role="taker" if fee else "maker", status=status, ts=100.0)


def polled(book: CashBook, balance: float, now: float = 0.0) -> None:
    book.poll_answered(book.poll_asked(now), balance, now + 0.01)


def test_cash_effect_of_a_fill():
    assert fill_cash(fill("t", Side.BUY, 0.6, 10, fee=0.02)) == pytest.approx(-6.02)
    assert fill_cash(fill("t", Side.SELL, 0.7, 10, fee=0.02)) == pytest.approx(6.98)


def test_unknown_until_the_first_poll_then_fills_move_it_at_once():
    book = CashBook()
    assert book.cash_usd is None
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 1.0)
    assert book.cash_usd == pytest.approx(994.0)
    book.on_fill(fill("t1", status="MINED"), 2.0)  # a status step moves nothing
    book.on_fill(fill("t2", Side.SELL, 0.65, 10, fee=0.01), 3.0)
    assert book.cash_usd == pytest.approx(1000.49)


def test_a_failed_trade_gives_the_money_back_once():
    book = CashBook()
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 1.0)
    book.on_fill(fill("t1", status="FAILED"), 2.0)
    book.on_fill(fill("t1", status="FAILED"), 3.0)  # a duplicate
    assert book.cash_usd == pytest.approx(1000.0)
    book.on_fill(fill("t9", status="FAILED"), 4.0)  # failed before we ever counted it
    assert book.cash_usd == pytest.approx(1000.0)


def test_the_exchange_wins_at_each_poll_and_fills_known_before_asking_are_in_its_answer():
    book = CashBook()
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 1.0)  # -6
    polled(book, 994.0, now=2.0)  # the answer includes t1
    assert book.cash_usd == pytest.approx(994.0) and book.warning is None
    book.on_fill(fill("t2"), 3.0)
    assert book.cash_usd == pytest.approx(988.0)
    polled(book, 990.0, now=4.0)  # someone deposited 2: the exchange wins, silently the first time
    assert book.cash_usd == pytest.approx(990.0) and book.warning is None


def test_a_fill_learnt_while_a_poll_is_in_flight_is_in_doubt_and_asks_for_an_early_poll():
    book = CashBook()
    polled(book, 1000.0)
    token = book.poll_asked(10.0)
    book.on_fill(fill("t1"), 10.02)  # did the exchange's answer include it?
    assert book.repoll_due == pytest.approx(10.02 + REPOLL_AFTER_S)
    book.poll_answered(token, 994.0, 10.05)  # it did: counted twice for now...
    assert book.cash_usd == pytest.approx(988.0)
    polled(book, 994.0, now=10.6)  # ...until the early poll, with no warning (it was in doubt)
    assert book.cash_usd == pytest.approx(994.0) and book.warning is None and book.mismatches == 0
    assert book.repoll_due is None or book.repoll_due <= 10.6


def test_a_fill_from_a_rest_reconciliation_is_in_doubt():
    book = CashBook()
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 5.0, in_doubt=True)  # learnt after a gap: maybe already in the last balance
    assert book.repoll_due == pytest.approx(5.0 + REPOLL_AFTER_S)
    polled(book, 1000.0, now=5.5)  # it was: the poll puts it right, no warning
    assert book.cash_usd == pytest.approx(1000.0) and book.warning is None


def test_a_disagreement_lasting_two_polls_is_a_warning_with_both_figures_until_a_poll_agrees():
    book = CashBook()
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 1.0)  # we say -6
    polled(book, 995.0, now=2.0)  # the exchange says -5: once is put right silently
    assert book.warning is None and book.mismatches == 1
    book.on_fill(fill("t2"), 3.0)  # -6 again, the exchange -5 again: our accounting is off somewhere
    polled(book, 990.0, now=4.0)
    assert book.mismatches == 2
    assert book.warning == ("cash disagrees with the exchange for 2 polls: our fills say $989.00, the exchange says "
                            "$990.00 (using the exchange's)")
    assert book.cash_usd == pytest.approx(990.0)
    polled(book, 990.0, now=6.0)  # no fill since, and the figures agree: the warning goes
    assert book.warning is None and book.mismatches == 0


def test_a_failed_poll_leaves_the_figures_and_no_poll_in_flight():
    book = CashBook()
    polled(book, 1000.0)
    book.poll_asked(1.0)
    book.poll_failed()
    book.on_fill(fill("t1"), 2.0)  # no poll in flight: not in doubt
    assert book.repoll_due is None and book.cash_usd == pytest.approx(994.0)


def test_forgetting_settled_fills_keeps_the_cash():
    book = CashBook()
    polled(book, 1000.0)
    book.on_fill(fill("t1"), 1.0)
    polled(book, 994.0, now=2.0)
    book.forget([("t1", "o1")])
    assert book.cash_usd == pytest.approx(994.0) and not book._counted


def test_a_redemption_counts_at_once_in_doubt_and_is_never_a_disagreement():
    # The exchange pays a redemption before the redeemer hears of it: a regular poll may see it first (a silent
    # mismatch), then the redeemer's report counts it again (in doubt) until the early poll puts it right.
    book = CashBook()
    polled(book, 1000.0)
    polled(book, 1005.0, now=1.0)  # the payout, unexplained: put right silently
    book.on_external(5.0, 1.5)  # the redeemer's confirmation
    assert book.cash_usd == pytest.approx(1010.0) and book.repoll_due == pytest.approx(1.5 + REPOLL_AFTER_S)
    polled(book, 1005.0, now=2.0)  # in doubt: no second mismatch counted
    assert book.cash_usd == pytest.approx(1005.0) and book.warning is None
    polled(book, 1005.0, now=3.0)
    assert book.mismatches == 0 and book.warning is None


def test_another_series_moving_the_shared_wallet_is_never_a_disagreement():
    # Several series on one wallet: the others' fills move the same pUSD. A comparison across which another series
    # counted a move is in doubt (the exchange's figure is taken, no mismatch counted); once they are quiet again, a
    # disagreement of our own shows as before.
    book = CashBook()
    others = (("eth-5m", 7, 0),)
    book.poll_answered(book.poll_asked(0.0, others), 1000.0, 0.01, others)
    for i in range(1, 4):  # eth's fills: the balance moves by money our fills know nothing of, poll after poll
        before = others
        others = (("eth-5m", 7, i),)
        book.poll_answered(book.poll_asked(float(i), before), 1000.0 - 5 * i, i + 0.01, others)
        assert book.mismatches == 0 and book.warning is None
        assert book.cash_usd == pytest.approx(1000.0 - 5 * i)  # the exchange wins
    assert book.others_moved == 3
    polled_with = lambda balance, now: book.poll_answered(book.poll_asked(now, others), balance, now + 0.01, others)  # noqa: E731
    polled_with(985.0, 10.0)  # eth's last move was counted before this poll's base was asked: still in doubt once
    book.on_fill(fill("t1"), 11.0)  # ours: -6, the exchange says -5, eth quiet: a real disagreement, twice
    polled_with(980.0, 12.0)
    book.on_fill(fill("t2"), 13.0)
    polled_with(975.0, 14.0)
    assert book.mismatches == 2 and "our fills say $974.00, the exchange says $975.00" in book.warning


def test_a_series_alone_on_its_wallet_is_judged_as_before():
    book = CashBook()
    book.poll_answered(book.poll_asked(0.0, ()), 1000.0, 0.01, ())
    book.on_fill(fill("t1"), 1.0)
    book.poll_answered(book.poll_asked(2.0, ()), 995.0, 2.01, ())
    assert book.mismatches == 1 and book.others_moved == 0 and book.moves == 1


def test_the_balance_watcher_reads_the_other_series_counters_when_asking_and_when_answered():
    from polymm.trader.execution.balance import BalanceWatcher

    class Book:  # the execution core's cash methods over one CashBook
        def __init__(self) -> None:
            self.cash = CashBook()

        def cash_poll_asked(self, others=None):
            return self.cash.poll_asked(0.0, others)

        def cash_poll_answered(self, token, balance, others=None):
            self.cash.poll_answered(token, balance, 0.0, others)

        def cash_poll_failed(self):
            self.cash.poll_failed()

    class Gateway:
        def __init__(self) -> None:
            self.balances = [1000.0, 990.0, 980.0]

        def balance_allowance(self, asset_type):
            counter["n"] += 1  # another series fills while our poll is in flight
            return {"balance": str(int(self.balances.pop(0) * 1_000_000))}

    counter = {"n": 0}
    book = Book()
    watcher = BalanceWatcher(Gateway(), book=book, others=lambda: (("eth-5m", 1, counter["n"]),))
    for _ in range(3):
        watcher.check_once()
    assert book.cash.others_moved == 2 and book.cash.mismatches == 0 and book.cash.cash_usd == pytest.approx(980.0)
    broken = BalanceWatcher(Gateway(), book=Book(), others=lambda: 1 / 0)  # an unreadable record: in doubt
    for _ in range(3):
        broken.check_once()
    assert broken.book.cash.mismatches == 0 and broken.book.cash.others_moved == 2
