"""Signal handling shared by the services: SIGTERM/SIGINT stop, SIGHUP reloads.

Handlers only set flags; the service's own loops act on them, so no work happens inside a signal handler.

The flags are NOT threading.Event: Event.set() takes the Event's internal lock, and a signal handler runs
in the main thread between two bytecodes — possibly while that same thread is inside Event.wait() holding
that lock, which would deadlock the service (and a trader that hangs on SIGTERM never cancels its orders).
A SignalFlag is set by a plain attribute store, which is safe at any point; waiting on it polls in short
sleeps (a signal interrupts a sleep, so the main thread notices at once; other threads within POLL_S).
"""
from __future__ import annotations

import signal
import time

POLL_S = 0.02


class SignalFlag:
    """The subset of threading.Event the services use (set, clear, is_set, wait), safe to set from a
    signal handler."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True  # one store: nothing to deadlock on

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """True as soon as the flag is set; False after `timeout` seconds (None: wait for ever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            if deadline is None:
                time.sleep(POLL_S)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_S, left))
        return True


class Signals:
    def __init__(self, reload: bool = False) -> None:
        self.stop = SignalFlag()
        self.reload = SignalFlag()
        self.received: str | None = None
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if reload:
            signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum, _frame) -> None:
        self.received = signal.Signals(signum).name
        self.stop.set()

    def _on_reload(self, _signum, _frame) -> None:
        self.reload.set()
