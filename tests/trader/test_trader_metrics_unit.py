"""trader/metrics.py without processes: families from a StatusReply (the numbers mmctl status shows), the
exchange status, the fill store and the hot-path counters."""
from __future__ import annotations

from types import SimpleNamespace as NS

from tests.support.metrics import Scrape
from prometheus_client import CollectorRegistry, generate_latest

from polymm import metrics as prom
from polymm.ctl import protocol as p
from polymm.trader import metrics as tm
from polymm.trader.model import ExchangeMode, ExchangeStatus


def scrape_of(snapshot: tm.TraderSnapshot) -> Scrape:
    registry = CollectorRegistry()
    registry.register(prom.CallbackCollector("trader", lambda: tm.families(snapshot)))
    return Scrape(generate_latest(registry).decode())


def status(**kw) -> p.StatusReply:
    base = dict(
        state="running", healthy=True, decisions=1234, awaiting_redemption_usd=12.0, open_value_usd=3.5,
        redeemed_today_usd=40.0, merged_today_usd=0.0, last_decision_at=1_800_000_000.5, feed_age_ms=42.0,
        window_start=1_800_000_000, window_end=1_800_000_900, balance_usd=990.5, realised_pnl=-1.25,
        unrealised_pnl=0.5, heartbeat_ok=True,
        exposure=[p.Exposure(scope="total", usd=12.0, cap_usd=50.0), p.Exposure(scope="s1.up", usd=3.5, cap_usd=4.0),
                  p.Exposure(scope="awaiting resolution", usd=2.0)],
        positions=[p.PositionInfo(strategy="s1", leg="up", shares=5.0, avg_price=0.7),
                   p.PositionInfo(strategy="s1", leg="down", shares=3.0, avg_price=0.4, awaiting_resolution=True)],
        orders=[p.OrderInfo(client_id="c1", order_id="0xsecretorder", strategy="s1", leg="up", side="SELL", price=0.71,
                            size=5, filled=0, state="live", role="take_profit", order_type="GTC", post_only=True,
                            created_at=1.0)],
    )
    base.update(kw)
    return p.StatusReply(**base)


def fill(strategy, leg, role, size, price, fee=0.0, status="CONFIRMED"):
    return NS(strategy=strategy, leg=leg, role=role, size=size, price=price, fee=fee, status=status)


def test_status_numbers_are_exported_as_they_are():
    counters = tm.TraderCounters()
    counters.order_event("submit", "s1", "up", "entry")
    counters.order_event("submit", "s1", "up", "entry")
    counters.order_event("rejected", "s1", "up", "entry")
    counters.reject("balance")
    counters.on_decision(NS(up=NS(publish_ts=100.0), down=NS(publish_ts=99.0)), 100.0004, 100.001)
    snap = tm.TraderSnapshot(
        status=status(), exchange=ExchangeStatus(mode=ExchangeMode.CANCEL_ONLY, user_stream_connected=True),
        fills=[fill("s1", "up", "maker", 5, 0.6), fill("s1", "up", "maker", 5, 0.7, 0.0),
               fill("s1", "down", "taker", 2, 0.5, 0.035), fill("s1", "down", "taker", 9, 0.5, status="FAILED")],
        heartbeats_ok=10, heartbeats_failed=2, drawdown_alert_usd=25.0, counters=counters,
        ledger=NS(error="ledger /var/lib/polymm/ledger.sqlite: disk full", waiting=17),
        redeemer=NS(snapshot=lambda: {"warning": "3 positions worth $12.00 are redeemable: no builder credentials",
                                      "failing_count": 1, "failing_usd": 5.0}))
    m = scrape_of(snap)
    assert set(tm.NAMES) <= m.names()
    assert m.value("polymm_trader_healthy") == 1 and m.value("polymm_trader_state", state="running") == 1
    assert m.value("polymm_trader_mode", mode="live") == 1 and m.value("polymm_trader_mode", mode="paper") == 0
    assert sum(m.value("polymm_trader_state", state=s) for s in tm.STATES) == 1
    assert m.value("polymm_trader_decisions_total") == 1234
    assert m.value("polymm_trader_feed_age_seconds") == 0.042
    assert m.value("polymm_trader_exposure_usd", scope="total") == 12 and m.value("polymm_trader_exposure_cap_usd", scope="total") == 50
    assert m.value("polymm_trader_exposure_usd", scope="awaiting_resolution") == 2
    assert m.maybe("polymm_trader_exposure_cap_usd", scope="awaiting_resolution") is None
    assert m.value("polymm_trader_position_shares", strategy="s1", leg="down", awaiting_resolution="true") == 3
    assert m.value("polymm_trader_open_orders", strategy="s1", leg="up", side="SELL", role="take_profit") == 1
    assert m.value("polymm_trader_realised_pnl_usd") == -1.25 and m.value("polymm_trader_net_pnl_usd") == -0.75
    assert m.value("polymm_trader_balance_usd") == 990.5 and m.value("polymm_trader_pnl_drawdown_alert_usd") == 25
    assert m.value("polymm_trader_exchange_state", state="cancel_only") == 1
    assert sum(m.value("polymm_trader_exchange_state", state=s) for s in tm.EXCHANGE_STATES) == 1
    assert m.value("polymm_trader_user_channel_connected") == 1
    assert m.value("polymm_trader_heartbeats_total", result="failed") == 2
    assert m.value("polymm_trader_fills_total", strategy="s1", leg="up", role="maker") == 2
    assert m.value("polymm_trader_fill_volume_shares_total", strategy="s1", leg="down", role="taker") == 2  # FAILED not counted
    assert abs(m.value("polymm_trader_fill_notional_usd_total", strategy="s1", leg="up", role="maker") - 6.5) < 1e-9
    assert m.value("polymm_trader_order_events_total", action="submit", strategy="s1", leg="up", role="entry") == 2
    assert m.value("polymm_trader_order_rejects_total", cause="balance") == 1
    assert m.value("polymm_trader_tick_to_decision_seconds_count") == 1
    assert m.value("polymm_trader_tick_to_decision_seconds_bucket", le="0.0005") == 1
    assert m.value("polymm_trader_awaiting_redemption_usd") == 12 and m.value("polymm_trader_redeemer_warning") == 1
    assert m.value("polymm_trader_redeemed_today_usd") == 40 and m.value("polymm_trader_open_value_usd") == 3.5
    assert m.value("polymm_trader_redeem_failing_positions") == 1 and m.value("polymm_trader_redeem_failing_usd") == 5
    assert m.value("polymm_trader_ledger_ok") == 0 and m.value("polymm_trader_ledger_backlog_records") == 17
    assert "0xsecretorder" not in m.text and "c1" not in m.text  # no order ids in labels


def test_a_starting_trader_exports_its_state_without_a_book():
    m = scrape_of(tm.TraderSnapshot(status=p.StatusReply(state="starting", healthy=False, mode="paper")))
    assert m.value("polymm_trader_mode", mode="paper") == 1
    assert m.value("polymm_trader_state", state="starting") == 1 and m.value("polymm_trader_healthy") == 0
    assert m.value("polymm_trader_exchange_state", state="normal") == 1
    assert m.maybe("polymm_trader_last_decision_timestamp_seconds") is None
    assert m.maybe("polymm_trader_user_channel_connected") is None


def test_an_unknown_state_word_still_shows():
    m = scrape_of(tm.TraderSnapshot(status=status(state="something_new"), exchange=NS(mode="new_mode")))
    assert m.value("polymm_trader_state", state="something_new") == 1
    assert m.value("polymm_trader_exchange_state", state="new_mode") == 1
