"""One ledger for every series of a host (schema 3): each series' trader writes its own rows into one file at the
same time; history, entries and the report group and filter by series; an older file reads as the default series."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from tests.support.ledger import OrderLike, fill, market, older_ledger
from polymm.trader.ledger import LedgerWriter, load_entries, load_history, schema
from polymm.trader.ledger.read import LedgerReadError
from polymm.trader.model import Leg, Side

T = 1_800_000_000


def trade_windows(w: LedgerWriter, n: int, start: int, entry: float, won: bool, tag: str) -> None:
    for i in range(n):
        m = market(start + i * 60, n=hash(tag) % 1000)
        w.window(m, ts=m.window_start)
        order = OrderLike(f"{tag}c{i}", f"{tag}o{i}", m.condition_id, price=entry)
        w.order_action("submit", order, "entry", ts=m.window_start + 1)
        w.fill(fill(f"{tag}t{i}", Leg.UP, Side.BUY, entry, 10, m.window_start + 2, order=f"{tag}o{i}"), m.condition_id)
        w.resolution(m.condition_id, Leg.UP if won else Leg.DOWN, ts=m.window_end + 5)


def test_two_series_write_one_file_at_once_and_history_keeps_them_apart(tmp_path):
    path = tmp_path / "ledger.sqlite"
    writers = {s: LedgerWriter(path, "live", series=s) for s in ("btc-15m", "eth-5m")}
    threads = [threading.Thread(target=lambda s=s, w=w: (w.start({}), trade_windows(
        w, 40, T, 0.60 if s == "btc-15m" else 0.70, won=s == "btc-15m", tag=s))) for s, w in writers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers.values():
        assert w.flush() and w.error is None
        w.close()
    by = load_history(path, by="series")
    assert [r.label for r in by.rows] == ["btc-15m", "eth-5m"]
    btc, eth = by.rows
    assert (btc.windows, eth.windows) == (40, 40)
    assert btc.net == pytest.approx(40 * 4.0) and eth.net == pytest.approx(-40 * 7.0)
    only_eth = load_history(path, series=["eth-5m"])
    assert only_eth.totals.windows == 40 and {r.series for r in only_eth.rows} == {"eth-5m"}
    assert len(load_entries(path, series=["btc-15m"])) == 40 and all(won for _, _, won in load_entries(path, series=["btc-15m"]))
    runs = sqlite3.connect(path).execute("SELECT series FROM runs ORDER BY series").fetchall()
    assert runs == [("btc-15m",), ("eth-5m",)]


def test_an_older_ledger_migrates_and_its_rows_are_the_default_series(tmp_path):
    path = tmp_path / "ledger.sqlite"
    older_ledger(path, 2, market(T))
    # read as it is (reading never migrates): the default series
    assert [r.label for r in load_history(path, by="series").rows] == ["btc-15m"]
    w = LedgerWriter(path, "live", series="eth-5m")  # a series' trader opens it: migrated to schema 3
    w.start({})
    assert w.flush()
    w.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (schema.VERSION,)
    assert sqlite3.connect(path).execute("SELECT series FROM windows").fetchall() == [("btc-15m",)]


def test_traders_upgraded_together_migrate_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, upto=2)
    conn.close()
    errors = []

    def open_one():
        try:
            from polymm.trader.ledger.writer import connect

            connect(path).close()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (schema.VERSION,)


def test_a_bad_series_filter_is_not_a_ledger_error(tmp_path):
    path = tmp_path / "missing.sqlite"
    with pytest.raises(LedgerReadError, match="no ledger at"):
        load_history(path, series=["eth-5m"])
