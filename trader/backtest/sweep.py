"""`polymm-backtest TICKS --sweep KEY=START:STOP:STEP [--sweep ...]`: the same replay over a grid of config values,
across all cores, ranked by P&L.

- Each `--sweep` is one axis: every value from START to STOP (inclusive) in steps of STEP, computed in decimal so
  0.55:0.70:0.05 is exactly 0.55, 0.6, 0.65, 0.7. Several axes make a grid (every combination), at most
  MAX_POINTS points. `--set` and `--config` apply to every point.
- Checked before anything runs, in the schema's own words: an unknown key (with the nearest valid one), a key that
  is not a number, a malformed axis, a STEP of 0 or less, STOP below START, a key given twice, too many points,
  and every value of every point against the schema's bounds and cross-field rules (trader/config/).
- Points run in worker processes (`--workers`, default: every core this process may use). Each point streams the
  tick file itself (memory stays flat however long the recording) and returns only its summary; the summaries
  are put back in grid order, so the result does not depend on the number of workers or the order they finish.
- Per point: windows replayed, fills, orders placed, P&L per strategy and in total, the maximum drawdown (largest
  fall of the cumulative P&L from a previous high, window by window, starting at 0), and each window's P&L.
- The table is sorted by total P&L (best first; ties: the smaller drawdown, then grid order). `--heatmap FILE.png`
  draws total P&L over two swept keys (heatmap.py; matplotlib, the `report` extra).
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from polymm.trader.backtest.own_orders import OwnOrderFilter
from polymm.trader.backtest.runner import Backtest, Result
from polymm.series import DEFAULT_SERIES, Series
from polymm.trader.backtest.ticks_file import read_ticks, select_series
from polymm.trader.config import Config, ConfigError, load_config
from polymm.trader.config.keys import get_key, rule_of
from polymm.trader.ledger.own_orders import OwnOrdersLedger

MAX_POINTS = 10_000
EXAMPLE = "s1.entry_threshold=0.55:0.70:0.05"


class SweepError(ValueError):
    """A --sweep that cannot run; the message says why in words."""


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[float | int, ...]


def parse_axes(items: list[str], fixed: dict[str, Any]) -> list[Axis]:
    """`--sweep` arguments -> axes, checked (not yet against the schema's bounds: `points` does that)."""
    axes: list[Axis] = []
    for item in items:
        axis = _parse_axis(item)
        if axis.key in fixed:
            raise SweepError(f"{axis.key} is given by both --set and --sweep; give it once")
        if any(a.key == axis.key for a in axes):
            raise SweepError(f"{axis.key} is swept twice; give one --sweep per key")
        axes.append(axis)
    total = math.prod(len(a.values) for a in axes)
    if total > MAX_POINTS:
        sizes = " x ".join(str(len(a.values)) for a in axes)
        raise SweepError(f"the grid has {total:,} points ({sizes}); at most {MAX_POINTS:,}: use a larger STEP or "
                         "fewer keys")
    return axes


def _parse_axis(item: str) -> Axis:
    key, sep, spec = item.partition("=")
    key = key.strip()
    parts = spec.split(":")
    if not sep or not key or len(parts) != 3:
        raise SweepError(f"{item!r}: expected KEY=START:STOP:STEP, e.g. --sweep {EXAMPLE}")
    default = get_key(Config(), key)  # ConfigError for an unknown key, with the nearest valid one
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise SweepError(f"{key} cannot be swept: it is not a number (it must be {rule_of(key)})")
    start, stop, step = (_number(key, name, text) for name, text in zip(("START", "STOP", "STEP"), parts))
    if step <= 0:
        raise SweepError(f"{key}: STEP must be above 0 (got {parts[2].strip()})")
    if stop < start:
        raise SweepError(f"{key}: STOP {parts[1].strip()} is below START {parts[0].strip()}")
    count = int((stop - start) / step) + 1
    if count > MAX_POINTS:
        raise SweepError(f"{key}: {count:,} values from {parts[0].strip()} to {parts[1].strip()} in steps of "
                         f"{parts[2].strip()}; at most {MAX_POINTS:,} points in all")
    whole = isinstance(default, int)
    values = tuple(_value(start + i * step, whole) for i in range(count))
    return Axis(key, values)


def _number(key: str, name: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise SweepError(f"{key}: {name} {text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise SweepError(f"{key}: {name} {text.strip()!r} is not a finite number")
    return value


def _value(x: Decimal, whole: bool) -> float | int:
    # A whole-number key gets ints where the value is whole; otherwise the schema says "must be a whole number".
    return int(x) if whole and x == x.to_integral_value() else float(x)


def points(axes: list[Axis]) -> list[dict[str, float | int]]:
    """Every combination, the first axis varying slowest (grid order)."""
    out: list[dict[str, float | int]] = [{}]
    for axis in axes:
        out = [{**p, axis.key: v} for p in out for v in axis.values]
    return out


def configs(config_path: str | None, fixed: dict[str, Any], grid: list[dict[str, Any]],
            series: Series | None = None) -> list[Config]:
    """The config of every point (of `series`: stretched to its window, its own table), validated whole by the
    schema; ConfigError names the failing point."""
    out = []
    for point in grid:
        try:
            out.append(load_config(config_path, {**fixed, **point}, series=series))
        except ConfigError as e:
            where = ", ".join(f"{k}={v:g}" for k, v in point.items())
            raise SweepError(f"point {where}: {e}") from None
    return out


# ---- running ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """What every point shares; handed to each worker once (inherited when processes fork)."""

    ticks: str
    configs: tuple[Config, ...]
    step_s: float
    latency_s: float | None
    own_orders: str | None = None
    series: str = DEFAULT_SERIES  # the series replayed: its lines only, its orders in the ledger
    series_explicit: bool = False  # --series given: other series' lines are skipped (else they are an error)


_JOB: Job | None = None


def _init_worker(job: Job) -> None:
    global _JOB
    _JOB = job


def _run_point(i: int) -> tuple[int, dict]:
    job = _JOB
    assert job is not None
    own = OwnOrderFilter(OwnOrdersLedger(job.own_orders, job.series)) if job.own_orders else None
    try:
        bt = Backtest(job.configs[i], step_s=job.step_s, latency_s=job.latency_s, own_orders=own)
        result = bt.run(select_series(read_ticks(job.ticks), job.series, job.series_explicit))
    finally:
        if own is not None:
            own.ledger.close()
    return i, summary(result)


def run(job: Job, workers: int, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Every point's summary, in grid order. `workers` 1 runs in this process (the baseline of the benchmark)."""
    n = len(job.configs)
    done: list[dict | None] = [None] * n
    if workers <= 1 or n == 1:
        _init_worker(job)
        for i in range(n):
            done[i] = _run_point(i)[1]
            if progress:
                progress(i + 1, n)
        return done  # type: ignore[return-value]
    # fork: the workers inherit the job (configs) and the imported modules instead of re-importing them; where
    # fork is missing (not Linux) the job is pickled to each worker once.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ctx.Pool(min(workers, n), initializer=_init_worker, initargs=(job,))
    try:
        for count, (i, s) in enumerate(pool.imap_unordered(_run_point, range(n), chunksize=1), 1):
            done[i] = s
            if progress:
                progress(count, n)
    except BaseException:
        pool.terminate()  # an error (a bad line, an unreadable ledger) or ^C: the other points are not wanted
        raise
    # Every point is in: let the workers finish on their own (close + join) rather than `with`'s terminate(),
    # whose teardown races the workers' queue locks (its _help_stuff_finish) for nothing here.
    pool.close()
    pool.join()
    return done  # type: ignore[return-value]


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def summary(result: Result) -> dict:
    """One point's figures (the whole Result stays in the worker)."""
    per_window = []
    for w in result.windows:
        net = round(sum(s["net"] for s in w["pnl"].values()), 6)
        per_window.append({"window_start": w["window_start"], "fills": len(w["fills"]), "net": net})
    return {
        "lines": result.lines,
        "windows": len(result.windows),
        "fills": sum(w["fills"] for w in per_window),
        "orders": sum(1 for e in result.events if e["action"] == "place"),
        "pnl": result.pnl(),
        "total_pnl": round(sum(result.pnl().values()), 6),
        "max_drawdown": max_drawdown([w["net"] for w in per_window]),
        "per_window": per_window,
    }


def max_drawdown(nets: list[float]) -> float:
    """The largest fall of cumulative P&L from its previous high (the high starts at 0), window by window."""
    peak = cum = worst = 0.0
    for net in nets:
        cum += net
        peak = max(peak, cum)
        worst = max(worst, peak - cum)
    return round(worst, 6)


def ranked(grid: list[dict[str, Any]], summaries: list[dict]) -> list[dict]:
    """Points with their summaries, best total P&L first (ties: smaller drawdown, then grid order)."""
    rows = [{"point": p, **s, "grid_index": i} for i, (p, s) in enumerate(zip(grid, summaries))]
    rows.sort(key=lambda r: (-r["total_pnl"], r["max_drawdown"], r["grid_index"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def render_table(axes: list[Axis], rows: list[dict], header: str) -> str:
    keys = [a.key for a in axes]
    cols = ["rank", *keys, "windows", "fills", "orders", "pnl", "max_drawdown"]
    body = [[str(r["rank"]), *(f"{r['point'][k]:g}" for k in keys), str(r["windows"]), str(r["fills"]),
             str(r["orders"]), f"{r['total_pnl']:+.4f}", f"{r['max_drawdown']:.4f}"] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    lines = [header, "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines) + "\n"


def elapsed_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
