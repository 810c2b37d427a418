"""Paper mode's mark on the log: every line of the execution core (each order action among them) says `paper`,
so a journal excerpt can never be taken for live trading."""
from __future__ import annotations

import logging

TAGGED = ("polymm.trader.execution", "polymm.trader.paper", "polymm.trader.gateway")


class PaperTag(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "paper_tagged", False):
            record.msg = "paper " + str(record.msg)
            record.paper_tagged = True
        return True


def tag_paper_logs() -> None:
    """Install the tag on the loggers whose lines are about orders (idempotent)."""
    for name in TAGGED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PaperTag) for f in logger.filters):
            logger.addFilter(PaperTag())
