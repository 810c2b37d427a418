"""`polymm-backtest TICKS.jsonl [--config FILE] [--set KEY=VALUE ...] [--json] [--ledger FILE] [--own-orders LEDGER]`:
replay recorded top-of-book updates through the trader's own decision pipeline (trader/decision/decide.py: S1, S2,
risk, planner) against the fill model (trader/fill_model/), and print orders, fills, final positions, resolution
and P&L.

The tick format is in ticks_file.py, the timing of the replay in runner.py, the fill model and resolution in
trader/fill_model/. `--ledger FILE` also writes the run into a ledger file (mode `backtest`, the trader's ledger
schema), so `mmctl history --ledger FILE` and `polymm-report --compare` set it beside a live or paper week.
`--own-orders LEDGER` takes our own orders out of a recording made while the trader was live (own_orders.py).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from polymm.trader.config import ConfigError, load_config
from polymm.trader.backtest.own_orders import OwnOrderFilter
from polymm.trader.backtest.report import render_text
from polymm.trader.backtest.runner import Backtest
from polymm.trader.backtest.ticks_file import BadTicks, read_ticks
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
    parser.add_argument("--own-orders", metavar="LEDGER",
                        help="the recording was made while the trader was live: take our own resting orders out of "
                        "its book, from this ledger of the same period (the trader's ledger.sqlite)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, _parse_sets(args.set))
    except ConfigError as e:
        print(f"polymm-backtest: config error: {e}", file=sys.stderr)
        return 2
    if args.latency_ms is None:
        args.latency_ms = config.fill_model.latency_ms
    if args.step_ms <= 0 or args.latency_ms < 0:
        print("polymm-backtest: --step-ms must be > 0 and --latency-ms >= 0", file=sys.stderr)
        return 2
    own = None
    if args.own_orders:
        own = OwnOrderFilter(OwnOrdersLedger(args.own_orders))
        try:
            own.ledger.check()
        except LedgerReadError as e:
            print(f"polymm-backtest: --own-orders: {e}", file=sys.stderr)
            return 2
    bt = Backtest(config, step_s=args.step_ms / 1000.0, latency_s=args.latency_ms / 1000.0, own_orders=own)
    try:
        result = bt.run(read_ticks(args.ticks))
    except BadTicks as e:
        print(f"polymm-backtest: {e}", file=sys.stderr)
        return 2
    except LedgerReadError as e:
        print(f"polymm-backtest: --own-orders: {e}", file=sys.stderr)
        return 2
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


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: an unknown number is null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x
