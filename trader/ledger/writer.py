"""The ledger's writer: callers queue records (never blocking, never raising), one thread writes them.

Why a thread: the decision loop and the execution core's workers must never wait for a disk (an fsync, a full
disk, a locked file). Every record method only builds a tuple and puts it on a queue; `polymm-ledger` writes
what is queued in one transaction per batch.

When the file cannot be written (read-only, disk full, I/O error) the writer does not crash and does not drop
silently: `error` says why in words (mmctl status shows it, and the execution core refuses new entries while it
holds, so we never open positions without a record; exits and stops continue). What arrives meanwhile is kept in a
bounded backlog and written when the file works again (retried every `retry_every_s`); if the backlog overflows,
the oldest records are dropped and the count is recorded once the file recovers. Fills lost that way, or in a
kill -9 before the queue was written, come back from the exchange: the next reconciliation re-learns them and
records them with source `reconcile` (fills are keyed by trade and order id, so nothing is counted twice).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from ..execution.fills import STATUS_RANK  # the one order of fill statuses
from ..priority import DecisionGate
from . import schema

log = logging.getLogger("polymm.trader.ledger")

LEDGER_FILE = "ledger.sqlite"
DEFAULT_SERIES = "btc-15m"  # polymm/series.py's default: what every ledger row was before series
MODES = ("live", "paper", "backtest")
BATCH = 500

_SQL = {
    "run_start": "INSERT OR IGNORE INTO runs (run_id, mode, started_at, pid, detail, series) VALUES (?, ?, ?, ?, ?, ?)",
    "run_stop": "UPDATE runs SET stopped_at = ?, stop_reason = ? WHERE run_id = ?",
    "event": "INSERT INTO events (run_id, ts, kind, detail) VALUES (?, ?, ?, ?)",
    "config": "INSERT INTO config_changes (run_id, ts, key, old, new, who) VALUES (?, ?, ?, ?, ?, ?)",
    "window": (
        "INSERT INTO windows (condition_id, up_token, down_token, window_start, window_end, tick_size, min_order_size,"
        " fee_rate, neg_risk, mode, first_seen, series) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (condition_id) DO UPDATE SET up_token = excluded.up_token, down_token = excluded.down_token,"
        " window_start = excluded.window_start, window_end = excluded.window_end, tick_size = excluded.tick_size,"
        " min_order_size = excluded.min_order_size, fee_rate = excluded.fee_rate, neg_risk = excluded.neg_risk,"
        " mode = COALESCE(windows.mode, excluded.mode), series = excluded.series WHERE windows.window_start IS NULL"),
    "resolution": (
        "INSERT INTO windows (condition_id, resolved_leg, resolved_at, series) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (condition_id) DO UPDATE SET resolved_leg = excluded.resolved_leg,"
        " resolved_at = excluded.resolved_at WHERE windows.resolved_leg IS NULL"),
    # An order the order journal holds but the ledger lacks (a kill -9 lost its queued `submit`).
    "order_recovered": (
        "INSERT INTO order_actions (run_id, mode, ts, action, client_id, order_id, condition_id, strategy, leg, side,"
        " price, size, order_type, post_only, role, reason) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
        " WHERE NOT EXISTS (SELECT 1 FROM order_actions WHERE order_id = ?)"),
    "order": (
        "INSERT INTO order_actions (run_id, mode, ts, action, client_id, order_id, condition_id, strategy, leg, side,"
        " price, size, order_type, post_only, role, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
    # A fill is keyed by (trade, our order): a report seen again (restart, reconcile, duplicate) only moves its
    # status forward, and an order attributed late (strategy `external` -> s1) gets its strategy.
    "fill": (
        "INSERT INTO fills (trade_id, order_id, run_id, mode, condition_id, client_id, strategy, leg, side, price, size,"
        " fee, role, status, status_rank, match_ts, recorded_at, updated_at, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (trade_id, order_id) DO UPDATE SET"
        " status = CASE WHEN excluded.status_rank > fills.status_rank THEN excluded.status ELSE fills.status END,"
        " status_rank = MAX(fills.status_rank, excluded.status_rank),"
        " updated_at = CASE WHEN excluded.status_rank > fills.status_rank THEN excluded.updated_at ELSE fills.updated_at END,"
        " strategy = CASE WHEN fills.strategy = 'external' THEN excluded.strategy ELSE fills.strategy END,"
        " client_id = COALESCE(fills.client_id, excluded.client_id)"),
    "fill_status": "INSERT OR IGNORE INTO fill_status (trade_id, order_id, ts, status, previous) VALUES (?, ?, ?, ?, ?)",
}


def _text(value: Any) -> Any:
    """Enums (Leg, Side, OrderType, Role) as their wire value; everything else as is."""
    return getattr(value, "value", value)


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


def default_path(state_dir: str | Path) -> Path:
    """Where the trader keeps its ledger, and where `mmctl history` looks (both find the state dir the same way)."""
    return Path(state_dir) / LEDGER_FILE


def find_path(state_dir: str | Path, fallbacks: tuple[str | Path, ...] = ()) -> Path:
    """The ledger `mmctl history` reads: the one under `state_dir` (found as the trader finds it), else the first
    fallback that has one (an operator's shell has no $STATE_DIRECTORY; the service's is /var/lib/polymm)."""
    first = default_path(state_dir)
    if first.exists():
        return first
    for directory in fallbacks:
        candidate = default_path(directory)
        if candidate.exists():
            return candidate
    return first


def connect(path: str | Path) -> sqlite3.Connection:
    """A writable connection in WAL mode with the schema migrated to the current version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Group-readable so an operator in the service's group can run `mmctl history`; no secrets inside.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o640))
        os.chmod(path, 0o640)  # the unit's UMask=0077 would make it owner-only; SQLite gives -wal/-shm the same
    # Several series' traders write one file: a writer waits for another's transaction (a batch, milliseconds)
    # rather than call the ledger broken; only a lock held this long is an error.
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives a process kill (the WAL is in the page cache), only an OS crash may
        # lose the last transactions - which the next reconciliation gives back from the exchange.
        conn.execute("PRAGMA synchronous = NORMAL")
        schema.migrate_locked(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


class LedgerWriter:
    """One per trader process (or backtest run). `start()` once, record methods from any thread, `close()` at exit.

    `connect` opens the file (tests pass one that makes it read-only); `clock` stamps records."""

    def __init__(self, path: str | Path, mode: str = "live", *, clock: Callable[[], float] = time.time,
                 retry_every_s: float = 5.0, max_backlog: int = 100_000,
                 connect: Callable[[Path], sqlite3.Connection] = connect, series: str = DEFAULT_SERIES) -> None:
        if mode not in MODES:
            raise ValueError(f"ledger mode {mode!r}: expected one of {', '.join(MODES)}")
        self.path = Path(path)
        self.mode = mode
        self.series = series  # every window and the run are this series' (one writer per series' trader)
        self.clock = clock
        self.retry_every_s = retry_every_s
        self._connect = connect
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._backlog: deque[tuple[str, tuple]] = deque()
        self._max_backlog = max_backlog
        self._dropped = 0
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._last_attempt = 0.0
        self.run_id = f"{int(clock())}-{os.getpid()}" + ("" if series == DEFAULT_SERIES else f"-{series}")
        self.written = 0  # records written since start (tests, benchmarks)
        # The trader's decision loop (trader/priority.py): a batch is written after a decision in progress, not
        # during it (most records come from the decision's own orders). NONE: write at once (backtest, tools).
        self.gate = DecisionGate.NONE

    # ---- life cycle -----------------------------------------------------------------------------------------
    def start(self, detail: dict | None = None) -> None:
        """Start the writer thread and record the run's start. Never raises for file problems (see `error`)."""
        if self._thread is not None:
            return
        self._put("run_start", (self.run_id, self.mode, self.clock(), os.getpid(),
                                json.dumps(detail or {}, sort_keys=True), self.series))
        self._thread = threading.Thread(target=self._run, name="polymm-ledger", daemon=True)
        self._thread.start()

    def close(self, reason: str = "stopped", timeout_s: float = 5.0) -> None:
        """Record the stop, write what is queued (bounded wait) and stop the thread."""
        if self._thread is None:
            return
        self._put("run_stop", (self.clock(), reason, self.run_id))
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("ledger writer still busy after %.0f s at exit; %d record(s) may be unwritten", timeout_s,
                        self._queue.qsize() + len(self._backlog))
        self._thread = None

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued before this call was written (or failed). True when done in time."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout_s)

    @property
    def waiting(self) -> int:
        """Records kept in memory until the file can be written."""
        return len(self._backlog)

    @property
    def error(self) -> str | None:
        """Why the ledger cannot be written, in words; None while it can."""
        return self._error

    # ---- records (any thread; never block, never raise for the file: a tuple onto a queue) -----------------
    def event(self, kind: str, detail: str = "", ts: float | None = None) -> None:
        self._put("event", (self.run_id, self._ts(ts), kind, detail))

    def config_change(self, key: str, old: Any, new: Any, who: str, ts: float | None = None) -> None:
        self._put("config", (self.run_id, self._ts(ts), key, _show(old), _show(new), who))

    def window(self, market: Any, ts: float | None = None) -> None:
        """A market (window) we trade: `market` is a MarketIdentity."""
        self._put("window", (market.condition_id, market.up_token, market.down_token, int(market.window_start),
                             int(market.window_end), market.tick_size, market.min_order_size, market.fee_rate,
                             int(bool(market.neg_risk)), self.mode, self._ts(ts), self.series))

    def resolution(self, condition_id: str, winning_leg: Any, ts: float | None = None) -> None:
        self._put("resolution", (condition_id, _text(winning_leg), self._ts(ts), self.series))

    def order_action(self, action: str, order: Any, reason: str, condition_id: str | None = None,
                     ts: float | None = None) -> None:
        """One order action (submit, live, filled, cancel, canceled, rejected, expired...). `order` is anything
        with the order's fields (the execution core's Order, an OrderView, the backtest's order)."""
        self._put("order", (
            self.run_id, self.mode, self._ts(ts), action, getattr(order, "client_id", None),
            getattr(order, "order_id", None), condition_id or getattr(order, "condition_id", None), order.strategy,
            _text(order.leg), _text(order.side), float(order.price), float(order.size), _text(order.order_type),
            int(bool(order.post_only)), _text(order.role), reason or ""))

    def order_recovered(self, entry: Any) -> None:
        """An order from the order journal (a JournalOrder): recorded as its `submit` unless the ledger has it."""
        self._put("order_recovered", (
            self.run_id, self.mode, float(entry.created_at), "submit", entry.client_id, entry.order_id,
            entry.condition_id, entry.strategy, _text(entry.leg), _text(entry.side), float(entry.price),
            float(entry.size), _text(entry.order_type), int(bool(entry.post_only)), _text(entry.role),
            f"{entry.reason} (recovered from the order journal after a restart)", entry.order_id))

    def fill(self, fill: Any, condition_id: str, previous: str | None = None, source: str = "stream",
             ts: float | None = None) -> None:
        """A fill (FillView) that is new (`previous` None) or whose status moved."""
        now = self._ts(ts)
        self._put("fill", (
            fill.trade_id, fill.order_id, self.run_id, self.mode, condition_id, fill.client_id, fill.strategy,
            _text(fill.leg), _text(fill.side), float(fill.price), float(fill.size), float(fill.fee), fill.role,
            fill.status, STATUS_RANK.get(fill.status, 0), float(fill.ts), now, now, source))
        self._put("fill_status", (fill.trade_id, fill.order_id, now, fill.status, previous))

    # ---- internals ------------------------------------------------------------------------------------------
    def _ts(self, ts: float | None) -> float:
        return float(ts) if ts is not None else self.clock()

    def _put(self, kind: str, params: tuple) -> None:
        self._queue.put((kind, params))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            wait = self.retry_every_s if self._backlog else None
            try:
                first = self._queue.get(timeout=wait)
            except queue.Empty:
                first = None
            items = [] if first is None else [first]
            if first is not None:
                self.gate.step_aside()  # (what is queued meanwhile joins this batch)
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            markers = []
            for item in items:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    self._backlog.append(item)
            self._trim_backlog()
            try:
                self._write_backlog(force=stopping or bool(markers))
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill the writer and stop all records
                log.exception("ledger writer failed")
                self._set_error(f"ledger writer failed: {type(exc).__name__}: {exc}; new entries refused")
            for marker in markers:
                marker.done.set()
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _trim_backlog(self) -> None:
        over = len(self._backlog) - self._max_backlog
        if over > 0:
            for _ in range(over):
                self._backlog.popleft()
            self._dropped += over
            self._set_error(self._error or "ledger backlog full", quiet=True)

    def _write_backlog(self, force: bool) -> None:
        if not self._backlog:
            return
        mono = time.monotonic()
        if self._error is not None and not force and mono - self._last_attempt < self.retry_every_s:
            return
        self._last_attempt = mono
        try:
            if self._conn is None:
                self._conn = self._connect(self.path)
            conn = self._conn
            while self._backlog:
                chunk = [self._backlog[i] for i in range(min(BATCH, len(self._backlog)))]
                conn.execute("BEGIN IMMEDIATE")
                try:
                    gap = 0
                    for kind, params in chunk:
                        if kind == "fill" and params[-1] == "reconcile" and conn.execute(
                                "SELECT 1 FROM fills WHERE trade_id = ? AND order_id = ?", params[:2]).fetchone() is None:
                            gap += 1
                        conn.execute(_SQL[kind], params)
                    if gap:
                        # A fill only a reconciliation told us of: the trader was down, or the user channel or
                        # this ledger missed it. Say so, so a reader knows the record was repaired.
                        conn.execute(_SQL["event"], (self.run_id, self.clock(), "reconcile-gap",
                                                     f"{gap} fill(s) the ledger had not recorded were learnt from "
                                                     "the exchange by a reconciliation"))
                    if self._error is not None and self._dropped:
                        conn.execute(_SQL["event"], (self.run_id, self.clock(), "ledger-dropped",
                                                     f"{self._dropped} record(s) dropped while the ledger could "
                                                     "not be written"))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                for _ in chunk:
                    self._backlog.popleft()
                self.written += len(chunk)
                if self._error is not None:
                    log.warning("ledger %s writable again (%d record(s) caught up%s)", self.path, len(chunk),
                                f", {self._dropped} dropped" if self._dropped else "")
                    self._error = None
                    self._dropped = 0
        except (sqlite3.Error, OSError, schema.LedgerVersionError) as exc:
            # The same words while the cause holds: status shows it, and a changing text would log it anew each retry.
            self._set_error(f"ledger {self.path} cannot be written: {exc}; new entries refused until it can")
            # Reopen on the next attempt: a connection SQLite opened read-only stays read-only after the file
            # is fixed.
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error:
                    pass
                self._conn = None

    def _set_error(self, message: str, quiet: bool = False) -> None:
        if self._error is None and not quiet:
            log.error("%s", message)
        self._error = message


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(_text(value), default=str)

