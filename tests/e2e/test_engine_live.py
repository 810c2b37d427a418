"""The trader live on the sim (real sim, feed and trader processes, 30 s windows): S1 enters, takes profit and
stops out; nothing is left open as a window ends; pause and flatten work; the P&L the trader reports equals
what the sim's ledger says (fills and resolution payouts)."""
from __future__ import annotations

import time

import pytest

from tests.support.live_trader import WINDOW_S, order_lines, start_stack, wait_for
from polymm.ctl import protocol as p

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("live"))
    yield stack
    stack.close()


def trader_log(stack):
    return stack.workdir / "trader.log"


def test_s1_enters_takes_profit_and_stops_out_over_real_windows(stack):
    """Over a few windows the one-line order log shows every S1 behaviour on real fills."""

    def seen():
        lines = order_lines(trader_log(stack))
        entry_ids = {o.id for o in lines if o.action == "submit" and o.reason.startswith("entry")}
        tp_ids = {o.id for o in lines if o.action == "submit" and o.reason.startswith("tp")}
        stop_ids = {o.id for o in lines if o.action == "submit" and o.reason.startswith("stop")}
        filled = {o.id for o in lines if o.action == "filled"}
        got = {
            "entry filled": bool(entry_ids & filled),
            "take-profit filled": bool(tp_ids & filled),
            "stop-loss sent": bool(stop_ids),
        }
        seen.last = got
        return all(got.values())

    seen.last = {}
    try:
        wait_for(seen, timeout_s=8 * WINDOW_S, every_s=1.0, what="S1 entry, take-profit fill and stop-loss")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen.last}") from None
    stops = [o for o in order_lines(trader_log(stack)) if o.action == "submit" and o.reason.startswith("stop")]
    assert all(o.side == "SELL" and o.type == "FAK" for o in stops)


def test_no_order_of_a_window_is_left_open_as_it_ends(stack):
    """risk.cancel_before_end_s = 3: a second before the window ends, the sim holds none of our orders."""
    wait_for(lambda: stack.status().orders, timeout_s=4 * WINDOW_S, what="a working order")
    now = time.time()
    end = (int(now) // WINDOW_S + 1) * WINDOW_S
    if end - now < 2.0:
        end += WINDOW_S
    time.sleep(end - now - 1.0)
    assert stack.open_orders_on_sim() == [], f"orders still open 1 s before the window ending at {end}"


def test_pause_cancels_everything_and_places_nothing_until_resume(stack):
    wait_for(lambda: stack.status().orders, timeout_s=4 * WINDOW_S, what="a working order to cancel")
    reply = stack.ask(p.PauseRequest())
    assert "paused" in reply.message
    paused_at = time.time()
    wait_for(lambda: stack.open_orders_on_sim() == [], timeout_s=10, what="no open orders on the sim")
    time.sleep(3)
    placed = [o for o in order_lines(trader_log(stack), since=paused_at + 0.5) if o.action == "submit"]
    assert placed == [] and stack.status().state == "paused"
    stack.ask(p.ResumeRequest())
    wait_for(lambda: stack.status().state != "paused", timeout_s=5, what="running again")


def test_flatten_sells_every_position_and_stays_paused(stack):
    wait_for(lambda: any(pos.shares >= 5 for pos in stack.status().positions), timeout_s=6 * WINDOW_S,
             every_s=0.1, what="an S1 position")
    stack.ask(p.FlattenRequest())
    wait_for(lambda: not any(pos.shares >= 5 for pos in stack.status().positions) and stack.open_orders_on_sim() == [],
             timeout_s=15, what="every sellable position sold and no open orders")
    status = stack.status()
    assert status.paused
    flatten_sells = [o for o in order_lines(trader_log(stack)) if o.action == "submit" and o.type == "FAK"]
    assert flatten_sells
    stack.ask(p.ResumeRequest())


@pytest.mark.timeout(600)
def test_reported_pnl_equals_the_sims_ledger_after_resolution(stack):
    """Hold a position to the end of a window (exits moved out of reach), let it resolve; the trader's realised
    P&L (fills net of fees + resolution payouts) then equals the change of the wallet's pUSD on the sim."""
    # Entries on both legs from a low threshold: the random synthetic market must leave us holding something
    # at some window's end, and how many windows that takes is chance (the deadline only bounds a failure).
    stack.ask(p.SetRequest(settings={"s1.tp_increment": "0.4", "s1.sl_floor": "0.02", "s1.sl_offset": "0.9",
                                     "s1.late_sl_trigger": "0.02", "s1.entry_threshold": "0.3",
                                     "s1.leg_mode": "both"}))
    wait_for(lambda: any(e.scope == "awaiting resolution" for e in stack.status().exposure),
             timeout_s=10 * WINDOW_S, every_s=0.5, what="a window ending with a position held to resolution")
    stack.ask(p.PauseRequest())

    def settled():
        status = stack.status()
        held = any(e.scope == "awaiting resolution" for e in status.exposure) or any(
            pos.shares for pos in status.positions)
        return not held and status

    status = wait_for(settled, timeout_s=3 * WINDOW_S, every_s=1.0, what="every position resolved")
    ledger = float(stack.sim.admin.balance(stack.address)["pusd"]) - stack.fund
    assert status.realised_pnl == pytest.approx(ledger, abs=1e-4)
    payouts = [line for line in trader_log(stack).read_text().splitlines() if "resolved:" in line]
    assert payouts, "no resolution was applied"
    stack.ask(p.ResumeRequest())
