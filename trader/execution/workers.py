"""The execution core's I/O to the exchange, run on its worker threads: sign + POST orders, DELETE cancels,
balance refreshes, and what each answer means for the order. A part of ExecutionCore (trader/execution/core.py).
"""
from __future__ import annotations

import logging
import time

from polymm.trader.decision.ticks import on_tick, round_price
from polymm.trader.execution.exchange_state import ExchangeError, reject_cause
from polymm.trader.execution.views import _fmt
from polymm.trader.execution.limits import GTD_CLOCK_MARGIN_S, GTD_EARLY_EXPIRY_S, GTD_MIN_LIFETIME_S, _TICK_RULE
from polymm.trader.execution.orders import Order
from polymm.trader.model import OrderState, OrderType, Side
from polymm.trader.venue.gateway import TAKER_DELAY_S, OrderVersionMismatch
from polymm.trader.venue.signing import UnsupportedOrderVersion, exchange_safe_size

log = logging.getLogger("polymm.trader.execution")


class SubmitWorkers:
    """Methods of ExecutionCore; see the module docstring."""

    # ================================================================================================
    # workers
    # ================================================================================================
    def _submit(self, client_id: str) -> None:
        try:
            self._submit_inner(client_id)
        except Exception:  # noqa: BLE001 - a bug here must not lose the order: treat as unknown outcome
            log.exception("order submit crashed; the order's outcome is unknown and will be looked up")
            now = self.clock()
            with self._lock:
                order = self._book.by_client.get(client_id)
                if order is not None and order.state is OrderState.PENDING_SUBMIT:
                    if order.order_id is None:
                        self._order_event(self._book.on_submit_rejected(client_id, "internal error before sending", now))
                    else:
                        self._order_event(self._book.on_submit_unknown(client_id, "internal error", now))

    def _submit_inner(self, client_id: str) -> None:
        now = self.clock()
        with self._lock:
            order = self._book.by_client[client_id]
            if order.cancel_reason is not None:
                self._order_event(self._book.on_cancelled_before_send(client_id, now))
                self._log_order("canceled", order, f"{order.cancel_reason} (before it was sent)")
                return
            market = self._markets[order.condition_id]
            tick = self._ticks.get(order.token_id, market.tick_size)
            # The tick may have changed between the decision and now: round towards the safe side.
            if not on_tick(order.price, tick):
                adjusted = round_price(order.price, tick, "down" if order.side is Side.BUY else "up")
                self._log_order("reprice", order, f"price {_fmt(order.price)} not on tick {_fmt(tick)} -> {_fmt(adjusted)}")
                order.price = adjusted
            marketable = order.order_type in (OrderType.FAK, OrderType.FOK)
            safe = exchange_safe_size(order.side, order.price, order.size, tick, marketable)
            if safe != order.size:
                self._log_order("resize", order, f"size {_fmt(order.size)} -> {_fmt(safe)}: the exchange's amount "
                                f"precision at price {_fmt(order.price)}")
                order.size = safe
            if order.size <= 0 or (not marketable and order.size < market.min_order_size):
                t = self._book.on_submit_rejected(client_id, "no size the exchange accepts at this price", now)
                self._log_order("refused", order, "no size the exchange accepts at this price", logging.WARNING)
                self._order_event(t)
                return
            order_type = order.order_type
            expiration = 0
            if order_type is OrderType.GTD:
                expiration = int(market.window_end) + GTD_EARLY_EXPIRY_S
                if expiration - now < GTD_MIN_LIFETIME_S + GTD_CLOCK_MARGIN_S:
                    # Too close to the end for a GTD; a GTC is cancelled explicitly before the close.
                    order_type = OrderType.GTC
                    order.order_type = OrderType.GTC
                    expiration = 0
            side, price, size, token = order.side, order.price, order.size, order.token_id
        version = None  # the exchange's current order version (the gateway knows it)
        for attempt in (1, 2):
            try:
                signed = self.gateway.sign(token, side, price, size, tick, neg_risk=market.neg_risk,
                                           expiration=expiration, version=version)
            except ValueError as err:  # invalid price/tick, or an order version we cannot sign: never sent
                with self._lock:
                    if isinstance(err, UnsupportedOrderVersion):
                        self._xstate.order_version_problem = self.gateway.version_problem or str(err)
                    self._order_event(self._book.on_submit_rejected(client_id, str(err), self.clock()))
                    self._log_order("refused", order, str(err), logging.WARNING)
                return
            with self._lock:
                if order.cancel_reason is not None:
                    # Cancelled while we were signing: still unsent, so it is never sent.
                    self._order_event(self._book.on_cancelled_before_send(client_id, self.clock()))
                    self._log_order("canceled", order, f"{order.cancel_reason} (before it was sent)")
                    return
                self._book.signed(client_id, signed.order_hash)
                self._journal_order(order)
                if attempt == 1:
                    self._log_order("submit", order, order.reason)
                else:  # the exchange changed order versions: worth a line at warning level
                    self._log_order("resubmit", order, f"re-signed for order version {signed.version}", logging.WARNING)
            if self.on_submit_sent is not None:
                self.on_submit_sent(client_id, time.time())
            try:
                result = self.gateway.post_order(signed, order_type.value, order.post_only)
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
        now = self.clock()
        with self._lock:
            if result.order_id and result.order_id.lower() != signed.order_hash.lower():
                # Believed never to happen (the id is the EIP-712 digest), but unverified for V2 in
                # production: follow the exchange's id rather than lose track of the order.
                self._book.alias(client_id, result.order_id)
                self._journal_order(order)
            filled = result.taking_amount if side is Side.BUY else result.making_amount
            # Amounts in the answer are decimal shares; guard against a base-unit (x1e6) answer.
            if filled > size * 1.0001:
                filled = filled / 1e6
            t = self._book.on_submit_accepted(client_id, result.status, filled, now)
            self._hold_cancels(order, result.status, now)
            self._xstate.on_order_accepted(now)
            t2 = self._book.on_fill(order.order_id, self._fills.matched_shares(order.order_id), now)
            self._order_event(t)
            if t2 is not None:
                self._order_event(t2)
            self._log_order(t.after.state.value if t2 is None else t2.after.state.value, order,
                            f"accepted status={result.status}")
            due = self._book.cancel_due(client_id, now)
        if due:
            self._log_order("cancel", order, f"{order.cancel_reason} (deferred until the submit was answered)")
            self._send_cancels([client_id])

    def _hold_cancels(self, order, status: str, now: float) -> None:
        """The market's minimum order age (its info's `oas`) holds any cancel until the order is that old; an order
        answered `delayed` (taker delay, `itode`) cannot be cancelled until the delay has passed. Under the lock."""
        rules = self._market_rules.get(order.condition_id)
        until = now + (rules.min_order_age_s if rules is not None else 0.0)
        if str(status).lower() == "delayed":
            delay = rules.taker_delay_s if rules is not None and rules.taker_delay_s else TAKER_DELAY_S
            until = max(until, now + delay)
        if until > now:
            self._book.hold_cancels(order.client_id, until)

    def _after_submit_error(self, client_id: str, err: ExchangeError) -> None:
        now = self.clock()
        action = None
        with self._lock:
            order = self._book.by_client[client_id]
            if err.outcome_unknown:
                t = self._book.on_submit_unknown(client_id, str(err), now)
                # First lookup after one interval: give the exchange a moment to finish what timed out.
                self._last_lookup[order.order_id] = time.monotonic()
                self._log_order("unknown", order, f"{err}; looking the order up on the exchange", logging.WARNING)
            else:
                t = self._book.on_submit_rejected(client_id, str(err), now)
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

    def _refresh_balance(self, order: Order) -> None:
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
        with self._lock:
            ids = [o.order_id for o in (self._book.by_client.get(c) for c in client_ids) if o is not None and o.order_id]
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
        self._apply_cancel_result(ids, result.canceled, result.not_canceled)

    def _cancels_failed(self, ids: list[str], err: ExchangeError | None, message: str = "") -> None:
        """The cancel request got no answer we can use: the orders stay working, cancel re-sent later."""
        now = self.clock()
        why = str(err) if err is not None else message
        with self._lock:
            for oid in ids:
                t = self._book.on_cancel_result(oid, False, why, now)
                if t is not None:
                    order = self._book.by_exchange[oid]
                    self._log_order("cancel-failed", order, f"{why}; will retry", logging.WARNING)
                    self._order_event(t)
            if err is not None:
                self._xstate.on_error(err, now)
            self._emit_status_locked()

    def _apply_cancel_result(self, ids: list[str], canceled, not_canceled: dict[str, str]) -> None:
        now = self.clock()
        canceled = set(canceled)
        with self._lock:
            for oid in ids:
                order = self._book.by_exchange.get(oid)
                if order is None:
                    continue
                if oid in canceled:
                    t = self._book.on_cancel_result(oid, True, "", now)
                    self._log_order("canceled", order, order.cancel_reason or "")
                else:
                    reason = not_canceled.get(oid, "not in the cancel answer")
                    t = self._book.on_cancel_result(oid, False, reason, now)
                    self._log_order("cancel-refused", order, f"{reason}; asking the exchange", logging.WARNING)
                    self._last_lookup.pop(oid, None)
                    self._needs_lookup.add(oid)
                if t is not None:
                    self._order_event(t)

    def _cancel_everything(self, reason: str, wait_s: float) -> None:
        """Cancel all our working orders and wait (bounded) until none is left working or unanswered."""
        self.cancel_all(reason)
        deadline = time.monotonic() + wait_s
        last_resend = 0.0
        while time.monotonic() < deadline:
            with self._lock:
                left = self._book.working()
                resend = self._book.cancels_to_resend(self.clock()) if time.monotonic() - last_resend >= 0.5 else []
                last_resend = time.monotonic() if resend else last_resend
                for order in resend:
                    self._book.mark_cancel_sent(order.client_id)
            if not left:
                return
            if resend:
                self._send_cancels([o.client_id for o in resend])
            time.sleep(0.05)
        with self._lock:
            left = [o.view() for o in self._book.working()]
        if left:
            log.warning("%d order(s) still working after %s: %s", len(left), reason,
                        ", ".join(f"{o.order_id or o.client_id}({o.state.value})" for o in left))
