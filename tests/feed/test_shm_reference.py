"""The shared-memory REF block (issue 16): the BTC reference prices, written by the feed, read by the trader,
mmctl and the recorder; kept across a feed restart so the window's opening price survives it."""
from __future__ import annotations

import math

import numpy as np
import pytest

from polymm.feed import shm

T = 1_800_000_000


@pytest.fixture
def writer(shm_name):
    w = shm.Writer(shm_name, ring_capacity=64)
    yield w
    w.close()
    shm.unlink(shm_name)


def write(w: shm.Writer, status: str = "captured") -> None:
    w.set_reference((97_123.45, T + 10.0, T + 10.14), (97_150.0, T + 10.0, T + 10.05), (T, 97_050.0, T + 0.0, status),
                    True, 2, 40)


def test_the_ref_packer_matches_the_numpy_layout():
    arr = np.zeros(1, dtype=shm.HEADER)
    arr["ref"]["open_price"] = 97_050.0
    arr["ref"]["rtds_reconnects"] = 3
    v = shm.layout._REF.unpack_from(arr.tobytes(), shm.layout._REF_OFF)
    assert v[7] == 97_050.0 and v[11] == 3 and shm.HEADER.fields["ref"][1] % 8 == 0


def test_before_any_price_the_block_reads_as_nothing_known(writer, shm_name):
    with shm.Reader(shm_name) as r:
        ref = r.snapshot().ref
    assert math.isnan(ref.chainlink) and ref.chainlink_age_s(T) == math.inf and not ref.rtds_connected
    assert math.isnan(ref.opening_for(T)) and ref.open_status == ""


def test_a_reference_write_is_read_back_without_taking_a_sequence_number(writer, shm_name):
    with shm.Reader(shm_name) as r:
        seq = r.seq()
        write(writer)
        snap = r.snapshot()
        assert r.seq() == seq  # the book path's sequence and ring are untouched
    ref = snap.ref
    assert (ref.chainlink, ref.chainlink_ts, ref.binance) == (97_123.45, T + 10.0, 97_150.0)
    assert ref.chainlink_age_s(T + 10.14) == pytest.approx(0.14)
    assert ref.opening_for(T) == 97_050.0 and math.isnan(ref.opening_for(T + 900))
    assert ref.rtds_connected and (ref.rtds_reconnects, ref.ref_updates) == (2, 40)


def test_an_unknown_opening_is_not_offered_as_a_price(writer, shm_name):
    writer.set_reference((97_123.45, T + 10.0, T + 10.1), (math.nan,) * 3, (T, math.nan, math.nan, "unknown"), True, 0, 1)
    with shm.Reader(shm_name) as r:
        ref = r.snapshot().ref
    assert ref.open_status == "unknown" and math.isnan(ref.opening_for(T))


def test_a_restarted_writer_finds_the_previous_opening_and_keeps_it_but_not_the_prices(shm_name):
    first = shm.Writer(shm_name, ring_capacity=64)
    assert first.previous_reference is None
    write(first)
    first.close()
    second = shm.Writer(shm_name, ring_capacity=64)
    try:
        prev = second.previous_reference
        assert prev is not None and prev.open_window_start == T and prev.open_price == 97_050.0
        with shm.Reader(shm_name) as r:
            ref = r.snapshot().ref
        assert ref.opening_for(T) == 97_050.0 and math.isnan(ref.chainlink) and not ref.rtds_connected
    finally:
        second.close()
        shm.unlink(shm_name)
