"""What the wallet-wide limits count (trader/wallet/accounting.py) and how the pipeline keeps within them
(trader/decision/risk.py with WalletLimits). Pure: records and the clock in."""
from __future__ import annotations

from dataclasses import replace

import pytest

from polymm.trader.decision.wallet import WalletLimits
from polymm.trader.wallet import accounting
from polymm.trader.wallet.records import RUNNING, STOPPED, SeriesRecord

NOW = 1_800_000_100.0
DAY = accounting.utc_day(NOW)


def record(series="eth-5m", *, exposure=10.0, open_buys=4.0, window_end=int(NOW) + 200, pnl=0.0, cap=0.0, loss=0.0,
           own_loss=0.0, state=RUNNING, day=DAY, pid=4242, reaped_at=0.0) -> SeriesRecord:
    return SeriesRecord(series, pid, state, NOW - 0.1, exposure, open_buys, window_end, day, pnl, cap, loss, own_loss,
                        ("0x" + "ab" * 32,), 0.0, reaped_at)


def test_a_running_series_counts_what_it_published():
    c = accounting.count(record(), alive=True, now=NOW)
    assert (c.running, c.exposure_usd, c.note) == (True, 10.0, "")


def test_a_dead_trader_keeps_its_positions_counted_until_its_window_is_long_over():
    crashed = record(exposure=10.0, open_buys=4.0)
    # its buys may still rest until the leader reaped them: all of it counts
    assert accounting.count(crashed, alive=False, now=NOW).exposure_usd == 10.0
    # after the reaper cancelled its buys, its positions still count
    assert accounting.count(replace(crashed, reaped_at=NOW), alive=False, now=NOW).exposure_usd == 6.0
    # a clean stop published no buys; its positions count too
    assert accounting.count(replace(crashed, state=STOPPED), alive=False, now=NOW).exposure_usd == 6.0
    # long after its window ended nothing it could trade is at risk any more
    late = NOW + 200 + accounting.DEAD_GRACE_S + 1
    c = accounting.count(crashed, alive=False, now=late)
    assert c.exposure_usd == 0.0 and "not counted" in c.note


def test_today_s_pnl_counts_whether_its_trader_runs_or_not_but_not_yesterday_s():
    assert accounting.count(record(pnl=-7.0), alive=False, now=NOW).pnl_today_usd == -7.0
    assert accounting.count(record(pnl=-7.0, day=DAY - 1), alive=True, now=NOW).pnl_today_usd == 0.0


def test_the_strictest_cap_of_the_running_series_is_in_force_and_others_are_summed():
    own = record("btc-15m", exposure=5.0, cap=100.0)
    others = [(record("eth-5m", exposure=20.0, cap=60.0), True), (record("sol-1h", exposure=7.0, cap=0.0), True),
              (record("xrp-5m", exposure=3.0, cap=10.0), False)]  # not running: its cap is not in force
    state = accounting.wallet_state(own, others, NOW)
    assert (state.others_usd, state.cap_usd) == (30.0, 60.0)
    assert state.limits() == WalletLimits(others_usd=30.0, cap_usd=60.0, halt="")
    assert [r.series for r in state.rows] == ["btc-15m", "eth-5m", "sol-1h", "xrp-5m"]


def test_daily_loss_limits_halt_entries_wallet_wide_and_per_series():
    own = record("btc-15m", pnl=-20.0, loss=50.0)
    others = [(record("eth-5m", pnl=-31.0), False)]  # a stopped series' loss still counts today
    halt = accounting.wallet_state(own, others, NOW).halt
    assert "wallet loss today $51.00 reached wallet.max_daily_loss_usd 50" in halt
    assert accounting.wallet_state(replace(own, loss_limit_usd=0.0, own_loss_limit_usd=15.0), others, NOW).halt.startswith(
        "btc-15m loss today $20.00 reached risk.max_daily_loss_usd 15")
    assert accounting.wallet_state(replace(own, loss_limit_usd=60.0), others, NOW).halt == ""


@pytest.mark.parametrize("after,others,cap,fits", [(40, 60, 100, True), (41, 60, 100, False), (500, 500, 0, True)])
def test_a_claim_fits_under_the_cap_or_without_one(after, others, cap, fits):
    assert accounting.claim_fits(after, others, cap) is fits


def test_the_risk_gate_keeps_new_buys_within_the_room_other_series_leave():
    from tests.support.strategy import book
    from polymm.trader.config import Config
    from polymm.trader.decision import risk
    from polymm.trader.model import Leg, Role, Side, Want

    market = book(up_bid=0.60, up_ask=0.62)
    want = Want("s1", Leg.UP, Side.BUY, 0.60, 10.0, Role.ENTRY, post_only=True, reason="entry")
    cfg = Config()
    # $6 of room under the wallet cap: 10 shares at 0.60 fit exactly
    out, notes = risk.gate([want], market, [], {}, cfg, wallet=WalletLimits(others_usd=94.0, cap_usd=100.0))
    assert out == [want] and notes == []
    # $4.20 of room: trimmed to 7 shares, and the note names the wallet cap
    out, notes = risk.gate([want], market, [], {}, cfg, wallet=WalletLimits(others_usd=95.8, cap_usd=100.0))
    assert out[0].size == 7 and "wallet.max_exposure_usd" in out[0].reason
    # no room: no entry, in words
    out, notes = risk.gate([want], market, [], {}, cfg, wallet=WalletLimits(others_usd=99.0, cap_usd=100.0))
    assert out == [] and "other series' $99.00 are at wallet.max_exposure_usd 100" in notes[0]
    # a halt stops entries whatever the room
    out, notes = risk.gate([want], market, [], {}, cfg, wallet=WalletLimits(halt="wallet loss today $60 reached"))
    assert out == [] and notes == ["wallet loss today $60 reached"]
