"""The whole trader (sim, feed and trader processes, 30 s windows) writing its ledger: a kill -9 mid-window and a
restart leave no duplicate and no gap (a fill made while the trader was dead is recorded from the reconciliation,
and the ledger says so); after resolution the ledger equals the sim's own trades, to the cent; the report renders
from it."""
from __future__ import annotations

import os
import pwd
import sqlite3
import time

import pytest

from tests.support.ledger import images_of
from tests.support.live_trader import WINDOW_S, start_stack, wait_for
from polymm.ctl import protocol as p
from polymm.ctl.report import main as report_main
from polymm.sim.testing import new_wallet
from polymm.trader.ledger import default_path, load_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Entries on both legs from a low threshold, exits out of reach: positions are held to resolution.
HOLD = {"s1.tp_increment": "0.4", "s1.sl_floor": "0.02", "s1.sl_offset": "0.9", "s1.late_sl_trigger": "0.02",
        "s1.entry_threshold": "0.3", "s1.leg_mode": "both"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("ledger-live"))
    yield stack
    stack.close()


def rows(stack, sql, *args):
    conn = sqlite3.connect(f"{default_path(stack.state_dir).as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def take(sim, token: str, price: float, size: float) -> dict:
    """Another account sweeps the book up to `price` (fill-and-kill), as any counterparty would."""
    from py_clob_client_v2.clob_types import OrderArgsV2, OrderType as SdkOrderType

    client = sim.clob_client(new_wallet()[0])
    signed = client.create_order(OrderArgsV2(token_id=token, price=price, size=size, side="BUY"))
    return client.post_order(signed, SdkOrderType.FAK, defer_exec=True)


def resting_buy_with_time_left(stack):
    now = time.time()
    if (int(now) // WINDOW_S + 1) * WINDOW_S - now < 12:
        return None  # too close to the end: the trader is cancelling
    return next((o for o in stack.open_orders_on_sim() if o["side"] == "BUY" and float(o["size_matched"]) == 0), None)


def test_kill_9_mid_window_then_restart_leaves_no_duplicate_and_no_gap(stack):
    stack.ask(p.SetRequest(settings=HOLD))
    # The settings persist as overrides, so the restarted trader keeps them and a later set of the same values
    # changes nothing: let the writer commit their ledger rows before the SIGKILL (which loses what is queued,
    # on purpose), or the resolution test below finds none when an entry was already resting at the set.
    wait_for(lambda: rows(stack, "SELECT COUNT(*) FROM config_changes")[0][0] >= len(HOLD), timeout_s=10,
             what="the settings' changes in the ledger before the kill")
    order = wait_for(lambda: resting_buy_with_time_left(stack), timeout_s=6 * WINDOW_S, every_s=0.2,
                     what="an entry resting on the sim with time left in the window")
    stack.trader.kill()  # SIGKILL: no cancel, no flush of anything queued
    stack.trader.wait(timeout=10)
    m = stack.sim.admin.live_market()
    other = m["down_token"] if order["asset_id"] == m["up_token"] else m["up_token"]
    # Our BUY at q rests opposite a BUY of the other leg at 1 - q (the exchange mints the pair).
    answer = take(stack.sim, other, round(1 - float(order["price"]), 2), 200)
    assert answer.get("success"), answer
    ours = wait_for(lambda: [t for t in stack.sim.admin.trades(stack.address)
                             if any(mo["order_id"] == order["id"] for mo in t["maker_orders"])],
                    timeout_s=10, what="our resting order filled while the trader is dead")
    # The trade's later statuses (MINED, CONFIRMED: seconds after the match) go out on the user channel; a trader
    # subscribed before the last of them would learn the fill from the stream before its start-up reconciliation.
    # Restart once the exchange has nothing more to say about it: only the reconciliation can find it then.
    wait_for(lambda: all(t["status"] == "CONFIRMED" for t in stack.sim.admin.trades(stack.address)
                         if t["id"] == ours[0]["id"]), timeout_s=20, what="the dead trader's fill confirmed")
    stack.start_trader()
    wait_for(lambda: rows(stack, "SELECT source FROM fills WHERE trade_id = ?", ours[0]["id"]), timeout_s=30,
             what="the fill made while the trader was dead, in the ledger")
    assert rows(stack, "SELECT source, strategy FROM fills WHERE trade_id = ?", ours[0]["id"]) == [("reconcile", "s1")]
    assert rows(stack, "SELECT COUNT(*) FROM events WHERE kind = 'reconcile-gap'")[0][0] >= 1
    assert rows(stack, "SELECT COUNT(*) FROM runs")[0][0] == 2
    assert rows(stack, "SELECT COUNT(*) FROM runs WHERE stopped_at IS NULL")[0][0] == 2  # the killed one, the live one


def test_after_resolution_the_ledger_equals_the_sims_trades_to_the_cent(stack):
    stack.ask(p.SetRequest(settings=HOLD))
    wait_for(lambda: any(e.scope == "awaiting resolution" for e in stack.status().exposure),
             timeout_s=10 * WINDOW_S, every_s=0.5, what="a window ending with a position held to resolution")
    stack.ask(p.PauseRequest())

    def settled():
        status = stack.status()
        held = any(e.scope == "awaiting resolution" for e in status.exposure) or any(
            pos.shares for pos in status.positions)
        return not held and status

    status = wait_for(settled, timeout_s=3 * WINDOW_S, every_s=1.0, what="every position resolved")
    time.sleep(1.0)  # the writer thread commits within milliseconds; leave it a moment
    theirs = stack.sim.admin.trades(stack.address)
    ledger = rows(stack, "SELECT trade_id, order_id FROM fills WHERE status != 'FAILED'")
    # (trade, our order) is the ledger's key: one trade holding two of our orders is two rows, never a duplicate
    assert {t for t, _ in ledger} == {t["id"] for t in theirs if t["status"] != "FAILED"}
    history = load_history(default_path(stack.state_dir))
    wallet_change = float(stack.sim.admin.balance(stack.address)["pusd"]) - stack.fund
    assert history.totals.net == pytest.approx(wallet_change, abs=0.005)
    assert history.totals.net == pytest.approx(status.realised_pnl, abs=0.005)
    assert history.totals.unresolved == 0
    me = f"mmctl set by uid={os.getuid()}({pwd.getpwuid(os.getuid()).pw_name})"
    assert rows(stack, "SELECT COUNT(*) FROM config_changes WHERE who LIKE ?", me + " pid=%")[0][0] >= len(HOLD)
    stack.ask(p.ResumeRequest())


def test_the_report_renders_from_the_live_ledger(stack, tmp_path):
    out = tmp_path / "live.html"
    assert report_main(["--ledger", str(default_path(stack.state_dir)), "--out", str(out)]) == 0
    assert len(images_of(out)) == 4
