"""`mmctl history` and `polymm-report` on ledger files: totals add up, formats parse, the HTML is self-contained."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from tests.support.strategy import WS, write_ticks

from tests.support.ledger import images_of, synthetic_ledger
from polymm.ctl.cli import cli
from polymm.trader.backtest.runner import Backtest
from polymm.trader.backtest.ticks_file import read_ticks
from polymm.trader.config import load_config
from polymm.trader.ledger import load_history
from polymm.ctl.report import main as report_main

DAY = 86400


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    synthetic_ledger(path, windows=240, start=WS)  # four hours of 60-second windows
    return path


def mmctl(*args, env=None):
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_history_json_totals_equal_the_sum_of_rows_for_every_grouping(ledger):
    for by in ("window", "hour", "day"):
        code, out = mmctl("history", "--ledger", str(ledger), "--by", by, "--json", "--since", str(WS - DAY))
        assert code == 0, out
        h = json.loads(out)
        assert h["totals"]["net"] == pytest.approx(sum(r["net"] for r in h["rows"]), abs=1e-6)
        assert h["totals"]["fees"] == pytest.approx(sum(r["fees"] for r in h["rows"]), abs=1e-6)
        assert h["totals"]["trades"] == sum(r["trades"] for r in h["rows"])
    assert len(json.loads(mmctl("history", "--ledger", str(ledger), "--by", "hour", "--json")[1])["rows"]) == 4


def test_history_table_and_csv_read_the_trader_state_dir_by_default(ledger):
    code, out = mmctl("history", "--by", "hour", env={"POLYMM_STATE_DIR": str(ledger.parent)})
    assert code == 0, out
    assert "hour (UTC)" in out and "win rate" in out and "max drawdown" in out
    code, out = mmctl("history", "--csv", env={"POLYMM_STATE_DIR": str(ledger.parent)})
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 240
    assert sum(float(r["net"]) for r in rows) == pytest.approx(load_history(ledger).totals.net, abs=1e-6)


def test_history_errors_are_one_line(tmp_path):
    code, out = mmctl("history", "--ledger", str(tmp_path / "none.sqlite"))
    assert code == 1 and out.startswith("mmctl: no ledger at") and "Traceback" not in out
    code, out = mmctl("history", "--since", "yesterday-ish", "--ledger", str(tmp_path / "none.sqlite"))
    assert code == 2 and "is not a time" in out


def backtest_json(tmp_path):
    """A one-window backtest that buys Up at 0.62 and holds it to an Up resolution."""
    def seg(t0, t1, bid, ask):
        return [{"ts": WS + t, "window_start": WS, "up_bid": bid, "up_ask": ask, "down_bid": round(1 - ask, 2),
                 "down_ask": round(1 - bid, 2), "winner": "up"} for t in range(t0, t1)]
    ticks = write_ticks(tmp_path / "ticks.jsonl", seg(295, 305, 0.62, 0.63) + seg(305, 306, 0.61, 0.62)
                        + seg(306, 330, 0.61, 0.63))
    result = Backtest(load_config(None, {})).run(read_ticks(ticks))
    path = tmp_path / "backtest.json"
    path.write_text(json.dumps(result.to_json()))
    return path, result


def test_report_renders_from_a_ledger_with_a_backtest_compared(ledger, tmp_path):
    bt, _ = backtest_json(tmp_path)
    out = tmp_path / "report.html"
    assert report_main(["--ledger", str(ledger), "--compare", str(bt), "--out", str(out)]) == 0
    assert len(images_of(out)) == 4
    text = out.read_text()
    assert "Cumulative net P&amp;L" in text and "win rate" in text and "backtest.json" in text


def test_report_renders_from_a_backtest_and_matches_its_pnl(tmp_path):
    bt, result = backtest_json(tmp_path)
    out = tmp_path / "report.html"
    assert report_main([str(bt), "--out", str(out)]) == 0
    assert len(images_of(out)) == 4
    from polymm.trader.ledger.from_backtest import write_result
    write_result(result.to_json(), tmp_path / "bt.sqlite")
    assert load_history(tmp_path / "bt.sqlite").totals.net == pytest.approx(result.to_json()["total_pnl"], abs=1e-6)


def test_report_refuses_bad_inputs_in_one_line(tmp_path, capsys):
    bogus = tmp_path / "x.json"
    bogus.write_text("{}")
    assert report_main([str(bogus), "--out", str(tmp_path / "r.html")]) == 1
    assert "not a polymm-backtest --json result" in capsys.readouterr().err
    assert report_main(["--out", str(tmp_path / "r.html")]) == 2


def test_polymm_backtest_writes_the_same_ledger_schema(tmp_path):
    from polymm.trader.backtest.cli import main as backtest_main

    bt, result = backtest_json(tmp_path)
    ticks = tmp_path / "ticks.jsonl"
    assert backtest_main([str(ticks), "--ledger", str(tmp_path / "bt.sqlite")]) == 0
    history = load_history(tmp_path / "bt.sqlite")
    assert history.modes == ["backtest"] and history.totals.trades == len(result.windows[0]["fills"]) > 0
    assert history.totals.net == pytest.approx(result.to_json()["total_pnl"], abs=1e-6)
    code, out = mmctl("history", "--ledger", str(tmp_path / "bt.sqlite"), "--json")
    assert code == 0 and json.loads(out)["totals"]["net"] == pytest.approx(history.totals.net)


def test_report_without_matplotlib_says_how_to_get_it(ledger, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a server installed without the `report` extra
    assert report_main(["--ledger", str(ledger), "--out", str(tmp_path / "r.html")]) == 1
    assert "pip install 'polymm[report]'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
