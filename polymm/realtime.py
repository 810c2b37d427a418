"""Real-time scheduling for one latency-critical thread (the trader's decision loop), when the service may have it.

Why: on a box whose cores are busy (the feed, other services, other tenants) a thread woken by the feed's publish
waits for a CPU like any other: tens to thousands of microseconds before it runs (bench/bench_tick_to_decision.py's
breakdown names it "waiting for a CPU"). A SCHED_FIFO thread preempts ordinary ones at once. Only that one thread:
the flag SCHED_RESET_ON_FORK makes every thread it starts later (order workers, a restarted user channel) an
ordinary one again.

Who allows it: the soft RLIMIT_RTPRIO, which systemd sets from the unit's `LimitRTPRIO=` (deploy/systemd). The
priority asked for is the smaller of the caller's and that limit; with a limit of 0 (the default for every user,
root included, outside such a unit) nothing is asked, so tests, the demo and a developer's shell stay ordinary. A
refusal (a seccomp filter, a container) leaves the thread as it was, with the reason in words.

One CPU of its own, when asked (POLYMM_LOOP_CPU; polymm-trader.service asks for "auto"): the thread is pinned to a
CPU, so every wake-up finds its code and data in that CPU's caches instead of on whichever CPU the kernel picked (on
the 2-core bench box, over 17 alternating runs, p99 of tick -> decision 667 us against 755 us in the median run: the
slowest decisions, at window starts, gain; the others are unchanged within the noise). It is a CPU of its own
only in that it never leaves it: the others' threads still run there between ticks. Threads the pinned one starts
would inherit the pin (unlike the scheduling class, there is no reset-on-fork for it), so code that starts threads
from it runs under `unpinned()`, and a thread pool it may grow calls `ordinary_thread()` first (trader/execution).

Safe by construction: the thread blocks in the kernel between ticks and decisions take a fraction of a
millisecond; should it ever spin, the kernel's real-time throttling (sched_rt_runtime_us, 95 % by default) still
leaves every CPU to the others for part of each second, and the other cores are untouched.
"""
from __future__ import annotations

import contextlib
import os
import threading

from polymm import env

try:
    import resource
except ImportError:  # not Unix
    resource = None


def allowed_priority(wanted: int) -> int:
    """The SCHED_FIFO priority this process may give a thread without privileges: min(wanted, RLIMIT_RTPRIO)."""
    if resource is None or not hasattr(resource, "RLIMIT_RTPRIO"):
        return 0
    soft, _hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
    limit = wanted if soft == resource.RLIM_INFINITY else soft
    return max(0, min(wanted, limit))


def make_current_thread_realtime(wanted: int) -> tuple[int, str]:
    """Put the calling thread in SCHED_FIFO at min(wanted, RLIMIT_RTPRIO), threads it starts reset to ordinary.
    Returns (priority now in force, 0 when ordinary; what happened, in words)."""
    if not hasattr(os, "sched_setscheduler") or not hasattr(os, "SCHED_RESET_ON_FORK"):
        return 0, "ordinary scheduling (no real-time scheduling on this platform)"
    priority = allowed_priority(wanted)
    if priority <= 0:
        return 0, "ordinary scheduling (RLIMIT_RTPRIO is 0: the unit's LimitRTPRIO= allows no real-time priority)"
    try:
        # pid 0 = the calling thread on Linux
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except OSError as exc:
        return 0, f"ordinary scheduling (real-time priority {priority} refused: {exc.strerror or exc})"
    return priority, f"real-time scheduling SCHED_FIFO priority {priority} (threads it starts are ordinary)"


# POLYMM_LOOP_CPU's words: no pin, and the last CPU this process may use.
LOOP_CPU_OFF = ("", "off")
LOOP_CPU_AUTO = "auto"

_pinned: dict = {}  # what pin_current_thread did: {"thread": ident, "cpu": n, "cpus": the set before}


def choose_cpu(setting: str | None, allowed: set[int]) -> int | None:
    """The CPU a POLYMM_LOOP_CPU value names among `allowed` (the CPUs this process may run on); None: no pin.

    Unset, "" or "off": none. "auto": the last allowed CPU when there are two or more (with one, there is nothing to
    choose, and nothing to gain). A number: that CPU. ValueError, in words, for anything else or a CPU not allowed."""
    word = (setting or "").strip().lower()
    if word in LOOP_CPU_OFF:
        return None
    if word == LOOP_CPU_AUTO:
        return max(allowed) if len(allowed) >= 2 else None
    if not word.isdigit():
        raise ValueError(f"{setting!r} is not a CPU number, {LOOP_CPU_AUTO!r} or 'off'")
    cpu = int(word)
    if cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may use ({_cpus_words(allowed)})")
    return cpu


def loop_cpu_setting() -> int | None:
    """POLYMM_LOOP_CPU among the CPUs this process may use (`choose_cpu`): the trader's loop and polymm-cpu-idle, run
    by the same unit, read it alike. ValueError naming the variable, in words, for a value that names no such CPU."""
    raw = env.get(env.LOOP_CPU)
    try:
        return choose_cpu(raw, allowed_cpus())
    except ValueError as exc:
        raise ValueError(f"{env.LOOP_CPU}={raw!r}: {exc}") from None


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity, e.g. a unit's CPUAffinity=); empty where unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return set()
    return set(os.sched_getaffinity(0))


def pin_current_thread(cpu: int) -> tuple[bool, str]:
    """Run the calling thread on `cpu` only. Returns (pinned, what happened in words); a refusal (a seccomp filter
    without sched_setaffinity, a CPU taken offline) leaves the thread as it was."""
    if not hasattr(os, "sched_setaffinity"):
        return False, "not pinned (no CPU affinity on this platform)"
    before = allowed_cpus()
    try:
        os.sched_setaffinity(0, {cpu})  # pid 0 = the calling thread on Linux
    except OSError as exc:
        return False, f"not pinned (CPU {cpu} refused: {exc.strerror or exc})"
    _pinned.update(thread=threading.get_ident(), cpu=cpu, cpus=before)
    return True, f"pinned to CPU {cpu} of {_cpus_words(before)}"


def ordinary_thread() -> None:
    """Give the calling thread every CPU the process had before a thread was pinned, when it inherited that pin
    (started by the pinned thread); nothing otherwise. Cheap: one system call, at a thread's start."""
    cpus = _pinned.get("cpus")
    if cpus and threading.get_ident() != _pinned["thread"] and os.sched_getaffinity(0) == {_pinned["cpu"]}:
        _set_affinity(cpus)


@contextlib.contextmanager
def unpinned():
    """On the pinned thread: every CPU of the process meanwhile, so threads started in here are not pinned (a core
    restart run by the decision loop starts the user channel, the order workers...); pinned again at the end.
    Elsewhere, or with no pin: nothing."""
    mine = bool(_pinned) and threading.get_ident() == _pinned["thread"]
    if mine:
        _set_affinity(_pinned["cpus"])
    try:
        yield
    finally:
        if mine:
            _set_affinity({_pinned["cpu"]})


def _set_affinity(cpus: set[int]) -> None:
    """The calling thread's CPUs; a refusal leaves them as they were (as pin_current_thread's)."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        pass


def _cpus_words(cpus: set[int]) -> str:
    return "CPUs " + ",".join(str(c) for c in sorted(cpus)) if cpus else "no CPUs known"
