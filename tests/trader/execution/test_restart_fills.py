"""No false alarm after a restart: fills an earlier run recorded (journal) are restored quietly by the start-up
reconciliation; only a fill nobody recorded is reported as missed by the user channel."""
from __future__ import annotations

import logging

import pytest

from polymm.trader.execution import reconcile
from polymm.trader.execution.fills import FillStore, MakerLeg, OrderInfo, TokenInfo, TradeReport
from polymm.trader.model import Leg, OrderType, Role, Side, Want
from polymm.trader.execution.order_journal import OrderJournal
from polymm.trader.execution.orders import OrderBook

COND, UP, DOWN = "0xcond", "111", "222"
TOKENS = {UP: TokenInfo(COND, Leg.UP, 0.07), DOWN: TokenInfo(COND, Leg.DOWN, 0.07)}


def setup():
    book = OrderBook()

    def info(order_id):
        o = book.by_exchange.get(order_id)
        return OrderInfo(o.client_id, o.strategy, o.leg, o.side) if o else None

    return book, FillStore(info, TOKENS.get, "our-key", "0xfunder")


def token_leg(token):
    t = TOKENS.get(token)
    return (t.condition_id, t.leg) if t else None


def filled_order(book, order_id, now=1.0):
    o = book.new(Want("s1", Leg.UP, Side.BUY, 0.4, 10, Role.ENTRY, OrderType.GTC, True, "r"), UP, COND, now)
    book.signed(o.client_id, order_id)
    book.on_submit_accepted(o.client_id, "live", 0, now)
    return o


def trade(trade_id: str, order_id: str) -> TradeReport:
    return TradeReport(trade_id, "CONFIRMED", COND, DOWN, "BUY", 10, 0.6, 0, 5.0, "0xtaker", "MAKER", "x", "0xother",
                       (MakerLeg(order_id, "our-key", "0xfunder", UP, 0.4, 10, None),))


def test_a_fill_recorded_before_the_restart_is_restored_not_missed():
    book, fills = setup()
    filled_order(book, "0xa")
    filled_order(book, "0xb")
    res = reconcile.apply(book, fills, [], [trade("t-known", "0xa"), trade("t-new", "0xb")], {}, token_leg, {COND},
                          2.0, recorded_fills={"t-known"})
    assert res.restored == ["t-known"]
    missed = [d for d in res.differences if "fill missed by the user channel" in d]
    assert len(missed) == 1 and "trade=t-new" in missed[0]
    assert len(fills) == 2  # both are in the fill store all the same


def test_the_journal_keeps_the_trade_ids_of_recorded_fills_across_a_restart(tmp_path):
    path = tmp_path / "orders.jsonl"
    journal = OrderJournal(path)
    journal.load(1000.0)
    journal.fill("t-1", 1000.0)
    journal.fill("t-2", 1001.0)
    journal.close()
    again = OrderJournal(path)
    assert again.load(1002.0).fills == {"t-1", "t-2"}
    again.close()
    # Old entries go with the rest of the journal (keep_s).
    assert OrderJournal(path, keep_s=10).load(1000.0 + 3600).fills == set()


# -- the execution core across a restart, on the sim --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_restarted_core_finds_its_recorded_fills_quietly_and_warns_only_of_unrecorded_ones(tmp_path, caplog):
    from polymm.sim.testing import run_sim
    from tests.support.execution import book_top, live_market, make_core, marketable, wait_for, want

    state = tmp_path / "state"
    with run_sim(tmp_path / "sim", seed=5, window_s=900) as sim:
        m = live_market(sim)
        core, pk = make_core(sim, state)
        core.start(m)
        try:
            _, ask = book_top(sim, m.up_token)
            core.place(want(Leg.UP, Side.BUY, marketable(ask), 5, post_only=False, order_type=OrderType.FAK))
            wait_for(lambda: len(core.fills()) == 1, what="one fill seen on the user channel")
        finally:
            core.stop()
        journal = next(state.glob("orders-*.jsonl"))
        assert '"kind":"fill"' in journal.read_text()

        def restart() -> list[logging.LogRecord]:
            caplog.clear()
            again, _ = make_core(sim, state, pk=pk)
            with caplog.at_level(logging.INFO, logger="polymm.trader"):
                again.start(live_market(sim))
                try:
                    assert again.positions()[("s1", Leg.UP)].shares == 5  # the position is back either way
                finally:
                    again.stop()
            return [r for r in caplog.records if "reconcile (start)" in r.getMessage()]

        records = restart()
        assert not [r for r in records if "missed by the user channel" in r.getMessage()], \
            [r.getMessage() for r in records]
        assert any(r.levelno == logging.INFO and "1 fill(s) recorded before the restart" in r.getMessage()
                   for r in records)
        # A fill nobody recorded (here: the journal lost its fill lines) is still a warning.
        journal.write_text("".join(line + "\n" for line in journal.read_text().splitlines() if '"kind":"fill"' not in line))
        records = restart()
        assert [r.levelno for r in records if "fill missed by the user channel" in r.getMessage()] == [logging.WARNING]
