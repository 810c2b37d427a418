"""polymm-trader's Prometheus metrics (served by polymm/metrics.py).

Nearly everything is read at scrape time from what `mmctl status` reads — the control handler's StatusReply
(state, health, exposure and caps, P&L, positions, orders, balance) and the execution core's exchange status
and fill store — so a dashboard and `mmctl status --json` can never disagree, and the decision loop does no
metrics work. The hot path only touches `TraderCounters`: a FastHistogram observation per decision woken by
a new top of book, and a dict increment per order event.

Labels are small closed sets (strategy, leg, side, role, action, state, scope, cause): never an order id, a
token, a wallet or anything from the environment.
"""
from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from polymm.metrics import FastHistogram

# Every series this module exports (tests check the dashboard and the alert rules against it).
NAMES = (
    "polymm_trader_healthy",
    "polymm_trader_state",
    "polymm_trader_paused",
    "polymm_trader_warnings",
    "polymm_trader_decisions_total",
    "polymm_trader_last_decision_timestamp_seconds",
    "polymm_trader_tick_to_decision_seconds",
    "polymm_trader_feed_age_seconds",
    "polymm_trader_window_end_timestamp_seconds",
    "polymm_trader_order_events_total",
    "polymm_trader_order_rejects_total",
    "polymm_trader_open_orders",
    "polymm_trader_fills_total",
    "polymm_trader_fill_volume_shares_total",
    "polymm_trader_fill_notional_usd_total",
    "polymm_trader_fill_fees_usd_total",
    "polymm_trader_exposure_usd",
    "polymm_trader_exposure_cap_usd",
    "polymm_trader_position_shares",
    "polymm_trader_realised_pnl_usd",
    "polymm_trader_unrealised_pnl_usd",
    "polymm_trader_net_pnl_usd",
    "polymm_trader_pnl_drawdown_alert_usd",
    "polymm_trader_balance_usd",
    "polymm_trader_heartbeat_ok",
    "polymm_trader_heartbeats_total",
    "polymm_trader_exchange_state",
    "polymm_trader_user_channel_connected",
    # the SQLite ledger (issue 14)
    "polymm_trader_ledger_ok",
    "polymm_trader_ledger_backlog_records",
    # the wallet beyond cash and redemption (issue 15)
    "polymm_trader_open_value_usd",
    "polymm_trader_awaiting_redemption_usd",
    "polymm_trader_redeemed_today_usd",
    "polymm_trader_merged_today_usd",
    "polymm_trader_redeemer_warning",
    # redemption that cannot wedge (issue 21)
    "polymm_trader_redeem_failing_positions",
    "polymm_trader_redeem_failing_usd",
    # paper or live (issue 13)
    "polymm_trader_mode",
    # the config file still loads (issue 27)
    "polymm_trader_config_loads",
)

# mmctl status's state words (ctl/protocol.py StatusReply.state); one series each.
STATES = ("starting", "running", "rotating", "paused", "stale_feed", "exchange_restarting", "cancel_only",
          "post_only", "rate_limited", "closed_only", "restarting", "stopping")
# What the exchange lets us do (trader/model.py ExchangeMode): 425 -> exchange_restarting, then post_only;
# 503 -> cancel_only; 429 -> rate_limited; an account limited to closing -> closed_only.
EXCHANGE_STATES = ("normal", "exchange_restarting", "post_only", "cancel_only", "rate_limited", "closed_only")


class TraderCounters:
    """What the hot path counts. `decision_latency` is observed only by the decision loop's thread; order
    events come from the execution core's threads, so they take a lock (an uncontended acquire, ~0.1 us:
    orders are few per second, never per tick)."""

    def __init__(self) -> None:
        self.decision_latency = FastHistogram()
        self._lock = threading.Lock()
        self.order_events: Counter = Counter()  # (action, strategy, leg, role) -> n
        self.rejects: Counter = Counter()  # cause -> n

    def on_decision(self, snap: Any, decided_at: float, _done_at: float) -> None:
        """Engine's on_decision hook: a decision woken by a new top of book, from the feed's publish to the
        decision (before its orders are sent; their latency is the exchange's)."""
        published = max(snap.up.publish_ts, snap.down.publish_ts)
        if published == published and published > 0:
            self.decision_latency.observe(max(0.0, decided_at - published))

    def order_event(self, action: str, strategy: str, leg: str, role: str) -> None:
        with self._lock:
            self.order_events[(action, strategy, leg, role)] += 1

    def reject(self, cause: str) -> None:
        with self._lock:
            self.rejects[cause] += 1

    def counts(self) -> tuple[dict, dict]:
        with self._lock:
            return dict(self.order_events), dict(self.rejects)


@dataclass
class TraderSnapshot:
    """Everything a scrape exports, read at scrape time (the service builds it; tests build it by hand)."""

    status: Any  # ctl/protocol.py StatusReply
    exchange: Any = None  # trader/model.py ExchangeStatus, or None before the core runs
    fills: Iterable[Any] = ()  # the fill store's fills (strategy, leg, role, size, price, fee)
    heartbeats_ok: int | None = None
    heartbeats_failed: int | None = None
    drawdown_alert_usd: float | None = None
    counters: TraderCounters | None = None
    ledger: Any = None  # trader/ledger LedgerWriter (`error`, `waiting`), or None without one
    redeemer: Any = None  # trader/redeem Redeemer (`snapshot()`: its warning), or None without one
    extra: list = field(default_factory=list)  # families other features add (redemption, paper mode)


def read_snapshot(handler: Any, core: Any, config: Any, counters: TraderCounters | None,
                  ledger: Any = None, redeemer: Any = None) -> TraderSnapshot:
    """What one scrape exports, read from a running trader: the control handler's StatusReply (exactly what
    `mmctl status` gets), the execution core's exchange status, fills and heartbeat counts, the config's
    drawdown alert. Before the handler exists (starting) or after it is gone, only the state word."""
    from polymm.ctl import protocol as p

    if handler is None or core is None:
        starting = p.StatusReply(state="starting", healthy=False, mode=getattr(config, "mode", "live"))
        return TraderSnapshot(status=starting, counters=counters, ledger=ledger)
    beats = core.heartbeat_counts()
    return TraderSnapshot(
        status=handler.status(p.StatusRequest()),
        exchange=core.state(),
        fills=core.fills(),
        heartbeats_ok=beats[0] if beats else None,
        heartbeats_failed=beats[1] if beats else None,
        drawdown_alert_usd=config.metrics.drawdown_alert_usd if config is not None else None,
        counters=counters,
        ledger=ledger,
        redeemer=redeemer,
    )


def _s(value: Any) -> str:
    return str(getattr(value, "value", value))


def exchange_word(exchange: Any) -> str:
    if exchange is None:
        return "normal"
    word = _s(getattr(exchange, "mode", "normal"))
    return {"engine_restarting": "exchange_restarting"}.get(word, word)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def families(snap: TraderSnapshot) -> list:
    """The trader's metric families for one scrape."""
    st = snap.status
    out = [
        _gauge("polymm_trader_healthy", "1 when mmctl status would call the trader healthy", 1 if st.healthy else 0),
        _gauge("polymm_trader_paused", "1 while paused by an operator (or flattening)", 1 if st.paused else 0),
        _gauge("polymm_trader_warnings", "Warnings mmctl status shows for the trader", len(st.warnings)),
        CounterMetricFamily("polymm_trader_decisions", "Decisions made since the trader started",
                            value=st.decisions or 0),
    ]
    mode = getattr(st, "mode", "live") or "live"
    modes = GaugeMetricFamily("polymm_trader_mode", "live or paper (1 for the current one): paper fills locally, "
                              "nothing reaches the exchange", labels=["mode"])
    for word in ("live", "paper") + (() if mode in ("live", "paper") else (mode,)):
        modes.add_metric([word], 1 if word == mode else 0)
    out.append(modes)
    state = GaugeMetricFamily("polymm_trader_state", "The trader's state word (1 for the current one)",
                              labels=["state"])
    for word in STATES + (() if st.state in STATES else (st.state,)):
        state.add_metric([word], 1 if word == st.state else 0)
    out.append(state)
    if st.last_decision_at:
        out.append(_gauge("polymm_trader_last_decision_timestamp_seconds", "When the loop last decided (unix s)",
                          st.last_decision_at))
    if st.feed_age_ms is not None and math.isfinite(st.feed_age_ms):
        out.append(_gauge("polymm_trader_feed_age_seconds", "Age of the book at the last decision",
                          st.feed_age_ms / 1000.0))
    if st.window_end:
        out.append(_gauge("polymm_trader_window_end_timestamp_seconds", "End of the window being traded (unix s)",
                          st.window_end))

    # exposure, caps, positions, orders, P&L, cash: exactly the StatusReply's numbers
    exposure = GaugeMetricFamily("polymm_trader_exposure_usd", "Exposure in USD by scope (as mmctl status)",
                                 labels=["scope"])
    caps = GaugeMetricFamily("polymm_trader_exposure_cap_usd", "The cap of each scope now", labels=["scope"])
    for row in st.exposure:
        scope = row.scope.replace(" ", "_")
        exposure.add_metric([scope], row.usd)
        if row.cap_usd is not None:
            caps.add_metric([scope], row.cap_usd)
    out += [exposure, caps]
    positions = GaugeMetricFamily("polymm_trader_position_shares", "Shares held", labels=[
        "strategy", "leg", "awaiting_resolution"])
    held: Counter = Counter()
    for pos in st.positions:
        held[(pos.strategy, pos.leg, "true" if pos.awaiting_resolution else "false")] += pos.shares
    for key, shares in sorted(held.items()):
        positions.add_metric(list(key), shares)
    out.append(positions)
    orders = GaugeMetricFamily("polymm_trader_open_orders", "Working orders", labels=["strategy", "leg", "side", "role"])
    working: Counter = Counter((o.strategy, o.leg, o.side, o.role) for o in st.orders)
    for key, n in sorted(working.items()):
        orders.add_metric(list(key), n)
    out.append(orders)
    out += [
        _gauge("polymm_trader_realised_pnl_usd", "Realised P&L net of fees, resolutions included", st.realised_pnl),
        _gauge("polymm_trader_unrealised_pnl_usd", "Unrealised P&L of open positions at the best bid", st.unrealised_pnl),
        _gauge("polymm_trader_net_pnl_usd", "Realised + unrealised P&L", st.realised_pnl + st.unrealised_pnl),
    ]
    if st.balance_usd is not None:
        out.append(_gauge("polymm_trader_balance_usd", "Collateral available on the exchange", st.balance_usd))
    out.append(_gauge("polymm_trader_config_loads", "0 while the config file (with the overrides) does not load: the "
                      "trader runs on the config it last loaded and a restart would fail (mmctl status says why)",
                      0 if getattr(st, "config_error", None) else 1))
    if snap.drawdown_alert_usd is not None:
        out.append(_gauge("polymm_trader_pnl_drawdown_alert_usd",
                          "Alert when net P&L falls this far below its high of the last hour (config)",
                          snap.drawdown_alert_usd))

    # the exchange side
    out.append(_gauge("polymm_trader_heartbeat_ok", "1 while the dead-man switch heartbeats are accepted",
                      1 if st.heartbeat_ok else 0))
    if snap.heartbeats_ok is not None:
        beats = CounterMetricFamily("polymm_trader_heartbeats", "Dead-man switch heartbeats by result",
                                    labels=["result"])
        beats.add_metric(["ok"], snap.heartbeats_ok)
        beats.add_metric(["failed"], snap.heartbeats_failed or 0)
        out.append(beats)
    word = exchange_word(snap.exchange)
    modes = GaugeMetricFamily("polymm_trader_exchange_state", "What the exchange lets us do (1 for the current one)",
                              labels=["state"])
    for name in EXCHANGE_STATES + (() if word in EXCHANGE_STATES else (word,)):
        modes.add_metric([name], 1 if name == word else 0)
    out.append(modes)
    if snap.exchange is not None:
        out.append(_gauge("polymm_trader_user_channel_connected", "1 while the user WebSocket is connected",
                          1 if getattr(snap.exchange, "user_stream_connected", False) else 0))

    for name, doc, value in (
        ("polymm_trader_open_value_usd", "Our positions: the current window's at the best bid, those awaiting resolution at cost",
         getattr(st, "open_value_usd", None)),
        ("polymm_trader_awaiting_redemption_usd", "Won, not yet redeemed: shares x 1 pUSD",
         getattr(st, "awaiting_redemption_usd", None)),
        ("polymm_trader_redeemed_today_usd", "pUSD back today (UTC) through redemptions",
         getattr(st, "redeemed_today_usd", None)),
        ("polymm_trader_merged_today_usd", "pUSD back today (UTC) through merged Up+Down pairs",
         getattr(st, "merged_today_usd", None)),
    ):
        if value is not None:
            out.append(_gauge(name, doc, value))
    if snap.redeemer is not None:
        redeemer = snap.redeemer.snapshot()
        out.append(_gauge("polymm_trader_redeemer_warning", "1 while the redeemer reports a problem (mmctl status "
                          "shows its words)", 1 if redeemer.get("warning") else 0))
        out.append(_gauge("polymm_trader_redeem_failing_positions", "Won positions whose redemption failed even when "
                          "sent alone (backed off, or given up: mmctl status names them)",
                          redeemer.get("failing_count") or 0))
        out.append(_gauge("polymm_trader_redeem_failing_usd", "Their winnings in pUSD (shares x 1)",
                          redeemer.get("failing_usd") or 0.0))
    if snap.ledger is not None:
        out.append(_gauge("polymm_trader_ledger_ok", "1 while the SQLite ledger can be written",
                          1 if snap.ledger.error is None else 0))
        out.append(_gauge("polymm_trader_ledger_backlog_records", "Ledger records kept in memory until the file "
                          "can be written", snap.ledger.waiting))
    out += _fill_families(snap.fills)
    if snap.counters is not None:
        out += _counter_families(snap.counters)
    out += snap.extra
    return out


def _fill_families(fills: Iterable[Any]) -> list:
    """Fills by strategy/leg/role, folded from the fill store (the same fills `mmctl fills` lists)."""
    n: Counter = Counter()
    shares: Counter = Counter()
    usd: Counter = Counter()
    fees: Counter = Counter()
    for f in fills:
        if _s(getattr(f, "status", "")) == "FAILED":  # the chain reverted it: reversed in the positions too
            continue
        key = (f.strategy or "unknown", _s(f.leg), f.role or "unknown")
        n[key] += 1
        shares[key] += f.size
        usd[key] += f.size * f.price
        fees[key] += f.fee or 0.0
    labels = ["strategy", "leg", "role"]
    out = []
    for name, doc, values in (
        ("polymm_trader_fills", "Fills (trades) by strategy, leg and maker/taker role", n),
        ("polymm_trader_fill_volume_shares", "Shares filled", shares),
        ("polymm_trader_fill_notional_usd", "USD filled (price x shares)", usd),
        ("polymm_trader_fill_fees_usd", "Fees paid on fills", fees),
    ):
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        out.append(family)
    return out


def _counter_families(counters: TraderCounters) -> list:
    events, rejects = counters.counts()
    order_events = CounterMetricFamily(
        "polymm_trader_order_events", "Order actions (submit, live, filled, cancel, canceled, rejected, ...) by "
        "strategy, leg and role (the reason class: entry, take_profit, stop_loss, flatten)",
        labels=["action", "strategy", "leg", "role"])
    for key, value in sorted(events.items()):
        order_events.add_metric(list(key), value)
    reject_family = CounterMetricFamily("polymm_trader_order_rejects", "Orders refused or rejected, by cause",
                                        labels=["cause"])
    for cause, value in sorted(rejects.items()):
        reject_family.add_metric([cause], value)
    latency = counters.decision_latency.family(
        "polymm_trader_tick_to_decision_seconds",
        "From the feed publishing a top of book to the trader's decision on it")
    return [order_events, reject_family, latency]
