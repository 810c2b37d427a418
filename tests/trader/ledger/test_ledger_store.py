"""The ledger file: schema migrations, what the writer records, idempotent fills, and an unwritable file."""
from __future__ import annotations

import sqlite3

import pytest

from tests.support.ledger import OrderLike, fill, market, older_ledger
from polymm.trader.ledger import LedgerWriter, load_history, schema
from polymm.trader.ledger.read import LedgerReadError, open_readonly, summary_counts
from polymm.trader.model import Leg, Side


def write(path, records, mode="live"):
    w = LedgerWriter(path, mode)
    w.start({"version": "test"})
    records(w)
    assert w.flush()
    w.close()
    return w


def rows(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_first_version_file_migrates_with_its_rows_kept(tmp_path):
    path = tmp_path / "ledger.sqlite"
    older_ledger(path, 1, market(1_800_000_000))
    write(path, lambda w: w.event("note", "after the upgrade"))
    assert rows(path, "PRAGMA user_version") == [(schema.VERSION,)]
    assert rows(path, "SELECT trade_id, source FROM fills") == [("t1", "stream")]
    assert rows(path, "SELECT trade_id, status FROM fill_status") == [("t1", "CONFIRMED")]
    history = load_history(path)
    assert history.totals.net == pytest.approx(4.0)  # 10 shares bought at 0.60 paid 1 each


def test_a_newer_schema_is_refused_in_words(tmp_path):
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerReadError, match="newer than this polymm"):
        open_readonly(path)
    w = LedgerWriter(path)
    w.start()
    w.flush()
    assert "newer than this polymm" in w.error
    w.close()


def test_missing_or_foreign_files_are_one_line_errors(tmp_path):
    with pytest.raises(LedgerReadError, match="no ledger at"):
        load_history(tmp_path / "nope.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database at all, just text " * 100)
    with pytest.raises(LedgerReadError, match="cannot read the ledger|not a polymm ledger"):
        load_history(junk)


def test_every_kind_of_record_lands_in_its_table(tmp_path):
    path = tmp_path / "ledger.sqlite"
    m = market(1_800_000_000)

    def records(w):
        w.window(m)
        o = OrderLike("c1", "o1", m.condition_id)
        w.order_action("submit", o, "entry bid>=0.60")
        w.order_action("filled", o, "user channel update")
        w.fill(fill("t1", Leg.UP, Side.BUY, 0.6, 10, m.window_start + 3, order="o1"), m.condition_id)
        w.config_change("s1.entry_threshold", 0.6, 0.62, "mmctl set")
        w.resolution(m.condition_id, Leg.UP)
        w.event("reconcile-gap", "1 fill learnt from the exchange")

    write(path, records)
    counts = summary_counts(path)
    assert counts == {"runs": 1, "events": 1, "config_changes": 1, "windows": 1, "order_actions": 2, "fills": 1}
    assert rows(path, "SELECT mode, stopped_at IS NOT NULL, stop_reason FROM runs") == [("live", 1, "stopped")]
    assert rows(path, "SELECT key, old, new, who FROM config_changes") == [("s1.entry_threshold", "0.6", "0.62", "mmctl set")]
    assert rows(path, "SELECT action, strategy, leg, side, price, size, order_type, post_only, role, reason"
                      " FROM order_actions ORDER BY id")[0] == ("submit", "s1", "up", "BUY", 0.6, 10.0, "GTC", 1,
                                                                "entry", "entry bid>=0.60")
    assert rows(path, "SELECT resolved_leg FROM windows") == [("up",)]


def test_fill_statuses_only_move_forward_and_repeats_add_nothing(tmp_path):
    path = tmp_path / "ledger.sqlite"
    m = market(1_800_000_000)
    f = fill("t1", Leg.UP, Side.BUY, 0.6, 10, m.window_start + 3)

    def records(w):
        w.window(m)
        w.fill(f, m.condition_id)
        w.fill(f.__class__(**{**f.__dict__, "status": "MINED"}), m.condition_id, previous="MATCHED")
        w.fill(f.__class__(**{**f.__dict__, "status": "CONFIRMED"}), m.condition_id, previous="MINED")
        # a restart re-learns the same fill from REST, and a stale MATCHED arrives late: nothing new
        w.fill(f.__class__(**{**f.__dict__, "status": "CONFIRMED"}), m.condition_id, source="reconcile")
        w.fill(f, m.condition_id, previous=None)

    write(path, records)
    assert rows(path, "SELECT status, source FROM fills") == [("CONFIRMED", "stream")]
    assert [s for (s,) in rows(path, "SELECT status FROM fill_status ORDER BY rowid")] == ["MATCHED", "MINED", "CONFIRMED"]


def test_a_failed_fill_is_kept_and_counts_zero(tmp_path):
    path = tmp_path / "ledger.sqlite"
    m = market(1_800_000_000)
    f = fill("t1", Leg.UP, Side.BUY, 0.6, 10, m.window_start + 3)

    def records(w):
        w.window(m)
        w.fill(f, m.condition_id)
        w.fill(f.__class__(**{**f.__dict__, "status": "FAILED"}), m.condition_id, previous="MATCHED")
        w.resolution(m.condition_id, Leg.UP)

    write(path, records)
    assert rows(path, "SELECT status FROM fills") == [("FAILED",)]
    assert load_history(path).totals.trades == 0


def read_only(path):
    """As the trader would see a file it may not write (root ignores file modes, so ask SQLite itself)."""
    from polymm.trader.ledger.writer import connect
    conn = connect(path)
    conn.execute("PRAGMA query_only = ON")
    return conn


def test_an_unwritable_ledger_is_an_error_in_words_and_catches_up_when_writable(tmp_path):
    path = tmp_path / "ledger.sqlite"
    m = market(1_800_000_000)
    state = {"read_only": True}

    def connect_maybe_read_only(p):
        from polymm.trader.ledger.writer import connect
        return read_only(p) if state["read_only"] else connect(p)

    w = LedgerWriter(path, connect=connect_maybe_read_only, retry_every_s=0.05)
    w.start()
    w.window(m)
    w.fill(fill("t1", Leg.UP, Side.BUY, 0.6, 10, m.window_start + 3), m.condition_id)
    w.flush()
    assert "cannot be written" in w.error and "readonly" in w.error
    assert rows(path, "SELECT COUNT(*) FROM fills") == [(0,)]
    state["read_only"] = False
    w.flush()
    assert w.error is None
    w.close()
    assert rows(path, "SELECT trade_id FROM fills") == [("t1",)]


def test_a_mode_outside_live_paper_backtest_is_refused():
    with pytest.raises(ValueError, match="expected one of live, paper, backtest"):
        LedgerWriter("/nonexistent", "demo")


def test_orders_the_journal_holds_but_the_ledger_lost_are_recovered_once(tmp_path):
    from polymm.trader.execution.order_journal import JournalOrder

    path = tmp_path / "ledger.sqlite"
    m = market(1_800_000_000)
    kept = OrderLike("c1", "o1", m.condition_id)
    lost = JournalOrder("o2", "c2", "s1", "up", "BUY", 0.6, 10, "entry", "GTC", True, "entry bid>=0.60", "up-token",
                        m.condition_id, m.window_start + 2)
    write(path, lambda w: w.order_action("submit", kept, "entry bid>=0.60"))
    again = JournalOrder("o1", "c1", "s1", "up", "BUY", 0.6, 10, "entry", "GTC", True, "entry", "up-token",
                         m.condition_id, m.window_start + 1)
    for _ in range(2):  # two restarts: recovered once
        write(path, lambda w: (w.order_recovered(again), w.order_recovered(lost)))
    assert rows(path, "SELECT order_id, action, reason FROM order_actions ORDER BY id") == [
        ("o1", "submit", "entry bid>=0.60"),
        ("o2", "submit", "entry bid>=0.60 (recovered from the order journal after a restart)")]


def test_the_writer_writes_a_batch_after_the_decision_in_progress(tmp_path):
    """trader/priority.py: the ledger's writer gives way to the trader's decision loop; what the decision queued is
    written once it is done, nothing lost."""
    import threading

    from polymm.trader.priority import DecisionGate

    path = tmp_path / "ledger.sqlite"
    w = LedgerWriter(path)
    w.start()
    assert w.flush()
    gate = w.gate = DecisionGate(max_wait_s=30.0)
    gate.enter()  # the loop decides (this thread stands in for it)
    w.event("note", "queued by the decision")
    done = threading.Event()
    threading.Thread(target=lambda: (w.flush(), done.set()), daemon=True).start()
    assert not done.wait(0.1)  # not written while the decision runs
    assert rows(path, "SELECT COUNT(*) FROM events WHERE detail = 'queued by the decision'") == [(0,)]
    gate.leave()
    assert done.wait(5)
    assert rows(path, "SELECT COUNT(*) FROM events WHERE detail = 'queued by the decision'") == [(1,)]
    assert gate.waits == 1
    w.close()
