"""A backtest's result (polymm-backtest --json) as ledger records, so a backtest, a paper week and a live week
compare in one report. Used by `polymm-backtest --ledger FILE` and by `polymm-report BACKTEST.json`.

A backtest has no exchange: each window gets the id `backtest-<window start>`, each fill the trade id
`bt-<window start>-<n>` and its order's client id as order id; every fill is final (CONFIRMED, source `backtest`).
A window the backtest could not resolve (no winner and equal or missing bids) stays unresolved in the ledger: its
held shares count as open, not at the backtest's mid-price valuation.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .writer import LedgerWriter


class BacktestFileError(ValueError):
    pass


def read_result(path: str | Path) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BacktestFileError(f"{path}: not a polymm-backtest --json result ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("windows"), list):
        raise BacktestFileError(f"{path}: not a polymm-backtest --json result (no `windows` list)")
    return result


def window_id(window_start: Any, series: str = "btc-15m") -> str:
    """A backtest window's id in the ledger (no condition id in a recording); a series other than the default has
    its name in it, so two series' backtests of one hour share a ledger without colliding."""
    return f"backtest-{int(window_start)}" if series == "btc-15m" else f"backtest-{series}-{int(window_start)}"


def write_result(result: dict, path: str | Path) -> None:
    """Write one backtest result into the ledger at `path` (mode `backtest`). Raises BacktestFileError on a
    result that is not shaped like polymm-backtest's."""
    series = str(result.get("series") or "btc-15m")
    writer = LedgerWriter(path, "backtest", series=series)
    writer.start({"source": "polymm-backtest"})
    try:
        for window in result["windows"]:
            _window(writer, window, series)
        for event in result.get("orders", []):
            _order(writer, event, series)
    except (KeyError, TypeError, ValueError) as exc:
        raise BacktestFileError(f"backtest result has an unexpected shape: {type(exc).__name__}: {exc}") from None
    finally:
        writer.close("backtest written")
    if writer.error:
        raise BacktestFileError(writer.error)


def _window(writer: LedgerWriter, window: dict, series: str = "btc-15m") -> None:
    start, end = int(window["window_start"]), int(window["window_end"])
    cond = window_id(start, series)
    writer.window(SimpleNamespace(condition_id=cond, up_token="", down_token="", window_start=start, window_end=end,
                                  tick_size=0.0, min_order_size=0.0, fee_rate=0.0, neg_risk=False), ts=start)
    for n, f in enumerate(window.get("fills", [])):
        fill = SimpleNamespace(trade_id=f"bt-{start}-{n}", order_id=str(f["id"]), client_id=str(f["id"]),
                               strategy=f["strategy"], leg=f["leg"], side=f["side"], price=float(f["price"]),
                               size=float(f["size"]), fee=float(f.get("fee", 0.0)), role=f.get("role", "maker"),
                               status="CONFIRMED", ts=float(f["ts"]))
        writer.fill(fill, cond, source="backtest", ts=float(f["ts"]))
    if window.get("winner") in ("up", "down"):
        writer.resolution(cond, window["winner"], ts=end)


def _order(writer: LedgerWriter, e: dict, series: str = "btc-15m") -> None:
    order = SimpleNamespace(client_id=str(e["id"]), order_id=str(e["id"]), strategy=e["strategy"], leg=e["leg"],
                            side=e["side"], price=e["price"], size=e["size"], order_type=e["type"],
                            post_only=e["post_only"], role=e["role"])
    writer.order_action(e["action"], order, e.get("reason", ""), condition_id=window_id(e["window_start"], series),
                        ts=float(e["ts"]))
