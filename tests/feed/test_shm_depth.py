"""The DEPTH block of the shared-memory contract (layout version 2): N levels per side of both legs, under the
seqlock, in the ring too; a depth-0 segment is top of book only."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from polymm.feed import shm

from tests.feed.test_shm import leg, market

UP_BIDS = [(0.55, 10.0), (0.54, 20.0), (0.52, 5.0)]
UP_ASKS = [(0.57, 7.0), (0.6, 1.0)]
DOWN_BIDS = [(0.42, 3.0)]
DOWN_ASKS = [(0.44, 9.0), (0.45, 8.0), (0.46, 7.0), (0.47, 6.0), (0.48, 5.0)]


@pytest.fixture
def writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64, depth=4)
    yield w
    w.close()
    shm.unlink(shm_name)


def test_depth_block_matches_its_numpy_dtype_and_follows_the_header():
    g = shm.geometry(4)
    raw = g.pack_leg(UP_BIDS, UP_ASKS) + g.pack_leg(DOWN_BIDS, DOWN_ASKS)
    arr = np.frombuffer(raw, dtype=shm.depth_dtype(4))[0]
    assert list(arr["up"]["bids"]["price"][:3]) == [0.55, 0.54, 0.52] and math.isnan(arr["up"]["bids"]["price"][3])
    assert list(arr["up"]["asks"]["size"][:2]) == [7.0, 1.0]
    assert list(arr["down"]["asks"]["price"]) == [0.44, 0.45, 0.46, 0.47]  # the fifth level is cut
    assert shm.ring_entry_dtype(4).itemsize == g.entry_size == shm.TOP.itemsize + 4 * 64 + 8
    assert g.state_end == shm.HEADER.itemsize + 256 and g.ring_offset % 64 == 0
    assert g.unpack(raw) == (tuple(UP_BIDS), tuple(UP_ASKS), tuple(DOWN_BIDS), tuple(DOWN_ASKS[:4]))


def test_reader_sees_both_legs_depth_best_first_with_the_top(writer, shm_name):
    market(writer)
    writer.publish(1_800_000_000, leg(0.55, 0.57), leg(0.42, 0.44), up_depth=(UP_BIDS, UP_ASKS),
                   down_depth=(DOWN_BIDS, DOWN_ASKS))
    with shm.Reader(shm_name) as r:
        snap = r.snapshot()
        assert snap.depth_levels == 4
        assert snap.up.bids == tuple(UP_BIDS) and snap.up.asks == tuple(UP_ASKS)
        assert snap.down.bids == tuple(DOWN_BIDS) and snap.down.asks == tuple(DOWN_ASKS[:4])
        # one leg changes: the other keeps its depth
        writer.publish(1_800_000_000, leg(0.56, 0.57), None, up_depth=([(0.56, 1.0)] + UP_BIDS, UP_ASKS))
        snap = r.snapshot()
        assert snap.up.bids[0] == (0.56, 1.0) and len(snap.up.bids) == 4
        assert snap.down.bids == tuple(DOWN_BIDS)
        # and the ring holds every state with its depth
        ups = r.updates_since(0)
        books = [u for u in ups if u.status == "connected" or u.up.bids]
        assert [u.up.bids[0][0] for u in books] == [0.55, 0.56]
        assert books[0].down.asks == tuple(DOWN_ASKS[:4])


def test_new_market_clears_the_depth_until_its_first_book(writer, shm_name):
    market(writer)
    writer.publish(1_800_000_000, leg(0.55, 0.57), leg(0.42, 0.44), up_depth=(UP_BIDS, UP_ASKS),
                   down_depth=(DOWN_BIDS, DOWN_ASKS))
    market(writer, window_start=1_800_000_900)
    with shm.Reader(shm_name) as r:
        snap = r.snapshot()
        assert snap.up.bids == () and snap.down.asks == () and math.isnan(snap.up.bid)
        assert r.updates_since(r.seq() - 1)[-1].up.bids == ()


def test_depth_zero_is_top_of_book_only(shm_name):
    with shm.Writer(shm_name, ring_capacity=16, depth=0) as w:
        market(w)
        w.publish(1_800_000_000, leg(0.55, 0.57), leg(0.42, 0.44))
        with shm.Reader(shm_name) as r:
            snap = r.snapshot()
            assert snap.depth_levels == 0 and snap.up.bid == 0.55 and snap.up.bids == ()
    shm.unlink(shm_name)


def test_restart_with_another_depth_replaces_the_segment_and_readers_follow(shm_name):
    w = shm.Writer(shm_name, ring_capacity=16, depth=2)
    market(w)
    r = shm.Reader(shm_name)
    w.close()
    w2 = shm.Writer(shm_name, ring_capacity=16, depth=5)
    try:
        market(w2)
        w2.publish(1_800_000_000, leg(0.55, 0.57), leg(0.42, 0.44), up_depth=(UP_BIDS, UP_ASKS),
                   down_depth=(DOWN_BIDS, DOWN_ASKS))
        snap = r.snapshot()  # the old mapping says "stopped": the reader follows the name
        assert snap.depth_levels == 5 and snap.down.asks == tuple(DOWN_ASKS)
    finally:
        r.close()
        w2.close()
        shm.unlink(shm_name)


def test_depth_out_of_range_and_wrong_sized_depth_bytes_are_refused(shm_name, writer):
    with pytest.raises(ValueError, match="depth must be between 0 and"):
        shm.Writer(shm_name + "x", depth=shm.MAX_DEPTH + 1)
    market(writer)
    with pytest.raises(ValueError):
        writer.publish(1_800_000_000, leg(0.55, 0.57), None, up_depth=b"\0" * 8)


def test_reader_refuses_a_header_whose_depth_disagrees_with_its_ring_entry(shm_name, writer):
    import struct

    off = shm.HEADER.fields["ring_entry_size"][1]
    struct.pack_into("<I", writer._buf, off, 999)  # noqa: SLF001 - corrupt the constant on purpose
    with pytest.raises(shm.LayoutError, match="4 depth levels, ring entry 999 B"):
        shm.Reader(shm_name)
    struct.pack_into("<I", writer._buf, off, shm.geometry(4).entry_size)  # noqa: SLF001


def test_a_torn_read_is_never_returned_with_depth(writer, shm_name):
    # The depth is written inside the same seqlock as the top: a reader never pairs a top with another
    # publish's depth.
    import threading

    market(writer)
    stop = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            p = 0.30 + (i % 50) / 100
            writer.publish(1_800_000_000, leg(p, p + 0.02), None, up_depth=([(p, 1.0), (p - 0.01, 2.0)], [(p + 0.02, 3.0)]))
            i += 1

    t = threading.Thread(target=write)
    t.start()
    try:
        with shm.Reader(shm_name) as r:
            deadline = time.monotonic() + 0.5
            seen = 0
            while time.monotonic() < deadline:
                up = r.snapshot().up
                if up.bids:
                    assert up.bids[0][0] == up.bid and up.asks[0][0] == up.ask
                    seen += 1
            for u in r.updates_since(0):
                if u.up.bids:
                    assert u.up.bids[0][0] == u.up.bid
    finally:
        stop.set()
        t.join()
    assert seen


def test_feed_depth_option_is_bounded_with_a_clear_usage_error(capsys):
    from polymm.feed.service import parse_args

    assert parse_args([]).depth == shm.DEFAULT_DEPTH == 10
    assert parse_args(["--depth", "0"]).depth == 0
    for bad in ("-1", str(shm.MAX_DEPTH + 1)):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--depth", bad])
        assert exc.value.code == 2
        assert f"--depth must be between 0 and {shm.MAX_DEPTH}" in capsys.readouterr().err
