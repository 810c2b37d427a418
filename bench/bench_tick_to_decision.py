"""Tick-to-decision latency: from the feed's publish time in shared memory to the trader's decision, and to the
order leaving the gateway. Median and p99, feed and trader in separate processes, on the local sim; and where
each decision's time goes.

How it is measured
- polymm-sim and polymm-feed run as subprocesses (demo.Stack); this process IS polymm-trader: the production
  TraderService with the environment and arguments the unit gives it (ledger and its writer thread, balance and
  resolution watchers, redeemer, control server, status thread, Prometheus endpoint, its log at INFO written line
  by line in the journald format (to a file), POLYMM_WARM_EVERY_MS and the unit's LimitRTPRIO=10), so each decision
  can be timestamped without adding I/O to the loop.
- tick -> decision: for every decision woken by a new shm sequence, `decided_at - publish_ts`, where
  publish_ts is the feed's own time.time() when it published the OLDEST tick this decision is the first to answer
  (read back from the segment's ring after the run: two publishes inside one decision, a trade's `book` right after
  its `price_change`, are both answered by the next decision, and the older one waited longer), decided_at this
  process's time.time() right after the pipeline returned its actions (same host clock). The figure from the
  newest tick only (the snapshot's own publish time: what this bench measured before) is printed under it.
- tick -> order sent: for decisions that placed an order, the time the execution core handed the HTTP request
  to the socket (its `on_submit_sent` hook) minus publish_ts.
- The baseline, in the same run: the original bot's wait, a 1 ms-sleep poller in its own process, only *seeing*
  each tick, measured the same two ways. Our figures are printed as ratios to it (the issue's goals: median <=
  0.3x, p99 <= 0.5x). Figures only; nothing here asserts a timing.

- Phases: PHASE_S long, aligned with the sim's windows, each window starting its cycle at another phase type, so
  window starts (the rotation, the entries and their fills: the slowest decisions) are shared out over the phase
  types like everything else: a 90-s run has one window start with the probe and one without. The headline prints
  the decisions of a window's first ROTATION_S apart ("window starts") and without them.
- Where the time goes (issue 26): trader/latency.py's probe, switched on in half of the phases (so the headline
  figures are those of the other half, without its marks), splits every decision woken by a tick: publish -> book
  read into busy (named by what the loop was doing: an earlier decision, by why it ran, or a rehearsal) / wake-up
  (of it waiting for a CPU, and at most what our other threads ran meanwhile: the GIL's share) / the loop /
  commands / snapshot, and book read -> decision by stage (prep, fee, view, orders, net, positions, exchange,
  wallet, decide) and by cause (this thread's CPU, GC on it, waiting for a CPU, blocked on the execution state's
  lock, blocked while our other threads ran: the GIL), with the share the named causes account for, other threads'
  CPU meanwhile, and what runs after the decision (orders out, with the log line, ledger queue and metrics counts
  it does, the wallet publish, events, status). Printed for the typical decision (the middle fifth), the slow ones
  (top 5 %) and on average; `--dump FILE` writes every one as JSON.
- Warming (Engine._rehearse): on by default, as the unit runs the trader; `--warm ab` alternates phases with and
  without the loop's rehearsals, reported side by side with this process's CPU in each; `--warm off` runs without.
  `--rtprio 0` runs the decision thread ordinary (no SCHED_FIFO), `--loop-cpu off` leaves it unpinned (the unit's
  POLYMM_LOOP_CPU=auto pins it to the last CPU), `--loop-cpu-idle off` lets that CPU sleep while idle (the unit's
  POLYMM_LOOP_CPU_IDLE=poll holds it polling: polymm/cpu_idle.py, as root), `--switch-us N` one switch interval
  throughout, `--switch-us W,D` W while the loop waits and D while it decides (the engine's default:
  SWITCH_INTERVAL_S and SWITCH_INTERVAL_DECIDING_S). `--step-aside off` runs without the other threads giving way to
  the loop (trader/priority.py); on (the default), what giving way cost them is printed.
- The book without us (issue 11): every decision subtracts our resting orders from the published depth
  (trader/decision/net_book.py). `--net-book off` decides on the published book instead, as before, for the
  A/B; and after the run the net-book step alone is timed in this process on the last snapshot (N = 10 levels)
  with the orders working then, next to the rest of "book read -> decision" (snapshot incl. depth decode,
  market view, decide) on the same snapshot.
- Metrics on vs off, in the same run: the phases also alternate metrics; in "on" phases the trader's Prometheus
  side is live as polymm-trader runs it (the tick->decision histogram observed on every decision, order events
  counted, the real endpoint scraped every METRICS_SCRAPE_S by a process of its own, as Prometheus is: 15x more
  often than the 15 s of deploy/monitoring/scrape.yml); in "off" phases none of it. Both are reported side by
  side, with the exporter's own work per scrape (the registry's exposition, timed in the trader's process).
- A/B switches, to measure what each latency measure buys in the same conditions: `--wait poll` puts back
  the loop's earlier wait (polling the sequence word between 50-150 us sleeps) instead of the futex wake-up;
  `--runtime default` leaves the interpreter's GC, thread switch interval and scheduling as Python ships them
  instead of what Engine.run sets (engine.tune_runtime). Also reported: this process's CPU use while measuring
  (the trader's threads and the bench's own bookkeeping), in % of one core, and the load average.
- Older trees (without trader/latency.py, the rehearsals or polymm/realtime.py) run too, without what they lack:
  alternate `cd OLD && OLD/.venv/bin/python NEW/bench/bench_tick_to_decision.py` with the new tree's runs.

Usage: .venv/bin/python bench/bench_tick_to_decision.py [--seconds 60] [--window-s 60] [--sim-tick-s 0.05]
       [--btc-vol 0.001] [--wait futex|poll] [--runtime tuned|default] [--net-book on|off] [--warm ab|on|off]
       [--warm-every-ms N] [--rtprio N] [--loop-cpu auto|off|N] [--loop-cpu-idle poll|off] [--switch-us W[,D]]
       [--step-aside on|off] [--start-at S] [--dump FILE] [--samples FILE]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


WARM_UP_S = 3.0
PHASE_S = 5.0
PHASE_LEAD_S = 0.5  # phases turn this much early (_phases), so a window's first decisions fall in its first phase
METRICS_SCRAPE_S = 1.0
# The first seconds of a window are a burst on every process (the feed re-subscribes, the sim sends the new
# books, the core subscribes the new market, the strategies place their entries): reported apart, because with
# the bench's short windows they come every minute, in production (900 s windows) every 15 minutes.
ROTATION_S = 5.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def describe(name: str, samples_s: list[float]) -> str:
    if not samples_s:
        return f"{name:<28} no samples"
    us = [s * 1e6 for s in samples_s]
    return (f"{name:<28} n={len(us):<6} median {statistics.median(us):8.1f} us   p99 {percentile(us, 99):8.1f} us   "
            f"max {max(us):8.1f} us")


# The original bot's wait, for comparison on the same machine in the same run: poll the sequence, sleep 1 ms.
BASELINE = """
import sys, time, json
from polymm.feed import shm
reader = shm.Reader(sys.argv[1], wait_s=10)
end, last, lat = time.time() + float(sys.argv[2]), reader.seq(), []
while time.time() < end:
    seq = reader.seq()
    if seq != last:
        snap = reader.snapshot()
        seen = time.time()
        if max(snap.up.seq, snap.down.seq) == snap.seq:
            lat.append([seen - max(snap.up.publish_ts, snap.down.publish_ts), last, snap.seq, seen])
        last = snap.seq
    time.sleep(0.001)
print(json.dumps(lat))
"""


def ring_publish_times(reader, first_seq: int) -> dict[int, float | None]:
    """Publish time (the feed's time.time()) of every entry still in the segment's ring after `first_seq`: the
    leg(s) whose seq is the entry's were published by it; None for a status-only publish (no tick)."""
    out: dict[int, float | None] = {}
    for u in reader.updates_since(first_seq):
        ts = [leg.publish_ts for leg in (u.up, u.down) if leg.seq == u.seq]
        out[u.seq] = max(ts) if ts else None
    return out


def oldest_unanswered(ring: dict[int, float | None], prev: int | None, seq: int) -> tuple[float, int] | None:
    """(publish time of the oldest tick in (prev, seq], ticks in it), when the ring still covers that range: the
    tick that waited longest for the decision (or sighting) that first answered it. A decision reads only the
    newest book, so two publishes inside one decision are both answered by the next: measured from the newest
    only, the older one's wait would never be counted."""
    if prev is None or not ring or min(ring) > prev + 1:
        return None
    times = [t for t in (ring.get(s) for s in range(prev + 1, seq + 1)) if t is not None]
    return (min(times), len(times)) if times else None


def _legacy_polling_wait(engine) -> bool:
    """The decision loop's wait before the futex wake-up (for --wait poll): poll the sequence word between
    short sleeps, 50 us for 0.25 s after a tick, 150 us otherwise."""
    from polymm.trader import engine as engine_mod

    last_seq = engine._last_seq
    seq = engine.reader.seq
    if seq() != last_seq or engine._decide_again:
        return True
    wake = getattr(engine.core, "wake", None)
    if (wake is not None and wake.is_set()) or not engine._commands.empty():
        return True
    now = time.monotonic()
    if now - engine._last_decision_mono >= engine_mod.DECIDE_EVERY_S:
        return True
    hot = now - getattr(engine, "_bench_last_tick", 0.0) < 0.25
    step = 50e-6 if hot else 150e-6
    until = min(now + engine_mod.EVENT_CHECK_S, engine._last_decision_mono + engine_mod.DECIDE_EVERY_S)
    while True:
        time.sleep(step)
        if seq() != last_seq:
            engine._bench_last_tick = time.monotonic()
            return True
        if time.monotonic() >= until:
            return False


# The scraper, a process of its own as Prometheus is: one line in ("scrape"), one line out ("seconds bytes").
# In the trader's process its HTTP client and the 14 KiB it reads would take the GIL from the decision loop,
# which production's scraper never does.
SCRAPER = r"""
import sys, time, urllib.request
url = sys.argv[1]
for line in sys.stdin:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as r:
        size = len(r.read())
    print(time.perf_counter() - t0, size, flush=True)
"""


def _phase_at(now: float, window_s: float, warm_ab: bool) -> tuple[tuple[bool, bool, bool], float]:
    """(metrics_on, probe_on, warm_on) of the phase at unix time `now`, and when that phase ends.

    Phases are PHASE_S long and aligned with the sim's windows: a window's first ROTATION_S (its start: the
    rotation, the entries, their fills) fall in its first phase. Each window starts its cycle at another phase
    (`_window_first_phase`), so the window starts are shared out over the phase types as evenly as everything
    else: with one cycle per window, every window start of a run used to land in the same phase type, and a run's
    headline held either all of its window starts or none."""
    types = 8 if warm_ab else 4
    window = int(now // window_s)
    into = now - window * window_s
    j = int(into // PHASE_S)
    k = (_window_first_phase(window, warm_ab) + j) % types
    return (k % 2 == 1, (k // 2) % 2 == 1, not warm_ab or (k // 4) % 2 == 0), window * window_s + (j + 1) * PHASE_S


def _window_first_phase(window: int, warm_ab: bool) -> int:
    """The phase type a window starts in: the probe alternates window by window, metrics every other window
    (and warming every fourth with `warm_ab`), so any two windows in a row have one start with the probe and one
    without, and four in a row cover metrics off/on under both."""
    k = 2 * (window % 2) + (window // 2) % 2
    return k + 4 * ((window // 4) % 2) if warm_ab else k


def _phases(stop: threading.Event, phase: list, url: str, scrapes: list, warm_ab: bool, window_s: float) -> None:
    """Phases of PHASE_S (`_phase_at`): metrics off/on x probe off/on (x warming on/off with `warm_ab`); phase[0] =
    (metrics_on, probe_on, warm_on), so each comparison is balanced over the others and over window starts. While
    metrics are on, the scraper process (SCRAPER) scrapes the endpoint every METRICS_SCRAPE_S."""
    scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, bufsize=1)
    try:
        while not stop.is_set():
            # Turned PHASE_LEAD_S early: the probe follows a phase within 50 ms (_toggle_phase), and a window's
            # first decision comes within a millisecond of its start.
            phase[0], phase_end = _phase_at(time.time() + PHASE_LEAD_S, window_s, warm_ab)
            phase_end -= PHASE_LEAD_S
            while not stop.is_set() and time.time() < phase_end:
                if phase[0][0]:
                    scraper.stdin.write("scrape\n")
                    seconds, size = scraper.stdout.readline().split()
                    scrapes[0] += 1
                    scrapes.append((float(seconds), int(size)))
                stop.wait(min(METRICS_SCRAPE_S, max(0.0, phase_end - time.time())))
    finally:
        scraper.stdin.close()
        scraper.wait(timeout=5)


def _switch_us(text: str) -> float | tuple[float, float]:
    """`--switch-us`: W or W,D (microseconds, positive)."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: want W or W,D, microseconds above 0 (e.g. 100 or 50,500)")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _exposition_costs(registry, n: int = 20) -> list[tuple[float, float]]:
    """(wall, thread CPU) seconds of what one scrape makes the trader's exporter thread do: collect every
    collector and write the text exposition."""
    from prometheus_client import generate_latest

    out = []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        generate_latest(registry)
        out.append((time.perf_counter() - t0, time.thread_time() - c0))
    return out


class _TimedPlaces:
    """The execution core, with each place() remembered against the tick that caused it (if any)."""

    def __init__(self, core, engine_box, tick_of_order, lock) -> None:
        self._core, self._engine, self._ticks, self._lock = core, engine_box, tick_of_order, lock

    def place(self, want):
        placed_at = time.time()
        client_id = self._core.place(want)
        tick = self._engine[0].tick_publish_ts
        with self._lock:
            self._ticks[client_id] = (tick, placed_at)
        return client_id

    def __getattr__(self, name):
        return getattr(self._core, name)


def run(seconds: float, window_s: int, sim_tick_s: float, btc_vol: float | None = None, wait: str = "futex",
        runtime: str = "tuned", nice: int = 0, sim_nice: int = 0, net_book: str = "on", dump: str = "",
        warm: str = "on", rtprio: int = 10, warm_every_ms: float = 0.0, switch_us: float | tuple[float, float] = 0.0,
        step_aside: str = "on", start_at: float | None = None, loop_cpu: str = "auto",
        loop_cpu_idle: str = "poll", samples_file: str = "") -> int:
    import gc
    import logging

    from polymm import demo, env, logs
    from polymm.trader import engine as engine_module
    from polymm.trader import service

    try:
        from polymm.trader import latency
    except ImportError:  # the code before issue 26 (A/B runs of older trees): no breakdown
        latency = None
    try:
        from polymm import cpu_idle, realtime as loop_realtime
    except ImportError:  # a tree before the loop's CPU was kept awake
        cpu_idle = None
    idle = ["idles as the kernel decides"]  # the loop's CPU while idle, for the settings line
    held: list[int] = []  # the CPU held awake for this run (released at the end)

    if switch_us:  # W: one interval throughout, waiting and deciding alike (as before the loop's GIL priority); W,D
        waiting, deciding = switch_us if isinstance(switch_us, tuple) else (switch_us, switch_us)
        engine_module.SWITCH_INTERVAL_S = waiting / 1e6
        if hasattr(engine_module, "SWITCH_INTERVAL_DECIDING_S"):
            engine_module.SWITCH_INTERVAL_DECIDING_S = deciding / 1e6
    if hasattr(engine_module, "STEP_ASIDE"):
        engine_module.STEP_ASIDE = step_aside == "on"
    if net_book == "off":
        engine_module.net_view = lambda view, *_args: view  # decide on the published book, ours included

    samples: list[dict] = []  # one per decision woken by a tick, after the warm-up
    scrapes: list = [0]  # count, then (seconds, bytes) per scrape
    sends: list[float] = []
    handoffs: list[float] = []  # ExecutionCore.place() called -> its POST written by a worker
    measure_from = [float("inf")]  # start-up (threads starting, first reconcile) is not steady state
    phase = [(False, False, True)]  # (metrics on, probe on, warming on)
    lock = threading.Lock()
    last_tick_seq: list[int | None] = [None]  # the sequence the last measured decision read

    if start_at is not None:
        # The sim's market is a seeded walk on a grid anchored at its start, and its windows follow the wall clock:
        # started at the same second of a window, two runs see the same market (A/B runs of two trees trade alike).
        time.sleep((start_at - time.time()) % window_s)
    with tempfile.TemporaryDirectory(prefix="polymm-bench-") as tmp:
        # entry_threshold 0.05: S1 always wants an entry, so requotes keep orders flowing for the send figure.
        sim_args = ("--tick-s", str(sim_tick_s)) + (("--btc-vol", str(btc_vol)) if btc_vol else ())
        stack = demo.Stack(Path(tmp), window_s=window_s, sim_args=sim_args,
                           config_text=demo.demo_config(window_s, entry_threshold=0.05))
        svc = None
        try:
            stack.start(trader=False)  # sim + feed; this process is the trader
            if sim_nice:
                # In production the exchange is not on the trading box: give the sim (and its threads) the
                # leftovers of the 2 cores so it competes less with the feed and the trader being measured.
                for tid in os.listdir(f"/proc/{stack.sim.process.pid}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(tid), sim_nice)
            if nice:
                # Linux: per thread, inherited by threads created later (the engine's and the core's) and by
                # the 1 ms poller below, not by the sim and the feed already started. Like systemd's Nice=.
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            # This process is polymm-trader: the same environment, arguments and service (ledger and its writer,
            # balance and resolution watchers, redeemer, control server, status thread, Prometheus endpoint), and
            # its log at INFO written line by line as under journald (to a file here: it would drown the figures).
            trader_env = stack.env()
            for name, value in trader_env.items():
                if name.startswith(env.PREFIX) or name in env.SECRET_NAMES or name == env.SIGNATURE_TYPE:
                    os.environ[name] = value
            os.environ[env.JOURNAL_STREAM] = "0:0"  # the journald line format
            if hasattr(env, "WARM_EVERY_MS"):  # as polymm-trader.service sets it
                from polymm.trader.engine import WARM_EVERY_S

                os.environ[env.WARM_EVERY_MS] = f"{warm_every_ms or WARM_EVERY_S * 1000:g}"
            if hasattr(env, "LOOP_CPU"):  # as polymm-trader.service sets it ("auto"); --loop-cpu off for the A/B
                os.environ[env.LOOP_CPU] = loop_cpu
            if cpu_idle is not None and loop_cpu_idle == "poll":
                # What the unit's ExecStartPre=+polymm-cpu-idle hold does (as root: this bench needs it too)
                cpu = loop_realtime.loop_cpu_setting()
                if cpu is None:
                    idle[0] = "not pinned: no CPU held awake"
                else:
                    try:
                        cpu_idle.hold(cpu)
                        held.append(cpu)
                        idle[0] = "polling while idle"
                    except OSError as exc:
                        idle[0] = f"not held awake ({exc})"
            log_file = open(Path(tmp) / "trader.log", "a", buffering=1)
            if "background" in inspect.signature(logs.setup).parameters:  # as polymm-trader's main (polymm/logs.py)
                logs.setup("polymm.trader", "INFO", background=True, stream=log_file)
            else:  # an older tree: its lines written in place
                logs.setup("polymm.trader", "INFO")
                logging.getLogger().handlers[0].setStream(log_file)
            svc = service.TraderService(service.parse_args(["--metrics", f"127.0.0.1:{demo._free_port()}"]))
            svc._start()
            engine, core = svc.engine, svc.core
            counters = svc.metrics_counters
            tick_of_order: dict[str, float] = {}
            engine_box = [engine]
            unchanged_seen = [getattr(engine, "unchanged_ticks", 0)]

            def on_decision(snap, decided_at: float, sent_at: float) -> None:
                if phase[0][0]:
                    counters.on_decision(snap, decided_at, sent_at)  # what polymm-trader's hook does
                if decided_at < measure_from[0]:
                    return
                publish = engine.tick_publish_ts
                prev, last_tick_seq[0] = last_tick_seq[0], snap.seq
                # answered without deciding again (Engine._unchanged_tick): the book the last decision read
                unchanged, unchanged_seen[0] = (getattr(engine, "unchanged_ticks", 0) != unchanged_seen[0],
                                                getattr(engine, "unchanged_ticks", 0))
                with lock:
                    samples.append({
                        "prev": prev, "seq": snap.seq,
                        "decision": decided_at - publish, "read": engine.snapshot_at - publish,
                        "think": decided_at - engine.snapshot_at, "at": decided_at, "metrics": phase[0][0],
                        "probe": getattr(engine, "probe", None) is not None,
                        "warm": bool(getattr(engine, "warm_every_s", None)),
                        "steady": engine.market is not None and decided_at - engine.market.window_start > ROTATION_S,
                        "unchanged": unchanged,
                    })

            def on_submit_sent(client_id: str, t: float) -> None:
                # Orders leave from the core's worker threads; publish -> sent only for those a new tick caused.
                with lock:
                    tick, placed_at = tick_of_order.pop(client_id, (None, None))
                    if placed_at is not None and t >= measure_from[0]:
                        handoffs.append(t - placed_at)
                    if tick is not None and t >= measure_from[0]:
                        sends.append(t - tick)

            engine._on_decision = on_decision
            core.on_submit_sent = on_submit_sent
            engine.core = _TimedPlaces(core, engine_box, tick_of_order, lock)
            if wait == "poll":
                engine._wait_for_work = lambda: _legacy_polling_wait(engine)
            if runtime == "default":
                engine.tune_runtime = lambda: None
            measure_from[0] = time.time() + WARM_UP_S
            gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
            gc_started = [0.0, 0]
            idle_gc = getattr(engine, "_idle_gc", None)
            if idle_gc is not None:  # the loop's own collections between ticks, told apart from the others
                def counted_idle_gc():
                    gc_started[1] += 1
                    try:
                        idle_gc()
                    finally:
                        gc_started[1] -= 1

                engine._idle_gc = counted_idle_gc
            idle_pauses: list[float] = []

            def on_gc(phase_name: str, info: dict) -> None:
                if phase_name == "start":
                    gc_started[0] = time.perf_counter()
                elif time.time() >= measure_from[0]:
                    pause = time.perf_counter() - gc_started[0]
                    (idle_pauses if gc_started[1] else gc_pauses[info["generation"]]).append(pause)

            gc.callbacks.append(on_gc)
            stop = svc.signals.stop
            # The unit's LimitRTPRIO= (deploy/systemd/polymm-trader.service), which the decision loop reads when it
            # starts (polymm/realtime.py); --rtprio 0 measures the trader without it.
            import resource

            try:
                resource.setrlimit(resource.RLIMIT_RTPRIO, (rtprio, max(rtprio, resource.getrlimit(
                    resource.RLIMIT_RTPRIO)[1])))
            except (ValueError, OSError):
                # A sandbox without CAP_SYS_RESOURCE cannot raise the limit; with CAP_SYS_NICE the thread may still
                # be made real-time: stand in for the limit the unit would give.
                try:
                    from polymm import realtime

                    realtime.allowed_priority = lambda wanted: max(0, min(wanted, rtprio))
                except ImportError:
                    pass
            thread = threading.Thread(target=engine.run, args=(stop,), name="polymm-decision", daemon=True)
            thread.start()
            status_thread = threading.Thread(target=svc._status_loop, name="polymm-status", daemon=True)
            status_thread.start()
            probe = None
            if latency is not None:
                while thread.native_id is None:
                    time.sleep(0.001)
                probe = latency.Probe(latency.Clocks.real(thread.ident, thread.native_id), thread=thread.ident)
                probe.by_warm = {True: probe.decisions, False: []}
                _instrument(probe, core, latency)
            print(f"measuring for {seconds:.0f} s (sim window {window_s} s) ...", flush=True)
            time.sleep(WARM_UP_S)
            rehearsals: list[tuple[float, float]] = []  # (wall, CPU) seconds of each rehearsal
            if hasattr(engine, "_rehearse"):
                rehearse = engine._rehearse

                def timed_rehearsal():
                    w0, c0 = time.perf_counter(), time.thread_time()
                    rehearse()
                    rehearsals.append((time.perf_counter() - w0, time.thread_time() - c0))

                engine._rehearse = timed_rehearsal
            warm_every = getattr(engine, "warm_every_s", None)
            if warm == "off":
                engine.warm_every_s = warm_every = None
            phases = threading.Thread(target=_phases, args=(stop, phase, svc.exporter.url, scrapes,
                                                            warm == "ab" and bool(warm_every), window_s), daemon=True)
            phases.start()
            if probe is not None:
                probe.watch_gc()
            cpu_by_warm: dict[bool, list[float]] = {}
            toggler = threading.Thread(target=_toggle_phase, args=(stop, phase, engine, probe, warm_every, cpu_by_warm),
                                       daemon=True)
            toggler.start()

            cpu0, wall0 = time.process_time(), time.monotonic()
            baseline = subprocess.run([sys.executable, "-c", BASELINE, stack.shm, str(seconds - WARM_UP_S)],
                                      capture_output=True, text=True, timeout=seconds + 30)
            cpu_pct = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
            load = _loadavg()
            gc.callbacks.remove(on_gc)
            stop.set()
            thread.join(10)
            phases.join(10)
            engine.probe = None
            if probe is not None:
                probe.unwatch_gc()
            net_costs = _net_book_costs(engine.reader, core, svc.store.current)
            exposition = _exposition_costs(svc.exporter.registry)
            prevs = [x["prev"] for x in samples if x["prev"] is not None]
            ring = ring_publish_times(engine.reader, min(prevs) if prevs else engine.reader.seq())
        finally:
            for cpu in held:  # what the unit's ExecStopPost=+polymm-cpu-idle release does
                cpu_idle.release(cpu)
            if svc is not None:
                svc._shutdown()
            getattr(logs, "stop_background", lambda: None)()  # its last lines, before the directory goes
            stack.close()

    print()
    print("tick-to-decision, feed -> shm -> trader decision loop (separate processes, local sim)")
    intervals = getattr(engine, "_switch_intervals", None) or (sys.getswitchinterval(),) * 2
    print(f"settings: wait={wait} runtime={runtime} (switch interval {intervals[0] * 1e6:.0f} us waiting, "
          f"{intervals[1] * 1e6:.0f} us deciding) "
          f"nice={nice} decision loop "
          f"{'SCHED_FIFO ' + str(engine.realtime_priority) if getattr(engine, 'realtime_priority', 0) else 'ordinary'} "
          f"{'pinned to CPU ' + str(engine.loop_cpu) if getattr(engine, 'pinned', False) else 'unpinned'} "
          f"({idle[0]}) "
          f"sim tick {sim_tick_s} s btc-vol {btc_vol or 'sim default'}; "
          f"trader process CPU while measuring {cpu_pct:.1f} % of a core; load average {load}")
    try:
        polled_rows = json.loads(baseline.stdout)
    except ValueError:
        polled_rows = []
    polled = [row[0] for row in polled_rows]
    # From the oldest tick each decision (sighting) answers; where the ring no longer covers it, from the newest.
    for x in samples:
        oldest = oldest_unanswered(ring, x["prev"], x["seq"])
        x["oldest"] = x["decision"] if oldest is None else x["at"] - oldest[0]
        x["ticks"] = 1 if oldest is None else oldest[1]
    polled_oldest = []
    for _lat, prev, seq, seen in polled_rows:
        oldest = oldest_unanswered(ring, prev, seq)
        polled_oldest.append(_lat if oldest is None else seen - oldest[0])
    warm_ab = warm == "ab" and any(x["warm"] for x in samples) and not all(x["warm"] for x in samples)
    # the headline: decisions without the probe's marks, as the trader runs (warming on unless told off)
    plain = [x for x in samples if not x["probe"] and (x["warm"] or not warm_ab)]
    decisions = [x["oldest"] for x in plain]
    if samples_file:  # the headline's decisions, to pool several runs (a run's p99 is its second-slowest of ~100)
        Path(samples_file).write_text(json.dumps([
            {"us": x["oldest"] * 1e6, "at": x["at"], "window_start": not x["steady"], "ticks": x["ticks"]}
            for x in plain]))
    newest = [x["decision"] for x in plain]
    print(f"decisions without the probe{' with warming' if warm_ab else ''} ({len(plain)} of {len(samples)}), "
          f"each from the oldest tick it answers ({sum(x['ticks'] > 1 for x in plain)} answered more than one):")
    print(describe("publish -> decision", decisions))
    print(describe("  from the newest tick only", newest))
    print(describe("  publish -> book read", [x["read"] for x in plain]))
    print(describe("  book read -> decision", [x["think"] for x in plain]))
    print(describe(f"  without window starts", [x["oldest"] for x in plain if x["steady"]])
          + f"   (decisions > {ROTATION_S:.0f} s into their window)")
    starts = [x for x in plain if not x["steady"]]
    print(describe(f"  window starts", [x["oldest"] for x in starts])
          + f"   (the first {ROTATION_S:.0f} s of {len({int(x['at'] // window_s) for x in starts})} window(s))")
    print(describe("  ticks whose book changed", [x["oldest"] for x in plain if not x.get("unchanged")]))
    print(describe("  ticks of the book decided on", [x["oldest"] for x in plain if x.get("unchanged")])
          + "   (a last trade, nothing the decision reads: answered without deciding again)")
    if hasattr(engine, "merged_ticks"):
        print(f"  decisions given up for a newer tick published before their pipeline ran (the newer one's "
              f"answers both): {engine.merged_ticks} in the whole run")
    gate = getattr(engine, "gate", None)
    if gate is not None:
        if gate.enabled:
            print(f"  our other threads giving way to the loop (trader/priority.py), whole run: {gate.waits} times, "
                  f"{gate.waited_s * 1e3:.1f} ms in all, longest {gate.longest_s * 1e6:.0f} us, "
                  f"{gate.timeouts} at the {gate.max_wait_s * 1e3:.0f} ms bound")
        else:
            print("  our other threads giving way to the loop: off (--step-aside off)")
    print(describe("1 ms-sleep poller: publish -> seen", polled_oldest))
    print(describe("  from the newest tick only", polled))
    if decisions and polled:
        print(f"ours / the poller's, same run: median "
              f"{statistics.median(decisions) / statistics.median(polled_oldest):.2f}x (goal <= 0.3x), p99 "
              f"{percentile(decisions, 99) / percentile(polled_oldest, 99):.2f}x (goal <= 0.5x); our p99 "
              f"{percentile(decisions, 99) * 1e6:.0f} us (goal <= 500 us); from the newest tick only: median "
              f"{statistics.median(newest) / statistics.median(polled):.2f}x, p99 "
              f"{percentile(newest, 99) / percentile(polled, 99):.2f}x")
    print(f"net book: {net_book}; on the last snapshot, in this process (median of 2000, us): "
          f"snapshot {net_costs['snapshot']:.1f} (depth levels {net_costs['depth']}), market view "
          f"{net_costs['view']:.1f}, own book + net view {net_costs['net']:.1f} ({net_costs['orders']} working orders), "
          f"decide {net_costs['decide']:.1f}")
    print(describe("publish -> order sent", sends))
    print(describe("  place() -> order sent", handoffs))
    if warm_ab:
        cold = [x for x in samples if not x["probe"] and not x["warm"]]
        print(f"warming (Engine._rehearse every {1e3 * warm_every:g} ms while the book is quiet) on / off, alternating "
              f"{PHASE_S:.0f} s phases in this run:")
        for label, group in (("on", plain), ("off", cold)):
            print(describe(f"  publish -> decision, {label}", [x["oldest"] for x in group]))
            print(describe(f"    book read -> decision", [x["think"] for x in group]))
        if rehearsals:
            print(f"  one rehearsal: median {statistics.median(w for w, _ in rehearsals) * 1e6:.1f} us wall, "
                  f"{statistics.median(c for _, c in rehearsals) * 1e6:.1f} us CPU ({len(rehearsals)} in the run)")
        if cpu_by_warm.get(True) and cpu_by_warm.get(False):
            on_cpu, off_cpu = (100 * c / w for c, w in (cpu_by_warm[True], cpu_by_warm[False]))
            print(f"  trader process CPU (the bench's own threads included): {on_cpu:.1f} % of a core with warming, "
                  f"{off_cpu:.1f} % without")
        if cold and plain:
            print(f"  without warming, ours / the poller's: median "
                  f"{statistics.median([x['oldest'] for x in cold]) / statistics.median(polled_oldest):.2f}x, p99 "
                  f"{percentile([x['oldest'] for x in cold], 99) / percentile(polled_oldest, 99):.2f}x")
    off = [x["oldest"] for x in plain if not x["metrics"]]
    on = [x["oldest"] for x in plain if x["metrics"]]
    print(f"metrics off / on, alternating {PHASE_S:.0f} s phases in this run ({scrapes[0]} scrapes while on, "
          f"every {METRICS_SCRAPE_S:g} s):")
    print(describe("  publish -> decision, off", off))
    print(describe("  publish -> decision, on", on))
    timed = scrapes[1:]
    if timed:
        print(f"  one scrape of the trader's endpoint: median {statistics.median(t for t, _ in timed) * 1e3:.1f} ms, "
              f"{statistics.median(n for _, n in timed) / 1024:.1f} KiB")
    print(f"  the exporter's work per scrape, in the trader's process (median of {len(exposition)}): "
          f"{statistics.median(t for t, _ in exposition) * 1e3:.2f} ms wall, "
          f"{statistics.median(c for _, c in exposition) * 1e3:.2f} ms of its thread's CPU")
    if off and on:
        print(f"  on/off: median {100 * (statistics.median(on) / statistics.median(off) - 1):+.1f} %, "
              f"p99 {100 * (percentile(on, 99) / percentile(off, 99) - 1):+.1f} %")
    print("GC pauses in the trader process: " + ", ".join(
        f"gen{g} {len(p)}x max {max(p) * 1e6:.0f} us" if p else f"gen{g} none" for g, p in gc_pauses.items())
        + (f"; and {len(idle_pauses)} young collections by the waiting loop between ticks (max "
           f"{max(idle_pauses) * 1e6:.0f} us)" if idle_pauses else ""))
    worst = sorted(((x["oldest"], x["at"], x["read"], x["think"]) for x in plain), reverse=True)[:5]
    if worst:  # split as the probe-less decisions can be: the newest tick's publish -> book read, then -> decision
        print("slowest:", ", ".join(f"{t * 1e3:.1f} ms at {time.strftime('%H:%M:%S', time.gmtime(at))} (to book "
                                    f"read {read * 1e3:.2f} + decision {think * 1e3:.2f})"
                                    for t, at, read, think in worst))
    if probe is not None and dump:
        import dataclasses

        dumped = {str(k): [dataclasses.asdict(d) for d in v] for k, v in probe.by_warm.items()}
        dumped["steps"] = [dict(zip(("kind", "start", "us", "stages"), step)) for step in getattr(probe, "steps", ())]
        Path(dump).write_text(json.dumps(dumped))
    if probe is not None:
        for on in (True, False) if warm_ab else (bool(warm_every),):
            probed = [x for x in samples if x["probe"] and x["warm"] == on]
            same = [x for x in samples if not x["probe"] and x["warm"] == on]
            print_breakdown(probe.by_warm[on], [x["think"] for x in probed], [x["think"] for x in same], latency,
                            "" if not warm_every else f"warming {'on' if on else 'off'}")
    else:
        print("(no trader/latency.py in this tree: no breakdown)")
    return 0


def _loadavg() -> str:
    try:
        return f"{open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def _toggle_phase(stop: threading.Event, phase: list, engine, probe, warm_every, cpu_by_warm: dict) -> None:
    """The probe and the warming follow the phases; the probe's decisions are kept apart by warming on / off
    (probe.by_warm), and so is this process's CPU time (cpu_by_warm: warming on -> [cpu s, wall s])."""
    last_cpu, last_wall = time.process_time(), time.monotonic()
    while not stop.wait(0.05):
        cpu, wall = time.process_time(), time.monotonic()
        acc = cpu_by_warm.setdefault(bool(getattr(engine, "warm_every_s", None)), [0.0, 0.0])
        acc[0] += cpu - last_cpu
        acc[1] += wall - last_wall
        last_cpu, last_wall = cpu, wall
        want = probe if phase[0][1] else None
        if probe is not None and engine.probe is not want:
            engine.probe = want
        if warm_every is not None:
            engine.warm_every_s = warm_every if phase[0][2] else None
        if probe is not None:
            probe.decisions = probe.by_warm[bool(getattr(engine, "warm_every_s", None))]


def _instrument(probe, core, latency) -> None:
    """What the probe times inside the loop's calls into the core: blocked on the execution state's lock, and the
    three things each order action does on the calling thread besides recording it (views.py _log_order)."""
    timed = latency.TimedLock(core.exec_state.lock, probe)
    core.exec_state.lock = timed
    core._lock = timed
    from polymm.trader.execution import views

    class _TimedLog:
        def __init__(self, logger):
            self._logger = logger
            self.log = probe.wrap("order log line", logger.log)

        def __getattr__(self, name):
            return getattr(self._logger, name)

    views.log = _TimedLog(views.log)
    if core.ledger is not None:
        for name in ("order_action", "fill"):
            setattr(core.ledger, name, probe.wrap("ledger queue", getattr(core.ledger, name)))
    if core.metrics is not None:
        core.metrics.order_event = probe.wrap("metrics count", core.metrics.order_event)


def _groups(rows, key) -> dict[str, list]:
    """The typical decisions (the middle fifth by `key`: their mean sits at the median), the slow ones (top 5 %),
    and all of them."""
    rows = sorted(rows, key=key)
    n = len(rows)
    return {"typical": rows[int(n * 0.4): max(int(n * 0.6), int(n * 0.4) + 1)],
            "slow (top 5 %)": rows[min(n - 1, int(n * 0.95)):], "mean (all)": rows}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def print_breakdown(rows, probed_think: list[float], plain_think: list[float], latency, label: str = "") -> None:
    """Where the time goes, by part, for the typical decision, the slow ones and on average; the think window
    also by cause, with the share of it the named causes account for."""
    if not rows:
        print("breakdown: no probed decisions")
        return
    n = len(rows)

    def line(label: str, groups, get, extra: str = "") -> None:
        print(f"{label:36}" + "".join(f"{_mean(get(d) for d in g):>16.1f}" for g in groups.values()) + extra)

    cost = ""
    if probed_think and plain_think:
        cost = (f"; the probe's own cost: book read -> decision median {statistics.median(probed_think) * 1e6:.1f} us "
                f"with it, {statistics.median(plain_think) * 1e6:.1f} us without")
    print()
    print(f"where the time goes{' (' + label + ')' if label else ''} (probe-on phases, n={n}, us{cost})")
    wake = _groups(rows, lambda d: d.publish_to_read)
    print(f"{'':36}" + "".join(f"{k:>16}" for k in wake))
    line("publish -> book read", wake, lambda d: d.publish_to_read)
    line("  busy (loop on an earlier decision)", wake, lambda d: d.wake.get("busy", 0.0))
    for kind in latency.ACTIVITIES if hasattr(latency, "ACTIVITIES") else ():
        line("    on a " + kind if kind != "loop" else "    the loop between them", wake,
             lambda d, k=kind: d.busy_on.get(k, 0.0))
    line("  wake-up (futex, CPU, GIL)", wake, lambda d: d.wake.get("wake-up", 0.0))
    line("    of it waiting for a CPU", wake, lambda d: d.wake_queue)
    line("    of it other threads ran (GIL, <=)", wake, lambda d: getattr(d, "wake_gil", 0.0))
    line("  to book read", wake, lambda d: d.wake.get("to book read", 0.0))
    for stage in latency.READ_STAGES:
        line("    " + stage, wake, lambda d, s=stage: d.read_stages.get(s, 0.0))
    think = _groups(rows, lambda d: d.think)
    line("book read -> decision", think, lambda d: d.think)
    print("  by stage (wall; CPU in brackets for the typical decision)")
    for stage in latency.STAGES:
        cpu = _mean(d.stage_cpu.get(stage, 0.0) for d in think["typical"])
        line("    " + stage, think, lambda d, s=stage: d.stages.get(s, 0.0), f"   ({cpu:.1f})")
    print("  by cause")
    for cause in latency.CAUSES:
        line("    " + cause, think, lambda d, c=cause: d.causes.get(c, 0.0))
    print(f"{'    named causes / whole':36}" + "".join(
        f"{100 * _mean(d.named for d in g) / max(1e-9, _mean(d.think for d in g)):>15.1f}%" for g in think.values()))
    line("    switched out (times)", think, lambda d: d.switches)
    line("    GC on other threads meanwhile", think, lambda d: d.gc_elsewhere)
    names: dict[str, float] = {}
    for d in rows:
        for k, v in d.others.items():
            names[k] = names.get(k, 0.0) + v
    top = sorted(names.items(), key=lambda kv: -kv[1])[:6]
    if top:
        print("  other threads' CPU from the decision's start to its end (mean us per decision): "
              + ", ".join(f"{k} {v / n:.1f}" for k, v in top))
    slow = wake["slow (top 5 %)"]
    woke = {}
    for d in slow:
        for k, v in getattr(d, "wake_others", {}).items():
            woke[k] = woke.get(k, 0.0) + v
    if woke:
        print("  other threads' CPU from the wait's start to the decision's start, the slow 5 % (mean us per decision): "
              + ", ".join(f"{k} {v / len(slow):.1f}" for k, v in sorted(woke.items(), key=lambda kv: -kv[1])[:6]))
    after = sorted({k for d in rows for k in d.after})
    if after:
        print("after the decision (mean us per decision): "
              + ", ".join(f"{k} {_mean(d.after.get(k, 0.0) for d in rows):.1f}" for k in after))


def _net_book_costs(reader, core, config) -> dict:
    """The steps of one decision on the same snapshot, timed alone: where the net book stands among them."""
    from polymm.trader.decision import decide
    from polymm.trader.decision.net_book import net_view
    from polymm.trader.engine import market_view
    from polymm.trader.decision.own_book import own_book

    snap = reader.snapshot()
    now = time.time()
    orders = core.orders(working_only=True)
    positions = core.positions()
    view = market_view(snap, now=now, stale_feed_ms=1e9)

    def timed(fn, n: int = 2000) -> float:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(samples)

    state = decide.new_state(view)
    return {
        "snapshot": timed(reader.snapshot),
        "depth": snap.depth_levels,
        "view": timed(lambda: market_view(snap, now=now, stale_feed_ms=1e9)),
        "net": timed(lambda: net_view(view, (snap.up.bids, snap.up.asks), (snap.down.bids, snap.down.asks),
                                      own_book(orders), snap.depth_levels)),
        "orders": len(orders),
        "decide": timed(lambda: decide.decide(view, orders, positions, config, state, now), 500),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--window-s", type=int, default=60)
    ap.add_argument("--sim-tick-s", type=float, default=0.05, help="how often the sim's market moves (more ticks, more samples)")
    ap.add_argument("--btc-vol", type=float, default=None,
                    help="the sim's BTC volatility per sqrt(s): higher moves the book more often (more samples)")
    ap.add_argument("--wait", choices=("futex", "poll"), default="futex",
                    help="poll: the loop's earlier sleep-polling wait, for comparison")
    ap.add_argument("--runtime", choices=("tuned", "default"), default="tuned",
                    help="default: leave GC and the thread switch interval as Python ships them, for comparison")
    ap.add_argument("--nice", type=int, default=0,
                    help="nice value for the trader side (negative needs root), like the unit's Nice=")
    ap.add_argument("--sim-nice", type=int, default=0,
                    help="nice value for the sim (e.g. 19): production has no exchange on the trading box")
    ap.add_argument("--net-book", choices=("on", "off"), default="on",
                    help="off: decide on the published book with our orders in it (before issue 11), for comparison")
    ap.add_argument("--dump", default="", help="write every probed decision's breakdown to this JSON file")
    ap.add_argument("--samples", default="", metavar="FILE",
                    help="write the headline's decisions to this JSON file (us from the oldest tick, time, whether "
                         "in a window's first seconds), to pool runs")
    ap.add_argument("--warm", choices=("on", "off", "ab"), default="on",
                    help="the loop's rehearsals while the book is quiet (Engine.warm_every_s), on as the unit runs "
                         "the trader; ab alternates phases with and without them (half the headline's samples)")
    ap.add_argument("--warm-every-ms", type=float, default=0.0,
                    help="the rehearsals' cadence (default: the engine's WARM_EVERY_S)")
    ap.add_argument("--switch-us", type=_switch_us, default=0.0, metavar="W[,D]",
                    help="thread switch intervals in us: W while the loop waits and D while it decides (one number: "
                         "both; default: the engine's SWITCH_INTERVAL_S and SWITCH_INTERVAL_DECIDING_S)")
    ap.add_argument("--step-aside", choices=("on", "off"), default="on",
                    help="the execution core's threads give way to a decision in progress or due (trader/priority.py); "
                         "off: they do not, for the A/B")
    ap.add_argument("--loop-cpu", default="auto", metavar="auto|off|N",
                    help="POLYMM_LOOP_CPU, as polymm-trader.service sets it (auto: the decision loop's thread pinned to "
                         "the last CPU); off: the kernel places it, for the A/B")
    ap.add_argument("--loop-cpu-idle", choices=("poll", "off"), default="poll",
                    help="POLYMM_LOOP_CPU_IDLE, as polymm-trader.service sets it (poll: the loop's CPU polls while "
                         "idle, held by polymm/cpu_idle.py as the unit's polymm-cpu-idle does; needs root); off: it "
                         "sleeps, for the A/B")
    ap.add_argument("--rtprio", type=int, default=10, metavar="N",
                    help="RLIMIT_RTPRIO, as the unit's LimitRTPRIO=10 gives polymm-trader (0: the decision loop stays "
                         "ordinary); raising it needs root")
    ap.add_argument("--start-at", type=float, default=None, metavar="S",
                    help="start the sim S seconds into a window (wall clock), so runs started alike see the same "
                         "seeded market and trade alike: for A/B runs of two trees (waits up to a window)")
    args = ap.parse_args(argv)
    return run(args.seconds, args.window_s, args.sim_tick_s, args.btc_vol, args.wait, args.runtime, args.nice,
               args.sim_nice, args.net_book, args.dump, args.warm, args.rtprio, args.warm_every_ms, args.switch_us,
               args.step_aside, args.start_at, args.loop_cpu, args.loop_cpu_idle, args.samples)


if __name__ == "__main__":
    sys.exit(main())
