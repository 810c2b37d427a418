"""Where the decision loop's time goes: an opt-in probe that splits every decision woken by a new tick into named
parts (issue 26). `bench/bench_tick_to_decision.py` turns it on and prints the breakdown; the trader never does.

Off by default: `Engine.probe` is None and the loop pays one `is None` test per stage.

Two windows of one decision, each cut into parts that add up to it:

- **wake** (the feed's publish -> the book read): `busy` (the loop was still on an earlier decision when the tick
  was published), `wake-up` (from the publish, or the start of the wait if later, until this thread runs Python
  again: the kernel's futex wake-up, waiting for a CPU, taking the GIL back), `to book read` (`READ_STAGES`: the
  loop's own checks, operator commands and the config, the shm snapshot). Of the wake-up, `wake_queue` is the wait
  for a CPU (schedstat) and `wake_gil` at most what other threads of ours ran meanwhile (their CPU from the wait's
  start to the decision's start, `wake_others`: an upper bound, they may have run before the publish too); a slow
  wake-up neither covers happened outside this process (the feed's wake call, the kernel).
- **think** (the book read -> the decision), by stage of `Engine.step` (`STAGES`), and the same interval by
  cause, each from its own clock:
  - `cpu`: this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), without the garbage collector's;
  - `gc`: collections run on this thread inside the window (gc.callbacks);
  - `cpu queue`: runnable but waiting for a CPU (the kernel's run_delay, /proc/<tid>/schedstat, at most the
    window's off-CPU time): the cores were busy with other processes or threads;
  - `lock`: blocked acquiring the execution state's lock (`TimedLock`, installed by the bench);
  - `gil`: blocked while other threads of this process ran Python: the rest of the blocked time (wall - cpu -
    queue - lock), but only as much of it as the other threads' CPU time in the window covers (`others`, by
    thread name); the GIL is the only other thing this path blocks on, and a holder needs a CPU to hold it;
  - `unexplained`: blocked time no other thread's CPU covers (I/O, a GIL holder that itself waited for a CPU).
  The named causes add up to the wall time but for `unexplained`: that residue is the measure of the breakdown.

After the decision, `AFTER_STAGES` time the rest of the iteration (orders out, the bench's hook, then the
bookkeeping: a window rotation's records, this series' exposure published to the wallet's other series, core events,
unresolved exposure, status; absent when it waits for a newer tick's decision) and `spans` inside a stage that the
bench wraps (`Probe.wrap`: the order log line, the ledger queue, metrics counters) are subtracted from it and named.

Every clock is injectable (`Clocks`), so tests check the arithmetic with a fake clock
(tests/trader/test_latency.py); nothing here asserts a timing.
"""
from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

# The stages of Engine.step between the book read and the decision, in order.
STAGES = ("prep", "fee", "view", "orders", "net", "positions", "exchange", "wallet", "decide")
# From the return of the wait to the book read: the loop's own checks (and the probe's reads of the other threads'
# clocks), then Engine.step's operator commands and config, then the shm snapshot.
READ_STAGES = ("loop", "commands", "snapshot")
# After the decision, to the end of the iteration.
AFTER_STAGES = ("execute", "hook", "rotation", "wallet publish", "events", "unresolved", "status")
CAUSES = ("cpu", "gc", "cpu queue", "lock", "gil", "unexplained")
# What the loop was doing while a tick waited (`busy`), by the loop's activity overlapping it: a decision, by why it
# ran (Engine.step's wake reason), or a rehearsal (Engine._rehearse); the rest ("loop") is the loop between them.
ACTIVITIES = ("tick decision", "unchanged tick", "event decision", "command decision", "timer decision", "rehearsal",
              "loop")


def _schedstat_reader(native_id: int) -> Callable[[], tuple[int, int, int]]:
    """(cpu ns, run-queue wait ns, timeslices) of one thread, from /proc/self/task/<tid>/schedstat (one pread)."""
    try:
        fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: (0, 0, 0)

    def read() -> tuple[int, int, int]:
        try:
            a, b, c = os.pread(fd, 96, 0).split()
            return int(a), int(b), int(c)
        except (OSError, ValueError):
            return 0, 0, 0

    return read


def _other_threads_cpu(skip: int) -> Callable[[], dict[str, int]]:
    """Thread name -> CPU ns of every other live thread of this process (several threads of one name add up)."""
    cache: dict[int, tuple[str, int]] = {}
    refreshed = [0.0]

    def read() -> dict[str, int]:
        now = time.monotonic()
        if now - refreshed[0] > 1.0:  # threads come and go (workers, reconnects): look again once a second
            refreshed[0] = now
            cache.clear()
            for t in threading.enumerate():
                if t.ident is not None and t.ident != skip:
                    try:
                        cache[t.ident] = (t.name, time.pthread_getcpuclockid(t.ident))
                    except (OSError, AttributeError):
                        pass
        out: dict[str, int] = {}
        for name, clock in list(cache.values()):
            try:
                ns = time.clock_gettime_ns(clock)
            except OSError:  # the thread ended
                continue
            out[name] = out.get(name, 0) + ns
        return out

    return read


@dataclass
class Clocks:
    """What the probe reads. Defaults: the real clocks of the calling thread (created on the loop's thread)."""

    wall_ns: Callable[[], int] = time.perf_counter_ns
    unix: Callable[[], float] = time.time
    cpu_ns: Callable[[], int] = time.thread_time_ns
    sched: Callable[[], tuple[int, int, int]] | None = None  # (cpu, run-queue wait, timeslices) of this thread
    others: Callable[[], dict[str, int]] | None = None  # other threads' CPU ns by name

    @classmethod
    def real(cls, ident: int | None = None, native_id: int | None = None) -> "Clocks":
        """The real clocks of thread (`ident`, `native_id`), the calling thread by default. The CPU clock is the
        caller's own, so the probe's marks must come from that thread."""
        ident = threading.get_ident() if ident is None else ident
        native_id = threading.get_native_id() if native_id is None else native_id
        return cls(sched=_schedstat_reader(native_id), others=_other_threads_cpu(ident))


@dataclass
class Decision:
    """One decision's breakdown, in microseconds."""

    publish_to_read: float  # the wake window's wall time
    wake: dict[str, float]  # busy, wake-up, to book read
    wake_queue: float  # of the wake-up: waiting for a CPU
    think: float  # the think window's wall time (book read -> decision)
    stages: dict[str, float]  # wall per stage
    stage_cpu: dict[str, float]  # CPU per stage
    causes: dict[str, float]  # CAUSES
    others: dict[str, float]  # other threads' CPU during the think window, by name
    switches: int  # times this thread was switched out and back in during the think window
    after: dict[str, float] = field(default_factory=dict)  # AFTER_STAGES (and spans), wall
    spans: dict[str, float] = field(default_factory=dict)  # wrapped calls inside stages, wall
    gc_elsewhere: float = 0.0  # collections on other threads overlapping the think window
    read_stages: dict[str, float] = field(default_factory=dict)  # READ_STAGES: the wake window's "to book read"
    busy_on: dict[str, float] = field(default_factory=dict)  # ACTIVITIES: what the loop did during `busy`
    read_at: float = 0.0  # unix s of the book read (--dump: decisions in a row can be told apart)
    wake_others: dict[str, float] = field(default_factory=dict)  # other threads' CPU, wait start -> decision start
    wake_gil: float = 0.0  # of the wake-up (less its CPU queue): at most what those threads ran (the GIL's share)

    @property
    def named(self) -> float:
        """The named causes' sum (everything but `unexplained`)."""
        return sum(v for k, v in self.causes.items() if k != "unexplained")


class Probe:
    """Marks from the loop's thread; `TimedLock` and the GC callback report from any thread. Not re-entrant:
    one decision at a time, which is what the loop does."""

    def __init__(self, clocks: Clocks | None = None, *, thread: int | None = None, keep: int = 100_000) -> None:
        self.clocks = clocks or Clocks.real()
        self.thread = threading.get_ident() if thread is None else thread  # the loop's thread (its marks)
        self.decisions: list[Decision] = []
        # The loop's other iterations (no tick's breakdown: event, timer or command decisions, one given up for a
        # newer tick, one woken by a sequence step that published no book): what kept a tick waiting ("busy")
        # when it was one of them. (kind, start unix s, us, {stage: us}).
        self.steps: list[tuple[str, float, float, dict[str, float]]] = []
        self.keep = keep
        self._gc: list[tuple[int, int, int]] = []  # (thread ident, start ns, end ns) of recent collections
        self._gc_start: dict[int, int] = {}
        self._lock_blocked = 0
        self._spans: dict[str, int] = {}
        self._activity: deque[tuple[str, float, float]] = deque(maxlen=32)  # (kind, start, end unix s), newest last
        self._reset()

    # -- the loop's marks ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._marks: list[tuple[str, int, int]] = []  # (stage, wall ns, cpu ns) at the END of each stage
        self._wait: tuple[int, float, tuple, dict] | None = None
        self._woke: tuple[int, float, tuple] | None = None
        self._begin: tuple[int, float] | None = None
        self._others0: dict[str, int] = {}
        self._read_marks: list[tuple[str, int, int]] = []
        self._read: tuple[int, float, int, tuple, dict] | None = None
        self._decided: tuple[int, int, tuple, dict] | None = None
        self._lock_blocked = 0
        self._decided_lock = 0
        self._spans = {}

    def waiting(self) -> None:
        """The loop is about to block for the next tick. Other threads' clocks are read first: their cost falls
        before the wait, outside every part (a tick published meanwhile is `busy` in "the loop between them")."""
        c = self.clocks
        others = c.others() if c.others else {}
        self._wait = (c.wall_ns(), c.unix(), c.sched() if c.sched else (0, 0, 0), others)

    def woke(self) -> None:
        c = self.clocks
        self._woke = (c.wall_ns(), c.unix(), c.sched() if c.sched else (0, 0, 0))

    def begin(self) -> None:
        """A decision starts (Engine.step). Whatever an earlier one left (the probe switched on half-way) is dropped.
        Other threads' clocks are read before the first mark, so their cost falls outside every part."""
        c = self.clocks
        self._read = self._decided = None
        self._others0 = c.others() if c.others else {}
        self._marks = []
        self._begin = (c.wall_ns(), c.unix())

    def book_read(self) -> None:
        """The shm snapshot is read: the think window opens (`READ_STAGES` before it)."""
        c = self.clocks
        self._marks.append(("snapshot", c.wall_ns(), 0))
        self._read_marks = self._marks
        sched = c.sched() if c.sched else (0, 0, 0)
        self._lock_blocked = 0
        self._spans = {}
        self._read = (c.wall_ns(), c.unix(), c.cpu_ns(), sched)
        self._marks = []

    def mark(self, stage: str) -> None:
        """`stage` ends now."""
        c = self.clocks
        self._marks.append((stage, c.wall_ns(), c.cpu_ns()))

    def decided(self) -> None:
        """The pipeline returned: the think window closes (its last stage is `decide`)."""
        c = self.clocks
        wall, cpu = c.wall_ns(), c.cpu_ns()
        self._marks.append(("decide", wall, cpu))
        sched = c.sched() if c.sched else (0, 0, 0)
        others = c.others() if c.others else {}  # after the marks: the window they cover ends a little later
        self._decided = (wall, cpu, sched, others)
        self._decided_lock = self._lock_blocked

    def end(self, publish_ts: float | None, kind: str = "tick decision") -> Decision | None:
        """The iteration is over: the breakdown of this decision (kept in `decisions`), when it was woken by a tick
        published at `publish_ts` (unix s) and both windows were seen; None otherwise. `kind`: why the loop ran it
        (ACTIVITIES), remembered for the later ticks that wait for it."""
        begin = self._begin
        try:
            if publish_ts is None or self._read is None or self._decided is None or begin is None:
                if begin is not None and len(self.steps) < self.keep:
                    self.steps.append(self._step(kind, begin))
                return None
            d = self._breakdown(publish_ts)
            if len(self.decisions) < self.keep:
                self.decisions.append(d)
            return d
        finally:
            if begin is not None:
                self._activity.append((kind, begin[1], self.clocks.unix()))
            self._reset()

    def _step(self, kind: str, begin: tuple[int, float]) -> tuple[str, float, float, dict[str, float]]:
        wall = self.clocks.wall_ns()
        stages: dict[str, float] = {}
        last = begin[0]
        for stage, t, _cpu in self._read_marks + self._marks:  # (no book read: _read_marks is empty)
            stages[stage] = stages.get(stage, 0.0) + (t - last) / 1e3
            last = t
        return kind, begin[1], (wall - begin[0]) / 1e3, stages

    def activity(self, kind: str, start_unix: float, end_unix: float) -> None:
        """The loop did `kind` (a rehearsal) from `start_unix` to `end_unix`: a tick published meanwhile waited."""
        self._activity.append((kind, start_unix, end_unix))

    def _busy_on(self, start: float, busy_us: float) -> dict[str, float]:
        """`busy` (us from unix `start`) split by the loop's activities overlapping it; the rest is "loop"."""
        end = start + busy_us * 1e-6
        out: dict[str, float] = {}
        for kind, a, b in self._activity:
            overlap = (min(b, end) - max(a, start)) * 1e6
            if overlap > 0:
                out[kind] = out.get(kind, 0.0) + overlap
        rest = busy_us - sum(out.values())
        if rest > 0:
            out["loop"] = rest
        return out

    # -- reports from any thread ---------------------------------------------------------------------

    def lock_waited(self, blocked_ns: int) -> None:
        if threading.get_ident() == self.thread:
            self._lock_blocked += blocked_ns

    def span(self, name: str, ns: int) -> None:
        """A wrapped call of `name` took `ns` on the loop's thread; counted against the stage it ran in."""
        if threading.get_ident() == self.thread and self._read is not None:
            self._spans[name] = self._spans.get(name, 0) + ns

    def on_gc(self, phase: str, info: dict) -> None:
        """gc.callbacks entry (install with `watch_gc`)."""
        ident = threading.get_ident()
        now = self.clocks.wall_ns()
        if phase == "start":
            self._gc_start[ident] = now
            return
        start = self._gc_start.pop(ident, None)
        if start is not None:
            self._gc.append((ident, start, now))
            if len(self._gc) > 256:
                del self._gc[:128]

    def watch_gc(self) -> None:
        gc.callbacks.append(self.on_gc)

    def unwatch_gc(self) -> None:
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)

    def wrap(self, name: str, fn: Callable) -> Callable:
        """`fn`, with its time on the loop's thread reported as span `name`."""
        wall = self.clocks.wall_ns

        def wrapped(*args, **kwargs):
            t0 = wall()
            try:
                return fn(*args, **kwargs)
            finally:
                self.span(name, wall() - t0)

        return wrapped

    # -- arithmetic ------------------------------------------------------------------------------------

    def _gc_in(self, lo: int, hi: int) -> tuple[int, int]:
        """(ns of collections on the loop's thread, ns on other threads) overlapping [lo, hi]."""
        own = other = 0
        for ident, s, e in self._gc:
            overlap = min(e, hi) - max(s, lo)
            if overlap > 0:
                if ident == self.thread:
                    own += overlap
                else:
                    other += overlap
        return own, other

    def _breakdown(self, publish_ts: float) -> Decision:
        us = 1e-3
        read_wall, read_unix, read_cpu, read_sched = self._read
        dec_wall, dec_cpu, dec_sched, others1 = self._decided
        others0 = self._others0
        begin_wall, begin_unix = self._begin
        # -- wake window: publish -> book read, tiled: busy | wake-up | to book read (READ_STAGES)
        publish_to_read = (read_unix - publish_ts) * 1e6
        to_read = (read_wall - begin_wall) * us
        read_stages: dict[str, float] = {"loop": 0.0}
        prev = begin_wall
        for stage, wall, _cpu in self._read_marks:
            read_stages[stage] = read_stages.get(stage, 0.0) + (wall - prev) * us
            prev = wall
        read_stages["snapshot"] = read_stages.get("snapshot", 0.0) + (read_wall - prev) * us
        wake_queue = wake_gil = 0.0
        wake_others: dict[str, float] = {}
        if self._wait is not None and self._woke is not None and self._woke[1] >= publish_ts:
            wait_unix, woke_unix = self._wait[1], self._woke[1]
            # waited for this tick: the wake-up runs from the publish (or the wait's start, if later) to the return
            start = max(publish_ts, wait_unix)
            wake_up = max(0.0, (woke_unix - start) * 1e6)
            # run-queue time over the whole wait; some may precede the publish, so no more than the wake-up
            wake_queue = min(wake_up, (self._woke[2][1] - self._wait[2][1]) * us)
            before = self._wait[3]  # a thread first seen after the wait began has no start to count from
            wake_others = {name: (ns - before[name]) * us for name, ns in others0.items() if name in before}
            wake_others = {k: v for k, v in wake_others.items() if v > 0.5}
            wake_gil = min(wake_up - wake_queue, sum(wake_others.values()))
            busy = max(0.0, (wait_unix - publish_ts) * 1e6)  # published before the loop went back to waiting
            # what is left between the return from the wait and the decision's start (the loop's checks)
            gap = max(0.0, publish_to_read - busy - wake_up - to_read)
            wake = {"busy": busy, "wake-up": wake_up, "to book read": to_read + gap}
            read_stages["loop"] = gap
        else:
            # the loop did not wait for this tick: it came while the loop was busy (or between two waits)
            wake = {"busy": max(0.0, publish_to_read - to_read), "wake-up": 0.0, "to book read": to_read}
        busy_on = self._busy_on(publish_ts, wake["busy"]) if wake["busy"] > 0 else {}
        # -- think window by stage
        stages: dict[str, float] = {}
        stage_cpu: dict[str, float] = {}
        prev_wall, prev_cpu = read_wall, read_cpu
        for stage, wall, cpu in self._marks:
            stages[stage] = stages.get(stage, 0.0) + (wall - prev_wall) * us
            stage_cpu[stage] = stage_cpu.get(stage, 0.0) + (cpu - prev_cpu) * us
            prev_wall, prev_cpu = wall, cpu
            if stage == "decide":
                break
        after: dict[str, float] = {}
        seen_decide = False
        for stage, wall, _cpu in self._marks:
            if stage == "decide":
                seen_decide, prev_wall = True, wall
                continue
            if seen_decide:
                after[stage] = after.get(stage, 0.0) + (wall - prev_wall) * us
                prev_wall = wall
        spans = {k: v * us for k, v in self._spans.items()}
        if "execute" in after:  # the wrapped calls run inside execute: named apart from it
            after["execute"] = max(0.0, after["execute"] - sum(spans.values()))
            after.update(spans)
        # -- think window by cause
        think = (dec_wall - read_wall) * us
        cpu_all = (dec_cpu - read_cpu) * us
        own_gc, other_gc = self._gc_in(read_wall, dec_wall)
        gc_us = min(own_gc * us, cpu_all)
        lock = self._decided_lock * us
        # The kernel's run_delay can grow by more than the window's off-CPU time (seen on Linux 6.18 when the thread
        # is switched out inside the window: waits from before it are booked then): no more than the off-CPU time.
        queue = min(max(0.0, (dec_sched[1] - read_sched[1]) * us), max(0.0, think - cpu_all - lock))
        blocked = max(0.0, think - cpu_all - queue - lock)
        others = {name: (ns - others0.get(name, 0)) * us for name, ns in others1.items()}
        others = {k: v for k, v in others.items() if v > 0.5}
        gil = min(blocked, sum(others.values()))
        causes = {"cpu": cpu_all - gc_us, "gc": gc_us, "cpu queue": queue, "lock": lock, "gil": gil,
                  "unexplained": think - (cpu_all + queue + lock + gil)}
        switches = max(0, dec_sched[2] - read_sched[2])
        return Decision(publish_to_read, wake, wake_queue, think, stages, stage_cpu, causes, others, switches,
                        after, spans, other_gc * us, read_stages, busy_on, read_unix, wake_others, wake_gil)


class TimedLock:
    """An RLock that reports how long the probe's thread was blocked acquiring it (the bench swaps it in for the
    execution state's lock; an uncontended acquire costs one extra non-blocking try)."""

    def __init__(self, lock, probe: Probe) -> None:
        self._lock = lock
        self._probe = probe
        self._sched = probe.clocks.sched
        self._cpu = probe.clocks.cpu_ns
        self._wall = probe.clocks.wall_ns

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        if threading.get_ident() != self._probe.thread:
            return self._lock.acquire(True, timeout)
        t0, c0 = self._wall(), self._cpu()
        q0 = self._sched()[1] if self._sched else 0
        got = self._lock.acquire(True, timeout)
        q1 = self._sched()[1] if self._sched else 0
        # blocked only: the CPU and queue time spent in the acquire are counted by their own clocks
        self._probe.lock_waited(max(0, (self._wall() - t0) - (self._cpu() - c0) - (q1 - q0)))
        return got

    def release(self) -> None:
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self._lock.release()
