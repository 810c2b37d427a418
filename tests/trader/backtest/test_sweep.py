"""`polymm-backtest --sweep`: the grid and its checks in the schema's words, runs across processes with results
independent of the number of workers, each point equal to a plain run with those values, the ranked table, the
JSON and the heatmap."""
from __future__ import annotations

import io
import json

import pytest
from tests.support.recordings import synthetic_recording

from polymm.trader.backtest import sweep
from polymm.trader.backtest.cli import main


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "ticks.jsonl"
    synthetic_recording(path, windows=2, lines_per_s=2.0, window_s=300, seed=3)
    return path


FAST = ("--step-ms", "500")  # fewer decisions between lines: a point takes a fraction of a second


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the grid -----------------------------------------------------------------------------------------------


def test_values_are_exact_decimal_steps_stop_included():
    (axis,) = sweep.parse_axes(["s1.entry_threshold=0.55:0.70:0.05"], {})
    assert axis.values == (0.55, 0.6, 0.65, 0.7)
    (axis,) = sweep.parse_axes(["s1.tp_increment=0.01:0.1:0.03"], {})
    assert axis.values == (0.01, 0.04, 0.07, 0.1)
    (axis,) = sweep.parse_axes(["s1.max_late_reentries=0:3:1"], {})
    assert axis.values == (0, 1, 2, 3) and all(type(v) is int for v in axis.values)


def test_a_grid_is_every_combination_first_key_slowest():
    axes = sweep.parse_axes(["s1.entry_threshold=0.6:0.61:0.01", "s1.tp_increment=0.01:0.03:0.01"], {})
    assert sweep.points(axes) == [
        {"s1.entry_threshold": 0.6, "s1.tp_increment": 0.01}, {"s1.entry_threshold": 0.6, "s1.tp_increment": 0.02},
        {"s1.entry_threshold": 0.6, "s1.tp_increment": 0.03}, {"s1.entry_threshold": 0.61, "s1.tp_increment": 0.01},
        {"s1.entry_threshold": 0.61, "s1.tp_increment": 0.02}, {"s1.entry_threshold": 0.61, "s1.tp_increment": 0.03}]


@pytest.mark.parametrize("args, words", [
    (["--sweep", "s1.entry_treshold=0.5:0.6:0.1"], "s1.entry_treshold: unknown key (did you mean s1.entry_threshold?)"),
    (["--sweep", "s1.leg_mode=1:2:1"], "s1.leg_mode cannot be swept: it is not a number (it must be one of both, down_only, highest_bid, up_only)"),
    (["--sweep", "s1.enabled=0:1:1"], "s1.enabled cannot be swept: it is not a number (it must be true or false)"),
    (["--sweep", "s1.entry_threshold=abc:0.7:0.05"], "s1.entry_threshold: START 'abc' is not a number"),
    (["--sweep", "s1.entry_threshold=0.5:0.7:x"], "s1.entry_threshold: STEP 'x' is not a number"),
    (["--sweep", "s1.entry_threshold=0.5:0.7:0"], "s1.entry_threshold: STEP must be above 0 (got 0)"),
    (["--sweep", "s1.entry_threshold=0.5:0.7:-0.05"], "s1.entry_threshold: STEP must be above 0 (got -0.05)"),
    (["--sweep", "s1.entry_threshold=0.7:0.5:0.05"], "s1.entry_threshold: STOP 0.5 is below START 0.7"),
    (["--sweep", "s1.entry_threshold=0.5:0.7"], "expected KEY=START:STOP:STEP, e.g. --sweep s1.entry_threshold=0.55:0.70:0.05"),
    (["--sweep", "s1.entry_threshold=nan:0.7:0.1"], "START 'nan' is not a finite number"),
    (["--sweep", "s1.entry_threshold=0.0001:0.9999:0.00001"], "s1.entry_threshold: 99,981 values from 0.0001 to 0.9999"),
    (["--sweep", "s1.entry_threshold=0.01:0.99:0.01", "--sweep", "s1.tp_increment=0.01:0.99:0.01",
      "--sweep", "s1.sl_offset=0:0.1:0.05"], "the grid has 29,403 points (99 x 99 x 3); at most 10,000"),
    (["--sweep", "s1.entry_threshold=0.9:1.1:0.1"], "point s1.entry_threshold=1: s1.entry_threshold must be a number between 0 and 1 (got 1)"),
    (["--sweep", "s1.max_late_reentries=0:1:0.5"], "s1.max_late_reentries must be a whole number"),
    (["--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--sweep", "s1.entry_threshold=0.5:0.6:0.1"], "s1.entry_threshold is swept twice"),
    (["--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--set", "s1.entry_threshold=0.6"], "given by both --set and --sweep"),
    (["--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--heatmap", "x.png"], "--heatmap draws two swept keys; got 1 --sweep"),
    (["--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--workers", "0"], "--workers must be 1 or more (got 0)"),
    (["--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--ledger", "x.sqlite"], "--ledger writes one run"),
    (["--heatmap", "x.png"], "--workers and --heatmap go with --sweep"),
])
def test_bad_sweeps_are_clear_errors_before_anything_runs(capsys, recording, args, words):
    code, out, err = run(capsys, str(recording), *args)
    assert code == 2 and out == ""
    assert words in err and err.startswith("polymm-backtest: ") and "Traceback" not in err, err


def test_max_drawdown_is_the_largest_fall_from_a_high_starting_at_zero():
    assert sweep.max_drawdown([]) == 0.0
    assert sweep.max_drawdown([1.0, 2.0]) == 0.0
    assert sweep.max_drawdown([-1.0, 2.0, -0.5]) == 1.0
    assert sweep.max_drawdown([1.0, -3.0, 1.0, -2.5, 5.0]) == 4.5


# ---- running ------------------------------------------------------------------------------------------------


def test_results_do_not_depend_on_the_number_of_workers_and_each_point_is_a_plain_run(capsys, recording):
    grid = ["--sweep", "s1.entry_threshold=0.55:0.6:0.05", "--sweep", "s1.tp_increment=0.01:0.02:0.01"]
    code, out, err = run(capsys, str(recording), *grid, *FAST, "--json", "--workers", "1")
    assert code == 0, err
    one = json.loads(out)
    code, out, err = run(capsys, str(recording), *grid, *FAST, "--json", "--workers", "2")
    assert code == 0, err
    two = json.loads(out)
    assert one["sweep"]["workers"] == 1 and two["sweep"]["workers"] == 2
    assert one["points"] == two["points"]  # every figure, in the same (ranked) order
    assert len(one["points"]) == 4 and [p["rank"] for p in one["points"]] == [1, 2, 3, 4]
    totals = [p["total_pnl"] for p in one["points"]]
    assert totals == sorted(totals, reverse=True)
    assert any(p["fills"] for p in one["points"]) and len({p["total_pnl"] for p in one["points"]}) > 1  # it traded
    for p in one["points"]:
        assert p["windows"] == len(p["per_window"]) == 2
        assert p["fills"] == sum(w["fills"] for w in p["per_window"])
        assert p["total_pnl"] == pytest.approx(sum(w["net"] for w in p["per_window"]), abs=1e-6)
        assert p["max_drawdown"] == sweep.max_drawdown([w["net"] for w in p["per_window"]])
    best = one["points"][0]
    sets = [a for k, v in best["point"].items() for a in ("--set", f"{k}={v}")]
    code, out, err = run(capsys, str(recording), *sets, *FAST, "--json")
    plain = json.loads(out)
    assert plain["total_pnl"] == best["total_pnl"]
    assert sum(len(w["fills"]) for w in plain["windows"]) == best["fills"]


def test_the_table_is_ranked_by_pnl_and_the_heatmap_is_a_png(capsys, recording, tmp_path):
    png = tmp_path / "heat.png"
    code, out, err = run(capsys, str(recording), "--sweep", "s1.entry_threshold=0.55:0.6:0.05",
                         "--sweep", "s1.tp_increment=0.01:0.02:0.01", "--heatmap", str(png), "--workers", "2", *FAST)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"sweep of {recording}: 4 points (s1.entry_threshold 2 x s1.tp_increment 2)")
    assert lines[1].split() == ["rank", "s1.entry_threshold", "s1.tp_increment", "windows", "fills", "orders", "pnl",
                                "max_drawdown"]
    pnl = [float(line.split()[6]) for line in lines[2:6]]
    assert pnl == sorted(pnl, reverse=True) and lines[6] == f"heatmap: {png}"
    import PIL.Image

    with PIL.Image.open(io.BytesIO(png.read_bytes())) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_a_bad_tick_file_stops_the_sweep_with_its_line(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1800000001, "window_start": 1800000000, "up_bid": 0.5, "up_ask": 0.52, "down_bid": 0.48,'
                   ' "down_ask": 0.5}\nnot json\n')
    code, out, err = run(capsys, str(bad), "--sweep", "s1.entry_threshold=0.55:0.6:0.05", "--workers", "2")
    assert code == 2 and "line 2: not JSON" in err and "Traceback" not in err


def test_a_sweep_replays_one_series_of_a_recording_of_several(capsys, recording, tmp_path):
    # The recorder writes every series of a host into one file: the sweep replays the chosen series' lines with
    # its config, as a plain run does; without --series such a file is an error in words.
    btc = [json.loads(line) for line in recording.read_text().splitlines()]
    eth = [{**row, "series": "eth-15m", "up_bid": round(row["up_bid"], 2)} for row in btc]
    both, eth_only = tmp_path / "both.jsonl", tmp_path / "eth.jsonl"
    merged = sorted([(r["ts"], 0, r) for r in btc] + [(r["ts"], 1, r) for r in eth])
    both.write_text("".join(json.dumps(r) + "\n" for _, _, r in merged))
    eth_only.write_text("".join(json.dumps(r) + "\n" for r in eth))
    grid = ("--sweep", "s1.entry_threshold=0.55:0.6:0.05", *FAST, "--json", "--workers", "2")
    code, out, err = run(capsys, str(both), "--series", "eth-15m", *grid)
    assert code == 0, err
    chosen = json.loads(out)
    code, out, err = run(capsys, str(eth_only), *grid)  # the series is the recording's own
    assert code == 0, err
    alone = json.loads(out)
    assert chosen["sweep"]["series"] == alone["sweep"]["series"] == "eth-15m"
    assert chosen["points"] == alone["points"] and any(p["fills"] for p in alone["points"])
    code, out, err = run(capsys, str(both), *grid)
    assert code == 2 and "holds several series; pick one with --series" in err and "Traceback" not in err
