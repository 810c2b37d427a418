"""The soak's arithmetic and verdict (bench/soak_report.py): slopes after warm-up fitted per process life, flat fds,
settled cash samples, every fill once."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak_report as rep  # noqa: E402


def samples(pid: int, start: float, n: int, rss0: int, kb_per_window: float, fds: int = 12, threads: int = 7):
    return [rep.ProcessSample(start + i, pid, int(rss0 + kb_per_window * i), fds, threads) for i in range(n)]


def test_pooled_slope_fits_one_slope_with_an_intercept_per_life():
    # Two lives of a process (a restart drops RSS): each grows 10 kB/window; one line through both would be wrong.
    points = [("a", x, 50_000 + 10 * x) for x in range(10)] + [("b", x, 40_000 + 10 * x) for x in range(10, 20)]
    assert rep.pooled_slope(points) == pytest.approx(10.0)
    assert rep.pooled_slope([("a", 1, 5)]) is None


def test_a_flat_process_passes_and_a_leaking_one_fails_after_warm_up():
    flat = rep.trend("feed", samples(1, 0, 50, 40_000, 0.0) , warmup_windows=10)
    leak = rep.trend("trader", samples(2, 0, 50, 80_000, 120.0), warmup_windows=10)
    assert flat.rss_ok and flat.fds_ok and flat.threads_ok and flat.samples == 40
    assert not leak.rss_ok and leak.rss_slope_kb == pytest.approx(120.0, abs=1)


def test_warm_up_is_not_held_against_a_process_and_a_restart_warms_up_again():
    # Heavy growth in the first 10 windows (imports, caches), then flat; restarted at window 30, warms up again.
    first = samples(1, 0, 10, 40_000, 500.0) + samples(1, 10, 20, 45_000, 0.0)
    second = samples(2, 30, 3, 38_000, 400.0) + samples(2, 33, 27, 39_200, 0.0)
    t = rep.trend("feed", first + second, warmup_windows=10)
    assert t.lives == 2 and t.rss_ok and abs(t.rss_slope_kb) < 1


def test_fds_creeping_up_are_not_flat():
    creeping = [rep.ProcessSample(i, 1, 40_000, 12 + i // 5, 7) for i in range(60)]
    t = rep.trend("trader", creeping, warmup_windows=10)
    assert t.rss_ok and not t.fds_ok


def test_cash_samples_within_a_second_of_a_fill_are_not_held_against_the_trader():
    fills = [100.0]  # stamped in whole seconds: it happened in [100, 101)
    samples_ = [rep.CashSample(100.3, 100.31, 994.0, 1000.0),  # the fill is on the exchange, not yet in the trader
                rep.CashSample(101.5, 101.51, 994.0, 1000.0),  # (it may have happened at 100.9: still within 1 s)
                rep.CashSample(102.2, 102.21, 994.0, 994.0),
                rep.CashSample(102.7, 102.71, 994.0, 993.5)]  # settled and wrong by 0.50
    figures = rep.cash_figures(samples_, fills)
    assert figures.settled == 2 and figures.worst == pytest.approx(0.5) and len(figures.bad) == 1 and not figures.ok
    # a redemption (no fill of ours) is given OTHER_SETTLE_S
    figures = rep.cash_figures([rep.CashSample(202.0, 202.01, 1005.0, 1000.0)], [], others=[200.0])
    assert figures.settled == 0


def test_fill_keys_take_the_taker_row_and_our_maker_entries_only():
    me = "0xAbC"
    trades = [
        {"id": "t1", "taker_order_id": "o1", "maker_address": "0xabc", "trader_side": "TAKER", "side": "BUY",
         "size": "5", "price": "0.6", "status": "CONFIRMED", "asset_id": "up",
         "maker_orders": [{"order_id": "x", "maker_address": "0xother", "side": "SELL", "matched_amount": "5",
                           "price": "0.6", "asset_id": "up"}]},
        {"id": "t2", "taker_order_id": "o9", "maker_address": "0xother", "trader_side": "MAKER", "side": "SELL",
         "size": "10", "price": "0.4", "status": "MATCHED", "asset_id": "down",
         "maker_orders": [{"order_id": "o2", "maker_address": "0xABC", "side": "BUY", "matched_amount": "3",
                           "price": "0.4", "asset_id": "down"}]},
    ]
    keys = rep.fill_keys(trades, me)
    assert set(keys) == {("t1", "o1"), ("t2", "o2")} and keys[("t2", "o2")]["size"] == 3.0
    ledger = {("t1", "o1"): {"status": "CONFIRMED", "match_ts": 1.0}, ("t2", "o2"): {"status": "MINED", "match_ts": 2.0},
              ("t3", "o3"): {"status": "MATCHED", "match_ts": 3.0}}
    check = rep.compare_fills(keys, ledger)
    assert check.missing == [] and check.extra == [("t3", "o3")] and check.status_differs == [] and not check.ok


def test_a_saw_from_the_allocators_trim_cycle_is_not_a_slope_over_whole_cycles():
    # RSS rises 250 kB a window between trims and falls back every third window; a life cut at the saw's phase
    # leans with it sample by sample, not over whole cycles.
    saw = [rep.ProcessSample(i, 1, 60_000 + 250 * (i % 3), 13, 7) for i in range(18)]  # from a trough to a peak
    t = rep.trend("feed", saw, warmup_windows=0, cycle=3)
    assert abs(t.rss_slope_kb) < 1e-6 and t.rss_raw_slope_kb > 3
