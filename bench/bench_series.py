"""Cost of each added series: CPU and memory of N series (a feed and a trader each, one wallet) on this host, and the
trader's tick-to-decision latency with N series against N = 1, in the same run (issue 23, item 6).

How it is measured
- One polymm-sim serves every series (`--series`, windows compressed to --window-s so rotations come often: every
  series rotates at the same instant, the worst case). Per series a real polymm-feed and a real polymm-trader
  (processes, as the template units run them), one state directory, one throw-away wallet (demo/series_stack.py).
  S1's entry threshold is 0.05, so every trader always wants an entry and requotes: orders keep flowing.
- CPU: utime+stime of every process from /proc/<pid>/stat over the measured interval, in % of one core; memory: each
  process's VmRSS at the end. The sim's own CPU is reported apart (in production the exchange is not on the box).
- Tick to decision: for every decision woken by a new top of book, the decision time minus the feed's publish time
  (the same definition as bench_tick_to_decision.py and the trader's histogram), recorded inside each trader process
  by a thin wrapper that starts polymm-trader's own main() with the metrics hook also keeping the raw samples
  (written to a file when the trader exits). Pooled over the N traders; also the worst trader's p99.
- The first RUNS configuration is N = 1: the baseline every ratio is taken against, in the same run. Each
  configuration runs WARM_UP_S, then MEASURE_S. The machine's load average is printed at the start and the end:
  other work on the 2 shared cores shows in every figure.
- What a one-process design would save: the RSS of a Python process that has imported what a trader imports
  (nothing started), measured here: per added series a process pays that again.

Figures only; nothing asserts a timing. Usage:
    .venv/bin/python bench/bench_series.py [--series 1,4,8] [--seconds 60] [--warm-up 20] [--window-s 60] [--runs 1]
                                           [--vol 0.001]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = r"""
import atexit, json, os, sys
from polymm.trader import metrics
samples = []
original = metrics.TraderCounters.on_decision
def on_decision(self, snap, decided_at, done_at):
    original(self, snap, decided_at, done_at)
    published = max(snap.up.publish_ts, snap.down.publish_ts)
    if published == published and published > 0:
        samples.append((decided_at, decided_at - published))
metrics.TraderCounters.on_decision = on_decision
atexit.register(lambda: open(os.environ["BENCH_SAMPLES"], "w").write(json.dumps(samples)))
from polymm.trader.service import main
sys.exit(main())
"""

IMPORTS = r"""
import polymm.trader.service, polymm.trader.engine, polymm.trader.execution.core, polymm.trader.venue.gateway
import polymm.trader.decision.decide, polymm.trader.control.server, polymm.trader.ledger, polymm.trader.redeem.service
import polymm.trader.wallet.coordinator, polymm.trader.metrics, polymm.feed.shm, py_clob_client_v2
print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(n: int, names: tuple[str, ...], seconds: float, warm_up: float, window_s: int, vol: float) -> dict:
    from polymm.demo import _child_setup, demo_config
    from polymm.demo.series_stack import SeriesStack

    series = names[:n]
    with tempfile.TemporaryDirectory(prefix="polymm-bench-series-") as tmp:
        stack = SeriesStack(Path(tmp), series, window_s=window_s, sim_args=("--tick-s", "0.1", "--btc-vol", str(vol)),
                            config_text=demo_config(window_s, entry_threshold=0.05) + "stale_feed_ms = 10000\n",
                            log_level="WARNING", metrics=True)
        samples = {s: Path(tmp) / f"samples-{s}.json" for s in series}
        # Every trader through the wrapper (its own main(), samples kept): the same program, one hook more.
        stack_cmd = [sys.executable, "-c", WRAPPER]
        try:
            stack.start(traders=False)
            for s in series:
                stack.traders[s] = subprocess.Popen(
                    stack_cmd, env=stack.env(s, BENCH_SAMPLES=str(samples[s])), stdout=stack._log(f"trader-{s}"),
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=_child_setup())
            for s in series:
                stack.wait_trader(s)
            time.sleep(warm_up)
            procs = {"sim": stack.sim.process.pid}
            procs.update({f"feed {s}": stack.feeds[s].pid for s in series})
            procs.update({f"trader {s}": stack.traders[s].pid for s in series})
            start_cpu = {k: cpu_seconds(pid) for k, pid in procs.items()}
            t0, wall0 = time.monotonic(), time.time()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            cpu = {k: 100 * (cpu_seconds(pid) - start_cpu[k]) / elapsed for k, pid in procs.items()}
            rss = {k: rss_mb(pid) for k, pid in procs.items()}
            wall1 = time.time()
        finally:
            stack.close()
        latencies, worst_p99 = [], 0.0
        for s in series:
            try:
                mine = [lat for at, lat in json.loads(samples[s].read_text()) if wall0 <= at <= wall1]
            except (OSError, ValueError):
                mine = []
            latencies += mine
            if mine:
                worst_p99 = max(worst_p99, percentile(mine, 99))
    feeds = [cpu[k] for k in cpu if k.startswith("feed")]
    traders = [cpu[k] for k in cpu if k.startswith("trader")]
    return {
        "n": n, "cpu_sim": cpu["sim"], "cpu_feeds": sum(feeds), "cpu_traders": sum(traders),
        "rss_feed": statistics.mean(rss[k] for k in rss if k.startswith("feed")),
        "rss_trader": statistics.mean(rss[k] for k in rss if k.startswith("trader")),
        "rss_total": sum(v for k, v in rss.items() if k != "sim"),
        "samples": len(latencies),
        "median_ms": statistics.median(latencies) * 1e3 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) * 1e3, "worst_p99_ms": worst_p99 * 1e3,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", default="1,4,8", help="how many series per configuration (the first is the baseline)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per configuration")
    ap.add_argument("--warm-up", type=float, default=20.0, help="seconds before measuring (start-up is not steady)")
    ap.add_argument("--window-s", type=int, default=60, help="every series' window, compressed (rotations)")
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole set this many times")
    ap.add_argument("--vol", type=float, default=0.001,
                    help="the sim's price volatility per sqrt(s): a busy book (many ticks per second per series)")
    args = ap.parse_args()
    from polymm import series as series_mod

    counts = [int(x) for x in args.series.split(",")]
    names = series_mod.ALL_NAMES
    imports_kb = int(subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                                    check=True).stdout.strip())
    print(f"bench_series: {os.cpu_count()} cores, load average {loadavg()}; a trader's imports alone: "
          f"{imports_kb / 1024:.1f} MB RSS (what one process serving several series would pay once)")
    for run in range(1, args.runs + 1):
        rows = [measure(n, names, args.seconds, args.warm_up, args.window_s, args.vol) for n in counts]
        base = rows[0]
        print(f"\nrun {run} (load average now {loadavg()}): {args.seconds:.0f} s measured per configuration, "
              f"{args.window_s} s windows")
        print(f"{'series':>6} {'feeds %cpu':>10} {'traders %cpu':>12} {'per series':>10} {'sim %cpu':>8} "
              f"{'feed MB':>8} {'trader MB':>9} {'all MB':>7} {'decisions':>9} {'median ms':>9} {'p99 ms':>7} "
              f"{'worst p99':>9} {'p99/base':>8}")
        for r in rows:
            per = (r["cpu_feeds"] + r["cpu_traders"]) / r["n"]
            print(f"{r['n']:>6} {r['cpu_feeds']:>10.1f} {r['cpu_traders']:>12.1f} {per:>10.1f} {r['cpu_sim']:>8.1f} "
                  f"{r['rss_feed']:>8.1f} {r['rss_trader']:>9.1f} {r['rss_total']:>7.0f} {r['samples']:>9} "
                  f"{r['median_ms']:>9.2f} {r['p99_ms']:>7.2f} {r['worst_p99_ms']:>9.2f} "
                  f"{r['p99_ms'] / base['p99_ms']:>8.2f}")
        last = rows[-1]
        if last["n"] > base["n"]:
            added = last["n"] - base["n"]
            print(f"per added series (N={base['n']} -> {last['n']}): "
                  f"{(last['cpu_feeds'] + last['cpu_traders'] - base['cpu_feeds'] - base['cpu_traders']) / added:.1f} "
                  f"% of a core, {(last['rss_total'] - base['rss_total']) / added:.0f} MB RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
