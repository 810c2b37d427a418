"""Service logging (polymm/logs.py): the journald line format, and background writing (polymm-trader's decision loop
never writes a line itself)."""
from __future__ import annotations

import io
import logging
import threading

import pytest

from polymm import env, logs


class Recording(io.StringIO):
    """A stream that remembers which thread wrote each line."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        return super().write(text)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.stop_background()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_in_the_background_lines_are_written_by_another_thread_in_order_and_flushed_at_stop(restore_logging,
                                                                                          monkeypatch):
    monkeypatch.setenv(env.JOURNAL_STREAM, "0:0")
    out = Recording()
    log = logs.setup("polymm.trader", "INFO", background=True, stream=out)
    for i in range(200):
        log.info("order %d placed", i)
    try:
        raise ValueError("exchange said no")
    except ValueError:
        log.exception("decision failed")
    logs.stop_background()
    lines = out.getvalue().splitlines()
    assert lines[:200] == [f"<6>polymm.trader: order {i} placed" for i in range(200)]
    assert lines[200].startswith("<3>polymm.trader: decision failed | Traceback") and "exchange said no" in lines[200]
    assert len(lines) == 201  # one journal entry per record, the traceback folded in
    assert threading.current_thread().name not in out.writers


def test_in_the_foreground_the_caller_writes(restore_logging, monkeypatch):
    monkeypatch.setenv(env.JOURNAL_STREAM, "0:0")
    out = Recording()
    logs.setup("polymm.feed", "WARNING", stream=out).warning("feed stale")
    assert out.getvalue() == "<4>polymm.feed: feed stale\n"
    assert out.writers == {threading.current_thread().name}


def test_setting_up_again_stops_the_earlier_writer_after_it_wrote_everything(restore_logging):
    first, second = Recording(), Recording()
    logs.setup("polymm.trader", "INFO", background=True, stream=first).info("one")
    logs.setup("polymm.trader", "INFO", background=True, stream=second).info("two")
    logs.stop_background()
    assert first.getvalue().rstrip().endswith("polymm.trader: one") and "two" not in first.getvalue()
    assert second.getvalue().rstrip().endswith("polymm.trader: two")
