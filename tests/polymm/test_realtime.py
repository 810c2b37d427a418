"""polymm/realtime.py: one thread made SCHED_FIFO only when the service's RLIMIT_RTPRIO allows it, never asked
otherwise, a refusal in words. The scheduler itself is faked: tests must not change how this host schedules."""
from __future__ import annotations

import os
import threading

import pytest

from polymm import realtime

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_RESET_ON_FORK"), reason="Linux scheduling policies")


@pytest.fixture
def calls(monkeypatch):
    seen: list = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: seen.append((pid, policy,
                                                                                         param.sched_priority)))
    return seen


def limit(monkeypatch, soft: int) -> None:
    monkeypatch.setattr(realtime.resource, "getrlimit", lambda which: (soft, max(soft, 0)))


def test_without_a_limit_nothing_is_asked_and_the_thread_stays_ordinary(monkeypatch, calls):
    limit(monkeypatch, 0)  # every user's default, root's too: tests, the demo, a shell
    priority, words = realtime.make_current_thread_realtime(10)
    assert priority == 0 and calls == [] and "LimitRTPRIO" in words


def test_the_units_limit_makes_this_thread_fifo_and_its_children_ordinary(monkeypatch, calls):
    limit(monkeypatch, 10)
    priority, words = realtime.make_current_thread_realtime(10)
    assert priority == 10 and "SCHED_FIFO priority 10" in words
    assert calls == [(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 10)]


def test_the_priority_is_no_higher_than_the_limit(monkeypatch, calls):
    limit(monkeypatch, 5)
    assert realtime.make_current_thread_realtime(10)[0] == 5 and calls[0][2] == 5
    limit(monkeypatch, realtime.resource.RLIM_INFINITY)
    assert realtime.allowed_priority(10) == 10


def test_a_refusal_leaves_the_thread_ordinary_and_says_why(monkeypatch):
    limit(monkeypatch, 10)

    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    priority, words = realtime.make_current_thread_realtime(10)
    assert priority == 0 and "refused: Operation not permitted" in words


# -- one CPU for the decision loop (POLYMM_LOOP_CPU) ----------------------------------------------------------------

@pytest.fixture
def no_pin(monkeypatch):
    monkeypatch.setattr(realtime, "_pinned", {})


def test_the_loop_cpu_setting_names_a_cpu_or_none_and_refuses_anything_else_in_words():
    assert realtime.choose_cpu(None, {0, 1}) is None  # unset: tests, the demo, a shell
    assert realtime.choose_cpu("", {0, 1}) is None and realtime.choose_cpu("off", {0, 1}) is None
    assert realtime.choose_cpu("auto", {0, 1, 2, 3}) == 3  # the last one
    assert realtime.choose_cpu("AUTO", {2, 5}) == 5
    assert realtime.choose_cpu("auto", {0}) is None  # one CPU: nothing to choose
    assert realtime.choose_cpu(" 1 ", {0, 1}) == 1
    with pytest.raises(ValueError, match=r"CPU 4 is not one this process may use \(CPUs 0,1\)"):
        realtime.choose_cpu("4", {0, 1})
    for bad in ("x", "-1", "1.5", "0,1"):
        with pytest.raises(ValueError, match="is not a CPU number, 'auto' or 'off'"):
            realtime.choose_cpu(bad, {0, 1})


def run_in_thread(fn):
    """fn() on a thread of its own, which ends with it (the pin goes with it: this process is left as it was)."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux CPU affinity")
def test_a_pinned_thread_runs_on_its_cpu_and_what_it_starts_is_given_every_cpu_back(no_pin):
    cpus = realtime.allowed_cpus()
    cpu = max(cpus)

    def pinned_thread():
        pinned, words = realtime.pin_current_thread(cpu)
        seen = {"pinned": pinned, "words": words, "mine": os.sched_getaffinity(0)}
        # A thread it starts inherits the pin (Linux copies the mask at clone)...
        seen["inherited"] = run_in_thread(lambda: os.sched_getaffinity(0))
        # ...unless it gives itself every CPU back (an order worker's initializer)...
        seen["ordinary"] = run_in_thread(lambda: (realtime.ordinary_thread(), os.sched_getaffinity(0))[1])
        # ...or is started under unpinned() (a restart run by the loop); pinned again afterwards.
        with realtime.unpinned():
            seen["during"] = os.sched_getaffinity(0)
            seen["started_during"] = run_in_thread(lambda: os.sched_getaffinity(0))
        seen["after"] = os.sched_getaffinity(0)
        realtime.ordinary_thread()  # on the pinned thread itself: it stays pinned
        seen["self"] = os.sched_getaffinity(0)
        return seen

    seen = run_in_thread(pinned_thread)
    assert seen["pinned"] and seen["words"] == f"pinned to CPU {cpu} of CPUs {','.join(map(str, sorted(cpus)))}"
    assert seen["mine"] == {cpu} and seen["inherited"] == {cpu}
    assert seen["ordinary"] == cpus and seen["during"] == cpus and seen["started_during"] == cpus
    assert seen["after"] == {cpu} and seen["self"] == {cpu}
    assert os.sched_getaffinity(0) == cpus  # this thread never was pinned


def test_a_refused_pin_leaves_the_thread_as_it_was_in_words(monkeypatch, no_pin):
    def refuse(pid, cpus):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    pinned, words = realtime.pin_current_thread(1)
    assert not pinned and words == "not pinned (CPU 1 refused: Operation not permitted)"
    assert realtime._pinned == {}
    with realtime.unpinned():  # nothing pinned: nothing to do, nothing raised
        pass
    realtime.ordinary_thread()
