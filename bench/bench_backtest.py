"""Backtest figures: replay speed (ticks/s) and how `polymm-backtest --sweep` scales over the cores.

    .venv/bin/python bench/bench_backtest.py [--windows 1] [--points 16] [--runs 3] [--workers N]

Input: a synthetic recording (tests/support/recordings.py: `--windows` 15-minute windows, ~5 lines/s, 10 levels of
depth a side, a random-walk market S1 trades in), the shape `polymm-feed --record` writes.

- Replay speed: one backtest of the file with the default config, the file read and parsed as it goes
  (`polymm-backtest` end to end, less the process start), and the same with the lines already in memory. Ticks/s
  counts recorded lines; between lines the pipeline also decides every 100 ms (`--step-ms`), as live.
- Sweep: the same grid of `--points` values of s1.entry_threshold through the sweep's own runner
  (trader/backtest/sweep.py `run`), in one process (the baseline), with `--workers` processes (default: every
  core), then in one process again, `--runs` times; the ratio is the mean of the two one-process times over the
  workers' time. All must give identical results (checked). Other work on the machine shares the cores: the load
  average is printed before and after each run.

Prints figures; asserts nothing about time.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.recordings: the one synthetic recording (tests use it too)

from tests.support.recordings import synthetic_recording  # noqa: E402

from polymm.trader.backtest import sweep  # noqa: E402
from polymm.trader.backtest.runner import Backtest  # noqa: E402
from polymm.trader.backtest.ticks_file import read_ticks  # noqa: E402
from polymm.trader.config import load_config  # noqa: E402


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the sweep's workers, once their pool is closed)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def replay_speed(path: Path, repeats: int = 3) -> None:
    cfg = load_config(None, {})
    lines = [line for _, line in read_ticks(path)]
    streamed, in_memory = [], []
    for _ in range(repeats):  # alternating, so a change in the machine's load hits both alike
        t0 = time.perf_counter()
        result = Backtest(cfg).run(read_ticks(path))
        streamed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Backtest(cfg).run(lines)
        in_memory.append(time.perf_counter() - t0)
    fills = sum(len(w["fills"]) for w in result.windows)
    print(f"replay: {result.lines} lines, {result.decisions} decisions, {fills} fills, P&L {result.pnl()}; "
          f"{repeats} runs each, median [range]")
    for name, times in (("parsed as it goes", streamed), ("lines in memory", in_memory)):
        rates = sorted(result.lines / t for t in times)
        print(f"  {name:<18} {statistics.median(times):.2f} s = {statistics.median(rates):,.0f} ticks/s "
              f"[{rates[0]:,.0f}-{rates[-1]:,.0f}] ({result.decisions / statistics.median(times):,.0f} decisions/s)")


def sweep_speedup(path: Path, points: int, runs: int, workers: int) -> None:
    (axis,) = sweep.parse_axes([f"s1.entry_threshold=0.55:{0.55 + (points - 1) * 0.01:.2f}:0.01"], {})
    grid = sweep.points([axis])
    job = sweep.Job(str(path), tuple(sweep.configs(None, {}, grid)), 0.1, None)
    lines = sum(1 for _ in read_ticks(path))
    ticks = lines * len(grid)
    print(f"sweep: {len(grid)} points (s1.entry_threshold {axis.values[0]:g}..{axis.values[-1]:g}) x {lines} lines; "
          f"{workers} workers vs 1 process; {os.cpu_count()} cores. Each run: 1 process, {workers} workers, 1 process "
          "again; the baseline is the mean of the two (a load that changes during the run hits both sides alike)")
    ratios = []
    for run in range(1, runs + 1):
        before = load()
        t0, c0 = time.perf_counter(), time.process_time()
        one = sweep.run(job, 1)
        t_one_a, c_one_a = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), children_cpu()
        many = sweep.run(job, workers)
        t_many, c_many = time.perf_counter() - t0, children_cpu() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        again = sweep.run(job, 1)
        t_one_b, c_one_b = time.perf_counter() - t0, time.process_time() - c0
        assert many == one == again, "the sweep's results depend on the number of workers"
        t_one, c_one = (t_one_a + t_one_b) / 2, (c_one_a + c_one_b) / 2
        ratios.append(t_one / t_many)
        # CPU seconds: the workers' total against one process's shows what the processes themselves cost; wall
        # time against CPU shows how much of the cores the machine gave us.
        print(f"  run {run}: 1 process {t_one_a:.1f} s / {t_one_b:.1f} s ({ticks / t_one:,.0f} ticks/s, CPU "
              f"{c_one:.1f} s), {workers} workers {t_many:.1f} s ({ticks / t_many:,.0f} ticks/s, CPU {c_many:.1f} s "
              f"= {c_many / t_many:.2f} cores): {t_one / t_many:.2f}x [load average {before} -> {load()}]")
    print(f"  speedup over {runs} runs: {', '.join(f'{r:.2f}x' for r in ratios)} (results identical)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1, help="15-minute windows in the synthetic recording")
    parser.add_argument("--points", type=int, default=16, help="sweep points (several per worker, so the wait for the last one to finish is a small part of the run)")
    parser.add_argument("--runs", type=int, default=3, help="sweep runs (each: one process, then all workers)")
    parser.add_argument("--workers", type=int, default=sweep.default_workers())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ticks.jsonl"
        synthetic_recording(path, windows=args.windows)
        replay_speed(path)
        sweep_speedup(path, args.points, args.runs, args.workers)


if __name__ == "__main__":
    main()
