"""The execution core's read side and bookkeeping: what is open, what filled and what we hold, as thread-safe
copies (views), and the records that keep them (markets, tokens, the journal, events to the decision loop).

A part of ExecutionCore (trader/execution/core.py), which owns the state these methods read under its lock;
the order state itself is orders.OrderBook (by order id) and the fills fills.FillStore (by trade id).
"""
from __future__ import annotations

import logging

from polymm.trader.decision.positions import fold, pnl_summary
from polymm.trader.execution.fills import OrderInfo, TokenInfo
from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule, taker_fee
from polymm.trader.execution.limits import MAX_QUEUED_EVENTS, TRACK_AFTER_END_S
from polymm.trader.execution.order_journal import JournalOrder, OrderJournal
from polymm.trader.execution.orders import Order, Transition
from polymm.trader.model import (ExchangeStatus, FillChanged, FillView, Leg, MarketIdentity, OrderChanged, OrderView,
                                 PositionView, Side, StatusChanged)

log = logging.getLogger("polymm.trader.execution")


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


class StateViews:
    """Methods of ExecutionCore; see the module docstring."""

    # trader/metrics.py TraderCounters, or None: every order action logged below is also counted there
    metrics = None

    # ================================================================================================
    # views (thread-safe copies)
    # ================================================================================================
    def orders(self, working_only: bool = True, condition_id: str | None = None) -> list[OrderView]:
        with self._lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            return [o.view() for o in self._book.by_client.values()
                    if o.condition_id == cond and (not working_only or not o.state.terminal)]

    def all_orders(self, working_only: bool = True) -> list[OrderView]:
        with self._lock:
            return [o.view() for o in self._book.by_client.values() if not working_only or not o.state.terminal]

    def positions(self, condition_id: str | None = None) -> dict[tuple[str, Leg], PositionView]:
        """Positions of the current market (or `condition_id`), including *provisional* shares: matched
        according to the exchange's order report, with the trade report not in yet (see _holdings)."""
        with self._lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            if cond is None:
                return {}
            folded = fold(self._holdings(cond), self._resolutions)
        return {(s, leg): p for (c, s, leg), p in folded.items() if c == cond}

    def all_positions(self) -> dict[tuple[str, str, Leg], PositionView]:
        """(condition_id, strategy, leg) -> position, every market we have fills in."""
        with self._lock:
            return fold(self._holdings(), self._resolutions)

    def _holdings(self, condition_id: str | None = None) -> list[tuple[str, FillView]]:
        """The fill store's fills plus a provisional fill per order whose exchange-reported matched size
        exceeds what its trade reports cover.

        Why: the user channel can deliver an order's UPDATE (size_matched) a few ms before the trade. In
        between, the order is no longer working and the fill store has no fill yet; a decision made then
        would see neither and buy again (seen live on the sim). Orders + positions must never under-count
        what we hold. The provisional fill is priced at the order's price (a taker may do better) and
        charged the taker fee unless the order was post-only; the real trade replaces it, and a FAILED
        trade still reverses (it covers the shares too)."""
        out = self._fills.fills_with_market(condition_id)
        for order in self._book.by_client.values():
            if not order.order_id or order.filled <= 0:
                continue
            if condition_id is not None and order.condition_id != condition_id:
                continue
            gap = round(order.filled - self._fills.covered_shares(order.order_id), 6)
            if gap <= 1e-9:
                continue
            token = self._tokens.get(order.token_id)
            fee = 0.0 if order.post_only or token is None else taker_fee(gap, order.price, token.fee)
            out.append((order.condition_id, FillView(
                trade_id=f"pending:{order.order_id}", order_id=order.order_id, client_id=order.client_id,
                strategy=order.strategy, leg=order.leg, side=order.side, price=order.price, size=gap, fee=fee,
                role="pending", status="MATCHED", ts=order.updated_at)))
        return out

    def pending_resolution(self) -> list[tuple[MarketIdentity, dict[tuple[str, Leg], PositionView]]]:
        """Older markets (not the current one) with shares still held and no resolution yet."""
        with self._lock:
            folded = fold(self._holdings(), self._resolutions)
            current = self._current.condition_id if self._current else None
            out: dict[str, dict] = {}
            for (c, s, leg), p in folded.items():
                if c != current and c not in self._resolutions and abs(p.shares) > 1e-9 and c in self._markets:
                    out.setdefault(c, {})[(s, leg)] = p
            return [(self._markets[c], pos) for c, pos in out.items()]

    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]:
        with self._lock:
            return self._fills.fills(since, condition_id)

    def pnl(self) -> dict:
        with self._lock:
            return pnl_summary({**self._settled, **fold(self._holdings(), self._resolutions)}, self._resolutions)

    def fee_schedule(self, condition_id: str) -> FeeSchedule:
        """The market's taker fee schedule as the exchange publishes it (DEFAULT_SCHEDULE until read, or when
        it cannot be read: the status says so)."""
        with self._lock:
            return self._fee_schedules.get(condition_id, DEFAULT_SCHEDULE)

    def state(self) -> ExchangeStatus:
        with self._lock:
            self._xstate.tick(self.clock())
            return self._xstate.status()

    def poll_events(self) -> list[object]:
        with self._lock:
            self._emit_status_locked()
            events, self._events = self._events, []
            self.wake.clear()
            return events

    def heartbeat_counts(self) -> tuple[int, int] | None:
        """(accepted, failed) dead-man switch heartbeats since start, or None when none are sent."""
        heart = self._heart
        return None if heart is None else (heart.state.sent, heart.state.failed)

    @property
    def heartbeat_paused(self) -> bool:
        return self._heart is not None and self._heart._paused.is_set()

    def pause_heartbeats(self, paused: bool = True) -> None:
        """Fault drills and tests: stop (or resume) sending heartbeats; the exchange will cancel our orders."""
        if self._heart is not None:
            self._heart.pause(paused)

    # ================================================================================================
    # helpers
    # ================================================================================================
    def _register_market(self, market: MarketIdentity, now: float, journal: bool = True) -> None:
        with self._lock:
            known = market.condition_id in self._markets
            self._markets[market.condition_id] = market
            fee = self._fee_schedules.get(market.condition_id, DEFAULT_SCHEDULE)
            self._tokens[market.up_token] = TokenInfo(market.condition_id, Leg.UP, fee)
            self._tokens[market.down_token] = TokenInfo(market.condition_id, Leg.DOWN, fee)
            self._ticks.setdefault(market.up_token, market.tick_size)
            self._ticks.setdefault(market.down_token, market.tick_size)
        if not known and journal and self._journal is not None:
            self._journal.market(market, now)
        if not known and self.ledger is not None:
            self.ledger.window(market, ts=now)

    def _load_journal(self, journal: OrderJournal, now: float) -> None:
        contents = journal.load(now)
        with self._lock:
            self._journal_orders = contents.orders
            self._recorded_fills = set(contents.fills)
            for m in contents.markets.values():
                # Already in the journal: re-writing it would restamp it and keep it forever.
                self._register_market(m, now, journal=False)
            for cond, leg in contents.resolutions.items():
                self._resolutions[cond] = Leg(leg)
            # Only markets that may still matter are reconciled: unresolved ones and the last day.
            for cond, m in list(self._markets.items()):
                if cond in self._resolutions and now - m.window_end > 3600:
                    del self._markets[cond]
            # Unresolved markets we placed orders in may hold shares however long ago they ended: the first
            # reconciliation reads their trades too (later ones only follow the recent markets).
            ordered = {j.condition_id for j in self._journal_orders.values()}
            self._backfill = {c for c in self._markets if c in ordered and c not in self._resolutions}
        log.info("order journal: %d orders, %d fills, %d markets, %d resolutions", len(contents.orders),
                 len(contents.fills), len(contents.markets), len(contents.resolutions))
        if self.ledger is not None:
            # A kill -9 can lose the ledger's last queued records; the journal has every order before it was sent
            # (and the markets, registered above, and resolutions): give the ledger what it lacks (idempotent).
            for entry in contents.orders.values():
                self.ledger.order_recovered(entry)
            for cond, leg in contents.resolutions.items():
                self.ledger.resolution(cond, leg, ts=now)

    def _journal_order(self, order: Order) -> None:
        entry = JournalOrder(order.order_id or "", order.client_id, order.strategy, order.leg.value,
                             order.side.value, order.price, order.size, order.role.value, order.order_type.value,
                             order.post_only, order.reason, order.token_id, order.condition_id, order.created_at)
        self._journal_orders[entry.order_id] = entry
        if self._journal is not None:
            self._journal.order(entry)

    def _tracked_markets(self) -> list[str]:
        """Markets to reconcile and follow on the user channel: the current one, any with working orders,
        and any whose window ended less than TRACK_AFTER_END_S ago (settlement statuses still move)."""
        now = self.clock()
        with self._lock:
            working = {o.condition_id for o in self._book.working()}
            current = self._current.condition_id if self._current else None
            return [c for c, m in self._markets.items()
                    if c == current or c in working or now - m.window_end < TRACK_AFTER_END_S]

    def _token_leg(self, token_id: str) -> tuple[str, Leg] | None:
        info = self._tokens.get(token_id)
        return (info.condition_id, info.leg) if info else None

    def _order_info(self, order_id: str) -> OrderInfo | None:
        order = self._book.by_exchange.get(order_id)
        if order is not None:
            return OrderInfo(order.client_id, order.strategy, order.leg, order.side)
        j = self._journal_orders.get(order_id)
        if j is not None:
            return OrderInfo(j.client_id, j.strategy, Leg(j.leg), Side(j.side))
        return None

    def _push(self, event: object) -> None:
        # Nobody polling (a stalled loop) must not grow memory without bound; state views stay exact.
        if len(self._events) >= MAX_QUEUED_EVENTS:
            del self._events[: MAX_QUEUED_EVENTS // 10]
            log.warning("event queue full: dropped the oldest %d events (is the decision loop polling?)",
                        MAX_QUEUED_EVENTS // 10)
        self._events.append(event)
        self.wake.set()

    def _order_event(self, t: Transition | None) -> None:
        if t is None:
            return
        if t.before is not None and t.before == t.after:
            return
        self._push(OrderChanged(t.after, t.before.state if t.before else None))

    def _fill_event(self, fill: FillView, previous: str | None, log_it: bool = True, source: str = "stream",
                    restored: bool = False) -> None:
        """`source`: where the fill was learnt (the ledger records it). `restored`: a fill an earlier run recorded,
        found again at start (summarised by the caller)."""
        self._push(FillChanged(fill, previous))
        if self.ledger is not None:
            self.ledger.fill(fill, self._fills.condition_of(fill.trade_id, fill.order_id) or "", previous, source,
                             ts=self.clock())
        if previous is None and fill.trade_id not in self._recorded_fills:
            self._recorded_fills.add(fill.trade_id)
            if self._journal is not None:
                self._journal.fill(fill.trade_id, self.clock())
        level = logging.WARNING if fill.status == "FAILED" else logging.INFO
        # A restored fill was logged by the run that recorded it; the caller says how many came back.
        quiet = restored and fill.status != "FAILED"
        if not quiet and (log_it or previous is None or fill.status == "FAILED"):
            what = "fill" if previous is None else ("fill-reversed" if fill.status == "FAILED" else "fill-status")
            log.log(level, "%s trade=%s id=%s strategy=%s leg=%s side=%s price=%s size=%s fee=%s role=%s status=%s",
                    what, fill.trade_id, fill.order_id, fill.strategy, fill.leg.value, fill.side.value,
                    _fmt(fill.price), _fmt(fill.size), _fmt(fill.fee), fill.role, fill.status)
        self.wake.set()

    def _emit_status(self) -> None:
        with self._lock:
            self._emit_status_locked()

    def _emit_status_locked(self) -> None:
        if self.ledger is not None:
            if self.ledger.error:
                self._xstate.extra_warnings["ledger"] = self.ledger.error
            else:
                self._xstate.extra_warnings.pop("ledger", None)
        self._xstate.tick(self.clock())
        status = self._xstate.status()
        if status != self._last_status:
            if self._last_status is not None and status.warnings != self._last_status.warnings:
                for w in status.warnings:
                    if w not in self._last_status.warnings:
                        log.warning("exchange state: %s", w)
            self._last_status = status
            self._push(StatusChanged(status))

    def _log_order(self, action: str, order: Order, reason: str, level: int = logging.INFO,
                   cause: str | None = None) -> None:
        """One order action: a ledger row, a log line, and a metrics count (by action, strategy, leg, role;
        refusals and rejections also by cause: the exchange's error class, "refused_locally" for our own)."""
        if self.ledger is not None:
            self.ledger.order_action(action, order, reason, ts=self.clock())
        log.log(level, "order %s id=%s strategy=%s leg=%s side=%s price=%s size=%s type=%s post_only=%d reason=%s",
                action, order.order_id or order.client_id, order.strategy, order.leg.value, order.side.value,
                _fmt(order.price), _fmt(order.size), order.order_type.value, int(order.post_only), reason or "-")
        metrics = self.metrics
        if metrics is not None:
            metrics.order_event(action, order.strategy, order.leg.value, getattr(order.role, "value", str(order.role)))
            if action in ("refused", "rejected"):
                metrics.reject(cause or ("refused_locally" if action == "refused" else "rejected"))
