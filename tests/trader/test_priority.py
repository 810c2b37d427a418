"""The decision loop's priority over the trader's other threads (trader/priority.py): a thread at a safe point waits
while a decision runs or a published tick waits for the loop, never longer than the bound, never for itself."""
from __future__ import annotations

import threading

from polymm.trader.priority import DecisionGate


def test_an_idle_loop_costs_nothing_and_counts_nothing():
    gate = DecisionGate(max_wait_s=5.0)
    assert gate.step_aside() == 0.0
    assert (gate.waits, gate.timeouts) == (0, 0)


def test_a_thread_waits_until_the_decision_in_progress_is_done():
    gate = DecisionGate(max_wait_s=30.0)
    order: list[str] = []
    gate.enter()  # the loop (this thread) is deciding
    started = threading.Event()

    def other():
        started.set()
        gate.step_aside()
        order.append("other applied its frame")

    t = threading.Thread(target=other)
    t.start()
    started.wait(5)
    # Whatever the other thread does meanwhile, it does not get past step_aside while the decision runs.
    t.join(0.05)
    order.append("decision done")
    gate.leave()
    t.join(5)
    assert order == ["decision done", "other applied its frame"]
    assert gate.waits == 1 and gate.timeouts == 0


def test_a_stuck_loop_holds_nobody_longer_than_the_bound():
    gate = DecisionGate(max_wait_s=0.01)
    gate.enter()
    result: list[float] = []
    t = threading.Thread(target=lambda: result.append(gate.step_aside()))
    t.start()
    t.join(5)
    assert not t.is_alive() and result and result[0] > 0
    assert gate.timeouts == 1  # counted: the loop was still busy when the thread went on


def test_a_published_tick_the_loop_has_not_taken_yet_is_waited_for_in_short_sleeps():
    sleeps: list[float] = []
    pending = [True]

    def sleep(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) == 3:  # the kernel has woken the loop: it read the book
            pending[0] = False

    gate = DecisionGate(max_wait_s=30.0, sleep=sleep)
    gate.tick_pending = lambda: pending[0]
    gate._loop_thread = -1  # the loop is another thread
    assert gate.step_aside() >= 0.0
    assert len(sleeps) == 3 and all(s < 0.001 for s in sleeps)
    assert gate.waits == 1 and gate.timeouts == 0


def test_the_loop_never_waits_for_itself():
    gate = DecisionGate(max_wait_s=30.0)
    gate.enter()  # this thread decides and, inside the decision, reaches a safe point (paper's synchronous fills)
    assert gate.step_aside() == 0.0
    assert gate.waits == 0
    gate.leave()


def test_disabled_and_the_default_gate_give_way_to_nothing():
    off = DecisionGate(enabled=False)
    off.enter()
    off.tick_pending = lambda: True
    done: list[float] = []
    t = threading.Thread(target=lambda: done.append(off.step_aside()))
    t.start()
    t.join(5)
    assert done == [0.0]
    assert DecisionGate.NONE.step_aside() == 0.0 and not DecisionGate.NONE.enabled
