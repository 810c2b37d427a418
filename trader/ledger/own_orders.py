"""Our own live orders of a period as the ledger recorded them: what `polymm-backtest --own-orders LEDGER` takes out
of a recording made while the trader was live (the feed records the book the exchange displays, ours included).

Per order: where it rested (window, leg, side, price, size, type), the moments its state changed and the fills
that reduced it, each at the time the trader learnt it - the same moments the live engine's own book
(trader/decision/own_book.py) changed at, so the backtest nets the recording exactly as the live engine netted
the book it saw (trader/backtest/own_orders.py replays them).

Only the windows of one series (ledger schema 3's `windows.series`; a file older than that holds the default
series' only): several series' traders share one ledger, and two series of one duration share window starts.

What is read, from the order actions (writer.py's `order_actions`) and fills of mode `live` only (a paper or
backtest order was never on the exchange's book):
- the order rests from its `submit` (or `resubmit`) row, at the price and size that row carries (a `reprice` or
  `resize` before sending is already in it); an order never sent (refused, cancelled before sending) has no such
  row and never rested;
- each later row that names a state moves the order to it (`live`, `partially_filled`, `pending_cancel` / `cancel`,
  `unknown`, ...); `filled`, `canceled`, `rejected` and `expired` end it;
- fills (not FAILED), by the exchange's order id, at the time the trader recorded them;
- an order with no end in the ledger (the trader was killed) rests until its window ended (the market closes).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from polymm.series import DEFAULT_SERIES
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side

from .read import LedgerReadError, open_readonly, series_column

# Order actions that are a state of the order (execution/ledger.py `_log_order` writes state values as actions),
# plus the action words that imply one.
_STATE_OF_ACTION = {s.value: s for s in OrderState} | {
    "submit": OrderState.PENDING_SUBMIT,
    "resubmit": OrderState.PENDING_SUBMIT,
    "cancel": OrderState.PENDING_CANCEL,
    "cancel-deferred": OrderState.PENDING_CANCEL,
    "expired": OrderState.CANCELED,
    "refused": OrderState.REJECTED,
}
_SENT = ("submit", "resubmit")
_ROLES = {r.value for r in Role}
MARGIN_S = 60.0  # order rows are looked up this far around the window (a cancel confirmed after its end)


@dataclass(frozen=True)
class RecordedOrder:
    """One of our live orders of one window, from the ledger."""

    client_id: str
    order_ids: tuple[str, ...]
    strategy: str
    leg: Leg
    side: Side
    price: float
    size: float
    order_type: OrderType
    post_only: bool
    role: Role
    window_end: float
    states: tuple[tuple[float, OrderState], ...]  # (ts, state), in time order, from the first submit
    fills: tuple[tuple[float, float], ...]  # (ts the trader learnt it, shares), in time order


class OwnOrdersLedger:
    """A ledger file read for our live orders, one window at a time (a months-long ledger is never read whole).
    Opens the file read-only on first use, so it may be handed to worker processes before."""

    def __init__(self, path: str | Path, series: str = DEFAULT_SERIES) -> None:
        self.path = Path(path)
        self.series = series
        self._conn: sqlite3.Connection | None = None

    def check(self) -> None:
        """LedgerReadError (in words) now, rather than at the first window, if the file is not a readable ledger."""
        self._db()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_readonly(self.path)
        return self._conn

    def orders_of_window(self, window_start: int) -> list[RecordedOrder]:
        """Our live orders in the market of this series' window starting at `window_start` (unix s) that were sent."""
        try:
            return self._orders(window_start)
        except sqlite3.DatabaseError as exc:
            raise LedgerReadError(f"{self.path}: cannot read the ledger: {exc}") from None

    def _orders(self, window_start: int) -> list[RecordedOrder]:
        db = self._db()
        markets = db.execute(f"SELECT w.condition_id, w.window_end FROM windows w WHERE w.window_start = ?"
                             f" AND {series_column(db)} = ?", (int(window_start), self.series)).fetchall()
        out: list[RecordedOrder] = []
        for condition_id, window_end in markets:
            end = float(window_end) if window_end is not None else float(window_start)
            rows = db.execute(
                "SELECT ts, action, client_id, order_id, strategy, leg, side, price, size, order_type, post_only, role"
                " FROM order_actions WHERE condition_id = ? AND mode = 'live' AND ts >= ? AND ts <= ?"
                " ORDER BY ts, id", (condition_id, float(window_start) - MARGIN_S, end + MARGIN_S)).fetchall()
            fills = db.execute(
                "SELECT order_id, recorded_at, size FROM fills WHERE condition_id = ? AND mode = 'live'"
                " AND status != 'FAILED' ORDER BY recorded_at", (condition_id,)).fetchall()
            out += _fold(rows, fills, end)
        return out


def _fold(rows: list[tuple], fills: list[tuple], window_end: float) -> list[RecordedOrder]:
    """Order rows (time order) and fill rows -> one RecordedOrder per client id that was sent."""
    sent: dict[str, tuple] = {}  # client id -> its (latest) submit row
    states: dict[str, list[tuple[float, OrderState]]] = {}
    order_ids: dict[str, list[str]] = {}
    for row in rows:
        ts, action, client_id, order_id = row[0], row[1], row[2], row[3]
        if not client_id:
            continue
        if action in _SENT:
            sent[client_id] = row
        if order_id:
            ids = order_ids.setdefault(client_id, [])
            if order_id not in ids:
                ids.append(order_id)
        state = _STATE_OF_ACTION.get(action)
        if state is not None and client_id in sent:  # before it was sent, it rested nowhere
            states.setdefault(client_id, []).append((float(ts), state))
    by_order_id = {oid: cid for cid, ids in order_ids.items() for oid in ids}
    filled: dict[str, list[tuple[float, float]]] = {}
    for order_id, recorded_at, size in fills:
        cid = by_order_id.get(order_id)
        if cid is not None:
            filled.setdefault(cid, []).append((float(recorded_at), float(size)))
    out = []
    for cid, row in sent.items():
        _ts, _action, _cid, _oid, strategy, leg, side, price, size, order_type, post_only, role = row
        try:
            leg, side, order_type = Leg(leg), Side(side), OrderType(order_type)
            role = Role(role) if role in _ROLES else Role.ENTRY  # the role does not change what rests
            price, size = float(price), float(size)
        except (TypeError, ValueError):
            raise LedgerReadError(f"order {cid}: leg {leg!r}, side {side!r}, type {order_type!r}, price {price!r}, "
                                  f"size {size!r} is not an order polymm writes (a damaged ledger?)") from None
        out.append(RecordedOrder(
            client_id=cid, order_ids=tuple(order_ids.get(cid, ())), strategy=strategy or "", leg=leg, side=side,
            price=price, size=size, order_type=order_type, post_only=bool(post_only), role=role,
            window_end=window_end,
            states=tuple(states[cid]), fills=tuple(filled.get(cid, ()))))
    return out


__all__ = ["LedgerReadError", "OwnOrdersLedger", "RecordedOrder"]
