"""Logging for both services: journald-aware, one event per line.

Under journald (JOURNAL_STREAM set, as systemd does for StandardOutput=journal) each line starts with
a syslog priority prefix like "<4>" and carries no timestamp of its own (journald stamps it), so
`journalctl -p warning -u polymm-trader` filters correctly. Elsewhere lines are timestamped.
"""
from __future__ import annotations

import logging
import os
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


def setup(service: str, level: str | int = "INFO") -> logging.Logger:
    """Configure the root logger for a service and return the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else getattr(logging, str(level).upper(), logging.INFO))
    # Third-party chatter (httpx logs every request at INFO) would drown the order lines.
    for noisy in ("httpx", "httpcore", "websocket", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)
