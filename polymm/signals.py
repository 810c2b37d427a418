"""Signal handling shared by the services: SIGTERM/SIGINT stop, SIGHUP reloads.

Handlers only set flags; the service's own loop acts on them, so no work happens inside a signal
handler (where locks held by the interrupted code would deadlock).
"""
from __future__ import annotations

import signal
import threading


class Signals:
    def __init__(self, reload: bool = False) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
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
