"""Two series from one wallet, live (trader/wallet/): one sim serving btc-15m and eth-5m on 60-second windows, a
feed and a trader per series, one state directory, one throw-away wallet. The sim's market is scripted (P(Up) 0.62
all window, no takers), so both series want the same entry at the same time and nothing else moves.

- each trader touches only its own orders (an operator's cancel-all on one leaves the other's alone);
- the wallet-wide cap binds across the two processes: both want $4 of entry, the wallet allows $6 in all;
- a trader killed with SIGKILL (no clean stop): its resting entry stays counted by the other, and the wallet's
  leader cancels it on the exchange after the dead-man delay; the series started again takes its slot back.
"""
from __future__ import annotations

import json
import time

import pytest

from polymm.ctl import protocol as p
from polymm.demo import demo_config
from polymm.demo.series_stack import SeriesStack
from polymm.trader.wallet.coordinator import REAP_AFTER_S

from tests.support.live_trader import wait_for

pytestmark = pytest.mark.slow

WINDOW_S = 60
SERIES = ("btc-15m", "eth-5m")
CAP = 6.0
CONFIG = demo_config(WINDOW_S, entry_threshold=0.55, cancel_before_end_s=3) + f"""
# a scripted book only changes when someone trades: its age says nothing about the feed here
stale_feed_ms = 600000

[wallet]
max_exposure_usd = {CAP:g}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("series")
    script = workdir / "script.json"
    script.write_text(json.dumps({"fair": [[0, 0.62]]}))
    with SeriesStack(workdir, SERIES, window_s=WINDOW_S, seed=23, config_text=CONFIG,
                     sim_args=("--script", str(script))) as running:
        yield running


def entries(stack, series: str) -> list:
    return [o for o in stack.status(series).orders if o.role == "entry" and o.side == "BUY"]


def total_exposure(stack, series: str) -> float:
    return next((e.usd for e in stack.status(series).exposure if e.scope == "total"), 0.0)


def markets_of(stack, series: str) -> set[str]:
    st = stack.status(series)
    return {st.condition_id}


def wait_window_time(min_left_s: float) -> None:
    """Wait for a window with at least `min_left_s` left (a step that must not straddle a rotation)."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < min_left_s:
        time.sleep(left + 1.0)


def test_the_wallet_cap_binds_across_both_series(stack):
    wait_window_time(40)
    wait_for(lambda: any(entries(stack, s) for s in SERIES), timeout_s=30, every_s=0.2, what="an entry of either series")
    seen = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        both = [total_exposure(stack, s) for s in SERIES]
        seen.append(both)
        assert sum(both) <= CAP + 0.05, f"wallet cap {CAP} broken: {dict(zip(SERIES, both))}"
        time.sleep(0.2)
    # each series alone wants $4 (the demo cap schedule's first third) at 0.61-0.62: both cannot rest an entry
    assert any(max(b) > 3.0 for b in seen), seen
    wallet = stack.status(SERIES[0]).wallet
    assert wallet is not None and wallet.cap_usd == CAP and {r.series for r in wallet.series} == set(SERIES)
    assert wallet.leader_series in SERIES


def test_each_trader_touches_only_its_own_orders(stack):
    wait_window_time(30)
    holder = wait_for(lambda: next((s for s in SERIES if entries(stack, s)), None), timeout_s=30, every_s=0.2,
                      what="a series with a resting entry")
    other = next(s for s in SERIES if s != holder)
    mine = {o.order_id for o in entries(stack, holder)}
    stack.ask(other, p.CancelAllRequest())  # the other series' cancel-all
    time.sleep(1.0)
    on_sim = {o["id"] for o in stack.open_orders_on_sim()}
    assert mine & on_sim, f"{holder}'s entry {mine} was cancelled by {other}'s cancel-all (sim has {on_sim})"


def test_a_killed_trader_s_entry_stays_counted_and_is_reaped_by_the_leader(stack):
    wait_window_time(REAP_AFTER_S + 25)
    victim = wait_for(lambda: next((s for s in SERIES if entries(stack, s)), None), timeout_s=30, every_s=0.2,
                      what="a series with a resting entry")
    survivor = next(s for s in SERIES if s != victim)
    victim_market = stack.status(victim).condition_id
    stack.kill_trader(victim)

    def victim_row():
        return next(r for r in stack.status(survivor).wallet.series if r.series == victim)

    row = wait_for(lambda: (r := victim_row()) and not r.running and r, timeout_s=10, every_s=0.2,
                   what="the survivor seeing the victim gone")
    assert row.exposure_usd > 3.0, row  # its resting entry still counts: never lost
    # the survivor stays within the cap with the dead series' entry counted
    assert total_exposure(stack, survivor) + row.exposure_usd <= CAP + 0.05

    def victim_orders_on_sim():
        return [o for o in stack.open_orders_on_sim() if o.get("market") == victim_market]

    assert victim_orders_on_sim(), "the sim's own dead-man switch must not have fired: the leader heartbeats"
    wait_for(lambda: not victim_orders_on_sim(), timeout_s=REAP_AFTER_S + 15, every_s=0.5,
             what="the leader cancelling the dead series' orders")
    assert "died with the wallet's heartbeats going on" in stack.log(f"trader-{survivor}")
    # its buys gone, nothing of it counts any more (it held no position)
    wait_for(lambda: victim_row().exposure_usd < 0.01, timeout_s=5, every_s=0.2, what="the reaped buys uncounted")
    # the series comes back and takes its own slot again
    stack.start_trader(victim)
    wait_for(lambda: victim_row().running, timeout_s=10, every_s=0.2, what="the restarted series running")
    rows = [r for r in stack.status(survivor).wallet.series if r.series == victim]
    assert len(rows) == 1


def test_mmctl_status_shows_every_series_and_m_addresses_one(stack):
    out = stack.mmctl("status")
    assert out.returncode in (0, 1, 9), out.stderr
    text = out.stdout
    assert "btc-15m" in text and "eth-5m" in text and "WALLET" in text and f"cap {CAP:.2f}" in text
    assert "leader" in text and "mmctl -m SERIES status" in text
    one = stack.mmctl("-m", "eth-5m", "status", "--json")
    assert one.returncode in (0, 1, 9), one.stderr
    body = json.loads(one.stdout)
    assert body["trader"]["series"] == "eth-5m" and body["feed"]["available"]
    both = json.loads(stack.mmctl("status", "--json").stdout)
    assert set(both["series"]) == set(SERIES) and both["wallet"]["cap_usd"] == CAP
    bad = stack.mmctl("-m", "eth-10m", "status")
    assert bad.returncode == 2 and "unknown window '10m'" in bad.stderr
