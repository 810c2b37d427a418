"""Logging for both services: journald-aware, one event per line.

Under journald (JOURNAL_STREAM set, as systemd does for StandardOutput=journal) each line starts with
a syslog priority prefix like "<4>" and carries no timestamp of its own (journald stamps it), so
`journalctl -p warning -u polymm-trader` filters correctly. Elsewhere lines are timestamped.

`setup(..., background=True)` (polymm-trader): a line is written by a thread of its own ("polymm-log"), not by the
thread that logs it. The decision loop's order lines cost it 0.1-0.4 ms each written in place: the write releases
the GIL, and another thread took it for a whole switch interval (trader/priority.py). Every thread's records go
through one queue, so lines keep the order they were logged in, and each keeps the time it was logged at (the
record's own). What is queued is written at exit (`stop_background`, also at interpreter exit); only a kill -9 can
lose the last few lines, never a ledger or journal record (those are written by their own code).
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
from logging.handlers import QueueHandler, QueueListener
from typing import Callable, TextIO

from polymm import env

# syslog priorities (sd-daemon.h): <3> err, <4> warning, <6> info, <7> debug.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
WRITER_THREAD = "polymm-log"


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


class _Writer(QueueListener):
    """The queue's one consumer: writes each record with the real handler, on a named daemon thread, after asking
    `give_way` (the trader's decision loop goes first: trader/priority.py)."""

    def __init__(self, q: queue.SimpleQueue, handler: logging.Handler) -> None:
        super().__init__(q, handler)
        self.queue_handler = QueueHandler(q)
        self.give_way: Callable[[], object] = _nothing

    def start(self) -> None:
        self._thread = threading.Thread(target=self._monitor, name=WRITER_THREAD, daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> None:
        try:
            self.give_way()
        except Exception:  # noqa: BLE001 - a broken hook must never cost a log line
            pass
        super().handle(record)


def _nothing() -> None:
    return None


_writer: _Writer | None = None
_writer_lock = threading.Lock()


def setup(service: str, level: str | int = "INFO", *, background: bool = False,
          stream: TextIO | None = None) -> logging.Logger:
    """Configure the root logger for a service and return the service's logger. `stream`: where lines go (stderr:
    the journal under systemd); `background`: written by the "polymm-log" thread (module docstring)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    stop_background()  # an earlier setup's writer: what it holds is written first
    if background:
        global _writer
        q: queue.SimpleQueue = queue.SimpleQueue()
        writer = _Writer(q, handler)
        writer.start()
        with _writer_lock:
            _writer = writer
        root.addHandler(writer.queue_handler)
    else:
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper(), logging.INFO))
    # Third-party chatter (httpx logs every request at INFO) would drown the order lines.
    for noisy in ("httpx", "httpcore", "websocket", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)


def give_way(hook: Callable[[], object]) -> None:
    """Call `hook` before each line the background writer writes (the trader: its DecisionGate.step_aside)."""
    writer = _writer
    if writer is not None:
        writer.give_way = hook


def stop_background() -> None:
    """Write what the background writer holds and stop it (a no-op without one); lines logged afterwards are
    written in place by the thread that logs them. Main's exit calls it; so does the interpreter's."""
    global _writer
    with _writer_lock:
        writer, _writer = _writer, None
    if writer is None:
        return
    root = logging.getLogger()
    if writer.queue_handler in root.handlers:
        root.removeHandler(writer.queue_handler)
        root.addHandler(writer.handlers[0])  # the real one: lines from now on are written in place
    writer.give_way = _nothing  # nobody to wait for any more
    writer.stop()


atexit.register(stop_background)
