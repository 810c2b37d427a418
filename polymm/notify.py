"""sd_notify for Type=notify services, a no-op when not under systemd.

Both services say READY=1 only when really ready, pet the watchdog from the loop that does the work,
and keep STATUS= a one-line summary that `systemctl status` shows.
"""
from __future__ import annotations

import logging
import os
import time

import sdnotify

from polymm import env

log = logging.getLogger("polymm.notify")


class Notifier:
    """Thin wrapper over sdnotify that rate-limits WATCHDOG=1 and STATUS= updates."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get(env.NOTIFY_SOCKET))
        self._n = sdnotify.SystemdNotifier() if self.enabled else None
        usec = os.environ.get(env.WATCHDOG_USEC)
        # Pet at a quarter of the timeout: a GC pause or a slow loop iteration must not trip it.
        self.watchdog_interval_s = int(usec) / 4e6 if usec and usec.isdigit() and int(usec) > 0 else None
        self._last_watchdog = 0.0
        self._last_status = ""
        self._last_status_t = 0.0

    def _send(self, text: str) -> None:
        if self._n is not None:
            # sdnotify swallows socket errors unless debug=True; systemd gone means nothing to tell.
            self._n.notify(text)

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload; harmless before.
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def reloaded(self, status: str | None = None) -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self, now: float | None = None) -> None:
        """Call from the working loop on every iteration; sends WATCHDOG=1 at most at the pet interval."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog >= self.watchdog_interval_s:
            self._last_watchdog = now
            self._send("WATCHDOG=1")

    def status(self, text: str, min_interval_s: float = 1.0, now: float | None = None) -> None:
        """STATUS= one line; repeated identical lines and bursts are dropped."""
        now = time.monotonic() if now is None else now
        text = text.replace("\n", " ")
        if text == self._last_status and now - self._last_status_t < 30:
            return
        if now - self._last_status_t < min_interval_s:
            return
        self._last_status, self._last_status_t = text, now
        self._send(f"STATUS={text}")
