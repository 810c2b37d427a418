"""The redeemer against the sim: the official relayer client, the Data API and conditional-token balances
(`polymm-sim --redeem manual`: nothing is paid out until it is redeemed)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from polymm.sim.testing import run_sim
from polymm.trader.redeem.journal import Journal
from tests.support.redeem import Wallet
from tests.support.waiting import wait_for


@pytest.fixture
def sim(tmp_path):
    # One sim per test: each resolves the live market.
    with run_sim(tmp_path / "sim", seed=15, window_s=600,
                 extra_args=["--redeem", "manual", "--relayer-confirm-after-s", "0.5"]) as running:
        yield running


class RecordingLedger:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, kind: str, detail: str = "") -> None:
        self.events.append((kind, detail))


def step_until(redeemer, done, what: str, timeout_s: float = 20.0) -> None:
    def once():
        redeemer.step()
        return done()
    wait_for(once, timeout_s=timeout_s, what=what)


@pytest.mark.parametrize("kind", ["SAFE", "PROXY", "WALLET"])
def test_winner_pays_exactly_shares_and_loser_is_cleared(sim, tmp_path, kind):
    wallet = Wallet(sim, kind)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 7)
    wallet.buy(m["down_token"], 5)
    sim.admin.resolve_now(m["condition_id"], "Up")
    cash = wallet.cash()
    redeemer = wallet.redeemer(tmp_path / "state")
    redeemer.ledger = ledger = RecordingLedger()
    assert redeemer.snapshot()["enabled"]
    step_until(redeemer, lambda: redeemer.snapshot().get("redeemed_today_usd") == 7.0, "the redemption confirmed")
    assert wallet.cash() - cash == Decimal(7)  # 7 winning shares x 1 pUSD, to the unit
    assert [kind for kind, _ in ledger.events] == ["redeem_request", "redeem_outcome"]
    assert Decimal(json.loads(ledger.events[1][1])["pusd"]) == 7 and json.loads(ledger.events[1][1])["state"] in (
        "STATE_MINED", "STATE_CONFIRMED")
    assert wallet.shares() == {}  # the 5 losing Down shares are gone too
    snap = redeemer.snapshot()
    assert snap["awaiting_redemption_usd"] == 0 and snap["in_flight"] == 0


def test_awaiting_redemption_is_reported_until_redeemed(sim, tmp_path):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["down_token"], 6)
    sim.admin.resolve_now(m["condition_id"], "Down")
    before = sim.admin.relayer()["stats"]["submitted"]
    redeemer = wallet.redeemer(tmp_path / "state", delay_s=3600)  # resolved, but the delay holds it back
    redeemer.step()
    snap = redeemer.snapshot()
    assert snap["awaiting_redemption_usd"] == 6.0 and snap["awaiting_redemption_count"] == 1
    assert sim.admin.relayer()["stats"]["submitted"] == before
    assert wallet.shares()  # not redeemed yet


def test_merge_of_5_up_and_5_down_returns_5_pusd(sim, tmp_path):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    wallet.buy(m["down_token"], 5)
    cash = wallet.cash()
    # The window must have ended (the trader no longer trades it) and not be resolved yet: a clock past
    # the window's end, against a sim whose window is still open.
    later = lambda: m["window_end"] + 1.0
    redeemer = wallet.redeemer(tmp_path / "state", merge=True, clock=later)
    step_until(redeemer, lambda: redeemer.snapshot().get("merged_today_usd") == 5.0, "the merge confirmed")
    assert wallet.cash() - cash == Decimal(5)
    assert wallet.shares() == {}
    assert sim.admin.relayer()["stats"]["merges"] >= 1


def test_no_merge_while_the_window_is_live(sim, tmp_path):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    wallet.buy(m["down_token"], 5)
    before = sim.admin.relayer()["stats"]["submitted"]
    wallet.redeemer(tmp_path / "state", merge=True).step()
    assert sim.admin.relayer()["stats"]["submitted"] == before
    assert len(wallet.shares()) == 2


def test_without_credentials_a_warning_in_words_and_no_attempt(sim, tmp_path, caplog):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    wallet.buy(m["up_token"], 3.24)
    sim.admin.resolve_now(m["condition_id"], "Up")
    before = sim.admin.relayer()["stats"]["submitted"]
    redeemer = wallet.redeemer(tmp_path / "state", relayer=False)
    with caplog.at_level(logging.WARNING, logger="polymm.trader.redeem"):
        redeemer.step()
        redeemer.step()
    expected = ("1 positions worth $8.24 are redeemable: set the builder credentials (see README) or redeem in "
                "Polymarket's UI")
    assert redeemer.snapshot()["warning"] == expected
    assert [r.getMessage() for r in caplog.records].count(expected) == 1  # said once, not every cycle
    assert sim.admin.relayer()["stats"]["submitted"] == before
    assert not redeemer.snapshot()["enabled"]


def test_congestion_and_reverts_are_retried_with_a_warning_and_nothing_is_lost(sim, tmp_path, caplog):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    sim.admin.resolve_now(m["condition_id"], "Up")
    cash = wallet.cash()
    now = [time.time()]
    redeemer = wallet.redeemer(tmp_path / "state", clock=lambda: now[0])
    sim.admin.relayer_fault(status=429, count=2)
    with caplog.at_level(logging.WARNING, logger="polymm.trader.redeem"):
        redeemer.step()  # 429: backs off 5 s
        redeemer.step()  # still backing off: no request
        now[0] += 6
        redeemer.step()  # 429 again: backs off 10 s
        assert sim.admin.relayer()["faults"] == []
        assert wallet.cash() == cash and wallet.shares()  # nothing lost
        sim.admin.relayer_fault(fail=True)
        now[0] += 11
        redeemer.step()  # accepted, then reverts on chain
        now[0] += 1
        redeemer.step()  # learns of the revert
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("relayer busy" in w and "trying again in" in w for w in warnings) == 2
    assert any("failed on chain" in w and "injected fault" in w for w in warnings)
    assert wallet.shares()  # the revert changed nothing, and the retry (failed alone) waits a minute
    now[0] += 61
    step_until(redeemer, lambda: redeemer.snapshot().get("redeemed_today_usd") == 5.0, "the redemption after all")
    assert wallet.cash() - cash == Decimal(5)


def test_kill_9_between_request_and_confirmation_then_restart_redeems_once(tmp_path):
    with run_sim(tmp_path / "sim", seed=16, window_s=600,
                 extra_args=["--redeem", "manual", "--relayer-execute-after-s", "3"]) as sim:
        wallet = Wallet(sim)
        m = sim.admin.live_market()
        wallet.buy(m["up_token"], 9)
        sim.admin.resolve_now(m["condition_id"], "Up")
        cash = wallet.cash()
        state = tmp_path / "state"
        script = tmp_path / "redeem_once.py"
        script.write_text(
            "import sys, time\n"
            "from polymm.sim.testing import AdminClient\n"
            "from polymm.trader.redeem import positions\n"
            "from polymm.trader.redeem.journal import Journal\n"
            "from polymm.trader.redeem.relayer import Credentials, Relayer\n"
            "from polymm.trader.redeem.worker import Redeemer, RedeemSettings\n"
            "pk, sig, funder, relayer_url, data_url, admin_url, state = sys.argv[1:]\n"
            "creds = Credentials(**AdminClient(admin_url).relayer()['builder_creds'])\n"
            "r = Redeemer(RedeemSettings(delay_s=0), lambda: positions.fetch(data_url, funder), Journal.open(state),\n"
            "             Relayer(relayer_url, pk, int(sig), funder, creds))\n"
            "r.step()\n"
            "print('sent', flush=True)\n"
            "time.sleep(600)\n")
        child = subprocess.Popen([sys.executable, str(script), wallet.pk, str(wallet.signature_type), wallet.address,
                                  sim.urls["relayer_url"], sim.urls["data_url"], sim.admin_url, str(state)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "sent"
            assert Journal.open(state).pending_tx_ids()  # requested, not confirmed: the relayer has not run it
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        restarted = wallet.redeemer(state)
        step_until(restarted, lambda: restarted.snapshot().get("redeemed_today_usd") == 9.0,
                   "the first request's outcome, found after the restart")
        stats = sim.admin.relayer()["stats"]
        assert stats["submitted"] == 1 and stats["redemptions"] == 1
        assert wallet.cash() - cash == Decimal(9)


def four_winners(sim, wallet) -> list[str]:
    """Four resolved markets (the live window and three listed ahead), 5 winning shares of each in `wallet`."""
    markets = sim.admin.state()["markets"][:4]
    for m in markets:
        wallet.buy(m["up_token"], 5)
        sim.admin.resolve_now(m["condition_id"], "Up")
    return [m["condition_id"] for m in markets]


def test_a_failing_batch_is_split_to_singles_the_healthy_redeemed_and_the_failing_one_reported(sim, tmp_path):
    wallet = Wallet(sim, "SAFE")
    conditions = four_winners(sim, wallet)
    failing = sorted(conditions)[-1]
    sim.admin.set_chain(fail_condition=failing)
    cash = wallet.cash()
    redeemer = wallet.redeemer(tmp_path / "state", batch=4)
    step_until(redeemer, lambda: redeemer.snapshot().get("failing_count") == 1, "the failing one singled out")
    assert wallet.cash() - cash == Decimal(15)  # the three healthy winners, to the unit
    assert list(wallet.shares().values()) == [Decimal(5)]  # the failing one is still held
    txs = sim.admin.relayer()["transactions"]
    sizes = [sum(1 for e in tx["effects"] if "redeem" in e) if tx["state"] != "STATE_FAILED" else "failed"
             for tx in txs]
    # 4 (reverts) -> 2 + 2 (one pair redeemed, the other reverts) -> 1 + 1 (one redeemed, the other reverts)
    assert sizes[0] == "failed" and sorted(map(str, sizes[1:3])) == ["2", "failed"]
    assert sorted(map(str, sizes[3:])) == ["1", "failed"]
    warning = redeemer.snapshot()["warning"]
    assert "failed alone 1 time(s)" in warning and "injected fault" in warning and "next try in 1 min" in warning
    before = len(txs)
    redeemer.step()
    assert len(sim.admin.relayer()["transactions"]) == before  # backed off, not resent every cycle


def test_a_batch_over_the_gas_budget_reverts_out_of_gas_and_is_halved(sim, tmp_path):
    wallet = Wallet(sim, "SAFE")
    four_winners(sim, wallet)
    sim.admin.relayer_fault(gas_cap=450_000)  # approval + 2 redemptions fit, 4 do not
    cash = wallet.cash()
    redeemer = wallet.redeemer(tmp_path / "state", batch=4)
    step_until(redeemer, lambda: redeemer.snapshot().get("redeemed_today_usd") == 20.0, "every winner redeemed")
    assert wallet.cash() - cash == Decimal(20)
    (first, *rest) = sim.admin.relayer()["transactions"]
    assert first["state"] == "STATE_FAILED" and "out of gas" in first["error"]
    assert [sum(1 for e in tx["effects"] if "redeem" in e) for tx in rest] == [2, 2]
    assert redeemer.snapshot()["failing_count"] == 0


def test_a_proxy_wallet_batches_what_fits_its_signed_gas_limit(sim, tmp_path):
    wallet = Wallet(sim, "PROXY")
    four_winners(sim, wallet)
    redeemer = wallet.redeemer(tmp_path / "state", batch=10)
    assert redeemer.batch == 2
    step_until(redeemer, lambda: redeemer.snapshot().get("redeemed_today_usd") == 20.0, "every winner redeemed")
    txs = sim.admin.relayer()["transactions"]
    assert [tx["state"] != "STATE_FAILED" for tx in txs] == [True, True]
    assert [sum(1 for e in tx["effects"] if "redeem" in e) for tx in txs] == [2, 2]


def test_a_type_0_winner_is_paid_through_its_own_transaction_after_the_pol_check(sim, tmp_path):
    wallet = Wallet(sim, "EOA")
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 6)
    sim.admin.resolve_now(m["condition_id"], "Up")
    sim.admin.set_chain(address=wallet.owner, pol=0)
    cash = wallet.cash()
    now = [time.time()]
    redeemer = wallet.redeemer(tmp_path / "state", clock=lambda: now[0])
    assert redeemer.batch == 1
    redeemer.step()
    assert "send POL to it" in redeemer.snapshot()["last_error"]
    assert sim.admin.chain()["stats"]["transactions"] == 0 and wallet.cash() == cash  # nothing sent without gas
    sim.admin.set_chain(address=wallet.owner, pol=1)
    now[0] += 6
    step_until(redeemer, lambda: redeemer.snapshot().get("redeemed_today_usd") == 6.0, "the type-0 redemption")
    assert wallet.cash() - cash == Decimal(6) and wallet.shares() == {}
    state = sim.admin.chain(wallet.owner)
    assert int(state["pol_wei"]) < 10**18  # it paid its own gas
    (receipt,) = state["receipts"]
    assert receipt["status"] == 1 and receipt["from"] == wallet.owner.lower()
