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

Safe by construction: the thread blocks in the kernel between ticks and decisions take a fraction of a
millisecond; should it ever spin, the kernel's real-time throttling (sched_rt_runtime_us, 95 % by default) still
leaves every CPU to the others for part of each second, and the other cores are untouched.
"""
from __future__ import annotations

import os

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
