"""Soak: the whole system on the sim for hundreds of short windows, with faults, watched the way an operator who
leaves it alone for a month needs it watched. Prints slopes after warm-up and a verdict (bench/soak_report.py).

    .venv/bin/python bench/soak.py --minutes 120 --window-s 20 --out soak-out/run1     # >= 300 windows in ~2 h
    .venv/bin/python bench/soak.py --minutes 12 --window-s 20 --out /tmp/soak           # a short one while working

What runs: polymm-sim (`--redeem manual`: winnings wait for the redeemer), polymm-feed recording every book
(`--record`, depth 10) with its Prometheus endpoint, polymm-trader (S1 and S2, ledger, metrics, the redeemer
with the sim relayer's builder key, a Safe wallet) — every process as in production, on windows of `--window-s`.

Faults, one every `--fault-every` windows, in turn: the market WebSocket dropped, the user WebSocket dropped, a 500
after placing (the order is on the book though the client saw an error), the relayer answering 500, a relayer
transaction reverting, the RTDS socket dropped, the feed restarted (SIGTERM, start again).

Samples: once per window (mid-window) each process's RSS, open fds and threads (/proc), the ledger's and the
recording's bytes, the shared-memory segments, the Prometheus series each endpoint serves; every `--poll-s`
seconds and right at each window boundary, `mmctl status` as a health check sees it (in-process, same code);
every `--cash-s` seconds the trader's cash against the exchange's (the sim's pUSD for the wallet).

At the end: the trader is paused, the trader's cash compared with the exchange's, the trader stopped (it cancels
its orders), and its ledger compared with the exchange's trades: every fill once, positions per token, no order
left. Files in --out: samples.jsonl (one line per window), health.jsonl (every non-healthy verdict), cash.jsonl,
faults.jsonl, summary.json, the services' logs and the recording (stack/). Exit code 0 only when every goal holds.

Minimum window: 20 s (see README "Soak"): S1's late window, cancel-before-end and the feed's pre-connect scale down
with the window, but a rotation still costs the feed one Gamma lookup ahead and the trader a reconcile, and a
window must hold at least one entry, a take-profit and a stop at the sim's 0.1 s ticks and the trader's 1 s
retry waits; the config floor is market.window_s >= 10, where a fault's recovery takes most of a window.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak_report as rep  # noqa: E402

from polymm import env, memory  # noqa: E402
from polymm.demo import Stack, demo_config  # noqa: E402

ROLES = ("sim", "feed", "trader")
# Warnings that say the feed's data is stale or missing (mmctl status and the trader's own words).
STALE_WORDS = ("feed book is", "feed status is stale", "feed heartbeat", "feed has no book", "book data",
               "feed stale", "stale feed", "feed status is", "first book pending")
LOG_STALE_WORDS = ("book data", "feed stale", "feed status is stale", "feed heartbeat")


def soak_config(window_s: int) -> str:
    """The demo's S1 scaled to the window, S2 holding to resolution (so the redeemer has winnings to redeem), the
    redeemer polling every second."""
    s2_window = max(3, round(window_s * 0.4))
    return demo_config(window_s, entry_threshold=0.55, cancel_before_end_s=1) + f"""
[s2]
enabled = true
window_s = {s2_window}
entry_ask_threshold = 0.8
target_usd = 6
order_size = 5
sl_price = 0.3

[redeem]
delay_s = 1
poll_s = 1
"""


# ---- /proc ---------------------------------------------------------------------------------------------------

def proc_figures(pid: int) -> dict | None:
    """RSS (kB, and its parts: anonymous = the heap, shmem = the shared-memory segment's pages this process touched,
    file = mapped code), open fds and threads of a live process; None when it is gone."""
    fields = {"VmRSS:": "rss_kb", "RssAnon:": "anon_kb", "RssShmem:": "shmem_kb", "RssFile:": "file_kb",
              "Threads:": "threads"}
    out: dict = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = line.split(":", 1)[0] + ":"
            if name in fields:
                out[fields[name]] = int(line.split()[1])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None
    return out


def _stamp(iso: str) -> float:
    """The relayer's "2026-12-06T22:03:21.373Z" as unix seconds."""
    import calendar

    head, _, frac = iso.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)


def shm_in_use(pid: int) -> set[str]:
    """The shared-memory segments a process has mapped or open (other people's runs on the host are not ours)."""
    out = set()
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            if "/dev/shm/" in line:
                out.add(line.split("/dev/shm/", 1)[1].split()[0])
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("/dev/shm/"):
                out.add(target[len("/dev/shm/"):].split()[0])
    except OSError:
        pass
    return out


def shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def file_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def series_count(port: int) -> int | None:
    """Metric series (non-comment lines) the endpoint serves: label sets growing per window would show here."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return sum(1 for line in r.read().decode().splitlines() if line and not line.startswith("#"))
    except OSError:
        return None


# ---- the run ---------------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.window_s = args.window_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.faults: list[dict] = []  # {"t", "name", "grace_until", "stale_ok"}
        self.health_counts: dict[str, int] = {}
        self.false_stale: list[dict] = []
        self.unexcused: list[dict] = []
        self.polls = 0
        self.boundary_polls = 0
        self.cash: list[rep.CashSample] = []
        self.cash_changes: list[float] = []
        self.exchange_trades: dict[str, dict] = {}
        self.relayed: dict[str, float] = {}  # relayer transaction id -> when it executed (paid pUSD)
        self.samples: dict[str, list[rep.ProcessSample]] = {r: [] for r in ROLES}
        self.shm_seen: set[str] = set()  # every segment one of our processes had mapped or open
        self.record = self.out / "stack" / "ticks.jsonl"
        self.t0 = 0.0
        self.errors: list[str] = []

    # -- helpers --------------------------------------------------------------------------------------------

    def window_index(self, t: float) -> float:
        return (t - self.t0) / self.window_s

    def pids(self) -> dict[str, int]:
        st = self.stack
        return {"sim": st.sim.process.pid, "feed": st.feed.pid if st.feed else 0, "trader": st.trader.pid}

    def write(self, name: str, obj: dict) -> None:
        with self.lock, open(self.out / name, "a") as f:
            f.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def grace(self, t: float, kind: str) -> dict | None:
        """The fault whose grace covers time `t` and excuses `kind` ("stale" or "any"), if any."""
        for f in self.faults:
            if f["t"] - 0.5 <= t <= f["grace_until"] and (kind == "any" or f["stale_ok"]):
                return f
        return None

    # -- start ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        a = self.args
        if a.tracemalloc:
            probe = Path(__file__).resolve().parent / "soak_probe"
            os.environ["PYTHONPATH"] = f"{probe}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
            os.environ["SOAK_TRACEMALLOC_DIR"] = str(self.out)
            os.environ["SOAK_TRACEMALLOC_AFTER_S"] = str(a.warmup * self.window_s)
            os.environ["SOAK_TRACEMALLOC_EVERY_S"] = str(max(60, 5 * self.window_s))
            os.environ["SOAK_TRACEMALLOC_ROLES"] = a.tracemalloc
            os.environ["SOAK_TRACEMALLOC_FRAMES"] = str(a.tracemalloc_frames)
        self.stack = Stack(self.out / "stack", window_s=self.window_s, seed=a.seed, config_text=soak_config(self.window_s),
                           metrics=True, feed_args=("--record", str(self.record)),
                           sim_args=("--redeem", "manual", "--log-level", "WARNING", "--retain-s", "300",
                                     "--exit-after-s", str(a.minutes * 60 + 900)))
        self.stack.start(trader=False)
        from py_builder_relayer_client.builder.derive import derive
        from py_builder_relayer_client.config import get_contract_config

        self.wallet = derive(self.stack.address, get_contract_config(137).safe_factory)
        self.stack.start_trader(extra_env={env.SIGNATURE_TYPE: "2", env.BROWSER_ADDRESS: self.wallet,
                                           **self.stack.sim.builder_env()})
        # Count windows from a boundary, so "mid-window" is the same phase throughout.
        now = time.time()
        self.t0 = (now // self.window_s + 1) * self.window_s
        from polymm.ctl.cli import Settings

        self.settings = Settings(str(self.stack.socket), self.stack.shm, 5.0)

    # -- threads --------------------------------------------------------------------------------------------

    def health_loop(self) -> None:
        from polymm.ctl.cli import gather_status

        next_poll = time.time()
        while not self.stop.is_set():
            now = time.time()
            boundary = (now // self.window_s + 1) * self.window_s
            # Right at the boundary and just after it (the rollover), else every poll_s.
            next_poll = max(next_poll, now)  # a late poll is taken now, never skipped
            targets = [next_poll] + [boundary + d for d in (0.02, 0.3, 1.0)]
            due = min(t for t in targets if t >= now - 0.001)
            self.stop.wait(max(0.0, due - time.time()))
            if self.stop.is_set():
                return
            at = time.time()
            at_boundary = due != next_poll
            if not at_boundary:
                next_poll = at + self.args.poll_s
            try:
                view = gather_status(self.settings)
            except Exception as exc:  # noqa: BLE001 - a soak records, it does not stop
                self.errors.append(f"status at {at:.1f}: {exc}")
                continue
            self.polls += 1
            self.boundary_polls += at_boundary
            self.health_counts[view.verdict] = self.health_counts.get(view.verdict, 0) + 1
            if view.verdict == "healthy":
                continue
            stale = [w for w in view.warnings if any(s in w for s in STALE_WORDS)]
            record = {"t": round(at, 3), "window": round(self.window_index(at), 3), "boundary": at_boundary,
                      "verdict": view.verdict, "exit": view.exit_code, "warnings": view.warnings}
            excuse = self.grace(at, "stale" if stale else "any")
            record["excused_by"] = excuse["name"] if excuse else None
            self.write("health.jsonl", record)
            if stale and excuse is None:
                self.false_stale.append(record)
            elif excuse is None:
                self.unexcused.append(record)

    def cash_loop(self) -> None:
        last = None
        while not self.stop.wait(self.args.cash_s):
            try:
                t0 = time.time()
                exchange = float(self.stack.sim.admin.balance(self.wallet)["pusd"])
                trader = self.stack.status(timeout=5.0).balance_usd
                t1 = time.time()
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"cash at {time.time():.1f}: {exc}")
                continue
            if last is not None and abs(exchange - last) > 1e-9:
                self.cash_changes.append(t0)  # changed in (previous read, t0]: conservative by cash_s at most
            last = exchange
            sample = rep.CashSample(t0, t1, exchange, trader)
            self.cash.append(sample)
            self.write("cash.jsonl", {"t0": round(t0, 3), "t1": round(t1, 3), "exchange": exchange, "trader": trader})

    FAULTS = (
        ("market ws drop", True, 8.0),
        ("user ws drop", False, 8.0),
        ("500 after place", False, 8.0),
        # the redeemer warns until a retry works: after a revert it waits a minute (then doubles), so 150 s
        ("relayer 500", False, 150.0),
        ("rtds drop", False, 8.0),
        ("relayer revert", False, 150.0),
        ("feed restart", True, 15.0),
    )

    def fire(self, i: int) -> None:
        name, stale_ok, grace = self.FAULTS[i % len(self.FAULTS)]
        admin = self.stack.sim.admin
        t = time.time()
        # Known before it is fired (a health poll may land while a feed restart is under way), its grace counted
        # from when it is over.
        fault = {"t": t, "name": name, "stale_ok": stale_ok, "grace_until": math.inf, "window": round(self.window_index(t), 2)}
        self.faults.append(fault)
        try:
            if name == "market ws drop":
                admin.fault("drop_ws", channel="market")
            elif name == "user ws drop":
                admin.fault("drop_ws", channel="user")
            elif name == "rtds drop":
                admin.fault("drop_ws", channel="rtds")
            elif name == "500 after place":
                admin.fault("post_status", status=500, count=1)
            elif name == "relayer 500":
                admin.relayer_fault(status=500, count=1)
            elif name == "relayer revert":
                admin.relayer_fault(fail=True, count=1)
            elif name == "feed restart":
                self.stack.stop_feed()
                self.stack.start_feed()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"fault {name} at {t:.1f}: {exc}")
        fault["grace_until"] = time.time() + grace
        fault["took_s"] = round(time.time() - t, 3)
        self.write("faults.jsonl", fault)

    def collect_trades(self) -> None:
        """The exchange's trades for our wallet and the relayer's executed transactions (redemptions, merges), kept
        here as the sim forgets them after --retain-s; written to trades.jsonl / relayer.jsonl for later analysis."""
        try:
            for row in self.stack.sim.admin.trades(self.wallet):
                if row["id"] not in self.exchange_trades:
                    self.write("trades.jsonl", row)
                self.exchange_trades[row["id"]] = row
            for tx in self.stack.sim.admin.relayer()["transactions"]:
                if tx["state"] in ("STATE_MINED", "STATE_CONFIRMED") and tx["transactionID"] not in self.relayed:
                    self.relayed[tx["transactionID"]] = _stamp(tx["updatedAt"])
                    self.write("relayer.jsonl", {"id": tx["transactionID"], "executed_at": self.relayed[tx["transactionID"]],
                                                 "effects": tx.get("effects")})
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"trades: {exc}")

    def sample(self, w: int) -> None:
        at = time.time()
        row: dict = {"t": round(at, 3), "window": w}
        for role, pid in self.pids().items():
            figures = proc_figures(pid) if pid else None
            if figures is None:
                continue
            self.samples[role].append(rep.ProcessSample(self.window_index(at), pid, figures["rss_kb"], figures["fds"],
                                                        figures["threads"], figures.get("anon_kb", 0),
                                                        figures.get("shmem_kb", 0)))
            row[role] = {"pid": pid, **figures}
        state = self.stack.state_dir
        row["ledger_bytes"] = file_bytes(state / "ledger.sqlite", state / "ledger.sqlite-wal")
        row["record_bytes"] = file_bytes(self.record)
        in_use = set().union(*(shm_in_use(pid) for pid in self.pids().values() if pid))
        self.shm_seen |= in_use
        row["shm"] = sorted(in_use)
        row["series"] = {k: series_count(p) for k, p in self.stack.metrics_ports.items()}
        row["load"] = os.getloadavg()[0]
        self.write("samples.jsonl", row)

    # -- main -----------------------------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        windows = int(a.minutes * 60 // self.window_s)
        print(f"soak: {windows} windows of {self.window_s} s (~{a.minutes:g} min), warm-up {a.warmup} windows, a fault "
              f"every {a.fault_every or 'no'} windows; files in {self.out}", flush=True)
        self.start()
        print(f"  sim pid {self.stack.sim.process.pid}, feed pid {self.stack.feed.pid}, trader pid "
              f"{self.stack.trader.pid}; mmctl: {self.stack.mmctl_hint()}", flush=True)
        threads = [threading.Thread(target=self.health_loop, daemon=True, name="health"),
                   threading.Thread(target=self.cash_loop, daemon=True, name="cash")]
        for th in threads:
            th.start()
        faults_fired = 0
        code = 1
        try:
            for w in range(windows):
                start = self.t0 + w * self.window_s
                # a fault at 0.4 of the window, the sample at 0.5 (its effects have settled by the next sample)
                if a.fault_every and w >= 2 and w % a.fault_every == 0:
                    self._sleep_until(start + 0.4 * self.window_s)
                    self.fire(faults_fired)
                    faults_fired += 1
                self._sleep_until(start + 0.5 * self.window_s)
                self.sample(w)
                self.collect_trades()
                for role, proc in (("feed", self.stack.feed), ("trader", self.stack.trader)):
                    if proc.poll() is not None:
                        raise RuntimeError(f"polymm-{role} exited with {proc.returncode} in window {w}")
                if w % 10 == 0:
                    self._progress(w, windows)
            code = self.finish()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        except Exception as exc:  # noqa: BLE001 - say why in one line, stop everything
            print(f"soak failed: {exc}", flush=True)
        finally:
            self.stop.set()
            self.stack.close()
        return code

    def _sleep_until(self, t: float) -> None:
        while (left := t - time.time()) > 0:
            time.sleep(min(left, 1.0))

    def _progress(self, w: int, windows: int) -> None:
        last = {r: s[-1].rss_kb for r, s in self.samples.items() if s}
        print(f"  window {w}/{windows}  rss MB " + " ".join(f"{r} {v / 1024:.1f}" for r, v in last.items())
              + f"  polls {self.polls} not healthy {sum(v for k, v in self.health_counts.items() if k != 'healthy')}"
              f" false stale {len(self.false_stale)}  load {os.getloadavg()[0]:.2f}", flush=True)

    # -- the end ----------------------------------------------------------------------------------------------

    def finish(self) -> int:
        from polymm.ctl import protocol as p

        self.stop.set()
        self.stack.ask(p.PauseRequest(), timeout=20.0)
        deadline = time.time() + 15
        while time.time() < deadline and self.stack.sim.admin.open_orders(self.wallet):
            time.sleep(0.2)
        time.sleep(2.0)  # let the last fills' news arrive
        self.collect_trades()
        exchange_cash = float(self.stack.sim.admin.balance(self.wallet)["pusd"])
        trader_cash = self.stack.status().balance_usd
        final_gap = abs(trader_cash - exchange_cash) if trader_cash is not None else math.inf
        sim_state = self.stack.sim.admin.state()
        sim_positions = self.stack.sim.admin.balance(self.wallet)["positions"]
        rc = self.stack.stop_trader()
        orphans = len(self.stack.open_orders_on_sim()) + len(self.stack.sim.admin.open_orders(self.wallet))
        ledger = self.ledger_fills()
        exchange = rep.fill_keys(list(self.exchange_trades.values()), self.wallet)
        fills = rep.compare_fills(exchange, ledger)
        positions_differ = self.positions_differ(ledger, sim_state, sim_positions)
        self.stack.stop_feed()
        self.stack.close()
        # The demo's Stack removes the feed's segment at the end (an installed feed keeps it, on purpose: readers
        # never see it vanish); whatever else our processes had is a leak, and so is more than one segment in use.
        leaked = sorted(n for n in self.shm_seen if shm_exists(n))
        self.leaked, self.positions_differ_list, self.orphans = leaked, positions_differ, orphans
        warm = min(self.args.warmup, max(1, int(self.args.minutes * 60 // self.window_s) // 3))
        # RSS saws with the allocator's trim cycle (polymm/memory.py): slopes over whole cycles
        cycle = max(1, round(memory.TRIM_EVERY_S / self.window_s))
        trends = {r: rep.trend(r, s, warm, cycle=cycle) for r, s in self.samples.items()}
        fill_times = [float(t["match_time"]) for t in self.exchange_trades.values()]
        cash = rep.cash_figures(self.cash, fill_times, list(self.relayed.values()))
        lines = rep.verdict_lines(trends, shm_leaked=leaked, false_stale=len(self.false_stale), cash=cash, fills=fills,
                                  positions_differ=positions_differ, final_cash_gap=final_gap, orphans=orphans)
        self.report(trends, lines, cash, fills, rc, exchange_cash, trader_cash, warm)
        return 0 if all(ok for ok, _ in lines) else 1

    def ledger_fills(self) -> dict:
        path = self.stack.state_dir / "ledger.sqlite"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT trade_id, order_id, side, size, price, status, match_ts, condition_id, leg "
                                "FROM fills").fetchall()
            self.windows = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT condition_id, up_token, down_token FROM windows")}
        finally:
            conn.close()
        return {(r[0], r[1]): {"side": r[2], "size": r[3], "price": r[4], "status": r[5], "match_ts": r[6],
                               "condition_id": r[7], "leg": r[8]} for r in rows}

    def positions_differ(self, ledger: dict, sim_state: dict, sim_positions: dict) -> list[str]:
        """Net shares per token from the ledger against the exchange's, for the markets the sim still lists; a
        resolved market may read 0 on the exchange (redeemed)."""
        net: dict[str, float] = {}
        for f in ledger.values():
            if f["status"] == "FAILED" or f["condition_id"] not in self.windows:
                continue
            up, down = self.windows[f["condition_id"]]
            token = up if f["leg"] == "up" else down
            net[token] = net.get(token, 0.0) + (f["size"] if f["side"] == "BUY" else -f["size"])
        out = []
        for m in sim_state["markets"]:
            for token in (m["up_token"], m["down_token"]):
                ours, theirs = round(net.get(token, 0.0), 6), round(float(sim_positions.get(token, 0.0)), 6)
                if abs(ours - theirs) > 1e-6 and not (m["winning_token"] and theirs == 0):
                    out.append(f"{m['slug']} {'up' if token == m['up_token'] else 'down'}: ledger {ours}, exchange {theirs}")
        return out

    def report(self, trends, lines, cash, fills, rc, exchange_cash, trader_cash, warm) -> None:
        loads = [json.loads(x)["load"] for x in (self.out / "samples.jsonl").read_text().splitlines()]
        summary = {
            "window_s": self.window_s, "windows": len(self.samples["trader"]), "warmup_windows": warm,
            "trends": {r: (t.__dict__ if t else None) for r, t in trends.items()},
            "health": self.health_counts, "polls": self.polls, "boundary_polls": self.boundary_polls,
            "false_stale": self.false_stale[:20], "unexcused_unhealthy": self.unexcused[:20],
            "unexcused_count": len(self.unexcused), "faults": len(self.faults),
            "cash": {"samples": cash.samples, "settled": cash.settled, "worst": cash.worst, "bad": len(cash.bad),
                     "first_bad": [s.__dict__ for s in cash.bad[:5]]},
            "final": {"exchange_cash": exchange_cash, "trader_cash": trader_cash, "trader_exit": rc},
            "fills": {"exchange": fills.exchange, "ledger": fills.ledger, "missing": fills.missing[:10],
                      "extra": fills.extra[:10], "status_differs": fills.status_differs[:10]},
            "shm_leaked": self.leaked, "positions_differ": self.positions_differ_list, "orphans": self.orphans,
            "load_avg": {"mean": sum(loads) / len(loads) if loads else None, "max": max(loads, default=None)},
            "errors": self.errors[:20], "verdict": [{"ok": ok, "what": w} for ok, w in lines],
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        print(f"\nsoak: {summary['windows']} windows of {self.window_s} s; slopes after {warm} warm-up windows; load "
              f"average mean {summary['load_avg']['mean'] or 0:.2f} (max {summary['load_avg']['max'] or 0:.2f})")
        print("\n".join(rep.rss_lines(trends)))
        print(f"  health polls {self.polls} ({self.boundary_polls} at a boundary): "
              + ", ".join(f"{k} {v}" for k, v in sorted(self.health_counts.items()))
              + f"; not healthy and not explained by a fault: {len(self.unexcused)}")
        for r in self.unexcused[:5]:
            print(f"    window {r['window']:.2f} {r['verdict']}: {'; '.join(r['warnings'])[:200]}")
        for r in self.false_stale[:5]:
            print(f"    false stale, window {r['window']:.2f}: {'; '.join(r['warnings'])[:200]}")
        print(f"  faults fired {len(self.faults)}; errors {len(self.errors)}")
        for e in self.errors[:5]:
            print(f"    {e}")
        print("\n".join(rep.verdict_text(lines)))


def analyze(out: Path, warmup: int) -> int:
    """The verdict again from a run's files (samples, cash, trades, relayed transactions, health), with this
    version of the arithmetic; the end-of-run checks (fills, positions, orphans, final cash) from its summary.json."""
    read = lambda name: [json.loads(x) for x in (out / name).read_text().splitlines()] if (out / name).exists() else []  # noqa: E731
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    rows = read("samples.jsonl")
    if not rows:
        print(f"soak: no samples in {out}")
        return 2
    window_s = summary.get("window_s") or 20
    t0 = rows[0]["t"] - 0.5 * window_s
    samples = {r: [rep.ProcessSample((row["t"] - t0) / window_s, row[r]["pid"], row[r]["rss_kb"], row[r]["fds"],
                                     row[r]["threads"], row[r].get("anon_kb", 0), row[r].get("shmem_kb", 0))
                   for row in rows if r in row] for r in ROLES}
    cycle = max(1, round(memory.TRIM_EVERY_S / window_s))
    trends = {r: rep.trend(r, s, warmup, cycle=cycle) for r, s in samples.items()}
    cash = rep.cash_figures([rep.CashSample(c["t0"], c["t1"], c["exchange"], c["trader"]) for c in read("cash.jsonl")],
                            [float(t["match_time"]) for t in read("trades.jsonl")],
                            [tx["executed_at"] for tx in read("relayer.jsonl")])
    false_stale = [h for h in read("health.jsonl")
                   if h["excused_by"] is None and any(w in x for x in h["warnings"] for w in STALE_WORDS)]
    fills = summary.get("fills", {})
    check = rep.FillCheck(fills.get("exchange", 0), fills.get("ledger", 0), fills.get("missing", []),
                          fills.get("extra", []), fills.get("status_differs", [])) if fills else None
    final = summary.get("final", {})
    gap = (abs(final["trader_cash"] - final["exchange_cash"]) if final.get("trader_cash") is not None else None)
    lines = rep.verdict_lines(trends, shm_leaked=summary.get("shm_leaked", []), false_stale=len(false_stale),
                              cash=cash, fills=check, positions_differ=summary.get("positions_differ", []),
                              final_cash_gap=gap, orphans=summary.get("orphans"))
    loads = [r["load"] for r in rows]
    print(f"soak {out}: {len(rows)} windows of {window_s} s, slopes after {warmup} warm-up windows (over whole "
          f"{cycle}-window trim cycles); load average mean {sum(loads) / len(loads):.2f} (max {max(loads):.2f})")
    print("\n".join(rep.rss_lines(trends)))
    print("\n".join(rep.verdict_text(lines)))
    return 0 if all(ok for ok, _ in lines) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="how long (default 120)")
    ap.add_argument("--window-s", type=int, default=20, help="window length on the sim (default 20, the minimum)")
    ap.add_argument("--out", default="soak-out/run", help="directory for the samples, logs and summary")
    ap.add_argument("--warmup", type=int, default=100,
                    help="windows left out of the slopes (default 100: the trader keeps 96 windows of settled markets, "
                         "a day of 15-minute windows, so its memory levels off after them)")
    ap.add_argument("--fault-every", type=int, default=3, help="windows between faults (0: none; default 3)")
    ap.add_argument("--poll-s", type=float, default=2.0, help="health poll interval besides the boundaries (default 2)")
    ap.add_argument("--cash-s", type=float, default=0.5, help="cash comparison interval (default 0.5)")
    ap.add_argument("--seed", type=int, default=27)
    ap.add_argument("--tracemalloc", nargs="?", const="feed,trader,sim", default=None, metavar="ROLES",
                    help="the services (or those named: feed,trader,sim) trace allocations and write what grew after "
                         "warm-up to --out (slow)")
    ap.add_argument("--tracemalloc-frames", type=int, default=8, help="traceback depth with --tracemalloc (default 8)")
    ap.add_argument("--analyze", metavar="DIR", default=None,
                    help="run nothing: the verdict again from an earlier run's files in DIR")
    args = ap.parse_args(argv)
    if args.analyze:
        return analyze(Path(args.analyze), args.warmup)
    if args.window_s < 20:
        ap.error(f"--window-s {args.window_s}: the soak needs windows of at least 20 s (see the module docstring)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
