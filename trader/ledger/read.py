"""Reading a ledger file read-only (mmctl history, polymm-report): works while the trader runs or is down.

Every problem is a LedgerReadError with one line of words (no such file, not a ledger, a newer schema), never a
traceback. An older schema is read as is where the columns exist (reading never migrates: it must not write).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from . import schema
from .history import History, WindowInfo, build, fill_view


class LedgerReadError(RuntimeError):
    pass


def open_readonly(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.exists():
        raise LedgerReadError(f"no ledger at {path} (the trader writes it under its state directory once it has "
                              "started; give another file with --ledger)")
    try:
        try:
            conn = _connect(path, "mode=ro")
        except sqlite3.OperationalError:
            # A reader who may not write the directory (an operator in group polymm) cannot create the -shm
            # file SQLite's WAL mode reads through. With no -wal left (the trader stopped cleanly: all of it is
            # in the main file) nobody writes: read the file as immutable. With a -wal left over, that would
            # miss its records, so say what to do instead.
            wal = path.with_name(path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise LedgerReadError(f"{path}: cannot read the ledger as this user while its write-ahead log "
                                      f"{wal.name} is not checkpointed (trader stopped uncleanly?): start the "
                                      "trader, or run as root") from None
            conn = _connect(path, "immutable=1")
        version = schema.version(conn)
        if version == 0:
            conn.close()
            raise LedgerReadError(f"{path} is not a polymm ledger (no schema version)")
    except sqlite3.DatabaseError as exc:
        raise LedgerReadError(f"{path}: cannot read the ledger: {exc}") from None
    if version > schema.VERSION:
        conn.close()
        raise LedgerReadError(f"{path}: ledger schema {version} is newer than this polymm understands "
                              f"({schema.VERSION}); upgrade polymm")
    return conn


def _connect(path: Path, options: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{options}", uri=True, timeout=5.0)
    try:
        schema.version(conn)  # the first read is where a missing -shm shows
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def load_history(path: str | Path, by: str = "window", since: float | None = None, until: float | None = None,
                 mode: str | None = None, series: list[str] | tuple[str, ...] | None = None) -> History:
    """The history of one ledger file (see history.py for what each number means); `series`: only those."""
    conn = open_readonly(path)
    try:
        return _history(conn, by, since, until, mode, series)
    except sqlite3.DatabaseError as exc:
        raise LedgerReadError(f"{path}: cannot read the ledger: {exc}") from None
    finally:
        conn.close()


def series_column(conn: sqlite3.Connection) -> str:
    """How to read a window's series: the column (schema 3), or the default series for an older file (read as is:
    reading never migrates)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(windows)")}
    return "COALESCE(w.series, 'btc-15m')" if "series" in columns else "'btc-15m'"


def _history(conn: sqlite3.Connection, by: str, since: float | None, until: float | None,
             mode: str | None, series: list[str] | tuple[str, ...] | None = None) -> History:
    lo = since if since is not None else float("-inf")
    hi = until if until is not None else float("inf")
    mode_clause, mode_args = ("AND f.mode = ?", (mode,)) if mode else ("", ())
    # A fill whose window is unknown (cannot happen for fills we attributed; kept for safety) is placed by its
    # own match time.
    rows = conn.execute(
        "SELECT f.condition_id, COALESCE(w.window_start, f.match_ts), w.window_end, w.resolved_leg, f.trade_id,"
        " f.order_id, f.client_id, f.strategy, f.leg, f.side, f.price, f.size, f.fee, f.role, f.status, f.match_ts,"
        f" f.mode, {series_column(conn)} FROM fills f LEFT JOIN windows w ON w.condition_id = f.condition_id"
        f" WHERE COALESCE(w.window_start, f.match_ts) >= ? AND COALESCE(w.window_start, f.match_ts) < ? {mode_clause}",
        (lo, hi, *mode_args)).fetchall()
    windows: dict[str, WindowInfo] = {}
    fills = []
    modes = set()
    for (cond, start, end, resolved, trade_id, order_id, client_id, strategy, leg, side, price, size, fee, role,
         status, match_ts, fill_mode, window_series) in rows:
        if cond not in windows:
            windows[cond] = WindowInfo(cond, float(start), end, resolved, window_series)
        fills.append((cond, fill_view(trade_id, order_id, client_id, strategy, leg, side, price, size, fee, role,
                                      status, match_ts)))
        if fill_mode:
            modes.add(fill_mode)
    return build(windows.values(), fills, by=by, since=since, until=until, modes=modes, series=series)


def summary_counts(path: str | Path) -> dict:
    """Row counts per table (the report's footer, tests)."""
    conn = open_readonly(path)
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("runs", "events", "config_changes", "windows", "order_actions", "fills")}
    finally:
        conn.close()


def load_entries(path: str | Path, since: float | None = None, until: float | None = None,
                 mode: str | None = None, series: list[str] | tuple[str, ...] | None = None
                 ) -> list[tuple[float, float, bool]]:
    """(price, shares, won) of every BUY fill in a resolved window: did entries at a price win as often as the
    price says they should (a fair 0.70 wins 70% of the time)? Strategies buy only to enter, so BUY = entry."""
    conn = open_readonly(path)
    mode_clause, mode_args = ("AND f.mode = ?", (mode,)) if mode else ("", ())
    try:
        column = series_column(conn)
        series_clause = f"AND {column} IN ({', '.join('?' * len(series))})" if series else ""
        rows = conn.execute(
            "SELECT f.price, f.size, f.leg = w.resolved_leg FROM fills f JOIN windows w ON w.condition_id = f.condition_id"
            " WHERE f.side = 'BUY' AND f.status != 'FAILED' AND w.resolved_leg IS NOT NULL"
            f" AND w.window_start >= ? AND w.window_start < ? {mode_clause} {series_clause} ORDER BY f.match_ts",
            (since if since is not None else float("-inf"), until if until is not None else float("inf"),
             *mode_args, *(series or ()))).fetchall()
    except sqlite3.DatabaseError as exc:
        raise LedgerReadError(f"{path}: cannot read the ledger: {exc}") from None
    finally:
        conn.close()
    return [(float(p), float(s), bool(won)) for p, s, won in rows]
