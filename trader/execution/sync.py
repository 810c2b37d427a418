"""Keeping the execution core in step with the exchange: user-channel events, dead-man-switch trips and
recoveries, reconciliation against the REST view, lookups of orders whose outcome is unknown, and the
maintenance thread (pruning, journal compaction). A part of ExecutionCore (trader/execution/core.py).
"""
from __future__ import annotations

import logging
import time

from polymm import memory

from polymm.trader.execution import limits
from polymm.trader.execution.exchange_state import ExchangeError
from polymm.trader.execution.limits import CANCEL_RESEND_EVERY_S, COMPACT_JOURNAL_EVERY_S, PRUNE_EVERY_S
from polymm.trader.execution.state import _fmt
from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule
from polymm.trader.model import OrderState, Side
from polymm.trader.venue.user_wire import (UnreadableTrade, WireOrder, WireTrade, decode_rest_order, decode_rest_orders,
                                           decode_rest_trades, order_report, trade_report)

log = logging.getLogger("polymm.trader.execution")


class ExchangeSync:
    """Methods of ExecutionCore; see the module docstring."""

    # ================================================================================================
    # user channel
    # ================================================================================================
    def _on_ws_connected(self, reconnect: bool) -> None:
        with self._lock:
            self._xstate.user_stream_connected = True
            self._xstate.extra_warnings.pop("user_ws", None)
        self._ws_connected.set()
        if reconnect:
            # The channel does not replay what was missed while disconnected.
            self.request_reconcile("user channel reconnected")
        self._emit_status()

    def _on_ws_disconnected(self, reason: str) -> None:
        with self._lock:
            self._xstate.user_stream_connected = False
            self._xstate.extra_warnings["user_ws"] = f"user channel disconnected ({reason}); reconnecting"
        self._emit_status()

    def _on_ws_events(self, events: list) -> None:
        # A frame of our orders' events comes right after we trade, often while the loop decides the trade's next
        # tick: applying it (100-500 us of Python) waits for that decision (trader/priority.py), and a frame of many
        # events that finds the loop busy half-way is applied in parts, each published whole, with the loop's
        # decision between them. The gate is only ever waited for here, outside the lock.
        gate = self.gate
        gate.step_aside()
        due: list[str] = []
        unreadable: list[UnreadableTrade] = []
        done = self._apply_ws_events(events, 0, due, unreadable)
        while done < len(events):
            gate.step_aside()
            done = self._apply_ws_events(events, done, due, unreadable)
        for bad in unreadable:
            # A fill may hide in it: never lost. /data/trades has the same trade; read it now.
            log.warning("user channel: %s; reconciling over REST now", bad)
            self.request_reconcile(f"unreadable trade message id={bad.trade_id}")
        if due:
            self._send_cancels(due)
        self.wake.set()

    def _apply_ws_events(self, events: list, start: int, due: list, unreadable: list) -> int:
        """Apply events[start:] under one write (the decision's reads published once, when it ends), stopping
        before an event that finds the decision loop busy (trader/priority.py); the index it stopped at."""
        now = self.clock()
        state = self.exec_state
        busy = self.gate.busy
        with state.writing():
            known = state.known_markets()
            for i in range(start, len(events)):
                if i > start and busy():
                    return i
                ev = events[i]
                if isinstance(ev, (WireTrade, WireOrder)) and ev.market and ev.market not in known:
                    # Another series' market on the same wallet (the subscription names our markets; should the
                    # exchange send more, its orders and fills are that series' trader's business, not ours).
                    self._foreign_events += 1
                    continue
                if isinstance(ev, WireTrade):
                    try:
                        report = trade_report(ev)
                    except UnreadableTrade as bad:
                        unreadable.append(bad)
                        continue
                    self._fill_changes(state.apply_trade(report, now))
                elif isinstance(ev, UnreadableTrade):
                    unreadable.append(ev)
                elif isinstance(ev, WireOrder):
                    report = order_report(ev)
                    t, cancel_due = state.apply_order_report(report, now)
                    if t is not None:
                        self._order_event(t)
                        if t.before is not None and t.before.state != t.after.state:
                            self._log_order(t.after.state.value, t.after, f"user channel {report.kind}")
                        if cancel_due:
                            due.append(t.after.client_id)
        return len(events)

    # ================================================================================================
    # heartbeats
    # ================================================================================================
    def _on_heartbeat_tripped(self, why: str) -> None:
        with self._lock:
            self._xstate.heartbeat_ok = False
        self._emit_status()
        # The exchange is about to cancel everything anyway; say so ourselves and stop placing.
        self.cancel_all(f"heartbeats failing: {why}")
        pool = self._pool
        if pool is not None:
            try:
                pool.submit(self._cancel_markets_on_exchange, "heartbeats failing")
            except RuntimeError:  # shutting down: stop() cancels, and the exchange's switch fires anyway
                pass

    def _cancel_markets_on_exchange(self, reason: str) -> None:
        """Every order of ours in the markets we trade, by market (DELETE /cancel-market-orders), also the ones we
        lost track of. Never DELETE /cancel-all: other series' traders may trade other markets of this wallet."""
        for market in self._tracked_markets():
            try:
                result = self.gateway.cancel_market(market=market)
                log.warning("cancel of market %s sent (%s): %d cancelled", market[:12], reason, len(result.canceled))
                with self._lock:
                    ids = list(result.canceled)
                self._apply_cancel_result(ids, ids, {})
            except ExchangeError as err:
                log.warning("cancel of market %s (%s) failed: %s", market[:12], reason, err)
            except Exception:  # noqa: BLE001 - runs in a pool worker: an exception there would vanish unseen
                log.exception("cancel of market %s (%s) crashed", market[:12], reason)

    def _on_heartbeat_recovered(self) -> None:
        with self._lock:
            self._xstate.heartbeat_ok = True
        self.request_reconcile("heartbeats recovered")
        self._emit_status()

    # ================================================================================================
    # reconciliation and maintenance
    # ================================================================================================
    def reconcile(self, reason: str) -> bool:
        """REST truth vs local (blocking): open orders and trades of every tracked market; differences
        are repaired and logged. Orders whose submit outcome is unknown are looked up. False when the
        exchange could not be read (a retry is scheduled)."""
        with self._reconcile_lock:
            markets = self.exec_state.reconcile_scope(self.clock())
            open_rows, trade_rows = [], []
            try:
                for cond, m in markets.items():
                    open_rows += self.gateway.open_orders(market=cond)
                    trade_rows += self.gateway.trades(market=cond, after=m.window_start - 3600)
            except ExchangeError as err:
                log.warning("reconcile (%s) failed: %s; will retry", reason, err)
                self.request_reconcile(reason)
                self._last_reconcile_error = err
                return False
            open_reports, bad_orders = decode_rest_orders(open_rows)
            trade_reports, bad_trades = decode_rest_trades(trade_rows)
            for bad in bad_orders + bad_trades:
                log.warning("reconcile (%s): %s", reason, bad)
            now = self.clock()
            with self._lock:
                res = self.exec_state.reconcile(open_reports, trade_reports, set(markets), now)
                for t in res.order_changes:
                    self._order_event(t)
                restored = set(res.restored)
                for fill, previous in res.fill_changes:
                    self._fill_event(fill, previous, log_it=False, source="reconcile",
                                     restored=fill.trade_id in restored)
                self._xstate.last_reconcile_at = now
            if res.restored:
                # Known before a restart (the journal): found again, not missed. Only unrecorded fills warn.
                log.info("reconcile (%s): %d fill(s) recorded before the restart found again on the exchange",
                         reason, len(res.restored))
            for diff in res.differences:
                log.warning("reconcile (%s): %s", reason, diff)
            for order_id in res.need_lookup:
                self._lookup(order_id)
            due = self.exec_state.cancels_due(self.clock())
            if due:
                self._send_cancels(due)
            if not res.differences:
                # The periodic pass is routine: keep it out of the journal unless asked for.
                log.log(logging.DEBUG if reason == "periodic" else logging.INFO,
                        "reconcile (%s): in agreement (%d open orders, %d trades)", reason, len(open_reports),
                        len(trade_reports))
            self._last_reconcile_mono = time.monotonic()
            self.wake.set()
            return True

    def _lookup(self, order_id: str) -> None:
        """GET /data/order for one order whose state we must learn from the exchange."""
        self._last_lookup[order_id] = time.monotonic()
        try:
            row = self.gateway.get_order(order_id)
        except ExchangeError as err:
            log.warning("lookup of order %s failed: %s; will retry", order_id, err)
            return
        now = self.clock()
        state = self.exec_state
        with self._lock:
            self._needs_lookup.discard(order_id)
            before = state.order_state(order_id)
            if before is None:
                return
            if row is None:
                if before is OrderState.UNKNOWN:
                    # Production's GET /data/order answers nothing for an order that matched on entry
                    # ("if the order was filled, it will be in get_trades", py-clob-client #217): read the
                    # trades before counting this as a miss, so a filled taker order is never called rejected.
                    if not self._trades_checked_for.get(order_id):
                        if len(self._trades_checked_for) > 1000:  # rare (timed-out submits); never growing
                            self._trades_checked_for.clear()  # at worst one more trades read per order
                        self._trades_checked_for[order_id] = True
                        self._reconcile_wanted = f"order {order_id[:12]}… unknown to the order lookup"
                        return
                    t, why = state.lookup_missing(order_id, self.unknown_max_lookups, now)
                    if t is not None:
                        self._log_order("rejected", t.after, why, logging.WARNING, cause="not_found")
                        self._order_event(t)
                else:
                    t = state.missing_from_open_orders(order_id, now)
                    if t is not None:
                        self._log_order(t.after.state.value, t.after, "exchange no longer has the order",
                                        logging.WARNING)
                        self._order_event(t)
                return
            try:
                report = decode_rest_order(row)
            except Exception as exc:  # noqa: BLE001 - malformed answer: keep the order, retry later
                log.warning("lookup of order %s: unreadable answer (%s)", order_id, exc)
                return
            t = state.exchange_order(order_id, report, now)
            after = state.order_state(order_id)
            if t is not None:
                self._order_event(t)
                if before is not after:
                    self._log_order(after.value, t.after, f"exchange says {report.status} "
                                    f"matched={_fmt(report.size_matched)}",
                                    logging.WARNING if before is OrderState.UNKNOWN else logging.INFO)
            order = t.after if t is not None and state.cancel_due(order_id, now) else None
        if order is not None:
            self._log_order("cancel", order, f"{order.cancel_reason} (deferred until the order was known)")
            self._send_cancels([order.client_id])

    def _maintenance(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._maintain_once()
            except Exception:  # noqa: BLE001 - the maintenance loop must survive any single failure
                log.exception("maintenance pass failed")

    def _maintain_once(self) -> None:
        mono = time.monotonic()
        self._maintain_venue(mono)
        with self._lock:
            self._emit_status_locked()
            lookups = [oid for oid in self.exec_state.unknown_orders()
                       if mono - self._last_lookup.get(oid, 0) >= self.unknown_lookup_every_s]
            lookups += [oid for oid in self._needs_lookup if mono - self._last_lookup.get(oid, 0) >= 1.0]
            resend = [o for o in self.exec_state.cancels_to_resend(self.clock())
                      if mono - self._last_cancel_sent.get(o.client_id, 0) >= CANCEL_RESEND_EVERY_S]
            # A cancel held for the order's minimum age (or taker delay) goes out here the first time.
            held = {o.client_id for o in resend if o.hold_until and o.client_id not in self._last_cancel_sent}
            for order in resend:
                self.exec_state.mark_cancel_sent(order.client_id)
                self._last_cancel_sent[order.client_id] = mono
            wanted, self._reconcile_wanted = self._reconcile_wanted, None
        for order_id in dict.fromkeys(lookups):
            self._lookup(order_id)
        if resend:
            for order in resend:
                why = "held until the order's minimum age / taker delay had passed" if order.client_id in held \
                    else "re-sent"
                self._log_order("cancel", order, f"{order.cancel_reason} ({why})")
            self._send_cancels([o.client_id for o in resend])
        if mono - self._last_prune_mono >= PRUNE_EVERY_S:
            self._last_prune_mono = mono
            self.prune(self.clock())
            memory.trim()  # what prune freed goes back to the kernel (polymm/memory.py), off the decision loop
        if self._journal is not None and mono - self._last_compact_mono >= COMPACT_JOURNAL_EVERY_S:
            self._last_compact_mono = mono
            self._journal.compact(self.clock())
        if wanted is None and mono - self._last_reconcile_mono >= self.reconcile_every_s:
            wanted = "periodic"
        if wanted is not None:
            self.reconcile(wanted)

    # ---- venue facts that change under us: order version, fee schedules, sideless maker fills ---------
    def _maintain_venue(self, mono: float) -> None:
        with self._lock:
            current = self.exec_state.current.condition_id if self.exec_state.current else None
            version_blocked = self._xstate.order_version_problem is not None
            pending = [oid for oid in self.exec_state.pending_sides() if mono - self._side_lookup.get(oid, 0) >= 1.0]
        if version_blocked and mono - self._last_version_probe >= limits.VERSION_PROBE_EVERY_S:
            # Blocked on an order version we cannot sign: ask again now and then, and resume when it is one we can.
            self._last_version_probe = mono
            self.gateway.refresh_version()
            with self._lock:
                self._xstate.order_version_problem = self.gateway.version_problem
        if current is not None and not self.exec_state.has_fee_schedule(current) \
                and mono - self._fee_attempt.get(current, -limits.FEE_RETRY_EVERY_S) >= limits.FEE_RETRY_EVERY_S:
            self._load_fee_schedule(current)
        for order_id in pending:
            self._side_lookup[order_id] = mono
            self._resolve_pending_side(order_id)

    def _load_fee_schedule(self, condition_id: str, warn: bool = True) -> None:
        """GET /clob-markets/{condition_id} once per market (its `fd`), like the SDK's market-info cache. A failure
        is a status warning for the market being traded (`warn`), a log line for an older one."""
        try:
            # One read gives the fee schedule and the order timing rules (minimum order age, taker delay).
            reader = getattr(self.gateway, "market_rules", None)
            rules = reader(condition_id) if reader is not None else None
            details = rules.fee if rules is not None else self.gateway.fee_details(condition_id)
            schedule = FeeSchedule(details.r, details.e, source="exchange market info")  # ValueError if absurd
        except (ExchangeError, ValueError) as err:
            self._fee_attempt[condition_id] = time.monotonic()
            words = (f"fee schedule of market {condition_id[:12]}… could not be read ({err}): fees counted with the "
                     f"conservative default rate {DEFAULT_SCHEDULE.rate:g}, exponent {DEFAULT_SCHEDULE.exponent:g}")
            if not warn:
                log.info("%s (an older market's fills)", words)
                return
            with self._lock:
                first = self._xstate.extra_warnings.get("fees") != words
                self._xstate.extra_warnings["fees"] = words
            if first:
                log.warning("%s; retrying every %.0f s", words, limits.FEE_RETRY_EVERY_S)
            return
        with self._lock:
            self.exec_state.set_fee_schedule(condition_id, schedule, rules)
            self._fee_attempt.pop(condition_id, None)
            current = self.exec_state.current
            if current is not None and current.condition_id == condition_id:
                self._xstate.extra_warnings.pop("fees", None)
        log.info("market %s taker fee schedule: rate %g, exponent %g; minimum order age %g s; taker delay %g ms",
                 condition_id, schedule.rate, schedule.exponent, rules.min_order_age_s if rules else 0.0,
                 (rules.taker_delay_s if rules else 0.0) * 1000)

    def _resolve_pending_side(self, order_id: str) -> None:
        """A maker fill of ours arrived without a side for an order we do not know: look the order up; when the
        exchange no longer has it, the matching rule gives the side. Until then the fill is kept pending."""
        try:
            row = self.gateway.get_order(order_id)
        except ExchangeError as err:
            log.warning("side lookup of order %s failed: %s; will retry", order_id, err)
            return
        side = None
        if row is not None:
            try:
                side = Side(decode_rest_order(row).side)
            except (ValueError, TypeError) as exc:
                log.warning("side lookup of order %s: unreadable answer (%s)", order_id, exc)
        now = self.clock()
        with self._lock:
            how = "the exchange's order"
            if side is None:
                side = self.exec_state.infer_side(order_id)
                how = "the matching rule (the order lookup gave no side)"
            if side is None:
                return
            changes = self.exec_state.resolve_side(order_id, side, now)
            self._side_lookup.pop(order_id, None)
            self._fill_changes(changes)
        log.warning("maker fill of order %s arrived without a side; side %s from %s: %d fill(s) added", order_id,
                    side.value, how, len(changes))
        self.wake.set()

    def prune(self, now: float) -> list[str]:
        """Bound memory over days of windows (run every minute by the maintenance thread): the order/fill state
        forgets done orders and settled markets (ExecutionState.prune: their P&L is kept in the summary), and the
        core the timings it kept for orders no longer known. Returns the condition ids forgotten."""
        state = self.exec_state
        with self._lock:
            # a forgotten market's fills leave the cash book too (their effect is in every later balance)
            forgotten = state.prune(now, on_forget=lambda _cond, fill_keys: self._cash.forget(fill_keys))
            for cond in forgotten:
                self._fee_attempt.pop(cond, None)
            for cid in [c for c in self._last_cancel_sent if not state.has_order(c)]:
                del self._last_cancel_sent[cid]
            for oid in [o for o in self._last_lookup if not state.has_order(o)]:
                del self._last_lookup[oid]
            self._needs_lookup = {o for o in self._needs_lookup if state.has_order(o)}
            for oid in [o for o in self._trades_checked_for if not state.has_order(o)]:
                del self._trades_checked_for[oid]
            pending = set(state.pending_sides())
            for oid in [o for o in self._side_lookup if o not in pending]:
                del self._side_lookup[oid]
        if forgotten:
            log.info("forgot %d settled market(s) (P&L kept in the summary): %s", len(forgotten), ", ".join(forgotten))
        return forgotten
