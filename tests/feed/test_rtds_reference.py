"""The feed's reference-price state (feed/rtds/reference.py): latest prices, staleness and the capture of each
window's opening price at the boundary, including a start or reconnect mid-window."""
from __future__ import annotations

import math

from polymm.feed.rtds import reference as ref
from polymm.feed.rtds.wire import Price

W = 900
T = 1_800_000_000  # a window start (multiple of 900)


def cl(ts: float, price: float) -> Price:
    return Price("chainlink", price, ts)


def feed(book: ref.ReferenceBook, *points: tuple[float, float]) -> int:
    bits = 0
    for ts, price in points:
        bits |= book.apply(cl(ts, price), ts + 0.1)
    return bits


def test_the_first_chainlink_point_at_or_after_the_boundary_is_the_opening_price():
    book = ref.ReferenceBook(W)
    feed(book, (T - 2, 97_000.0), (T - 1, 97_010.0))
    assert book.apply(cl(T + 0.4, 97_050.0), T + 0.5) == ref.CHAINLINK_BIT | ref.OPEN_BIT
    opening = book.opening(T)
    assert opening.known and opening.price == 97_050.0 and opening.how == ref.CAPTURED and opening.source_ts == T + 0.4
    # later points of the window do not move it
    assert feed(book, (T + 1, 97_100.0)) == ref.CHAINLINK_BIT
    assert book.opening(T).price == 97_050.0


def test_a_point_stamped_exactly_at_the_open_counts_even_as_the_first_point_ever_seen():
    book = ref.ReferenceBook(W)
    feed(book, (T, 97_123.45))
    assert book.opening(T).known and book.opening(T).price == 97_123.45


def test_starting_mid_window_marks_the_open_unknown_until_restored_from_the_state_file():
    book = ref.ReferenceBook(W)
    feed(book, (T + 300, 97_500.0))
    opening = book.opening(T)
    assert not opening.known and opening.how == ref.UNKNOWN and "after the open" in opening.note
    assert book.restore(T, 97_050.0, T)
    assert book.opening(T).known and book.opening(T).how == ref.RECOVERED and book.opening(T).price == 97_050.0
    # the next window is captured on the stream as usual
    feed(book, (T + W - 1, 97_600.0), (T + W, 97_610.0))
    assert book.opening(T + W).how == ref.CAPTURED and book.opening(T + W).price == 97_610.0


def test_a_gap_over_the_boundary_longer_than_the_tolerance_leaves_the_open_unknown():
    book = ref.ReferenceBook(W, open_tolerance_s=2.0)
    feed(book, (T - 1, 97_000.0), (T + 5, 97_040.0))
    assert not book.opening(T).known and "5.0s after the open" in book.opening(T).note


def test_after_a_reconnect_the_history_dump_fills_the_gap_and_repeats_are_ignored():
    book = ref.ReferenceBook(W)
    feed(book, (T - 3, 97_000.0))
    # disconnected over the boundary; the new connection's history dump repeats a point and covers the open
    feed(book, (T - 3, 97_000.0), (T - 1, 97_001.0), (T, 97_002.0), (T + 1, 97_003.0))
    assert book.out_of_order == 1
    assert book.opening(T).price == 97_002.0 and book.chainlink.price == 97_003.0


def test_restore_never_overrides_a_captured_open_and_refuses_nonsense():
    book = ref.ReferenceBook(W)
    feed(book, (T - 1, 97_000.0), (T, 97_002.0))
    assert not book.restore(T, 90_000.0, T)
    assert not book.restore(T + W, -5.0, T + W) and not book.restore(T + 1, 97_000.0, T)
    assert book.opening(T).price == 97_002.0


def test_binance_is_tracked_apart_and_does_not_capture_openings():
    book = ref.ReferenceBook(W)
    assert book.apply(Price("binance", 97_030.0, T + 0.2), T + 0.3) == ref.BINANCE_BIT
    assert book.binance.price == 97_030.0 and math.isnan(book.chainlink.price)
    assert not book.opening(T).known


def test_staleness_is_the_age_of_each_source_by_its_own_timestamp():
    book = ref.ReferenceBook(W)
    assert book.chainlink.age_s(T) == math.inf
    feed(book, (T - 1, 97_000.0))
    book.apply(Price("binance", 97_030.0, T - 10), T - 9.9)
    assert abs(book.chainlink.age_s(T + 0.4) - 1.4) < 1e-6
    assert abs(book.binance.age_s(T + 0.4) - 10.4) < 1e-6


def test_old_openings_are_forgotten():
    book = ref.ReferenceBook(W)
    for k in range(12):
        feed(book, (T + k * W, 97_000.0 + k))
    assert len(book.openings) == ref.ReferenceBook.KEEP_OPENINGS and book.opening(T + 11 * W).price == 97_011.0


def test_disagreement_with_the_stated_price_to_beat_is_described_else_silent():
    book = ref.ReferenceBook(W)
    feed(book, (T, 97_000.0))
    assert ref.disagreement(book.opening(T), 97_000.5) == ""
    assert ref.disagreement(book.opening(T), None) == ""
    text = ref.disagreement(book.opening(T), 96_900.0)
    assert "97,000.00" in text and "96,900.00" in text and "+0.103%" in text


def test_cross_check_against_gammas_price_to_beat_in_words():
    book = ref.ReferenceBook(W)
    feed(book, (T, 97_000.0))
    assert ref.cross_check(book.opening(T), 97_000.0) == ("info", f"window {T}: opening price 97,000.00 agrees with Gamma's price to beat")
    level, text = ref.cross_check(book.opening(T), 96_000.0)
    assert level == "warning" and "differs" in text
    assert ref.cross_check(book.opening(T), None)[0] == "info"
    assert "nothing to cross-check" in ref.cross_check(book.opening(T + W), 97_000.0)[1]


def test_an_hourly_series_takes_its_opening_from_binance_not_chainlink():
    # The hourly markets resolve on Binance's 1-hour candle (docs/venue.md): its first point of the hour opens it.
    book = ref.ReferenceBook(3600, open_source="binance")
    H = 1_800_000_000  # a whole hour
    book.apply(Price("binance", 97_000.0, H - 1), H - 0.9)
    assert book.apply(cl(H, 97_111.0), H + 0.1) == ref.CHAINLINK_BIT  # Chainlink's point opens nothing here
    assert book.apply(Price("binance", 97_020.0, H + 0.5), H + 0.6) == ref.BINANCE_BIT | ref.OPEN_BIT
    assert book.opening(H).price == 97_020.0 and book.opening(H).how == ref.CAPTURED
