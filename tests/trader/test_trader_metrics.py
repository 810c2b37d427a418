"""polymm-trader's Prometheus endpoint, scraped from a real trader on the sim with prometheus_client's parser:
its numbers are `mmctl status --json`'s (health, state, exposure and caps, P&L, positions, balance), it survives
a config reload (same endpoint, counters carry on, the live drawdown setting follows), a second trader on the
same address is refused in one line, and no secret shows in any label or value."""
from __future__ import annotations

import json
import signal
import subprocess

import pytest
from tests.support.live_trader import WINDOW_S, live_config, wait_for
from tests.support.metrics import scrape

from polymm.ctl import protocol as p
from polymm.demo import Stack, mmctl_exe
from polymm.trader.metrics import NAMES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # A slow synthetic market (a step every 0.5 s): quiet moments to compare two reads come often.
    stack = Stack(tmp_path_factory.mktemp("trader_metrics"), window_s=WINDOW_S, seed=17, metrics=True,
                  config_text=live_config(WINDOW_S), sim_args=("--tick-s", "0.5"))
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


def trader_port(stack) -> int:
    return stack.metrics_ports["trader"]


def _key(reply: p.StatusReply):
    """What the comparison reads; equal in two replies = nothing moved in between."""
    return (reply.state, reply.healthy, reply.paused, round(reply.realised_pnl, 6), round(reply.unrealised_pnl, 6),
            reply.balance_usd, tuple((e.scope, e.usd, e.cap_usd) for e in reply.exposure),
            tuple((x.strategy, x.leg, x.shares, x.awaiting_resolution) for x in reply.positions),
            len(reply.orders))


def test_scrape_agrees_with_mmctl_status(stack):
    # Something to show: a fill (the sim's market crosses the entry threshold often).
    wait_for(lambda: stack.status().positions, 8 * WINDOW_S, what="a position")

    def quiet_read():
        before = stack.status()
        m = scrape(trader_port(stack))
        after = stack.status()
        return _key(before) == _key(after) and (before, m)

    status, m = wait_for(quiet_read, 60, every_s=0.05, what="a quiet moment to compare the scrape with status")
    # every name (rejects only once something was rejected)
    assert set(NAMES) - {"polymm_trader_order_rejects_total"} <= m.names()
    assert m.value("polymm_trader_healthy") == (1 if status.healthy else 0)
    # every polymm_ sample carries the trader's series (one value per process: no extra time series)
    assert all(s.labels.get("series") == "btc-15m" for s in m.samples if s.name.startswith("polymm_"))
    assert m.value("polymm_trader_state", state=status.state) == 1
    assert m.value("polymm_trader_paused") == (1 if status.paused else 0)
    assert m.value("polymm_trader_realised_pnl_usd") == pytest.approx(status.realised_pnl)
    assert m.value("polymm_trader_unrealised_pnl_usd") == pytest.approx(status.unrealised_pnl)
    assert m.value("polymm_trader_net_pnl_usd") == pytest.approx(status.realised_pnl + status.unrealised_pnl)
    if status.balance_usd is not None:
        assert m.value("polymm_trader_balance_usd") == pytest.approx(status.balance_usd)
    for row in status.exposure:
        scope = row.scope.replace(" ", "_")
        assert m.value("polymm_trader_exposure_usd", scope=scope) == pytest.approx(row.usd)
        if row.cap_usd is not None:
            assert m.value("polymm_trader_exposure_cap_usd", scope=scope) == pytest.approx(row.cap_usd)
    held: dict = {}
    for pos in status.positions:
        key = (pos.strategy, pos.leg, "true" if pos.awaiting_resolution else "false")
        held[key] = held.get(key, 0.0) + pos.shares
    for (strategy, leg, awaiting), shares in held.items():
        assert m.value("polymm_trader_position_shares", strategy=strategy, leg=leg,
                       awaiting_resolution=awaiting) == pytest.approx(shares)
    assert sum(s.value for s in m.samples if s.name == "polymm_trader_open_orders") == len(status.orders)
    assert m.value("polymm_trader_heartbeat_ok") == (1 if status.heartbeat_ok else 0)
    assert m.value("polymm_trader_exchange_state", state="normal") == 1
    assert m.value("polymm_trader_user_channel_connected") == 1
    assert m.value("polymm_trader_decisions_total") >= status.decisions > 0
    assert m.value("polymm_trader_tick_to_decision_seconds_count") > 0
    assert m.value("polymm_trader_heartbeats_total", result="ok") > 0
    events = {(x.labels["action"], x.labels["role"]) for x in m.samples if x.name == "polymm_trader_order_events_total"}
    assert ("submit", "entry") in events and any(action == "filled" for action, _role in events)

    # `mmctl status --json` (the CLI operators script against) carries the same reply
    run = subprocess.run([mmctl_exe(), "--socket", str(stack.socket), "--shm", stack.shm, "status", "--json"],
                         capture_output=True, text=True, timeout=30)
    trader = json.loads(run.stdout)["trader"]
    total = next(e for e in trader["exposure"] if e["scope"] == "total")  # S1's caps move with the window's part
    assert m.value("polymm_trader_exposure_cap_usd", scope="total") == pytest.approx(total["cap_usd"])
    # the feed's endpoint of the same stack answers too
    assert scrape(stack.metrics_ports["feed"]).value("polymm_feed_up") == 1


def test_metrics_survive_a_config_reload(stack):
    port = trader_port(stack)
    before = scrape(port)
    assert before.value("polymm_trader_pnl_drawdown_alert_usd") == 25
    original = stack.config_path.read_text()
    try:
        stack.config_path.write_text(original + "\n[metrics]\ndrawdown_alert_usd = 40\n")
        stack.trader.send_signal(signal.SIGHUP)
        after = wait_for(lambda: (m := scrape(port)).value("polymm_trader_pnl_drawdown_alert_usd") == 40 and m,
                         20, what="the reloaded drawdown alert in the scrape")
        assert after.value("polymm_trader_decisions_total") >= before.value("polymm_trader_decisions_total")  # not reset
        assert after.value("polymm_trader_tick_to_decision_seconds_count") >= \
            before.value("polymm_trader_tick_to_decision_seconds_count")
        # live through mmctl too; the address itself only changes with a restart
        stack.ask(p.SetRequest(settings={"metrics.drawdown_alert_usd": "30"}))
        wait_for(lambda: scrape(port).value("polymm_trader_pnl_drawdown_alert_usd") == 30, 20, what="mmctl set")
        with pytest.raises(Exception, match="metrics.listen cannot change while the trader runs"):
            stack.ask(p.SetRequest(settings={"metrics.listen": "127.0.0.1:1"}))
    finally:
        stack.config_path.write_text(original)
        if "metrics.drawdown_alert_usd" in {e.key for e in stack.ask(p.ConfigRequest()).entries if e.override}:
            stack.ask(p.UnsetRequest(key="metrics.drawdown_alert_usd"))
        stack.trader.send_signal(signal.SIGHUP)


def test_a_second_trader_on_the_same_metrics_address_is_refused_in_one_line(stack, tmp_path):
    port = trader_port(stack)
    run = subprocess.run(stack.trader_command(), env=stack.env(POLYMM_SOCKET=str(tmp_path / "second.sock")),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in run.stderr
    assert "Traceback" not in run.stderr
    assert stack.trader.poll() is None and scrape(port).value("polymm_trader_state", state="starting") == 0


def test_no_secret_in_any_label_or_value(stack):
    env = stack.env()
    secrets = [env["PK"], env["PK"].removeprefix("0x"), stack.address, stack.address.lower().removeprefix("0x")]
    for port in stack.metrics_ports.values():
        text = scrape(port).text
        for secret in secrets:
            assert secret.lower() not in text.lower()
