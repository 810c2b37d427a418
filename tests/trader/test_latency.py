"""The decision loop's latency breakdown (trader/latency.py), on a fake clock: its parts add up to the wholes they
split, causes come from their own clocks, and what no clock explains is left as `unexplained`. No timing is
asserted about the machine; the arithmetic is."""
from __future__ import annotations

import threading

import pytest

from polymm.trader import latency


class FakeClock:
    """Wall, CPU, the kernel's run-queue wait and other threads' CPU, all moved by the test (ns)."""

    def __init__(self) -> None:
        self.wall = 1_000_000
        self.cpu = 0
        self.queue = 0
        self.slices = 0
        self.others: dict[str, int] = {"polymm-exec_0": 0, "polymm-user-ws": 0}

    def clocks(self) -> latency.Clocks:
        return latency.Clocks(wall_ns=lambda: self.wall, unix=lambda: 1_000 + self.wall / 1e9,
                              cpu_ns=lambda: self.cpu, sched=lambda: (self.cpu, self.queue, self.slices),
                              others=lambda: dict(self.others))

    def run(self, us: float) -> None:
        """This thread computes for `us`."""
        self.wall += int(us * 1000)
        self.cpu += int(us * 1000)

    def queued(self, us: float) -> None:
        """Runnable, waiting for a CPU."""
        self.wall += int(us * 1000)
        self.queue += int(us * 1000)
        self.slices += 1

    def blocked(self, us: float, **others_ran_us: float) -> None:
        """Asleep (a lock, the GIL) while other threads ran."""
        self.wall += int(us * 1000)
        for name, t in others_ran_us.items():
            self.others[name] = self.others.get(name, 0) + int(t * 1000)

    @property
    def unix(self) -> float:
        return 1_000 + self.wall / 1e9


def one_decision(clock: FakeClock, probe: latency.Probe, *, lock_us: float = 0.0, gil_us: float = 0.0,
                 io_us: float = 0.0, gc_us: float = 0.0, queue_us: float = 0.0) -> tuple[float, latency.Decision]:
    """A decision woken by a tick published 30 us into the wait, with the given waits inside its think window."""
    probe.waiting()
    clock.blocked(30)
    publish = clock.unix
    clock.queued(12)  # woken: waits for a CPU, then runs
    clock.run(3)
    probe.woke()
    clock.run(2)  # the loop's own checks
    probe.begin()
    clock.run(4)
    probe.mark("commands")
    clock.run(9)
    probe.book_read()
    for stage, us in zip(latency.STAGES[:-1], (5, 2, 8, 1, 3, 1, 4, 0)):
        clock.run(us)
        probe.mark(stage)
    clock.run(20)  # decide, with whatever the test adds
    if lock_us:
        clock.blocked(lock_us)
        probe.lock_waited(int(lock_us * 1000))
    if gil_us:
        clock.blocked(gil_us, **{"polymm-exec_0": gil_us * 2})  # a worker ran (longer than we waited)
    if io_us:
        clock.blocked(io_us)  # nobody of ours ran: not the GIL
    if gc_us:
        probe.on_gc("start", {"generation": 0})
        clock.run(gc_us)
        probe.on_gc("stop", {"generation": 0})
    if queue_us:
        clock.queued(queue_us)
    probe.decided()
    clock.run(7)
    probe.mark("execute")
    clock.run(1)
    probe.mark("status")
    decision = probe.end(publish)
    assert decision is not None
    return publish, decision


def test_the_parts_add_up_to_each_window():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    _publish, d = one_decision(clock, probe)
    assert d.publish_to_read == pytest.approx(12 + 3 + 2 + 4 + 9, abs=1e-6)
    assert d.wake == pytest.approx({"busy": 0.0, "wake-up": 15.0, "to book read": 15.0}, abs=1e-6)
    assert sum(d.wake.values()) == pytest.approx(d.publish_to_read, abs=1e-6)
    assert d.wake_queue == pytest.approx(12, abs=1e-6)
    assert d.read_stages == pytest.approx({"loop": 2.0, "commands": 4.0, "snapshot": 9.0}, abs=1e-6)
    assert sum(d.read_stages.values()) == pytest.approx(d.wake["to book read"], abs=1e-6)
    assert d.think == pytest.approx(5 + 2 + 8 + 1 + 3 + 1 + 4 + 20, abs=1e-6)
    assert sum(d.stages.values()) == pytest.approx(d.think, abs=1e-6)
    assert d.stages["decide"] == pytest.approx(20, abs=1e-6) and d.stage_cpu == pytest.approx(d.stages, abs=1e-6)
    assert d.causes["cpu"] == pytest.approx(d.think, abs=1e-6) and d.causes["unexplained"] == pytest.approx(0, abs=1e-6)
    assert d.after == pytest.approx({"execute": 7.0, "status": 1.0}, abs=1e-6)
    assert probe.decisions == [d]


def test_each_cause_is_read_from_its_own_clock_and_they_add_up():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    _publish, d = one_decision(clock, probe, lock_us=40, gil_us=25, gc_us=6, queue_us=11)
    assert d.causes == pytest.approx({"cpu": 44.0, "gc": 6.0, "cpu queue": 11.0, "lock": 40.0, "gil": 25.0,
                                      "unexplained": 0.0}, abs=1e-6)
    assert sum(d.causes.values()) == pytest.approx(d.think, abs=1e-6) and d.named == pytest.approx(d.think, abs=1e-6)
    assert d.others == pytest.approx({"polymm-exec_0": 50.0}, abs=1e-6)
    assert d.switches == 1
    assert d.stages["decide"] == pytest.approx(20 + 40 + 25 + 6 + 11, abs=1e-6)


def test_blocked_time_no_other_thread_explains_stays_unexplained():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    _publish, d = one_decision(clock, probe, io_us=30)
    assert d.causes["gil"] == 0 and d.causes["unexplained"] == pytest.approx(30, abs=1e-6)
    assert d.named == pytest.approx(d.think - 30, abs=1e-6)


def test_a_run_delay_larger_than_the_window_is_capped_by_its_off_cpu_time():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    real = probe.clocks.sched
    booked_late = [0]
    probe.clocks.sched = lambda: (lambda c, q, s: (c, q + booked_late[0], s))(*real())
    probe.waiting()
    clock.blocked(10)
    publish = clock.unix
    probe.woke()
    probe.begin()
    probe.mark("commands")
    probe.book_read()
    clock.run(10)
    clock.queued(5)
    booked_late[0] = 3_000_000  # the kernel books 3 ms from before the window now
    probe.decided()
    d = probe.end(publish)
    assert d.causes["cpu queue"] == pytest.approx(5, abs=1e-6) and d.causes["unexplained"] == pytest.approx(0, abs=1e-6)


def test_a_tick_that_came_while_the_loop_was_busy_is_busy_time():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    probe.waiting()
    clock.blocked(100)
    probe.woke()  # woken by something else (an order event)
    clock.run(10)
    publish = clock.unix  # the tick comes now, while the loop works
    clock.run(50)
    probe.begin()
    clock.run(5)
    probe.mark("commands")
    probe.book_read()
    clock.run(3)
    probe.decided()
    d = probe.end(publish)
    assert d.wake == pytest.approx({"busy": 50.0, "wake-up": 0.0, "to book read": 5.0}, abs=1e-6)
    assert sum(d.wake.values()) == pytest.approx(d.publish_to_read, abs=1e-6)


def test_busy_time_is_named_by_what_the_loop_was_doing():
    """A tick published during an event decision that was followed by a rehearsal: its wait is split between them,
    the gaps between the loop's activities are "loop", and the parts add up to `busy`."""
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    probe.begin()  # an event decision (no tick behind it)
    clock.run(20)
    publish = clock.unix  # the tick lands 20 us into it
    clock.run(40)
    assert probe.end(None, "event decision") is None
    clock.run(5)  # the loop between them
    start = clock.unix
    clock.run(30)
    probe.activity("rehearsal", start, clock.unix)
    clock.run(2)
    probe.begin()  # the tick's decision: it did not wait, it found the tick there
    clock.run(4)
    probe.mark("commands")
    probe.book_read()
    clock.run(3)
    probe.decided()
    d = probe.end(publish, "tick decision")
    assert d.wake["busy"] == pytest.approx(40 + 5 + 30 + 2, abs=1e-3)
    assert d.busy_on == pytest.approx({"event decision": 40.0, "rehearsal": 30.0, "loop": 7.0}, abs=1e-3)
    assert sum(d.busy_on.values()) == pytest.approx(d.wake["busy"], abs=1e-3)
    assert set(d.busy_on) <= set(latency.ACTIVITIES)
    # ...and the event decision is kept among the loop's other steps, with its length, for the busy time it made
    assert probe.steps == [("event decision", pytest.approx(publish - 20e-6), pytest.approx(60.0), {})]


def test_a_step_that_answers_no_tick_keeps_its_stages():
    """A decision woken by a sequence step that published no book (publish_ts None) goes through every stage: they are
    kept, from its start, so the tick that waited for it can be told what it waited for."""
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    probe.begin()
    start = clock.unix
    clock.run(4)
    probe.mark("commands")
    clock.run(6)
    probe.book_read()
    for stage, us in (("prep", 30), ("view", 10)):
        clock.run(us)
        probe.mark(stage)
    clock.run(50)
    probe.decided()
    clock.run(400)
    probe.mark("execute")
    assert probe.end(None, "tick decision") is None and probe.decisions == []
    (kind, at, us, stages), = probe.steps
    assert (kind, at, us) == ("tick decision", pytest.approx(start), pytest.approx(500.0))
    assert stages == pytest.approx({"commands": 4, "snapshot": 6, "prep": 30, "view": 10, "decide": 50, "execute": 400})


def test_a_tick_the_loop_waited_for_has_no_busy_time_to_name():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    _publish, d = one_decision(clock, probe)
    assert d.busy_on == {}


def woken_after(clock: FakeClock, probe: latency.Probe, *, before_us: dict, after_us: dict, queue_us: float = 0.0,
                held_us: float = 0.0) -> latency.Decision:
    """A tick published 30 us into the wait (other threads running `before_us` then); woken, the loop waits `queue_us`
    for a CPU and `held_us` for the GIL while other threads run `after_us`."""
    probe.waiting()
    clock.blocked(30, **before_us)
    publish = clock.unix
    if queue_us:
        clock.queued(queue_us)
    clock.blocked(held_us, **after_us)
    clock.run(3)
    probe.woke()
    clock.run(2)
    probe.begin()
    clock.run(9)
    probe.book_read()
    clock.run(20)
    probe.decided()
    decision = probe.end(publish)
    assert decision is not None
    return decision


def test_a_wake_up_other_threads_ran_through_is_the_gils_at_most():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    d = woken_after(clock, probe, before_us={}, after_us={"polymm-user-ws": 200}, queue_us=10, held_us=200)
    assert d.wake["wake-up"] == pytest.approx(10 + 200 + 3, abs=1e-6)
    assert d.wake_queue == pytest.approx(10, abs=1e-6)
    assert d.wake_others == pytest.approx({"polymm-user-ws": 200.0}, abs=1e-6)
    assert d.wake_gil == pytest.approx(200, abs=1e-6)
    # Other threads' CPU is an upper bound (they may have run before the publish): never more than the wake-up.
    d = woken_after(clock, probe, before_us={"polymm-exec_0": 500}, after_us={}, held_us=40)
    assert d.wake_others == pytest.approx({"polymm-exec_0": 500.0}, abs=1e-6)
    assert d.wake_gil == pytest.approx(40 + 3, abs=1e-6)
    # A thread that appears during the wait (a worker started) has no clock reading to count from: left out.
    probe.waiting()
    clock.others["polymm-exec_2"] = 900_000
    clock.blocked(30)
    publish = clock.unix
    clock.blocked(20, **{"polymm-user-ws": 20})
    probe.woke()
    probe.begin()
    probe.book_read()
    probe.decided()
    d = probe.end(publish)
    assert d.wake_others == pytest.approx({"polymm-user-ws": 20.0}, abs=1e-6) and d.wake_gil == pytest.approx(20)


def test_a_slow_wake_up_no_thread_of_ours_covers_has_no_gil_share():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    d = woken_after(clock, probe, before_us={}, after_us={}, held_us=600)  # the feed's wake call, the kernel
    assert d.wake["wake-up"] == pytest.approx(603, abs=1e-6)
    assert d.wake_others == {} and d.wake_gil == 0.0
    # A tick that came while the loop was busy has no wake-up to split.
    probe.begin()
    publish = clock.unix
    clock.blocked(50, **{"polymm-user-ws": 50})
    probe.book_read()
    probe.decided()
    d = probe.end(publish)
    assert d.wake["wake-up"] == 0.0 and d.wake_gil == 0.0 and d.wake_others == {}


def test_only_complete_decisions_woken_by_a_tick_are_kept():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    probe.begin()
    probe.book_read()
    probe.decided()
    assert probe.end(None) is None  # a decision the clock or an event woke
    probe.mark("prep")  # the probe switched on half-way through a decision
    probe.decided()
    assert probe.end(clock.unix) is None
    assert probe.decisions == []


def test_the_timed_lock_reports_only_the_probed_threads_blocked_time():
    clock = FakeClock()
    probe = latency.Probe(clock.clocks(), thread=threading.get_ident())
    lock = latency.TimedLock(threading.RLock(), probe)
    with lock:  # uncontended: nothing reported
        with lock:  # re-entrant like the state's RLock
            pass
    assert probe._lock_blocked == 0
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    probe.clocks.wall_ns = lambda: clock.wall  # frozen while we wait: then we "block" by moving it by hand
    threading.Timer(0.05, release.set).start()
    moved = threading.Timer(0.01, lambda: setattr(clock, "wall", clock.wall + 70_000))
    moved.start()
    with lock:
        pass
    t.join()
    assert probe._lock_blocked == 70_000
