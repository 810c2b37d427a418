"""The ledger's SQLite schema and its migrations (the trader owns the schema; mmctl and the report only read).

`PRAGMA user_version` holds the schema version. Each migration is one script, applied in order inside one
transaction, so a file of any older version opens as the current one and a crash mid-migration leaves the old
version whole. A file newer than this code is refused (an older trader must not write rows it does not understand).

Versions:
1. runs (start/stop, mode), events, config changes, windows (identity, resolution), order actions, fills.
2. where each fill was first learnt (`source`: user channel or a reconciliation after a gap) and one row per fill
   status transition (MATCHED -> MINED -> CONFIRMED, FAILED reversals).
3. the market series (polymm/series.py: btc-15m, eth-5m, ...) of each window and each run: one ledger serves every
   series of a host (each series' trader writes its own rows; SQLite serialises the writers). Rows of older files
   are the default series', the only one polymm traded before.

Several traders open one file: a migration runs under an exclusive lock on a side file (`migrate_locked`), so two
traders upgraded together never both apply one.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

MIGRATIONS: tuple[str, ...] = (
    # ---- 1 ---------------------------------------------------------------------------------------------------
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,          -- "<unix start>-<pid>": unique per trader start
        mode TEXT NOT NULL,               -- live | paper | backtest
        started_at REAL NOT NULL,
        stopped_at REAL,
        stop_reason TEXT,
        pid INTEGER,
        detail TEXT                       -- JSON: version, wallet address (never a secret)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id TEXT, ts REAL NOT NULL, kind TEXT NOT NULL, detail TEXT
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE TABLE config_changes (
        id INTEGER PRIMARY KEY,
        run_id TEXT, ts REAL NOT NULL, key TEXT NOT NULL, old TEXT, new TEXT, who TEXT
    );
    CREATE TABLE windows (
        condition_id TEXT PRIMARY KEY,
        up_token TEXT, down_token TEXT,
        window_start INTEGER, window_end INTEGER,
        tick_size REAL, min_order_size REAL, fee_rate REAL, neg_risk INTEGER,
        mode TEXT, first_seen REAL,
        resolved_leg TEXT,                -- up | down once the market resolved
        resolved_at REAL
    );
    CREATE INDEX windows_start ON windows(window_start);
    CREATE TABLE order_actions (
        id INTEGER PRIMARY KEY,
        run_id TEXT, mode TEXT, ts REAL NOT NULL,
        action TEXT NOT NULL,             -- submit | live | filled | cancel | canceled | rejected | refused | expired ...
        client_id TEXT, order_id TEXT, condition_id TEXT,
        strategy TEXT, leg TEXT, side TEXT, price REAL, size REAL,
        order_type TEXT, post_only INTEGER, role TEXT, reason TEXT
    );
    CREATE INDEX order_actions_order ON order_actions(order_id);
    CREATE INDEX order_actions_ts ON order_actions(ts);
    CREATE TABLE fills (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL,
        run_id TEXT, mode TEXT,
        condition_id TEXT, client_id TEXT, strategy TEXT, leg TEXT, side TEXT,
        price REAL NOT NULL, size REAL NOT NULL, fee REAL NOT NULL,
        role TEXT,                        -- maker | taker
        status TEXT NOT NULL, status_rank INTEGER NOT NULL,
        match_ts REAL NOT NULL, recorded_at REAL NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (trade_id, order_id)
    );
    CREATE INDEX fills_condition ON fills(condition_id);
    """,
    # ---- 2 ---------------------------------------------------------------------------------------------------
    """
    ALTER TABLE fills ADD COLUMN source TEXT NOT NULL DEFAULT 'stream';  -- stream | reconcile | backtest
    CREATE TABLE fill_status (
        trade_id TEXT NOT NULL, order_id TEXT NOT NULL,
        ts REAL NOT NULL, status TEXT NOT NULL, previous TEXT,
        UNIQUE (trade_id, order_id, status)
    );
    INSERT INTO fill_status (trade_id, order_id, ts, status, previous)
        SELECT trade_id, order_id, updated_at, status, NULL FROM fills;
    """,
    # ---- 3 ---------------------------------------------------------------------------------------------------
    """
    ALTER TABLE windows ADD COLUMN series TEXT NOT NULL DEFAULT 'btc-15m';
    ALTER TABLE runs ADD COLUMN series TEXT NOT NULL DEFAULT 'btc-15m';
    CREATE INDEX windows_series ON windows(series, window_start);
    """,
)

VERSION = len(MIGRATIONS)


class LedgerVersionError(RuntimeError):
    """The file was written by a newer polymm: refuse rather than write rows it cannot describe."""


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate_locked(conn: sqlite3.Connection, path: str | Path, upto: int = VERSION) -> int:
    """migrate() under an exclusive flock on `<path>.migrate` (the series' traders of a host share one file)."""
    lock_path = Path(str(path) + ".migrate")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return migrate(conn, upto)
    finally:
        os.close(fd)


def migrate(conn: sqlite3.Connection, upto: int = VERSION) -> int:
    """Bring the file to schema `upto` (default: current). Returns the version it had before."""
    before = version(conn)
    if before > VERSION:
        raise LedgerVersionError(f"ledger schema version {before} is newer than this polymm understands ({VERSION}); "
                                 "upgrade polymm or point it at another file")
    for number in range(before + 1, upto + 1):
        # executescript() commits first and runs outside our transaction: wrap the script ourselves so a
        # migration applies wholly or not at all.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.rollback()
            raise
    return before
