"""polymm-backtest and the market series: a recording names its series; the replay takes that series' config
(the base stretched to its window and its own table), and a file holding several series needs --series."""
from __future__ import annotations

import json
import sqlite3

from tests.trader.backtest.test_backtest import run_cli, segment

from tests.support.strategy import WS


def rows_of(series: str, window_s: int, up_bid: float) -> list[dict]:
    return [{**r, "series": series, "window_end": WS + window_s}
            for r in segment(0, 60, up_bid, round(up_bid + 0.01, 2))]


def test_a_recording_of_another_series_replays_with_that_series_config(tmp_path):
    (tmp_path / "config.toml").write_text('[s1]\ncap_schedule = "0-900:10"\n[series.eth-5m.s1]\nentry_threshold = 0.95\n')
    r = run_cli(tmp_path, rows_of("eth-5m", 300, 0.70), "--config", str(tmp_path / "config.toml"))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    # eth-5m's own threshold (0.95) keeps S1 out of a 0.70 book; the base's 0.60 would enter
    assert result["series"] == "eth-5m" and not [e for e in result["orders"] if e["action"] == "place"]
    r = run_cli(tmp_path, rows_of("btc-15m", 900, 0.70), "--config", str(tmp_path / "config.toml"))
    assert [e for e in json.loads(r.stdout)["orders"] if e["action"] == "place"]


def test_a_file_of_several_series_needs_series_and_then_replays_one(tmp_path):
    rows = rows_of("btc-15m", 900, 0.70) + [{**r, "ts": r["ts"] + 0.5} for r in rows_of("eth-5m", 300, 0.70)]
    rows.sort(key=lambda r: r["ts"])
    r = run_cli(tmp_path, rows)
    assert r.returncode == 2 and "holds several series; pick one with --series" in r.stderr
    ledger = tmp_path / "bt.sqlite"
    r = run_cli(tmp_path, rows, "--series", "eth-5m", "--ledger", str(ledger))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["series"] == "eth-5m" and any("line(s) of other series skipped" in w for w in result["config_warnings"])
    assert sqlite3.connect(ledger).execute("SELECT DISTINCT series FROM windows").fetchall() == [("eth-5m",)]
    r = run_cli(tmp_path, rows, "--series", "eth-10m")
    assert r.returncode == 2 and "unknown window '10m'" in r.stderr
