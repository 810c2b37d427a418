"""The execution core's I/O to the exchange, run on its worker threads: sign + POST orders, DELETE cancels,
balance refreshes, and what each answer means for the order. A part of ExecutionCore (trader/execution/core.py).
"""
from __future__ import annotations

import logging
import time

from dataclasses import replace

from polymm.trader.execution.exchange_state import ExchangeError, reject_cause
from polymm.trader.execution.limits import _TICK_RULE
from polymm.trader.model import OrderView, Side
from polymm.trader.venue.gateway import OrderVersionMismatch
from polymm.trader.venue.signing import UnsupportedOrderVersion

log = logging.getLogger("polymm.trader.execution")


class SubmitWorkers:
    """Methods of ExecutionCore; see the module docstring."""

    # ================================================================================================
    # workers
    # ================================================================================================
    def _submit(self, client_id: str) -> None:
        if self._unsettled is not None:
            # A window's first order: its market is settled first, here (the loop hands settling to a worker), so
            # the journal names the market before the order and the user channel is subscribed before it is sent.
            self._settle_on_worker()
        try:
            self._submit_inner(client_id)
        except Exception:  # noqa: BLE001 - a bug here must not lose the order: treat as unknown outcome
            log.exception("order submit crashed; the order's outcome is unknown and will be looked up")
            with self._lock:
                self._order_event(self.exec_state.submit_crashed(client_id, self.clock()))

    def _submit_inner(self, client_id: str) -> None:
        now = self.clock()
        with self._lock:
            sub = self.exec_state.prepare_submit(client_id, now)
            for action, words in sub.notes:
                self._log_order(action, sub.order, words)
            if sub.ended is not None:
                self._order_event(sub.ended)
                self._log_order(sub.end_action, sub.ended.after, sub.end_reason,
                                logging.WARNING if sub.end_action == "refused" else logging.INFO)
                return
        order = sub.order
        version = None  # the exchange's current order version (the gateway knows it)
        for attempt in (1, 2):
            try:
                signed = self.gateway.sign(order.token_id, order.side, order.price, order.size, sub.tick,
                                           neg_risk=sub.neg_risk, expiration=sub.expiration, version=version)
            except ValueError as err:  # invalid price/tick, or an order version we cannot sign: never sent
                with self._lock:
                    if isinstance(err, UnsupportedOrderVersion):
                        self._xstate.order_version_problem = self.gateway.version_problem or str(err)
                    t = self.exec_state.reject(client_id, str(err), self.clock())
                    self._order_event(t)
                    self._log_order("refused", t.after, str(err), logging.WARNING)
                    self._emit_status_locked()
                return
            with self._lock:
                t = self.exec_state.cancelled_before_send(client_id, self.clock())
                if t is not None:
                    # Cancelled while we were signing: still unsent, so it is never sent.
                    self._order_event(t)
                    self._log_order("canceled", t.after, f"{t.after.cancel_reason} (before it was sent)")
                    return
                self._journal_write(self.exec_state.signed(client_id, signed.order_hash))
                order = replace(order, order_id=signed.order_hash)
                if attempt == 1:
                    self._log_order("submit", order, order.reason)
                else:  # the exchange changed order versions: worth a line at warning level
                    self._log_order("resubmit", order, f"re-signed for order version {signed.version}", logging.WARNING)
            if self.on_submit_sent is not None:
                self.on_submit_sent(client_id, time.time())
            try:
                result = self.gateway.post_order(signed, sub.order_type.value, order.post_only)
                break
            except OrderVersionMismatch as err:
                # The exchange moved to another order version (the gateway has re-read GET /version): one
                # re-sign and resubmit, as the SDK's _retry_on_version_update; never a loop of rejects.
                if attempt == 1 and err.resign_version is not None:
                    version = err.resign_version
                    continue
                with self._lock:
                    self._xstate.order_version_problem = self.gateway.version_problem
                self._after_submit_error(client_id, err)
                return
            except ExchangeError as err:
                self._after_submit_error(client_id, err)
                return
        self.gate.step_aside()  # the answer is applied after a decision in progress (trader/priority.py)
        now = self.clock()
        filled = result.taking_amount if order.side is Side.BUY else result.making_amount
        # Amounts in the answer are decimal shares; guard against a base-unit (x1e6) answer.
        if filled > order.size * 1.0001:
            filled = filled / 1e6
        with self._lock:
            accepted = self.exec_state.submit_accepted(client_id, signed.order_hash, result.order_id, result.status,
                                                       filled, now)
            self._journal_write(accepted.journal)
            self._xstate.on_order_accepted(now)
            self._emit_status_locked()  # cancel-only or rate limiting may have ended: decisions read the emitted status
            for t in accepted.transitions:
                self._order_event(t)
            last = accepted.transitions[-1].after
            self._log_order(last.state.value, last, f"accepted status={result.status}")
        if accepted.cancel_due:
            self._log_order("cancel", last, f"{last.cancel_reason} (deferred until the submit was answered)")
            self._send_cancels([client_id])

    def _after_submit_error(self, client_id: str, err: ExchangeError) -> None:
        now = self.clock()
        action = None
        with self._lock:
            if err.outcome_unknown:
                t = self.exec_state.submit_unknown(client_id, str(err), now)
                order = t.after
                # First lookup after one interval: give the exchange a moment to finish what timed out.
                self._last_lookup[order.order_id] = time.monotonic()
                self._log_order("unknown", order, f"{err}; looking the order up on the exchange", logging.WARNING)
            else:
                t = self.exec_state.reject(client_id, str(err), now)
                order = t.after
                action = self._xstate.on_error(err, now, order.leg)
                self._log_order("rejected", order, str(err), logging.WARNING, cause=reject_cause(err))
                # "Price (0.475) breaks minimum tick size rule: 0.01": the tick changed before we heard of
                # it; learn it from the rejection so the next order is priced right.
                match = _TICK_RULE.search(err.message)
                if match:
                    self._learn_tick(order.token_id, float(match.group(1)))
            self._order_event(t)
            self._emit_status_locked()
        if action == "refresh_balance":
            self._refresh_balance(order)

    def _refresh_balance(self, order: OrderView) -> None:
        """First 'not enough balance / allowance' on a leg: make the exchange refresh its cache once."""
        try:
            if order.side is Side.BUY:
                self.gateway.update_balance_allowance("COLLATERAL")
            else:
                self.gateway.update_balance_allowance("CONDITIONAL", order.token_id)
            log.warning("balance/allowance cache refreshed after a balance error on leg %s", order.leg.value)
        except ExchangeError as err:
            log.warning("balance/allowance refresh failed: %s", err)

    def _send_cancels(self, client_ids: list[str]) -> None:
        ids = self.exec_state.exchange_ids(client_ids)
        if not ids:
            return
        try:
            result = self.gateway.cancel_order(ids[0]) if len(ids) == 1 else self.gateway.cancel_orders(ids)
        except Exception as exc:  # noqa: BLE001 - an exchange error or a bug: either way the cancels are re-sent
            if isinstance(exc, ExchangeError):
                self._cancels_failed(ids, exc)
            else:
                log.exception("cancel of %s crashed; will retry", ", ".join(ids))
                self._cancels_failed(ids, None, f"internal error: {type(exc).__name__}: {exc}")
            return
        self.gate.step_aside()  # the answer is applied after a decision in progress (trader/priority.py)
        self._apply_cancel_result(ids, result.canceled, result.not_canceled)

    def _cancels_failed(self, ids: list[str], err: ExchangeError | None, message: str = "") -> None:
        """The cancel request got no answer we can use: the orders stay working, cancel re-sent later."""
        now = self.clock()
        why = str(err) if err is not None else message
        with self._lock:
            for oid in ids:
                t = self.exec_state.cancel_result(oid, False, why, now)
                if t is not None:
                    self._log_order("cancel-failed", t.after, f"{why}; will retry", logging.WARNING)
                    self._order_event(t)
            if err is not None:
                self._xstate.on_error(err, now)
            self._emit_status_locked()

    def _apply_cancel_result(self, ids: list[str], canceled, not_canceled: dict[str, str]) -> None:
        now = self.clock()
        canceled = set(canceled)
        with self._lock:
            for oid in ids:
                if oid in canceled:
                    t = self.exec_state.cancel_result(oid, True, "", now)
                    if t is None:
                        continue
                    self._log_order("canceled", t.after, t.after.cancel_reason or "")
                else:
                    reason = not_canceled.get(oid, "not in the cancel answer")
                    t = self.exec_state.cancel_result(oid, False, reason, now)
                    if t is None:
                        continue
                    self._log_order("cancel-refused", t.after, f"{reason}; asking the exchange", logging.WARNING)
                    self._last_lookup.pop(oid, None)
                    self._needs_lookup.add(oid)
                self._order_event(t)

    def _cancel_everything(self, reason: str, wait_s: float) -> None:
        """Cancel all our working orders and wait (bounded) until none is left working or unanswered."""
        self.cancel_all(reason)
        deadline = time.monotonic() + wait_s
        last_resend = 0.0
        state = self.exec_state
        while time.monotonic() < deadline:
            with self._lock:
                left = state.all_orders()
                resend = state.cancels_to_resend(self.clock()) if time.monotonic() - last_resend >= 0.5 else []
                last_resend = time.monotonic() if resend else last_resend
                for order in resend:
                    state.mark_cancel_sent(order.client_id)
            if not left:
                return
            if resend:
                self._send_cancels([o.client_id for o in resend])
            time.sleep(0.05)
        left = state.all_orders()
        if left:
            log.warning("%d order(s) still working after %s: %s", len(left), reason,
                        ", ".join(f"{o.order_id or o.client_id}({o.state.value})" for o in left))
