"""Redemption live on the sim: a trader with S2 (holds to resolution) trades several short windows from a Safe
wallet with builder credentials, against `polymm-sim --redeem manual` (nothing is paid until redeemed). Its
wallet then satisfies, to the cent: cash + open positions + awaiting redemption = start + net P&L."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from tests.support.live_trader import wait_for
from polymm import env
from polymm.ctl import protocol as p
from polymm.demo import Stack, demo_config

pytestmark = pytest.mark.slow

WINDOW_S = 30
CONFIG_EXTRA = """
[s2]
enabled = true
window_s = 18
entry_ask_threshold = 0.6
target_usd = 8
order_size = 5
sl_price = 0.05

[redeem]
delay_s = 1
poll_s = 1
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = demo_config(WINDOW_S, entry_threshold=0.99, cancel_before_end_s=3).replace(
        "[s1]\n", "[s1]\nenabled = false\n") + CONFIG_EXTRA
    stack = Stack(tmp_path_factory.mktemp("redeem-live"), window_s=WINDOW_S, seed=21, config_text=config,
                  sim_args=("--redeem", "manual", "--relayer-execute-after-s", "20"))
    try:
        stack.start(trader=False)
        from py_builder_relayer_client.builder.derive import derive
        from py_builder_relayer_client.config import get_contract_config

        stack.safe = derive(stack.address, get_contract_config(137).safe_factory)
        stack.start_trader(extra_env={env.SIGNATURE_TYPE: "2", env.BROWSER_ADDRESS: stack.safe,
                                      **stack.sim.builder_env()})
    except BaseException:
        stack.close()
        raise
    yield stack
    stack.close()


def wallet(stack) -> tuple[Decimal, Decimal, Decimal]:
    """(cash, open positions at cost, awaiting redemption) of the Safe, read from the sim in one answer."""
    rows = requests.get(stack.sim.urls["data_url"] + "/positions",
                        params={"user": stack.safe, "sizeThreshold": 0}).json()
    by_token = {r["asset"]: r for r in rows}
    balance = stack.sim.admin.balance(stack.safe)  # cash and shares from the same instant
    awaiting = open_value = Decimal(0)
    for token, shares in balance["positions"].items():
        row = by_token.get(token)
        if row is None or Decimal(shares) == 0:
            continue
        if row["redeemable"]:
            awaiting += Decimal(shares) * Decimal(str(row["curPrice"]))
        else:
            open_value += Decimal(shares) * Decimal(str(row["avgPrice"]))
    return Decimal(balance["pusd"]), open_value, awaiting


def nothing_live(stack) -> p.StatusReply | None:
    status = stack.status()
    held = any(pos.shares for pos in status.positions) or any(e.scope == "awaiting resolution"
                                                              for e in status.exposure)
    return None if held else status


@pytest.mark.timeout(900)
def test_cash_positions_and_awaiting_redemption_add_up_to_start_plus_pnl(stack):
    relayer = stack.sim.admin.relayer
    wait_for(lambda: relayer()["stats"]["redemptions"] >= 2, timeout_s=14 * WINDOW_S, every_s=1.0,
             what="two windows' positions redeemed")
    # Pause while a position is held into a window's end, so a redemption is due when we look.
    held = wait_for(lambda: [pos for pos in stack.status().positions if pos.shares], timeout_s=6 * WINDOW_S,
                    every_s=0.2, what="an S2 position held late in a window")
    condition_id = stack.status().condition_id
    stack.ask(p.PauseRequest())
    status = wait_for(lambda: nothing_live(stack), timeout_s=3 * WINDOW_S, every_s=0.5,
                      what="the held position resolved")
    cash, open_value, awaiting = wallet(stack)
    start = Decimal(str(stack.fund))
    pnl = Decimal(str(status.realised_pnl))
    assert open_value == 0
    assert abs(cash + awaiting - (start + pnl)) < Decimal("0.01"), (cash, awaiting, start, pnl)
    market = next(m for m in stack.sim.admin.state()["markets"] if m["condition_id"] == condition_id)
    won = [pos for pos in held if market[f"{pos.leg}_token"] == market["winning_token"]]
    if won:  # the redemption is still on its way (the relayer runs it 20 s after the request): winnings count
        assert awaiting == Decimal(str(sum(pos.shares for pos in won)))

    def redeemed():
        status = stack.status()
        return status.awaiting_redemption_usd == 0 and wallet(stack)[2] == 0 and status

    status = wait_for(redeemed, timeout_s=60, every_s=0.5, what="everything redeemed")
    cash, _, awaiting = wallet(stack)
    assert awaiting == 0
    assert abs(cash - (start + Decimal(str(status.realised_pnl)))) < Decimal("0.01")
    payouts = sum(Decimal(e["payout"]) for tx in relayer()["transactions"] for e in tx["effects"] if "payout" in e)
    assert payouts > 0
    assert status.redeemed_today_usd == pytest.approx(float(payouts), abs=1e-6)
    wait_for(lambda: stack.status().balance_usd == pytest.approx(float(cash), abs=1e-6), timeout_s=30,
             what="status cash = the wallet's pUSD")
    stack.ask(p.ResumeRequest())
