"""The book without us, live (real sim, feed and trader processes; the sim's book scripted through its admin
API, so prices are exact and nothing else trades): the sim displays our orders in its book and the trader's
view excludes them; an entry left alone at the top as the other bids withdraw is cancelled, not filled by the
falling market; S2 bidding on a leg S1 holds does not hide S1's stop."""
from __future__ import annotations

import time

import pytest

from polymm.ctl import protocol as p
from polymm.demo import Stack

from tests.support.live_trader import fresh_window as live_window
from tests.support.live_trader import order_lines, wait_for

pytestmark = pytest.mark.slow

WINDOW_S = 60

CONFIG = f"""\
[market]
window_s = {WINDOW_S}

[s1]
entry_threshold = 0.60
cap_schedule = "0-{WINDOW_S}:10"
leg_mode = "up_only"
late_window_s = 5
exit_delay_s = 1
exit_retry_s = 1
requote_wait_s = 1
sl_offset = 0.05
sl_floor = 0.3

[s2]
enabled = false
window_s = {WINDOW_S}
entry_ask_threshold = 0.60
order_size = 5
target_usd = 100
sl_price = 0.2
requote_wait_s = 600  # S2's bid stays where it is: only the netting can see past it

[risk]
max_exposure_usd = 1000  # earlier (synthetic) windows awaiting resolution count too
cancel_before_end_s = 3
# a scripted book only changes when the test (or we) trade: its age says nothing about the feed here
stale_feed_ms = 60000
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("netbook"), window_s=WINDOW_S, seed=11, config_text=CONFIG)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def fresh_window(stack, need_s: float = 40.0) -> int:
    """Wait for a window with `need_s` left that the trader trades; script it empty of everything but a far
    book so nothing happens until the test says. Returns its start."""
    start = live_window(stack, need_s)
    stack.sim.admin.book(bids=[[0.30, 50]], asks=[[0.70, 50]])
    wait_for(lambda: not stack.open_orders_on_sim(), timeout_s=10, what="no order of ours resting")
    return start


def our_orders(stack, side="BUY"):
    return [o for o in stack.open_orders_on_sim() if o["side"] == side]


def up_book(stack) -> p.LegBook:
    return next(b for b in stack.status().book if b.leg == "up")


def test_entry_alone_at_the_top_is_cancelled_when_the_others_leave_and_the_sim_shows_it_the_trader_not(stack):
    stack.ask(p.SetRequest(settings={"s2.enabled": "false"}))
    fresh_window(stack)
    stack.sim.admin.book(bids=[[0.61, 20], [0.58, 40]], asks=[[0.63, 20]])
    [entry] = wait_for(lambda: our_orders(stack), timeout_s=10, what="S1's entry on the sim")
    assert float(entry["price"]) == 0.61
    ours = float(entry["original_size"])
    # The sim displays the level with our order in it; the trader decides on the level without it.
    book = wait_for(lambda: (b := up_book(stack)).bid_size and abs(b.bid_size - (20 + ours)) < 1e-6 and b,
                    timeout_s=10, what="the trader's view of the level with our entry")
    assert (book.bid, book.net_bid, book.net_bid_size) == (0.61, 0.61, 20.0)
    state = stack.sim.admin.live_market()
    assert float(state["up_best_bid"]) == 0.61
    # The other bidders at 0.61 withdraw: the exchange's best bid is now our own order alone, the market
    # without us is at 0.58, below the 0.60 entry threshold. The entry goes at the first decision that sees it.
    changed_at = time.time()
    stack.sim.admin.book(bids=[[0.58, 40], [0.55, 40]], asks=[[0.63, 20]])
    wait_for(lambda: not our_orders(stack), timeout_s=10, what="the lone entry cancelled")
    cancels = [o for o in order_lines(stack.workdir / "trader.log", since=changed_at - 1)
               if o.action == "cancel" and o.id and o.price == 0.61]
    assert cancels and "0.58" in cancels[0].reason, cancels
    # The market falls through 0.61: no fill of ours.
    stack.sim.admin.take("SELL", 0.55, 100)
    time.sleep(0.5)
    assert not [t for t in stack.sim.admin.trades(stack.address) if t["market"] == state["condition_id"]]


def test_s2_bidding_on_the_leg_s1_holds_does_not_delay_s1s_stop(stack):
    stack.ask(p.SetRequest(settings={"s2.enabled": "false"}))
    fresh_window(stack)
    # S1 enters at 0.62; a seller fills it.
    stack.sim.admin.book(bids=[[0.62, 20]], asks=[[0.64, 20]])
    wait_for(lambda: any(float(o["price"]) == 0.62 for o in our_orders(stack)), timeout_s=10, what="S1's entry at 0.62")
    stack.sim.admin.take("SELL", 0.62, 200)
    wait_for(lambda: any(pos.strategy == "s1" and pos.shares >= 5 for pos in stack.status().positions),
             timeout_s=10, what="an S1 position")
    # The book moves down a little; S2 joins the bid at 0.60 on the leg S1 holds, above S1's stop trigger
    # (avg 0.62 - 0.05 = 0.57).
    stack.sim.admin.book(bids=[[0.60, 20]], asks=[[0.64, 20]])
    stack.ask(p.SetRequest(settings={"s2.enabled": "true"}))
    wait_for(lambda: any(o.strategy == "s2" and o.side == "BUY" and o.leg == "up" and o.price == 0.6
                         for o in stack.status().orders), timeout_s=10, what="S2's bid on the leg S1 holds")
    # Everyone but S2 falls to 0.50: the displayed best bid is S2's 0.60, the market without us 0.50 < 0.57.
    changed_at = time.time()
    stack.sim.admin.book(bids=[[0.50, 40]], asks=[[0.64, 20]])
    stops = wait_for(lambda: [o for o in order_lines(stack.workdir / "trader.log", since=changed_at - 1)
                              if o.action == "submit" and o.strategy == "s1" and o.reason.startswith("stop")],
                     timeout_s=10, what="S1's stop")
    assert stops[0].side == "SELL" and stops[0].type == "FAK" and "bid 0.5 < trigger 0.57" in stops[0].reason, stops
    # S2's bid was still resting at 0.60 (the displayed best bid) when S1 stopped: S2 never requotes within
    # s2.requote_wait_s = 600, and nothing of S2's ended before the stop went out.
    s2_ends = [o for o in order_lines(stack.workdir / "trader.log", since=changed_at - 1)
               if o.strategy == "s2" and o.action in ("cancel", "canceled", "filled") and o.at < stops[0].at]
    assert s2_ends == []
