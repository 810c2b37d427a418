"""The tick file's depth fields (recorded since shm layout 2): read when present, old files read as before."""
from __future__ import annotations

import json

import pytest

from polymm.trader.backtest.ticks_file import BadTicks, read_ticks

TOP = {"ts": 1_800_000_001.0, "window_start": 1_800_000_000, "up_bid": 0.48, "up_ask": 0.52, "down_bid": 0.47,
       "down_ask": 0.53}


def write(tmp_path, *docs) -> str:
    path = tmp_path / "ticks.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path)


def test_an_old_top_of_book_recording_reads_as_before_with_no_depth(tmp_path):
    [(n, line)] = list(read_ticks(write(tmp_path, TOP)))
    assert n == 1 and line.up_bid == 0.48
    assert line.depth("up") is None and line.depth("down") is None


def test_depth_is_per_leg_bids_and_asks_of_price_size_best_first(tmp_path):
    doc = dict(TOP, up_bids=[[0.48, 10], [0.45, 2]], up_asks=[[0.52, 1]], down_bids=[[0.47, 3]], down_asks=[])
    [(_, line)] = list(read_ticks(write(tmp_path, doc)))
    assert line.depth("up") == ([(0.48, 10.0), (0.45, 2.0)], [(0.52, 1.0)])
    assert line.depth("down") == ([(0.47, 3.0)], [])


@pytest.mark.parametrize("field,levels,message", [
    ("up_bids", [[0.48, 1], [0.49, 1]], "up_bids is not best first"),
    ("up_asks", [[0.52, 1], [0.52, 2]], "up_asks is not best first"),
    ("down_bids", [[0.47, 0]], "down_bids size 0"),
    ("down_asks", [[1.2, 1]], "down_asks price 1.2 is outside"),
    ("up_bids", [[0.40, 1]], "up_bids starts at 0.4 but up_bid is 0.48"),
    ("up_bids", [[0.48]], "line 1"),
])
def test_bad_depth_names_the_line_and_the_field(tmp_path, field, levels, message):
    with pytest.raises(BadTicks, match=message):
        list(read_ticks(write(tmp_path, dict(TOP, **{field: levels}))))
