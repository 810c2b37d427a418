"""The execution core on the sim, writing its ledger: the ledger equals the sim's own trades (same ids, P&L to the
cent after resolution), and an unwritable ledger refuses entries while exits still go out."""
from __future__ import annotations

import sqlite3

import pytest

from tests.support.execution import book_top, live_market, make_core, marketable, wait_for, want
from polymm.sim.testing import run_sim
from polymm.trader.ledger import LedgerWriter, default_path, load_history
from polymm.trader.ledger.writer import connect
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def sim(tmp_path_factory):
    # one sim per test: the first resolves its market
    with run_sim(tmp_path_factory.mktemp("sim"), seed=11, window_s=900,
                 extra_args=("--mined-after-s", "0.2", "--confirmed-after-s", "0.4")) as running:
        yield running


def started_core(sim, state_dir, ledger):
    sim.admin.fault("clear")
    core, _ = make_core(sim, state_dir, ledger=ledger)
    core.start(live_market(sim))
    return core


def buy_now(sim, core, leg: Leg, size: float, role: Role = Role.ENTRY) -> str:
    m = live_market(sim)
    _, ask = book_top(sim, m.token(leg))
    return core.place(want(leg, Side.BUY, marketable(ask), size, post_only=False, order_type=OrderType.FAK, role=role))


def sell_now(sim, core, leg: Leg, size: float, role: Role) -> str:
    m = live_market(sim)
    bid, _ = book_top(sim, m.token(leg))
    return core.place(want(leg, Side.SELL, max(0.01, round(bid - 0.05, 2)), size, post_only=False,
                           order_type=OrderType.FAK, role=role))


def ledger_rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_the_ledger_equals_the_sims_trades_to_the_cent_after_resolution(sim, tmp_path):
    state = tmp_path / "state"
    ledger = LedgerWriter(default_path(state), "live")
    ledger.start()
    core = started_core(sim, state, ledger)
    address = core.gateway.funder
    balance_before = float(sim.admin.balance(address)["pusd"])
    try:
        for leg, size in ((Leg.UP, 6), (Leg.DOWN, 5), (Leg.UP, 5)):
            buy_now(sim, core, leg, size)
        wait_for(lambda: len(core.fills()) >= 3 and all(f.status == "CONFIRMED" for f in core.fills()),
                 timeout_s=20, what="three confirmed taker fills")
        sell_now(sim, core, Leg.UP, 5, Role.TAKE_PROFIT)
        wait_for(lambda: len(core.fills()) >= 4 and all(f.status == "CONFIRMED" for f in core.fills()),
                 timeout_s=20, what="the sell confirmed")
        m = live_market(sim)
        answer = sim.admin.resolve_now(condition_id=m.condition_id, winner="Up")
        core.resolve_market(m.condition_id, Leg.UP)
        assert answer["winner"] == "Up"
        realised = core.pnl()["total"]["realised"]
    finally:
        core.stop()
        ledger.close()
    theirs = sim.admin.trades(address)
    ours = ledger_rows(default_path(state), "SELECT trade_id, order_id, status FROM fills")
    sim_ids = {t["id"] for t in theirs}
    assert {trade_id for trade_id, _, _ in ours} == sim_ids and len(ours) == len(theirs) >= 4
    assert all(status == "CONFIRMED" for _, _, status in ours)
    history = load_history(default_path(state))
    wallet_change = float(sim.admin.balance(address)["pusd"]) - balance_before
    assert history.totals.net == pytest.approx(realised, abs=0.005)
    assert history.totals.net == pytest.approx(wallet_change, abs=0.005)
    assert history.totals.trades == len(theirs)
    actions = {a for (a,) in ledger_rows(default_path(state), "SELECT DISTINCT action FROM order_actions")}
    assert {"submit", "filled"} <= actions
    assert ledger_rows(default_path(state), "SELECT resolved_leg FROM windows WHERE condition_id = "
                       f"'{m.condition_id}'") == [("up",)]
    statuses = ledger_rows(default_path(state), "SELECT DISTINCT status FROM fill_status")
    assert {"MATCHED", "CONFIRMED"} <= {s for (s,) in statuses}


def test_a_read_only_ledger_warns_refuses_entries_and_lets_exits_out(sim, tmp_path):
    state = tmp_path / "state"

    def read_only(path):
        conn = connect(path)
        conn.execute("PRAGMA query_only = ON")  # as a read-only file would be (root ignores file modes)
        return conn

    writable = LedgerWriter(default_path(state), "live")
    writable.start()
    broken = LedgerWriter(default_path(state), "live", connect=read_only, retry_every_s=3600)
    core = started_core(sim, state, writable)
    try:
        buy_now(sim, core, Leg.UP, 5)
        wait_for(lambda: core.fills(), timeout_s=20, what="an entry fill")
        writable.flush()
        before = ledger_rows(default_path(state), "SELECT COUNT(*) FROM order_actions")[0][0]
        broken.start()
        core.ledger = broken
        broken.flush()
        wait_for(lambda: any("ledger" in w and "cannot be written" in w for w in core.state().warnings),
                 timeout_s=5, what="the ledger warning in status")
        entry = buy_now(sim, core, Leg.UP, 5)
        refused = next(o for o in core.orders(working_only=False) if o.client_id == entry)
        assert refused.state is OrderState.REJECTED
        exit_id = sell_now(sim, core, Leg.UP, 5, Role.STOP_LOSS)
        wait_for(lambda: any(o.client_id == exit_id and o.state is OrderState.FILLED
                             for o in core.orders(working_only=False)), timeout_s=20, what="the stop filled")
        broken.flush()
        assert broken.error and "cannot be written" in broken.error
        assert ledger_rows(default_path(state), "SELECT COUNT(*) FROM order_actions")[0][0] == before
    finally:
        core.stop()
        broken.close(timeout_s=1)
        writable.close()
