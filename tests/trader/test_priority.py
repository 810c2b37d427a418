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


def test_a_hand_off_asked_for_during_a_decision_starts_when_it_is_done_in_order():
    """defer: an order or a cancel handed to a worker during a decision starts once the decision is done, so the
    worker's signing does not take the GIL from the rest of the decision."""
    gate = DecisionGate(max_wait_s=30.0)
    started: list[str] = []
    gate.enter()
    gate.defer(lambda: started.append("submit a"))
    gate.defer(lambda: started.append("cancel b"))
    assert started == []  # nothing handed on while the decision runs
    gate.leave()
    assert started == ["submit a", "cancel b"]
    gate.enter()
    gate.leave()
    assert started == ["submit a", "cancel b"]  # each runs once


def test_a_hand_off_outside_a_decision_off_the_loop_or_with_giving_way_off_starts_at_once():
    gate = DecisionGate(max_wait_s=30.0)
    started: list[str] = []
    gate.defer(lambda: started.append("idle loop"))
    assert started == ["idle loop"]
    gate.enter()  # this thread is the loop, deciding
    t = threading.Thread(target=lambda: gate.defer(lambda: started.append("another thread")))
    t.start()
    t.join(5)
    assert started == ["idle loop", "another thread"]  # (a worker's resend is never held for the loop)
    gate.leave()
    off = DecisionGate(enabled=False)
    off.enter()
    off.defer(lambda: started.append("off"))
    assert started[-1] == "off"
    off.leave()
    DecisionGate.NONE.defer(lambda: started.append("none"))
    assert started[-1] == "none"


def test_a_failing_hand_off_is_logged_and_the_others_still_start(caplog):
    gate = DecisionGate(max_wait_s=30.0)
    started: list[str] = []

    def broken() -> None:
        raise RuntimeError("pool bug")

    gate.enter()
    gate.defer(broken)
    gate.defer(lambda: started.append("next"))
    gate.leave()
    assert started == ["next"]
    assert "deferred until the end of the decision failed" in caplog.text and "pool bug" in caplog.text
