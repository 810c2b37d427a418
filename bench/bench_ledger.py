"""Ledger figures: bytes per window traded, `mmctl history --since 7d` on a week of 60-second windows, report time.

    .venv/bin/python bench/bench_ledger.py [--windows 10080]

Synthesises a week of 60-second windows through the trader's own LedgerWriter, each traded like S1 does: an entry
(submit, live, filled; 10 shares, maker), a take-profit (submit, live, then filled as taker in half the windows or
cancelled before the end), every fill through MATCHED -> MINED -> CONFIRMED, the window and its resolution. Prints
figures next to same-run baselines; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from polymm.trader.ledger import LedgerWriter, load_history
from polymm.trader.model import FillView, Leg, MarketIdentity, OrderType, Role, Side


def synthesise(path: Path, windows: int, window_s: int = 60, seed: int = 1) -> None:
    rng = random.Random(seed)
    # The week ends ten minutes from now, so `--since 7d` covers every window however long the run takes.
    start = (int(time.time()) + 600) // window_s * window_s - windows * window_s
    w = LedgerWriter(path, "live")
    w.start({"source": "bench"})
    for i in range(windows):
        ws = start + i * window_s
        m = MarketIdentity(f"0x{i:064x}", f"{i}1" * 20, f"{i}2" * 20, ws, ws + window_s, 0.01, 5, 0.07)
        w.window(m, ts=ws)
        leg = Leg.UP if rng.random() < 0.5 else Leg.DOWN
        entry = round(rng.uniform(0.55, 0.8), 2)
        orders = []
        for role, side, price in ((Role.ENTRY, Side.BUY, entry), (Role.TAKE_PROFIT, Side.SELL, round(entry + 0.02, 2))):
            o = SimpleNamespace(client_id=f"c{i}{role.value}", order_id="0x" + os.urandom(32).hex(),
                                condition_id=m.condition_id, strategy="s1", leg=leg, side=side, price=price, size=10.0,
                                order_type=OrderType.GTC, post_only=True, role=role)
            orders.append(o)
            w.order_action("submit", o, f"{role.value} bid>={price}", ts=ws + 1)
            w.order_action("live", o, "accepted status=live", ts=ws + 1.01)
        sold = rng.random() < 0.5
        for n, (o, role) in enumerate(zip(orders, ("maker", "taker"))):
            if n == 1 and not sold:
                w.order_action("cancel", o, "cancel_before_end", ts=ws + window_s - 3)
                w.order_action("canceled", o, "cancel_before_end", ts=ws + window_s - 3)
                continue
            w.order_action("filled", o, "user channel update", ts=ws + 2 + n * 10)
            f = FillView("0x" + os.urandom(32).hex(), o.order_id, o.client_id, "s1", leg, o.side, o.price, 10.0,
                         0.0 if role == "maker" else 0.1, role, "MATCHED", ws + 2 + n * 10)
            previous = None
            for status in ("MATCHED", "MINED", "CONFIRMED"):
                w.fill(FillView(**{**f.__dict__, "status": status}), m.condition_id, previous, ts=f.ts + 1)
                previous = status
        w.resolution(m.condition_id, Leg.UP if rng.random() < 0.5 else Leg.DOWN, ts=ws + window_s + 5)
    w.close()


def enqueue_cost(tmp: Path, n: int = 20_000) -> tuple[float, float]:
    """(µs per ledger record queued on the caller's thread, µs per order log line to a null handler)."""
    import logging

    order = SimpleNamespace(client_id="c1", order_id="0x" + "ab" * 32, condition_id="0x" + "cd" * 32, strategy="s1",
                            leg=Leg.UP, side=Side.BUY, price=0.6, size=10.0, order_type=OrderType.GTC,
                            post_only=True, role=Role.ENTRY)
    w = LedgerWriter(tmp / "enqueue.sqlite", "live")
    w.start()
    t0 = time.perf_counter()
    for _ in range(n):
        w.order_action("submit", order, "entry bid>=0.60")
    ledger_us = (time.perf_counter() - t0) / n * 1e6
    w.close(timeout_s=60)
    log = logging.getLogger("bench.ledger")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.INFO)
    t0 = time.perf_counter()
    for _ in range(n):
        log.info("order %s id=%s strategy=%s leg=%s side=%s price=%s size=%s type=%s post_only=%d reason=%s", "submit",
                 order.order_id, "s1", "up", "BUY", "0.6", "10", "GTC", 1, "entry bid>=0.60")
    return ledger_us, (time.perf_counter() - t0) / n * 1e6


def timed(command: list[str], runs: int = 3) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=7 * 24 * 60)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        ledger_us, log_us = enqueue_cost(Path(tmp))
        print(f"ledger record queued on the caller's thread: {ledger_us:.1f} µs "
              f"(baseline: the order's log line to a null handler, {log_us:.1f} µs)")
        path = Path(tmp) / "ledger.sqlite"
        t0 = time.perf_counter()
        synthesise(path, args.windows)
        wrote = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).glob("ledger.sqlite*"))
        print(f"ledger: {args.windows} windows written in {wrote:.1f} s; {size / 1e6:.1f} MB, "
              f"{size / args.windows:.0f} bytes per window traded")
        t0 = time.perf_counter()
        h = load_history(path, since=time.time() - 7 * 86400)
        print(f"history in process (read + fold {h.totals.windows} windows): {time.perf_counter() - t0:.2f} s")
        ms = timed([str(bindir / "mmctl"), "history", "--since", "7d", "--ledger", str(path)])
        print(f"`mmctl history --since 7d` (a week of windows), process start to exit: "
              f"{min(ms):.2f}-{max(ms):.2f} s")
        base = timed([str(bindir / "mmctl"), "--help"])
        print(f"  baseline `mmctl --help` in the same run: {min(base):.2f}-{max(base):.2f} s")
        report = Path(tmp) / "report.html"
        rs = timed([str(bindir / "polymm-report"), "--ledger", str(path), "--out", str(report)], runs=2)
        print(f"`polymm-report` on the week: {min(rs):.2f}-{max(rs):.2f} s, {report.stat().st_size / 1e6:.1f} MB HTML")
        hs = timed([str(bindir / "mmctl"), "history", "--json", "--ledger", str(path)], runs=2)
        print(f"  baseline `mmctl history --json` (the same reading, no plots) in the same run: "
              f"{min(hs):.2f}-{max(hs):.2f} s")


if __name__ == "__main__":
    main()
