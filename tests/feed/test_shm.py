"""The shared-memory contract (feed/shm/): layout, writer ownership, reader behaviour."""
from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from polymm.feed import shm

UP_TOKEN = "1" * 77
DOWN_TOKEN = "2" * 77
CONDITION = "0x" + "ab" * 32


def leg(bid, ask, *, bid_size=10.0, ask_size=20.0, last=math.nan, exch=1.0, recv=None):
    return (bid, bid_size, ask, ask_size, last, exch, time.time() if recv is None else recv)


def market(writer: shm.Writer, window_start: int = 1_800_000_000, status: str = "rotating", **kw) -> int:
    args = dict(
        window_start=window_start,
        window_end=window_start + 900,
        condition_id=CONDITION,
        up_token=UP_TOKEN,
        down_token=DOWN_TOKEN,
        tick_size=0.01,
        min_order_size=5.0,
        fee_rate=0.07,
        status=status,
    )
    args.update(kw)
    return writer.set_market(**args)


@pytest.fixture
def writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    yield w
    w.close()
    shm.unlink(shm_name)


def test_layout_offsets_of_struct_packers_match_the_numpy_dtypes():
    # The hot path packs with struct; the dtype is the documented layout. They must agree byte for byte.
    import numpy as np

    w_fields = shm.layout._flat_fields(shm.HEADER)
    names = [n for n, _, _ in w_fields]
    n_ref, n_link = len(shm.REF.names), len(shm.LINK.names)
    tail = -n_ref - n_link
    assert names[tail - 9:tail] == [f"top.down.{n}" for n in shm.LEG.names]
    assert names[tail:-n_link] == [f"ref.{n}" for n in shm.REF.names]  # then the reference block
    assert names[-n_link:] == [f"link.{n}" for n in shm.LINK.names]  # the link block ends the header
    arr = np.zeros(1, dtype=shm.HEADER)
    arr["top"]["up"]["ask"] = 0.42
    arr["top"]["seq"] = 7
    arr["window_end"] = 1234
    v = shm.layout._STATE.unpack_from(arr.tobytes(), shm.layout._STATE_OFF)
    by_name = dict(zip(shm.layout._STATE_NAMES, v))
    assert by_name["top.up.ask"] == 0.42 and by_name["top.seq"] == 7 and by_name["window_end"] == 1234
    assert shm.HEADER.fields["top"][1] % 8 == 0 and shm.layout._ring_offset() % 64 == 0


def test_reader_sees_published_top_of_book_with_market_identity(writer, shm_name):
    market(writer)
    seq = writer.publish(1_800_000_000, leg(0.48, 0.52), leg(0.47, 0.53, last=0.5), updates_total=3, status="connected")
    with shm.Reader(shm_name) as reader:
        snap = reader.snapshot()
    assert snap.magic == shm.MAGIC and snap.version == shm.VERSION
    assert snap.writer_pid == os.getpid()
    assert (snap.status, snap.seq, snap.updates_total) == ("connected", seq, 3)
    assert (snap.market.window_start, snap.market.window_end) == (1_800_000_000, 1_800_000_900)
    assert (snap.market.condition_id, snap.market.up_token, snap.market.down_token) == (CONDITION, UP_TOKEN, DOWN_TOKEN)
    assert (snap.market.tick_size, snap.market.min_order_size, snap.market.fee_rate) == (0.01, 5.0, 0.07)
    assert (snap.up.bid, snap.up.ask, snap.up.bid_size, snap.up.ask_size) == (0.48, 0.52, 10.0, 20.0)
    assert math.isnan(snap.up.last_trade) and snap.down.last_trade == 0.5
    assert snap.up.seq == snap.down.seq == seq
    # ages are plain differences against the caller's clock (no wall-clock assertion)
    newest = max(snap.up.recv_ts, snap.down.recv_ts)
    assert snap.data_age_s(now=newest + 2.5) == pytest.approx(2.5)
    assert snap.heartbeat_age_s(now=snap.heartbeat + 4.0) == pytest.approx(4.0)


def test_new_market_clears_both_legs_until_its_first_book(writer, shm_name):
    market(writer, 1_800_000_000)
    writer.publish(1_800_000_000, leg(0.48, 0.52), leg(0.47, 0.53))
    market(writer, 1_800_000_900)
    snap = shm.Reader(shm_name).snapshot()
    assert snap.market.window_start == 1_800_000_900 and snap.status == "rotating"
    assert all(math.isnan(x) for x in (snap.up.bid, snap.up.ask, snap.down.bid, snap.down.ask))
    assert snap.data_age_s() == math.inf


def test_publish_for_a_window_that_is_not_current_writes_nothing(writer, shm_name):
    market(writer, 1_800_000_900)
    before = writer.seq
    assert writer.publish(1_800_000_000, leg(0.9, 0.95), leg(0.05, 0.1)) == 0
    assert writer.set_tick_size(1_800_000_000, 0.001) == 0
    assert writer.set_status("stale", window_start=1_800_000_000) == 0
    snap = shm.Reader(shm_name).snapshot()
    assert snap.seq == before and math.isnan(snap.up.bid) and snap.status == "rotating"


def test_unchanged_leg_keeps_its_values_and_its_own_seq(writer, shm_name):
    market(writer)
    s1 = writer.publish(1_800_000_000, leg(0.48, 0.52), leg(0.47, 0.53))
    s2 = writer.publish(1_800_000_000, leg(0.49, 0.52), None)
    snap = shm.Reader(shm_name).snapshot()
    assert (snap.up.bid, snap.up.seq) == (0.49, s2)
    assert (snap.down.bid, snap.down.seq) == (0.47, s1)


def test_second_writer_refuses_naming_the_live_pid(writer, shm_name):
    with pytest.raises(shm.WriterConflict, match=rf"pid {os.getpid()}"):
        shm.Writer(shm_name, ring_capacity=64)


def test_second_writer_in_another_process_refuses_and_first_keeps_writing(writer, shm_name):
    code = textwrap.dedent(
        f"""
        from polymm.feed import shm
        try:
            shm.Writer({shm_name!r}, ring_capacity=64)
        except shm.WriterConflict as e:
            print("REFUSED", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert f"REFUSED" in out.stdout and f"pid {os.getpid()}" in out.stdout, out.stderr
    market(writer)
    assert writer.publish(1_800_000_000, leg(0.4, 0.6), None) > 0


def test_clean_close_marks_stopped_and_keeps_the_segment_for_a_restarted_writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    market(w)
    w.publish(1_800_000_000, leg(0.4, 0.6), leg(0.4, 0.6), status="connected")
    reader = shm.Reader(shm_name)
    last = reader.snapshot().seq
    w.close()
    assert os.path.exists(f"/dev/shm/{shm_name}")
    snap = reader.snapshot()
    assert snap.status == "stopped" and snap.seq > last
    w2 = shm.Writer(shm_name, ring_capacity=64)  # a restarted feed takes over the same segment
    try:
        snap2 = reader.snapshot()  # the old reader needs no re-attach
        assert snap2.status == "starting" and snap2.seq > snap.seq
    finally:
        w2.close()
        reader.close()
        shm.unlink(shm_name)


def test_restart_with_another_ring_size_replaces_the_segment_and_readers_follow(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    reader = shm.Reader(shm_name)
    w.close()
    w2 = shm.Writer(shm_name, ring_capacity=128)
    try:
        market(w2, status="connected")
        snap = reader.snapshot()  # mapping of the old object said "stopped": it re-attaches by name
        assert snap.status == "connected"
    finally:
        w2.close()
        reader.close()
        shm.unlink(shm_name)


class FakeTime:
    """Stands in for the `time` module inside shm: sleeping advances the clock, so waits are checked
    by what the reader did (how long it slept, how often it looked) instead of by wall-clock timing."""

    def __init__(self, on_sleep=None):
        self.t = 1000.0
        self.slept = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def monotonic(self):
        return self.t

    def perf_counter(self):
        self.t += 1e-5  # a busy spin must still see time pass
        return self.t

    def time(self):
        return 1_800_000_000.0 + self.t

    def sleep(self, s):
        self.t += s
        self.slept += s
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self)


def test_reader_waits_for_the_segment_then_gives_up_with_shm_missing(shm_name, monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(shm.reader, "time", fake)
    with pytest.raises(shm.ShmMissing, match="does not exist"):
        shm.Reader(shm_name, wait_s=0.3)
    # it kept looking (several short sleeps) for the whole wait, not one look and give up
    assert fake.slept >= 0.3 and fake.sleeps >= 3


def test_reader_attaches_when_the_segment_appears_during_its_wait(shm_name):
    code = f"import time; from polymm.feed import shm; time.sleep(0.5); w = shm.Writer({shm_name!r}, ring_capacity=64); time.sleep(3); w.close()"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        reader = shm.Reader(shm_name, wait_s=20)
        assert reader.snapshot().status == "starting"
        reader.close()
    finally:
        proc.wait(timeout=30)
        shm.unlink(shm_name)


def test_reader_refuses_unknown_magic_and_unknown_version_with_clear_errors(shm_name):
    path = f"/dev/shm/{shm_name}"
    with open(path, "wb") as f:
        f.write(struct.pack("<QIIIII4x", 0x1122334455667788, 1, 0, 0, 0, 0) + bytes(shm.segment_size(16)))
    try:
        with pytest.raises(shm.LayoutError, match=r"magic 0x1122334455667788.*expected"):
            shm.Reader(shm_name)
        with open(path, "r+b") as f:
            f.write(struct.pack("<QI", shm.MAGIC, 99))
        with pytest.raises(shm.LayoutError, match=r"layout version 99.*reads version 4.*feed is newer.*upgrade polymm here"):
            shm.Reader(shm_name)
        with open(path, "r+b") as f:  # a top-of-book-only segment of an older feed (version 1)
            f.write(struct.pack("<QII", shm.MAGIC, 1, 536))
        with pytest.raises(shm.LayoutError, match=r"layout version 1 .*reads version 4.*polymm-feed is older.*restart it"):
            shm.Reader(shm_name)
        with open(path, "r+b") as f:  # the previous layout (no LINK block): says what version 4 added
            f.write(struct.pack("<QII", shm.MAGIC, 3, 648))
        with pytest.raises(shm.LayoutError, match=r"layout version 3 .*4: the market socket's liveness"):
            shm.Reader(shm_name)
    finally:
        os.unlink(path)


def test_reader_is_read_only_and_its_exit_never_unlinks_the_segment(writer, shm_name):
    # Python 3.11's resource_tracker unlinks segments a process *attached* to when it exits; a reader
    # process must not take the feed's segment with it.
    code = textwrap.dedent(
        f"""
        from polymm.feed import shm
        r = shm.Reader({shm_name!r})
        print(r.snapshot().status)
        try:
            r._buf[0:1] = b"x"
        except TypeError:
            print("READONLY")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "READONLY" in out.stdout, out.stderr
    time.sleep(0.3)  # the tracker process acts after its parent exits
    assert os.path.exists(f"/dev/shm/{shm_name}")


def test_writer_process_exit_does_not_unlink(shm_name):
    code = f"from polymm.feed import shm; w = shm.Writer({shm_name!r}, ring_capacity=64); w.close()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    time.sleep(0.3)
    try:
        assert shm.Reader(shm_name).snapshot().status == "stopped"
    finally:
        shm.unlink(shm_name)


def test_segment_is_group_readable_not_world_readable(writer, shm_name):
    assert os.stat(f"/dev/shm/{shm_name}").st_mode & 0o777 == 0o640


def test_heartbeat_refreshes_without_waking_readers(writer, shm_name):
    market(writer)
    reader = shm.Reader(shm_name)
    seq = reader.seq()
    beat = 1_800_000_123.25
    writer.heartbeat(now=beat, updates_per_s=12.5, reconnects=2)
    snap = reader.snapshot()
    assert snap.seq == seq and snap.updates_per_s == 12.5 and snap.reconnects == 2
    assert snap.heartbeat == beat and snap.heartbeat_age_s(now=beat + 1.5) == 1.5


def test_wait_update_returns_on_publish_or_after_timeout(writer, shm_name, monkeypatch):
    market(writer)
    # The polling path (a writer that posts no futex wake-ups; the wake-up path is in test_shm_wake.py).
    struct.pack_into("<I", writer._buf, shm.layout._FEATURES_OFF, 0)
    reader = shm.Reader(shm_name)
    seq = reader.seq()
    fake = FakeTime()
    monkeypatch.setattr(shm.reader, "time", fake)
    assert reader.wait_update(seq, 0.2) == seq  # nothing published: returns the old seq at the timeout
    assert fake.t - 1000.0 >= 0.2 and fake.sleeps >= 2
    published = []
    fake2 = FakeTime(on_sleep=lambda f: published.append(writer.publish(1_800_000_000, leg(0.4, 0.6), None))
                     if f.sleeps == 3 else None)
    monkeypatch.setattr(shm.reader, "time", fake2)
    # a publish during the wait is returned at the next look, long before the (huge) timeout
    assert reader.wait_update(seq, 3600.0) == published[0] != seq
    assert fake2.sleeps == 3
    monkeypatch.undo()
    assert reader.wait_update(seq, 5.0) == published[0]  # already changed: returns at once


def test_updates_since_returns_every_update_in_order_and_only_what_the_ring_still_holds(writer, shm_name):
    market(writer)
    reader = shm.Reader(shm_name)
    start = reader.seq()
    seqs = [writer.publish(1_800_000_000, leg(0.01 * i, 0.99), None) for i in range(1, 11)]
    ups = reader.updates_since(start)
    assert [u.seq for u in ups] == seqs
    assert [u.up.bid for u in ups] == [0.01 * i for i in range(1, 11)]
    assert all(u.window_start == 1_800_000_000 for u in ups)
    for i in range(200):  # lap the 64-entry ring several times
        writer.publish(1_800_000_000, leg(0.5, 0.6), None)
    ups = reader.updates_since(start)
    assert len(ups) == 64 and ups[-1].seq == writer.seq and ups[0].seq == writer.seq - 63
    assert reader.updates_since(writer.seq) == []


def test_market_and_status_changes_are_in_the_ring_too(writer, shm_name):
    reader = shm.Reader(shm_name)
    start = reader.seq()
    market(writer)
    writer.set_status("connected")
    writer.set_tick_size(1_800_000_000, 0.001)
    ups = reader.updates_since(start)
    assert [(u.status, u.tick_size, u.window_start) for u in ups] == [
        ("rotating", 0.01, 1_800_000_000),
        ("connected", 0.01, 1_800_000_000),
        ("connected", 0.001, 1_800_000_000),
    ]


def test_too_long_identity_strings_are_refused_not_truncated(writer):
    with pytest.raises(ValueError, match="up_token is 81 characters"):
        market(writer, up_token="9" * 81)


def test_writer_killed_outright_leaves_a_segment_a_new_writer_takes_over_with_increasing_seq(shm_name):
    code = textwrap.dedent(
        f"""
        import math, time
        from polymm.feed import shm
        w = shm.Writer({shm_name!r}, ring_capacity=64)
        w.set_market(window_start=1, window_end=901, condition_id="0x01", up_token="1", down_token="2",
                     tick_size=0.01, min_order_size=5, fee_rate=0.07, status="connected")
        print("READY", flush=True)
        while True:
            w.publish(1, (0.4, 1.0, 0.6, 1.0, math.nan, 1.0, 1.0), None)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        reader = shm.Reader(shm_name)
        reader.wait_update(reader.seq(), 2.0)
        proc.kill()  # SIGKILL: no cleanup at all, maybe in the middle of a write
        proc.wait(10)
        seq_before = reader.seq()
        snap = reader.snapshot()  # never hangs, even if the kill left the seqlock odd
        assert snap.writer_pid == proc.pid
        w2 = shm.Writer(shm_name, ring_capacity=64)  # the kernel released the dead writer's lock
        try:
            snap2 = reader.snapshot()
            assert snap2.writer_pid == os.getpid() and snap2.seq > seq_before and snap2.status == "starting"
        finally:
            w2.close()
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        shm.unlink(shm_name)


def test_reader_reports_stopped_without_a_book_when_a_dead_writer_left_the_seqlock_odd(writer, shm_name):
    market(writer, status="connected")
    writer.publish(1_800_000_000, leg(0.4, 0.6), leg(0.4, 0.6))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    # what a SIGKILL in the middle of a publish leaves behind: an odd seqlock word and a dead writer pid
    struct.pack_into("<q", writer._buf, shm.HEADER.fields["writer_pid"][1], dead_pid)
    struct.pack_into("<Q", writer._buf, shm.layout._LOCK_OFF, writer._lockword + 1)
    result = []
    t = threading.Thread(target=lambda: result.append(shm.Reader(shm_name).snapshot()), daemon=True)
    t.start()
    t.join(60)  # generous: the snapshot must give up on the dead writer's lock, not retry forever
    assert not t.is_alive(), "snapshot() kept retrying on a seqlock left odd by a dead writer"
    (snap,) = result
    assert snap.status == "stopped" and math.isnan(snap.up.bid) and math.isnan(snap.down.ask)
    struct.pack_into("<Q", writer._buf, shm.layout._LOCK_OFF, writer._lockword)  # let the fixture close cleanly


def test_writes_after_close_publish_nothing_or_say_the_writer_is_closed(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    market(w)
    w.close()
    try:
        assert w.publish(1_800_000_000, leg(0.4, 0.6), None) == 0
        w.heartbeat()  # the service loop may race its own shutdown: harmless
        with pytest.raises(ValueError, match="is closed"):
            market(w)
    finally:
        shm.unlink(shm_name)
