"""Paper trading against the sim's market WebSocket as the live market (real sim, feed and trader processes; the
sim's market is scripted, so every window trades the same way): S1 enters, takes profit, enters again and stops
out, S2 holds to resolution, windows rotate; the P&L the paper exchange computes for a window equals
`polymm-backtest` on the feed's recording of that window (one fill model, one answer); no request ever reaches
the sim's order endpoints; no key is in the trader's environment."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.support.ctl import mmctl_process
from tests.support.live_trader import PAPER_WINDOW_S, PaperStack, wait_for

pytestmark = pytest.mark.slow

RESOLVED = re.compile(r"paper window (\d+) resolved: .* result (\{.*\})$")
ORDER_PATHS = ("/order", "/orders", "/cancel", "/data/", "/heartbeats", "/auth", "/balance-allowance", "/ws/user")


def paper_results(log_text: str) -> dict[int, dict]:
    return {int(m[1]): json.loads(m[2]) for m in map(RESOLVED.search, log_text.splitlines()) if m}


def fill_key(f: dict) -> tuple:
    return (f["leg"], f["side"], f["price"], f["size"], f["role"])


def test_paper_run_trades_the_scripted_market_and_equals_the_backtest_of_its_recording(tmp_path):
    stack = PaperStack(tmp_path / "paper")
    try:
        stack.start(trader=False)
        stack.start_trader(args=("--paper",))
        ready = time.time()
        first_full = (int(ready) // PAPER_WINDOW_S + 1) * PAPER_WINDOW_S  # the first window the trader saw whole
        log_path = stack.workdir / "trader.log"
        results = wait_for(lambda: paper_results(log_path.read_text()).get(first_full), timeout_s=4 * PAPER_WINDOW_S,
                           every_s=1.0, what=f"the paper resolution of window {first_full}")
        status = stack.status()
        json_status = mmctl_process(stack.socket, "status", "--json", shm=stack.shm)
        text_status = mmctl_process(stack.socket, "status", shm=stack.shm)
        refused = mmctl_process(stack.socket, "set", "mode=live", shm=stack.shm)
        requests = stack.sim.admin.state()["requests"]
    finally:
        stack.close()

    # The window traded as scripted: entry, take-profit, entry, stop (S1 on Up), S2 on Down held; Down won.
    fills = [fill_key(f) for f in results["fills"]]
    assert fills == [
        ("up", "BUY", 0.61, 6.55, "maker"), ("up", "SELL", 0.62, 6.55, "maker"),
        ("up", "BUY", 0.62, 6.45, "maker"), ("up", "SELL", 0.44, 6.45, "taker"),
        ("down", "BUY", 0.91, 10.0, "maker"),
    ], fills
    assert results["winner"] == "down"

    # One fill model, one answer: the backtest of the recording of that window.
    ticks = [line for line in stack.ticks.read_text().splitlines() if json.loads(line)["window_start"] == first_full]
    assert ticks and all("up_bids" in line for line in ticks)  # the feed publishes depth: both walk it
    window_file = tmp_path / "window.jsonl"
    window_file.write_text("\n".join(ticks) + "\n")
    bt = subprocess.run([sys.executable, "-m", "polymm.trader.backtest", str(window_file), "--config",
                         str(stack.config_path), "--json"], capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0, bt.stderr
    backtest = json.loads(bt.stdout)
    (bt_window,) = backtest["windows"]
    assert [fill_key(f) for f in bt_window["fills"]] == fills
    assert bt_window["winner"] == results["winner"]
    assert backtest["total_pnl"] == pytest.approx(results["pnl"]["paper"]["net"], abs=1e-9)

    # Windows rotated; the trader says PAPER everywhere; the mode cannot change while it runs.
    assert status.mode == "paper" and status.window_start > first_full
    assert json.loads(json_status.stdout)["mode"] == "paper"
    assert text_status.stdout.splitlines()[0].startswith("PAPER TRADING")
    assert refused.exit_code != 0 and "needs a restart" in refused.stdout + refused.stderr
    order_lines = [line for line in log_path.read_text().splitlines() if " order " in line and " id=" in line]
    assert order_lines and all("paper order " in line for line in order_lines)

    # Nothing reached the exchange's order side: no order, cancel, heartbeat, auth, balance or user channel.
    assert not [path for path in requests if any(p in path for p in ORDER_PATHS)], requests
