"""The shm wake-up (feed/shm/, FEATURE_FUTEX_WAKE): a reader blocked in wait_update is woken by the writer's
publish instead of polling, and falls back to polling when the writer posts no wake-ups or the kernel refuses.

No timing is asserted: the tests check which path the reader took (futex calls made, sleeps not taken)."""
from __future__ import annotations

import ctypes
import errno
import math
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from polymm.feed import shm

WINDOW = 1_800_000_000
needs_futex = pytest.mark.skipif(shm.futex._futex is None, reason="futex(2) is Linux-only")


def market(writer: shm.Writer) -> int:
    return writer.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x" + "ab" * 32,
                             up_token="1" * 77, down_token="2" * 77, tick_size=0.01, min_order_size=5.0,
                             fee_rate=0.07, status="connected")


def book(bid: float = 0.4) -> tuple:
    return (bid, 10.0, 0.6, 10.0, math.nan, 1.0, time.time())


@pytest.fixture
def writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    market(w)
    yield w
    w.close()
    shm.unlink(shm_name)


class NoSleeping:
    """Stands in for `time` inside shm: the clock is real, but any polling sleep fails the test."""

    perf_counter = staticmethod(time.perf_counter)
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def __init__(self) -> None:
        self.sleeps = 0

    def sleep(self, s: float) -> None:
        self.sleeps += 1
        raise AssertionError("wait_update polled (time.sleep) although the writer posts wake-ups")


class CountingFutex:
    """Wraps the real futex call and counts FUTEX_WAITs."""

    def __init__(self, real) -> None:
        self.real, self.waits = real, 0

    def __call__(self, nr, addr, op, *rest):
        if op == shm.futex._FUTEX_WAIT:
            self.waits += 1
        return self.real(nr, addr, op, *rest)


def features(name: str) -> int:
    with open(f"/dev/shm/{name}", "rb") as f:
        return struct.unpack_from("<I", f.read(shm.layout._FEATURES_OFF + 4), shm.layout._FEATURES_OFF)[0]


@needs_futex
def test_writer_advertises_its_wake_ups_in_the_segment(writer, shm_name):
    assert features(shm_name) & shm.FEATURE_FUTEX_WAKE


@needs_futex
def test_reader_blocked_in_wait_update_wakes_on_a_publish_from_another_process(shm_name, monkeypatch):
    # The feed and the trader are separate processes (separate systemd units): the wake-up must cross them.
    code = textwrap.dedent(
        f"""
        import math, sys, time
        from polymm.feed import shm
        w = shm.Writer({shm_name!r}, ring_capacity=64)
        w.set_market(window_start=1, window_end=901, condition_id="0x01", up_token="1", down_token="2",
                     tick_size=0.01, min_order_size=5, fee_rate=0.07, status="connected")
        print("READY", w.seq, flush=True)
        sys.stdin.readline()
        print("PUBLISHED", w.publish(1, (0.4, 1.0, 0.6, 1.0, math.nan, 1.0, time.time()), None), flush=True)
        sys.stdin.readline()
        w.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        word, seq = proc.stdout.readline().split()
        assert word == "READY"
        reader = shm.Reader(shm_name)
        assert reader.seq() == int(seq)
        counting = CountingFutex(shm.futex._futex)
        monkeypatch.setattr(shm.futex, "_futex", counting)
        monkeypatch.setattr(shm.reader, "time", NoSleeping())

        def go() -> None:
            time.sleep(0.3)  # most likely blocked by now; if not, wait_update still sees the new seq at once
            proc.stdin.write("go\n")
            proc.stdin.flush()

        threading.Thread(target=go, daemon=True).start()
        got = reader.wait_update(int(seq), 60.0, spin_s=0.0)
        word, published = proc.stdout.readline().split()
        assert word == "PUBLISHED" and got == int(published) == int(seq) + 1
        assert counting.waits >= 1  # it blocked in the kernel, it did not poll (NoSleeping would have failed)
        reader.close()
        proc.stdin.write("done\n")
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        shm.unlink(shm_name)


@needs_futex
def test_wait_update_times_out_with_the_old_sequence_when_nothing_is_published(writer, shm_name, monkeypatch):
    reader = shm.Reader(shm_name)
    seq = reader.seq()
    counting = CountingFutex(shm.futex._futex)
    monkeypatch.setattr(shm.futex, "_futex", counting)
    monkeypatch.setattr(shm.reader, "time", NoSleeping())
    assert reader.wait_update(seq, 0.05, spin_s=0.0) == seq
    assert counting.waits >= 1
    reader.close()


@needs_futex
def test_heartbeats_do_not_wake_a_waiting_reader(writer, shm_name):
    reader = shm.Reader(shm_name)
    seq = reader.seq()
    beats = threading.Thread(target=lambda: [writer.heartbeat() or time.sleep(0.01) for _ in range(10)])
    beats.start()
    assert reader.wait_update(seq, 0.3) == seq  # heartbeats are not new sequence numbers
    beats.join()
    reader.close()


def test_reader_polls_when_the_writer_posts_no_wake_ups(writer, shm_name):
    # An older feed (features word was padding, 0): the reader must not block waiting for a wake-up.
    struct.pack_into("<I", writer._buf, shm.layout._FEATURES_OFF, 0)
    writer._wake = False
    reader = shm.Reader(shm_name)
    seq = reader.seq()
    publisher = threading.Timer(0.1, lambda: writer.publish(WINDOW, book(), None))
    publisher.start()
    assert reader.wait_update(seq, 60.0) == seq + 1
    publisher.join()
    reader.close()


@needs_futex
def test_reader_falls_back_to_polling_when_the_kernel_refuses_the_futex(writer, shm_name, monkeypatch):
    # e.g. a seccomp filter answering EPERM: the wait must still return on the publish, by polling.
    calls = []

    def refused(nr, addr, op, *rest):
        if op == shm.futex._FUTEX_WAIT:  # (the writer's wake-ups, same process, go through here too)
            calls.append(op)
        ctypes.set_errno(errno.EPERM)
        return -1

    reader = shm.Reader(shm_name)
    seq = reader.seq()
    monkeypatch.setattr(shm.futex, "_futex", refused)
    publisher = threading.Timer(0.1, lambda: writer.publish(WINDOW, book(), None))
    publisher.start()
    assert reader.wait_update(seq, 60.0, spin_s=0.0) == seq + 1
    publisher.join()
    assert calls == [shm.futex._FUTEX_WAIT]  # tried once, then polled (and will keep polling)
    assert reader.wait_update(seq + 1, 0.01) == seq + 1 and calls == [shm.futex._FUTEX_WAIT]
    reader.close()


def test_writer_without_futex_says_so_and_still_publishes(shm_name, monkeypatch):
    monkeypatch.setattr(shm.futex, "_futex", None)
    w = shm.Writer(shm_name, ring_capacity=64)
    try:
        market(w)
        assert features(shm_name) & shm.FEATURE_FUTEX_WAKE == 0
        reader = shm.Reader(shm_name)
        seq = w.publish(WINDOW, book(0.45), None)
        assert reader.wait_update(seq - 1, 1.0) == seq and reader.snapshot().up.bid == 0.45
        reader.close()
    finally:
        w.close()
        shm.unlink(shm_name)


@needs_futex
def test_a_restarted_writer_on_the_same_segment_advertises_its_own_wake_ups(shm_name, monkeypatch):
    monkeypatch.setattr(shm.futex, "_futex", None)
    old = shm.Writer(shm_name, ring_capacity=64)  # a writer that cannot wake
    old.close()
    assert features(shm_name) == 0
    monkeypatch.undo()
    new = shm.Writer(shm_name, ring_capacity=64)  # resumes the segment
    try:
        assert features(shm_name) & shm.FEATURE_FUTEX_WAKE
    finally:
        new.close()
        shm.unlink(shm_name)
