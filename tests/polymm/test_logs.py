"""polymm/logs.py: the line format, and the background writer polymm-trader logs through (issue 26)."""
from __future__ import annotations

import io
import logging
import threading

import pytest

from polymm import env, logs


@pytest.fixture(autouse=True)
def _restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs.stop_background()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("background", [False, True])
def test_journald_lines_are_the_same_written_in_place_or_in_the_background(monkeypatch, background):
    monkeypatch.setenv(env.JOURNAL_STREAM, "0:0")
    out = io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=background, stream=out)
    log.info("order %s id=%s", "submit", "0xabc")
    log.debug("not at INFO")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("decision failed (%d in a row)", 1)
    logs.stop_background()  # (a no-op in place) everything queued is written
    lines = _lines(out)
    assert lines[0] == "<6>polymm.test: order submit id=0xabc"
    # One journal entry per record: the traceback folded onto the line, with its priority.
    assert len(lines) == 2
    assert lines[1].startswith("<3>polymm.test: decision failed (1 in a row) | Traceback")
    assert "ValueError: bad | thing" in lines[1]


def test_background_lines_keep_the_order_they_were_logged_in_across_threads(monkeypatch):
    monkeypatch.delenv(env.JOURNAL_STREAM, raising=False)
    out = io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=True, stream=out)
    seen: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        for i in range(200):
            with lock:  # the order the lines were logged in, as the test sees it
                text = f"{name} {i}"
                seen.append(text)
                log.info(text)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs.stop_background()
    written = [line.split(": ", 1)[1] for line in _lines(out)]
    assert written == seen


def test_background_writer_runs_on_its_own_thread_and_gives_way_before_each_line(monkeypatch):
    monkeypatch.delenv(env.JOURNAL_STREAM, raising=False)
    out = io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=True, stream=out)
    events: list[tuple[str, str]] = []
    release = threading.Event()

    def give_way() -> None:
        events.append(("give_way", threading.current_thread().name))
        release.wait(5)  # the loop is "deciding" until the test lets it go

    logs.give_way(give_way)
    log.info("first")
    assert not release.wait(0.05) and out.getvalue() == ""  # held back while the hook waits
    release.set()
    logs.stop_background()
    assert events[0] == ("give_way", logs.WRITER_THREAD)
    assert [line.split(": ", 1)[1] for line in _lines(out)] == ["first"]


def test_a_failing_give_way_hook_costs_no_line(monkeypatch):
    monkeypatch.delenv(env.JOURNAL_STREAM, raising=False)
    out = io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=True, stream=out)

    def broken() -> None:
        raise RuntimeError("hook bug")

    logs.give_way(broken)
    log.warning("still written")
    logs.stop_background()
    assert [line.split(": ", 1)[1] for line in _lines(out)] == ["still written"]


def test_after_the_writer_stops_lines_are_written_in_place(monkeypatch):
    monkeypatch.delenv(env.JOURNAL_STREAM, raising=False)
    out = io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=True, stream=out)
    log.info("queued")
    logs.stop_background()
    assert not any(t.name == logs.WRITER_THREAD for t in threading.enumerate())
    log.info("after the stop")  # e.g. a last line at interpreter exit
    assert [line.split(": ", 1)[1] for line in _lines(out)] == ["queued", "after the stop"]


def test_setting_up_again_writes_what_the_earlier_writer_held(monkeypatch):
    monkeypatch.delenv(env.JOURNAL_STREAM, raising=False)
    first, second = io.StringIO(), io.StringIO()
    log = logs.setup("polymm.test", "INFO", background=True, stream=first)
    log.info("one")
    log = logs.setup("polymm.test", "INFO", background=True, stream=second)
    log.info("two")
    logs.stop_background()
    assert [line.split(": ", 1)[1] for line in _lines(first)] == ["one"]
    assert [line.split(": ", 1)[1] for line in _lines(second)] == ["two"]
    assert sum(t.name == logs.WRITER_THREAD for t in threading.enumerate()) == 0
