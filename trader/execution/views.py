"""The execution core's read side and what it tells others about each change.

Reads: the order/fill state's (state.py ExecutionState, the `StateReads` interface), passed through as they are,
and the core's own (exchange status, events, heartbeats). Reports: every order transition and fill change the
state returns becomes an event for the decision loop (poll_events), a ledger row (trader/ledger), an order-journal
line, a log line and a metrics count, here and nowhere else. A part of ExecutionCore (trader/execution/core.py).
"""
from __future__ import annotations

import logging

from polymm.trader.decision.fees import FeeSchedule
from polymm.trader.execution.limits import MAX_QUEUED_EVENTS
from polymm.trader.execution.order_journal import JournalOrder, OrderJournal
from polymm.trader.execution.orders import Transition
from polymm.trader.execution.state import DecisionReads, FillChange, _fmt
from polymm.trader.model import (ExchangeStatus, FillChanged, FillView, Leg, MarketIdentity, OrderChanged, OrderView,
                                 PositionView, StatusChanged)

log = logging.getLogger("polymm.trader.execution")


class StateViews:
    """Methods of ExecutionCore; see the module docstring."""

    # trader/metrics.py TraderCounters, or None: every order action logged below is also counted there
    metrics = None

    # ================================================================================================
    # reads of the order/fill state (ExecutionState; thread-safe, immutable answers)
    # ================================================================================================
    def orders(self, working_only: bool = True, condition_id: str | None = None) -> list[OrderView]:
        """Our orders in the current market (or `condition_id`); working ones only unless asked."""
        return self.exec_state.orders(working_only, condition_id)

    def all_orders(self, working_only: bool = True) -> list[OrderView]:
        return self.exec_state.all_orders(working_only)

    def positions(self, condition_id: str | None = None) -> dict[tuple[str, Leg], PositionView]:
        """Positions of the current market (or `condition_id`), provisional shares included (state.py)."""
        return self.exec_state.positions(condition_id)

    def all_positions(self) -> dict[tuple[str, str, Leg], PositionView]:
        return self.exec_state.all_positions()

    def pending_resolution(self) -> list[tuple[MarketIdentity, dict[tuple[str, Leg], PositionView]]]:
        """Older markets (not the current one) with shares still held and no resolution yet."""
        return self.exec_state.pending_resolution()

    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]:
        return self.exec_state.fills(since, condition_id)

    def pnl(self) -> dict:
        return self.exec_state.pnl()

    def fee_schedule(self, condition_id: str) -> FeeSchedule:
        """The market's taker fee schedule as the exchange publishes it (DEFAULT_SCHEDULE until read)."""
        return self.exec_state.fee_schedule(condition_id)

    def tick_size(self, token_id: str) -> float | None:
        return self.exec_state.tick_size(token_id)

    def decision_reads(self) -> tuple[DecisionReads, ExchangeStatus | None]:
        """What a decision reads, without the lock (issue 26): the order/fill state's `published` reads of the market
        being traded, and the exchange's status as last emitted. Both are immutable objects swapped in whole by the
        threads that change them. The status is emitted by every change of the exchange's state (errors, heartbeats,
        the user channel, accepted orders) and ticked at every poll_events() and maintenance pass, so its modes'
        timed ends are seen at most one decision late; a mode that outlives its end only restricts more, and
        place() judges every order against the live state anyway."""
        return self.exec_state.published, self._last_status

    # ================================================================================================
    # the core's own reads
    # ================================================================================================
    def state(self) -> ExchangeStatus:
        with self._lock:
            self._xstate.tick(self.clock())
            return self._xstate.status()

    def poll_events(self, wait: bool = True) -> list[object]:
        """The events since the last poll (and the exchange's status ticked). `wait=False` (the decision loop, after
        every decision) never waits for the lock: waiting there for a writer (the user channel applying a burst)
        held the next tick's decision up by 0.6-1.2 ms (issue 26). While a writer holds it the answer is then [] and
        `wake` stays set (a writer sets it with every event it adds), so the loop comes back for them at once."""
        if not self._lock.acquire(blocking=wait):
            return []
        try:
            self._emit_status_locked()
            events, self._events = self._events, []
            self.wake.clear()
            return events
        finally:
            self._lock.release()

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
    def _register_market(self, market: MarketIdentity, now: float) -> None:
        """Track a market; a new one is journaled and given to the ledger (a window we trade)."""
        if self.exec_state.register_market(market):
            if self._journal is not None:
                self._journal.market(market, now)
            if self.ledger is not None:
                self.ledger.window(market, ts=now)

    def _load_journal(self, journal: OrderJournal, now: float) -> None:
        contents = journal.load(now)
        registered = self.exec_state.restore(contents, now)
        log.info("order journal: %d orders, %d fills, %d markets, %d resolutions", len(contents.orders),
                 len(contents.fills), len(contents.markets), len(contents.resolutions))
        if self.ledger is not None:
            # Already in the journal: the markets are not re-written there (that would restamp them and keep
            # them forever), but the ledger gets them.
            for market in registered:
                self.ledger.window(market, ts=now)
            # A kill -9 can lose the ledger's last queued records; the journal has every order before it was sent
            # (and the markets, registered above, and resolutions): give the ledger what it lacks (idempotent).
            for entry in contents.orders.values():
                self.ledger.order_recovered(entry)
            for cond, leg in contents.resolutions.items():
                self.ledger.resolution(cond, leg, ts=now)

    def _journal_write(self, entry: JournalOrder | None) -> None:
        if entry is not None and self._journal is not None:
            self._journal.order(entry)

    def _tracked_markets(self) -> list[str]:
        """Markets to reconcile and follow on the user channel (the user stream asks at each (re)connect)."""
        return self.exec_state.tracked_markets(self.clock())

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

    def _fill_changes(self, changes: list[FillChange]) -> None:
        """Each fill change, then what it did to its order (the order they happened in)."""
        for c in changes:
            self._fill_event(c.fill, c.previous)
            self._order_event(c.order)

    def _fill_event(self, fill: FillView, previous: str | None, log_it: bool = True, source: str = "stream",
                    restored: bool = False) -> None:
        """`source`: where the fill was learnt (the ledger records it). `restored`: a fill an earlier run recorded,
        found again at start (summarised by the caller)."""
        condition_id = self.exec_state.condition_of(fill)
        self._push(FillChanged(fill, previous, condition_id))
        # Cash moves with the fill at once; a fill learnt over REST after a gap may already be in the last balance.
        self._cash.on_fill(fill, self.clock(), in_doubt=source != "stream")
        if self.ledger is not None:
            self.ledger.fill(fill, condition_id, previous, source, ts=self.clock())
        if previous is None and self.exec_state.note_recorded(fill.trade_id) and self._journal is not None:
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

    def _log_order(self, action: str, order: OrderView, reason: str, level: int = logging.INFO,
                   cause: str | None = None) -> None:
        """One order action: a ledger row, a log line, and a metrics count (by action, strategy, leg, role;
        refusals and rejections also by cause: the exchange's error class, "refused_locally" for our own).
        `order`: the order's view after the action (a transition's `after`)."""
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
