"""The decision loop's priority over the trader's other threads.

The loop shares one GIL with the trader's other threads: the user channel applying our orders' events (100-500 us
of CPU in a burst right after we trade), the order workers reading the exchange's answers, the ledger's and the log's
writers, the wallet's limits refresher (the service hands them all the engine's gate). A
tick that wakes the loop while one of them runs Python waits for the GIL until the switch interval makes that thread
drop it, and then may lose the hand-over to another of them (the GIL goes to whichever waiter the OS wakes first);
a decision that blocks for a moment (a log line's write) lets them in, and waits the switch interval to get it back.
Python has no thread priorities, so the others give way themselves: at points where they hold no lock and are
between two pieces of work (`DecisionGate.step_aside`), each asks whether the loop is busy, that is deciding or
about to decide a tick the feed has published, and if so waits (releasing the GIL) until it is done, never longer
than `max_wait_s`: a fill is applied at most that much later; it is never lost or reordered.

The loop's own actions wake those threads too: an order handed to a worker during a decision used to start its
signing (~0.5-1 ms of CPU) while the loop still had its other actions and its bookkeeping to do, and the GIL went
to it at the loop's first log line's write, for a whole switch interval. `defer` keeps such hand-offs until the
decision is done (`leave`), when the loop goes back to waiting and the GIL is free.

`DecisionGate.NONE` gives way to nothing (tests, tools, a core without a loop).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("polymm.trader.priority")

# How long a thread gives way at most per call. A decision takes 0.1-0.4 ms; more than this means the loop is stuck
# or deciding back to back, and the others' work must go on (a fill applied late is a stale position in the next
# decisions).
MAX_WAIT_S = 0.002
# While a tick is published but the loop has not taken it yet (the kernel is waking it), a giving-way thread
# sleeps in steps this short: the wake-up takes ~30-60 us.
PENDING_POLL_S = 0.00005


class DecisionGate:
    """See the module docstring. The loop calls `enter()` when it starts a decision and `leave()` when it is done;
    `tick_pending` (set by the loop) says whether the feed has published a book the loop has not read yet."""

    NONE: "DecisionGate"

    def __init__(self, *, max_wait_s: float = MAX_WAIT_S, enabled: bool = True,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> None:
        self.enabled = enabled
        self.max_wait_s = max_wait_s
        self.tick_pending: Callable[[], bool] = _never
        self.deciding = False
        self._loop_thread = 0  # the loop's thread ident (set by enter): it never waits for itself
        self._done = threading.Event()
        self._done.set()
        self._clock = clock
        self._sleep = sleep
        self._deferred: list[Callable[[], None]] = []  # hand-offs kept until leave() (only the loop's thread)
        # What giving way cost the other threads (the tick-to-decision benchmark prints it): calls that waited,
        # their total time, the longest, and waits that hit max_wait_s.
        self.waits = 0
        self.waited_s = 0.0
        self.longest_s = 0.0
        self.timeouts = 0

    def enter(self) -> None:
        self._loop_thread = threading.get_ident()
        self._done.clear()
        self.deciding = True

    def leave(self) -> None:
        self.deciding = False
        self._done.set()
        deferred, self._deferred = self._deferred, []
        for start in deferred:  # in the order the decision asked for them
            try:
                start()
            except Exception:  # noqa: BLE001 - one failed hand-off must not keep the others from starting
                log.exception("a hand-off deferred until the end of the decision failed")

    def defer(self, start: Callable[[], None]) -> None:
        """Run `start` (waking another thread: handing a worker an order or a cancel) once the decision in progress
        is done, in `leave`; at once when called off the loop's thread, outside a decision, or with giving way off.
        A decision that raises still runs them: what it recorded is always handed on."""
        if self.enabled and self.deciding and threading.get_ident() == self._loop_thread:
            self._deferred.append(start)
        else:
            start()

    def detach(self) -> None:
        """The loop has stopped: nothing is pending or decided any more, nobody waits for it."""
        self.tick_pending = _never
        self.leave()

    def busy(self) -> bool:
        """Whether the loop decides or a tick waits for it (False when giving way is off, and on the loop's thread)."""
        return (self.enabled and (self.deciding or self.tick_pending())
                and threading.get_ident() != self._loop_thread)

    def step_aside(self) -> float:
        """Wait while the loop is busy (at most max_wait_s); the seconds waited. Call it holding no lock."""
        if not self.busy():  # (busy is False on the loop's own thread: paper's fills come synchronously there)
            return 0.0
        clock = self._clock
        start = clock()
        deadline = start + self.max_wait_s
        timed_out = False
        while True:
            if self.deciding:
                self._done.wait(max(0.0, deadline - clock()))
            elif self.tick_pending():
                self._sleep(PENDING_POLL_S)
            else:
                break
            if clock() >= deadline:
                timed_out = self.busy()
                break
        waited = clock() - start
        self.waits += 1
        self.waited_s += waited
        self.longest_s = max(self.longest_s, waited)
        self.timeouts += timed_out
        return waited


def _never() -> bool:
    return False


DecisionGate.NONE = DecisionGate(enabled=False)
