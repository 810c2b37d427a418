"""Our orders and their life cycle: a pure state machine (no I/O, no clock; callers pass `now`).

Identity: every order gets a client id before anything is sent, and the exchange's id (the EIP-712
order hash, computed locally when signing) before the submit. Because the exchange id is known before
the answer, an order whose submit timed out can still be recognised in later events and looked up.

States (model.OrderState):
    pending_submit -> live -> partially_filled -> filled
                   -> rejected                 -> canceled
                   -> unknown (timeout / 5xx / network error) -> whatever the exchange says it is
A cancel requested while the submit is unanswered is *deferred*: it is recorded and sent as soon as
the order is known to rest on the exchange (a cancel for an id the exchange has not seen yet would be
lost, and the order would then rest unprotected).

Exchange truth wins over our inference: events may arrive late or out of order, so terminal states
are sticky, fill amounts only grow, and only a "rejected" that *we* inferred (the exchange had no record
of the order after repeated lookups) can be revived by the exchange showing the order after all.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field, replace

from polymm.trader.model import Leg, OrderState, OrderType, OrderView, Role, Side, Want

_SIZE_EPS = 1e-9


def normalise_order_status(raw: str) -> str:
    """Exchange order status -> LIVE | MATCHED | CANCELED | INVALID | DELAYED | UNMATCHED.

    Production spells the same state several ways: the REST OpenAPI examples use `ORDER_STATUS_LIVE`,
    resolution cancels say `CANCELED_MARKET_RESOLVED`, and POST /order answers in lower case.
    """
    s = (raw or "").strip().upper()
    if s.startswith("ORDER_STATUS_"):
        s = s[len("ORDER_STATUS_"):]
    if s.startswith("CANCELED") or s.startswith("CANCELLED"):
        return "CANCELED"
    return s


_client_seq = itertools.count(1)
_client_prefix = f"{os.getpid():x}{os.urandom(2).hex()}"


def new_client_id(strategy: str) -> str:
    """Unique per process run: strategy, pid+random, sequence (so a restart never reuses an id)."""
    return f"{strategy}-{_client_prefix}-{next(_client_seq)}"


@dataclass
class Order:
    """One of our orders (mutable; owned by OrderBook under the core's lock)."""

    client_id: str
    strategy: str
    leg: Leg
    side: Side
    price: float
    size: float
    role: Role
    order_type: OrderType
    post_only: bool
    reason: str
    token_id: str
    condition_id: str
    created_at: float
    updated_at: float
    state: OrderState = OrderState.PENDING_SUBMIT
    order_id: str | None = None
    filled: float = 0.0
    cancel_reason: str | None = None  # a cancel was requested (sent, or deferred while submit is unanswered)
    cancel_sent: bool = False
    rejected_by_inference: bool = False
    error: str = ""  # last exchange message about this order, in words
    lookups: int = 0  # GET /data/order attempts while UNKNOWN
    # No cancel is sent before this (unix s): the market's minimum order age since the exchange accepted it, and
    # the taker delay of an order the exchange answered `delayed` (a delayed order cannot be cancelled). A cancel
    # asked for earlier is held, not dropped: it goes out when this passes.
    hold_until: float = 0.0

    def view(self) -> OrderView:
        state = self.state
        # A pending cancel shows as pending_cancel so the planner does not cancel (or replace) it twice.
        if self.cancel_reason is not None and not state.terminal:
            state = OrderState.PENDING_CANCEL
        # Built without the frozen dataclass's __init__ (an object.__setattr__ per field: ~6 us for these 19): every
        # write publishes a view of each working order of the market (ExecutionState._publish), on the user
        # channel's thread and the decision loop's alike (issue 26). The result is an ordinary, equal OrderView;
        # tests/trader/execution/test_orders.py checks it has every field.
        view = object.__new__(OrderView)
        view.__dict__.update(
            client_id=self.client_id, order_id=self.order_id, strategy=self.strategy, leg=self.leg, side=self.side,
            price=self.price, size=self.size, filled=round(self.filled, 6), state=state, role=self.role,
            order_type=self.order_type, post_only=self.post_only, created_at=self.created_at,
            updated_at=self.updated_at, reason=self.reason, condition_id=self.condition_id, token_id=self.token_id,
            cancel_reason=self.cancel_reason, hold_until=self.hold_until,
        )
        return view

    @property
    def remaining(self) -> float:
        return max(0.0, self.size - self.filled)

    @property
    def submit_unanswered(self) -> bool:
        return self.state in (OrderState.PENDING_SUBMIT, OrderState.UNKNOWN)


@dataclass(frozen=True)
class Transition:
    """What changed on one order (None when nothing did)."""

    before: OrderView | None
    after: OrderView
    send_cancel: bool = False  # a deferred cancel is now due: send it


@dataclass
class OrderBook:
    """All our orders, by client id and exchange id."""

    by_client: dict[str, Order] = field(default_factory=dict)
    by_exchange: dict[str, Order] = field(default_factory=dict)
    # The same orders by market (condition id -> client id -> order): what a publish of one market's reads walks,
    # not every order of every window still kept (new, adopt, prune and forget_market keep it in step).
    by_market: dict[str, dict[str, Order]] = field(default_factory=dict)

    # ---- creation ---------------------------------------------------------------------------------
    def new(self, want: Want, token_id: str, condition_id: str, now: float, client_id: str | None = None) -> Order:
        order = Order(
            client_id=client_id or new_client_id(want.strategy), strategy=want.strategy, leg=want.leg,
            side=want.side, price=want.price, size=want.size, role=want.role, order_type=want.order_type,
            post_only=want.post_only, reason=want.reason, token_id=token_id, condition_id=condition_id,
            created_at=now, updated_at=now,
        )
        self.by_client[order.client_id] = order
        self.by_market.setdefault(condition_id, {})[order.client_id] = order
        return order

    def adopt(self, order: Order) -> None:
        """Register an order rebuilt from the exchange or the journal (restart, reconciliation)."""
        self.by_client[order.client_id] = order
        self.by_market.setdefault(order.condition_id, {})[order.client_id] = order
        if order.order_id:
            self.by_exchange[order.order_id] = order

    def signed(self, client_id: str, order_id: str) -> None:
        order = self.by_client[client_id]
        order.order_id = order_id
        self.by_exchange[order_id] = order

    def alias(self, client_id: str, order_id: str) -> None:
        """The exchange answered with an order id other than our hash: its id is authoritative from now
        on (cancels, lookups); the hash stays a second key so early events still find the order."""
        order = self.by_client[client_id]
        order.order_id = order_id
        self.by_exchange[order_id] = order

    def get(self, key: str) -> Order | None:
        """By client id or exchange id."""
        return self.by_client.get(key) or self.by_exchange.get(key)

    def working(self) -> list[Order]:
        return [o for o in self.by_client.values() if not o.state.terminal]

    def in_market(self, condition_id: str):
        """Our orders in one market (a view: do not change the book while iterating)."""
        orders = self.by_market.get(condition_id)
        return orders.values() if orders is not None else ()

    def unknown(self) -> list[Order]:
        return [o for o in self.by_client.values() if o.state is OrderState.UNKNOWN]

    def prune(self, keep_terminal_s: float, now: float) -> None:
        """Forget terminal orders older than keep_terminal_s (their fills stay in the fill store)."""
        gone = set()
        for order in list(self.by_client.values()):
            if order.state.terminal and now - order.updated_at > keep_terminal_s:
                self._unindex(order)
                gone.add(id(order))
        if gone:
            # Every key of a pruned order goes, the order hash of an aliased order included.
            for key in [k for k, o in self.by_exchange.items() if id(o) in gone]:
                del self.by_exchange[key]

    def forget_market(self, condition_id: str) -> None:
        """Every order of a market, by every key (the market itself is forgotten)."""
        for order in list(self.in_market(condition_id)):
            self._unindex(order)
        for key in [k for k, o in self.by_exchange.items() if o.condition_id == condition_id]:
            del self.by_exchange[key]
        self.by_market.pop(condition_id, None)

    def _unindex(self, order: Order) -> None:
        del self.by_client[order.client_id]
        market = self.by_market.get(order.condition_id)
        if market is not None:
            market.pop(order.client_id, None)
            if not market:
                del self.by_market[order.condition_id]

    # ---- submit outcome ---------------------------------------------------------------------------
    def on_submit_accepted(self, client_id: str, status: str, filled: float, now: float) -> Transition:
        """POST /order answered success. `status`: live | matched | delayed | unmatched; `filled`: shares
        matched on entry (from makingAmount/takingAmount)."""
        order = self.by_client[client_id]
        before = order.view()
        order.filled = max(order.filled, min(order.size, filled))
        s = normalise_order_status(status)
        if order.state.terminal and not order.rejected_by_inference:
            if order.state is OrderState.CANCELED and order.remaining <= _SIZE_EPS:
                order.state = OrderState.FILLED  # the cancel event raced the fill report
            return self._done(order, before, now)
        order.rejected_by_inference = False
        if order.remaining <= _SIZE_EPS:
            order.state = OrderState.FILLED
        elif order.order_type in (OrderType.FAK, OrderType.FOK) and s != "DELAYED":
            # Marketable orders never rest: whatever did not match at once is killed.
            order.state = OrderState.CANCELED
        elif s == "DELAYED":
            # Taker-delay window: the order exists but its outcome is not final yet.
            order.state = OrderState.LIVE if order.filled <= _SIZE_EPS else OrderState.PARTIALLY_FILLED
        else:
            order.state = OrderState.PARTIALLY_FILLED if order.filled > _SIZE_EPS else OrderState.LIVE
        return self._done(order, before, now)

    def on_submit_rejected(self, client_id: str, message: str, now: float) -> Transition:
        """The exchange answered and refused the order (4xx or success:false with an error message)."""
        order = self.by_client[client_id]
        before = order.view()
        if not order.state.terminal:
            order.state = OrderState.REJECTED
            order.error = message
        return self._done(order, before, now)

    def on_cancelled_before_send(self, client_id: str, now: float) -> Transition:
        """The cancel came before the worker sent the order: it is never sent."""
        order = self.by_client[client_id]
        before = order.view()
        if order.state is OrderState.PENDING_SUBMIT and order.order_id is None:
            order.state = OrderState.CANCELED
            order.error = "cancelled before it was sent"
        return self._done(order, before, now)

    def on_submit_unknown(self, client_id: str, why: str, now: float) -> Transition:
        """Timeout, 5xx or network error: the order may or may not rest on the exchange."""
        order = self.by_client[client_id]
        before = order.view()
        if order.state is OrderState.PENDING_SUBMIT:
            order.state = OrderState.UNKNOWN
            order.error = why
        return self._done(order, before, now)

    def on_lookup_missing(self, client_id: str, max_lookups: int, now: float) -> Transition | None:
        """GET /data/order found nothing. Only after `max_lookups` misses (the exchange had every chance
        to show it) is the order taken as never accepted."""
        order = self.by_client[client_id]
        if order.state is not OrderState.UNKNOWN:
            return None
        order.lookups += 1
        if order.lookups < max_lookups:
            return None
        before = order.view()
        order.state = OrderState.REJECTED
        order.rejected_by_inference = True
        order.error = f"exchange has no record of the order after {order.lookups} lookups"
        return self._done(order, before, now)

    # ---- exchange reports -------------------------------------------------------------------------
    def on_exchange_order(self, order_id: str, status: str, size_matched: float | None, now: float,
                          original_size: float | None = None) -> Transition | None:
        """An order report (user-channel `order` event, GET /data/order, GET /data/orders row)."""
        order = self.by_exchange.get(order_id)
        if order is None:
            return None
        before = order.view()
        if size_matched is not None:
            order.filled = max(order.filled, min(order.size, size_matched))
        s = normalise_order_status(status)
        if order.state.terminal and not order.rejected_by_inference:
            # Sticky: a late PLACEMENT after CANCELLATION must not revive the order; fill amounts still grow.
            if order.state is OrderState.CANCELED and order.remaining <= _SIZE_EPS:
                order.state = OrderState.FILLED
            return self._done(order, before, now)
        order.rejected_by_inference = False
        if s == "CANCELED":
            order.state = OrderState.FILLED if order.remaining <= _SIZE_EPS else OrderState.CANCELED
        elif s == "INVALID":
            order.state = OrderState.REJECTED
            order.error = "exchange marked the order INVALID"
        elif order.remaining <= _SIZE_EPS:
            order.state = OrderState.FILLED
        elif s == "MATCHED" and order.order_type in (OrderType.FAK, OrderType.FOK):
            order.state = OrderState.CANCELED
        elif s in ("LIVE", "MATCHED", "DELAYED", "UNMATCHED"):
            order.state = OrderState.PARTIALLY_FILLED if order.filled > _SIZE_EPS else OrderState.LIVE
        return self._done(order, before, now)

    def on_fill(self, order_id: str, shares: float, now: float) -> Transition | None:
        """A fill of ours was seen (trade events can beat the order UPDATE event). `shares` is the total
        matched so far according to the fill store."""
        order = self.by_exchange.get(order_id)
        if order is None or shares <= order.filled + _SIZE_EPS:
            return None
        before = order.view()
        order.filled = min(order.size, shares)
        if not order.state.terminal or order.rejected_by_inference:
            order.rejected_by_inference = False
            if order.remaining <= _SIZE_EPS:
                order.state = OrderState.FILLED
            elif order.submit_unanswered or order.state is OrderState.LIVE:
                order.state = OrderState.PARTIALLY_FILLED
        return self._done(order, before, now)

    def on_missing_from_open_orders(self, order_id: str, now: float) -> Transition | None:
        """Reconciliation: the exchange's open orders do not list a live order of ours. It either filled
        or was cancelled (by us, the dead-man switch or resolution); the caller asks GET /data/order for
        the truth, this only marks what we can infer when that lookup also fails."""
        order = self.by_exchange.get(order_id)
        if order is None or order.state.terminal or order.submit_unanswered:
            return None
        before = order.view()
        order.state = OrderState.FILLED if order.remaining <= _SIZE_EPS else OrderState.CANCELED
        order.error = "not among the exchange's open orders"
        return self._done(order, before, now)

    # ---- cancels ----------------------------------------------------------------------------------
    def hold_cancels(self, client_id: str, until: float) -> None:
        """No cancel of this order before `until` (the market's minimum order age, a taker delay)."""
        order = self.by_client[client_id]
        order.hold_until = max(order.hold_until, until)

    def request_cancel(self, client_id: str, reason: str, now: float) -> tuple[str, Transition | None]:
        """-> ("send" | "deferred" | "held" | "noop", transition). "send": the caller sends the cancel now;
        "held": the order is too young to cancel (hold_until): the maintenance pass sends it once it may."""
        order = self.get(client_id)
        if order is None or order.state.terminal:
            return "noop", None
        if order.cancel_reason is not None and (order.cancel_sent or order.submit_unanswered):
            return "noop", None
        before = order.view()
        order.cancel_reason = reason
        if order.submit_unanswered:
            return "deferred", self._done(order, before, now)
        if now < order.hold_until:
            return "held", self._done(order, before, now)
        order.cancel_sent = True
        return "send", self._done(order, before, now)

    def cancels_to_resend(self, now: float | None = None) -> list[Order]:
        """Working orders whose cancel was requested but is not (or no longer) in flight, and may go out now."""
        return [o for o in self.by_client.values()
                if o.cancel_reason is not None and not o.cancel_sent and not o.state.terminal
                and not o.submit_unanswered and (now is None or now >= o.hold_until)]

    def mark_cancel_sent(self, client_id: str) -> None:
        self.by_client[client_id].cancel_sent = True

    def cancel_due(self, client_id: str, now: float | None = None) -> bool:
        """After a submit outcome: a deferred cancel must now be sent (marks it sent). Not while the order is held
        (hold_until): the maintenance pass sends it then."""
        order = self.by_client[client_id]
        if order.cancel_reason is None or order.cancel_sent or order.state.terminal or order.submit_unanswered:
            return False
        if now is not None and now < order.hold_until:
            return False
        order.cancel_sent = True
        return True

    def on_cancel_result(self, order_id: str, canceled: bool, reason: str, now: float) -> Transition | None:
        """DELETE /order answered: in `canceled`, or in `not_canceled` with a reason."""
        order = self.by_exchange.get(order_id)
        if order is None:
            return None
        before = order.view()
        if canceled:
            if not order.state.terminal:
                order.state = OrderState.FILLED if order.remaining <= _SIZE_EPS else OrderState.CANCELED
        else:
            # Not cancelled ("order already matched", "not found", cancel-only hiccup...): do not guess.
            # The cancel stays requested but unsent; the caller asks the exchange for the order and the
            # maintenance pass re-sends the cancel while the order is still working.
            order.error = reason
            order.cancel_sent = False
        return self._done(order, before, now)

    # ---- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _done(order: Order, before: OrderView, now: float) -> Transition:
        after = order.view()
        if after != before:
            order.updated_at = now
            after = replace(after, updated_at=now)
        return Transition(before=before, after=after)


def changed(t: Transition | None) -> bool:
    return t is not None and (t.before is None or t.before.state != t.after.state or t.before.filled != t.after.filled)
