"""polymm/realtime.py: one thread made SCHED_FIFO only when the service's RLIMIT_RTPRIO allows it, never asked
otherwise, a refusal in words. The scheduler itself is faked: tests must not change how this host schedules."""
from __future__ import annotations

import os

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
