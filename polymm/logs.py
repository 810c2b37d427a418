"""Logging for both services: journald-aware, one event per line.

Under journald (JOURNAL_STREAM set, as systemd does for StandardOutput=journal) each line starts with
a syslog priority prefix like "<4>" and carries no timestamp of its own (journald stamps it), so
`journalctl -p warning -u polymm-trader` filters correctly. Elsewhere lines are timestamped.
"""
from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import sys

from polymm import env

# syslog priorities (sd-daemon.h): <3> err, <4> warning, <6> info, <7> debug.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """`<prio>logger: message`, exceptions folded onto the same record (journald keeps it one entry)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # A multi-line record would become several journal entries, each losing the priority prefix.
        text = text.replace("\n", " | ")
        return f"<{_priority(record.levelno)}>{text}"


def under_journald() -> bool:
    return bool(os.environ.get(env.JOURNAL_STREAM))


# The writing thread of a service that logs in the background (setup(background=True)), or None.
_listener: logging.handlers.QueueListener | None = None


def stop_background() -> None:
    """Write what is still queued and stop the writing thread (at exit; a later setup() replaces it too)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


atexit.register(stop_background)  # after `import logging`'s own: runs before logging.shutdown() flushes the handlers


def setup(service: str, level: str | int = "INFO", *, background: bool = False, stream=None) -> logging.Logger:
    """Configure the root logger for a service and return the service's logger.

    `background`: the calling thread only queues each record (QueueHandler: the message formatted, nothing
    written); a thread of its own writes the lines, in order, and writes what is queued at exit. polymm-trader
    logs so: a line written from its decision loop was a write() to journald's socket in the middle of a decision,
    and while the loop was in that system call another of its threads could take the GIL and keep it for up to a
    switch interval (bench/bench_tick_to_decision.py measured order log lines of 0.2-0.3 ms; issue 26). Only a
    hard kill loses the lines of its last moments. `stream`: where the lines go (default stderr)."""
    stop_background()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    if background:
        global _listener
        records: queue.SimpleQueue = queue.SimpleQueue()
        _listener = logging.handlers.QueueListener(records, handler)
        _listener.start()
        handler = logging.handlers.QueueHandler(records)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper(), logging.INFO))
    # Third-party chatter (httpx logs every request at INFO) would drown the order lines.
    for noisy in ("httpx", "httpcore", "websocket", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)
