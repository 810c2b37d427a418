"""`polymm-backtest TICKS.jsonl [--config FILE] [--set KEY=VALUE ...] [--json] [--ledger FILE] [--own-orders LEDGER]`:
replay recorded top-of-book updates through the trader's own decision pipeline (trader/decision/decide.py: S1, S2,
risk, planner) against the fill model (trader/fill_model/), and print orders, fills, final positions, resolution
and P&L.

The tick format is in ticks_file.py, the timing of the replay in runner.py, the fill model and resolution in
trader/fill_model/. `--ledger FILE` also writes the run into a ledger file (mode `backtest`, the trader's ledger
schema), so `mmctl history --ledger FILE` and `polymm-report --compare` set it beside a live or paper week.
`--own-orders LEDGER` takes our own orders out of a recording made while the trader was live (own_orders.py).
`--sweep KEY=START:STOP:STEP` (repeatable) replays a grid of config values across all cores and ranks the points
by P&L (sweep.py; `--heatmap FILE.png` for two keys, heatmap.py).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from polymm.trader.config import ConfigError, load_config
from polymm.trader.backtest import sweep
from polymm.trader.backtest.own_orders import OwnOrderFilter
from polymm.trader.backtest.report import render_text
from polymm.trader.backtest.runner import Backtest
from polymm import series as series_mod
from polymm.trader.backtest.ticks_file import BadTicks, first_series, read_ticks, select_series
from polymm.trader.ledger.own_orders import LedgerReadError, OwnOrdersLedger


def _parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected KEY=VALUE, e.g. --set s1.entry_threshold=0.62")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="polymm-backtest",
        description="Replay recorded top-of-book ticks through S1/S2, risk and the planner against a simulated "
        "exchange (the fill model of trader/fill_model/: depth walked, our fills consume the book, latency).",
    )
    parser.add_argument("ticks", help="JSON-lines file of top-of-book updates (polymm-feed --record)")
    parser.add_argument("--config", help="trader config file (TOML); default: built-in defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--step-ms", type=float, default=100.0, help="decide at least this often between ticks (default 100)")
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="orders and cancels reach the exchange this long after the decision (default: "
                        "fill_model.latency_ms of the config, 2.5 ms: the place round trip measured on the sim)")
    parser.add_argument("--ledger", metavar="FILE", help="also write the run into this ledger file (SQLite, mode backtest)")
    parser.add_argument("--series", default=None,
                        help="the market series to replay (btc-15m, eth-5m, ...): its config (the base stretched to its "
                             "window and its [series.<name>.*] table); lines of other series are skipped. Default: "
                             "the recording's (its first line's; a recording of several series needs --series)")
    parser.add_argument("--own-orders", metavar="LEDGER",
                        help="the recording was made while the trader was live: take our own resting orders out of "
                        "its book, from this ledger of the same period (the trader's ledger.sqlite; its orders of "
                        "the replayed series)")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=START:STOP:STEP",
                        help="replay once per value of KEY from START to STOP in steps of STEP (repeatable: every "
                        "combination); prints the points ranked by P&L")
    parser.add_argument("--workers", type=int, default=None,
                        help="--sweep: processes to run points in (default: every core this process may use)")
    parser.add_argument("--heatmap", metavar="FILE.png", help="--sweep over two keys: draw total P&L as a heatmap")
    args = parser.parse_args(argv)
    try:
        name = args.series or first_series(args.ticks)
        series = series_mod.parse(name)
    except (series_mod.SeriesError, BadTicks) as e:
        print(f"polymm-backtest: {e}", file=sys.stderr)
        return 2
    try:
        sets = _parse_sets(args.set)
        config = load_config(args.config, sets, series=series)
    except ConfigError as e:
        print(f"polymm-backtest: config error: {e}", file=sys.stderr)
        return 2
    latency_given = args.latency_ms is not None
    if args.latency_ms is None:
        args.latency_ms = config.fill_model.latency_ms
    if args.step_ms <= 0 or args.latency_ms < 0:
        print("polymm-backtest: --step-ms must be > 0 and --latency-ms >= 0", file=sys.stderr)
        return 2
    if args.own_orders:
        try:
            OwnOrdersLedger(args.own_orders, series.name).check()
        except LedgerReadError as e:
            print(f"polymm-backtest: --own-orders: {e}", file=sys.stderr)
            return 2
    if args.sweep or args.heatmap or args.workers is not None:
        return _sweep(args, sets, latency_given, series)
    own = OwnOrderFilter(OwnOrdersLedger(args.own_orders, series.name)) if args.own_orders else None
    bt = Backtest(config, step_s=args.step_ms / 1000.0, latency_s=args.latency_ms / 1000.0, own_orders=own)
    skipped: list[int] = []
    try:
        result = bt.run(select_series(read_ticks(args.ticks), series.name, args.series is not None, skipped))
    except BadTicks as e:
        print(f"polymm-backtest: {e}", file=sys.stderr)
        return 2
    except LedgerReadError as e:
        print(f"polymm-backtest: --own-orders: {e}", file=sys.stderr)
        return 2
    result.series = series.name
    if skipped:
        result.warnings.append(f"{len(skipped)} line(s) of other series skipped (--series {series.name})")
    if result.lines == 0:
        print(f"polymm-backtest: {args.ticks}: no ticks", file=sys.stderr)
        return 2
    if args.ledger:
        from polymm.trader.ledger.from_backtest import BacktestFileError, write_result
        try:
            write_result(_finite(result.to_json()), args.ledger)
        except BacktestFileError as e:
            print(f"polymm-backtest: --ledger: {e}", file=sys.stderr)
            return 1
    try:
        if args.json:
            sys.stdout.write(json.dumps(_finite(result.to_json()), indent=1, allow_nan=False) + "\n")
        else:
            sys.stdout.write(render_text(result))
    except BrokenPipeError:  # `polymm-backtest ... | head`
        return 0
    return 0


def _sweep(args: argparse.Namespace, sets: dict[str, str], latency_given: bool, series: series_mod.Series) -> int:
    def fail(message: str) -> int:
        print(f"polymm-backtest: {message}", file=sys.stderr)
        return 2

    if not args.sweep:
        return fail("--workers and --heatmap go with --sweep KEY=START:STOP:STEP")
    if args.ledger:
        return fail("--ledger writes one run; with --sweep, replay the point you want without --sweep")
    if args.workers is not None and args.workers < 1:
        return fail(f"--workers must be 1 or more (got {args.workers})")
    try:
        axes = sweep.parse_axes(args.sweep, sets)
        if args.heatmap and len(axes) != 2:
            raise sweep.SweepError(f"--heatmap draws two swept keys; got {len(axes)} --sweep")
        grid = sweep.points(axes)
        configs = sweep.configs(args.config, sets, grid, series)
    except (sweep.SweepError, ConfigError) as e:
        return fail(f"--sweep: {e}")
    workers = args.workers or sweep.default_workers()
    job = sweep.Job(args.ticks, tuple(configs), args.step_ms / 1000.0,
                    args.latency_ms / 1000.0 if latency_given else None, args.own_orders, series.name,
                    args.series is not None)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\rpolymm-backtest: {done}/{total} points", end="" if done < total else "\n", file=sys.stderr)

    t0 = time.perf_counter()
    try:
        summaries = sweep.run(job, workers, progress)
    except BadTicks as e:
        return fail(str(e))
    except LedgerReadError as e:
        return fail(f"--own-orders: {e}")
    except KeyboardInterrupt:
        print("\npolymm-backtest: interrupted", file=sys.stderr)
        return 130
    seconds = sweep.elapsed_since(t0)
    lines = summaries[0]["lines"]
    if lines == 0:
        return fail(f"{args.ticks}: no ticks")
    rows = sweep.ranked(grid, summaries)
    header = (f"sweep of {args.ticks}: {len(grid)} points ({' x '.join(f'{a.key} {len(a.values)}' for a in axes)}), "
              f"{lines} lines, {summaries[0]['windows']} windows each; {min(workers, len(grid))} workers, {seconds:.1f} s "
              f"({lines * len(grid) / max(seconds, 1e-9):,.0f} ticks/s)")
    if args.heatmap:
        from polymm.trader.backtest.heatmap import HeatmapError, write_heatmap

        x, y = axes
        try:
            write_heatmap(args.heatmap, x.key, x.values, y.key, y.values,
                          {(r["point"][x.key], r["point"][y.key]): r["total_pnl"] for r in rows},
                          f"total P&L, {summaries[0]['windows']} windows of {Path(args.ticks).name}")
        except HeatmapError as e:
            return fail(str(e))
    try:
        if args.json:
            out = {"sweep": {"ticks": args.ticks, "series": series.name, "keys": {a.key: list(a.values) for a in axes},
                             "points": len(grid), "lines": lines, "workers": min(workers, len(grid)),
                             "seconds": seconds, "heatmap": args.heatmap},
                   "points": rows}
            sys.stdout.write(json.dumps(_finite(out), indent=1, allow_nan=False) + "\n")
        else:
            sys.stdout.write(sweep.render_table(axes, rows, header))
            if args.heatmap:
                sys.stdout.write(f"heatmap: {args.heatmap}\n")
    except BrokenPipeError:
        return 0
    return 0


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: an unknown number is null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x
