"""The execution core's order and fill state, as an object of its own: what is open, what filled, what we hold.

`ExecutionState` owns our orders (orders.OrderBook, by client and exchange id), our fills (fills.FillStore, by
trade id), the markets we trade or still hold (identity, tick, fee schedule per token), resolutions, the order
journal's attributions and the P&L of markets already forgotten. It does no I/O, knows no thread, socket or clock
(callers pass `now`), and is the ONLY writer of that state: the execution core (core.py) and its parts
(workers.py, sync.py) change it through the methods below and turn what they return (order transitions, fill
changes) into events, ledger rows, journal lines, log lines and metrics (outbox.py). So each part can be tested
without the others: tests/trader/execution/test_exec_state.py drives this class alone.

The interface, by who uses it:

- Readers (the engine, the control handler, metrics, the resolution watcher; the core passes these through, see
  `StateReads`): `orders`, `all_orders`, `positions`, `all_positions`, `pending_resolution`, `fills`, `pnl`,
  `fee_schedule`, `tick_size`, `current`. Every read returns values the caller owns and that never change: frozen
  views (model.OrderView, FillView, PositionView) in fresh containers; no read hands out a live object.
- Markets (core life cycle, fee and tick watchers): `set_identity`, `register_market`, `set_current`, `restore`
  (the order journal after a restart), `set_tick`, `set_fee_schedule`, `resolve`, `tracked_markets`,
  `reconcile_scope`.
- Intents (the decision thread, through ExecutionCore.place/cancel/cancel_all): `new_order`, `refusal`, `reject`,
  `request_cancel`, `request_cancel_all`, `cancel_unsent`.
- Submits and cancels (the worker threads, workers.py): `prepare_submit`, `cancelled_before_send`, `signed`,
  `submit_accepted`, `submit_unknown`, `submit_crashed`, `exchange_ids`, `cancel_result`, `cancel_due`,
  `cancels_due`, `cancels_to_resend`, `mark_cancel_sent`.
- The exchange's reports (user channel, reconciliation, lookups: sync.py): `apply_trade`, `apply_order_report`,
  `reconcile`, `order_state`, `exchange_order`, `lookup_missing`, `missing_from_open_orders`, `pending_sides`,
  `infer_side`, `resolve_side`, `note_recorded`, `prune`.

Threads: every method takes `lock` (an RLock), so the object is safe on its own; the core holds the same lock
across a few compound steps that also read its exchange state (place: the exchange's refusal, then the record).
The decision loop's reads take no lock (issue 26): every write that can change what a decision reads ends by
publishing `published`, an immutable `DecisionReads` of the market being traded (its working orders' views, its
folded positions, its fee schedule), built once by the writing thread (a worker, the user channel) instead of at
every decision; `orders()`, `positions()` and `fee_schedule()` of that market answer from it without the lock, and
the engine reads it whole (ExecutionCore.decision_reads). A reader sees the state before or after a write, never
half of one: the object is swapped in by one assignment. Writes that cannot change it (a cancel marked sent, a fill
noted in the journal, a tick, our identity) take the plain lock.

Over 600 lines on purpose: one class whose whole point is to be the single writer of this state, so its interface
(each method a short, documented step) is kept in one place rather than spread over files that share its fields.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Mapping, Protocol, runtime_checkable

from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule, taker_fee
from polymm.trader.decision.positions import fold, pnl_summary
from polymm.trader.decision.ticks import on_tick, round_price
from polymm.trader.execution import reconcile as reconcile_mod
from polymm.trader.execution.fills import FillStore, OrderInfo, TokenInfo, TradeReport
from polymm.trader.execution.limits import (FORGET_MARKET_AFTER_WINDOWS, GTD_CLOCK_MARGIN_S, GTD_EARLY_EXPIRY_S,
                                            GTD_MIN_LIFETIME_S, KEEP_DONE_ORDERS_WINDOWS, SETTLED,
                                            TRACK_AFTER_END_WINDOWS)
from polymm.trader.execution.order_journal import JournalContents, JournalOrder
from polymm.trader.execution.orders import Order, OrderBook, Transition
from polymm.trader.model import (FillView, Leg, MarketIdentity, OrderState, OrderType, OrderView, PositionView, Side,
                                 Want)
from polymm.trader.venue.gateway import TAKER_DELAY_S
from polymm.trader.venue.signing import exchange_safe_size
from polymm.trader.venue.user_wire import OrderReport


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


@runtime_checkable
class StateReads(Protocol):
    """What the engine, the control handler, metrics and the resolution watcher read of our orders and fills
    (ExecutionState, and ExecutionCore which passes them through). Every answer is the caller's to keep."""

    def orders(self, working_only: bool = True, condition_id: str | None = None) -> list[OrderView]: ...
    def all_orders(self, working_only: bool = True) -> list[OrderView]: ...
    def positions(self, condition_id: str | None = None) -> dict[tuple[str, Leg], PositionView]: ...
    def all_positions(self) -> dict[tuple[str, str, Leg], PositionView]: ...
    def pending_resolution(self) -> list[tuple[MarketIdentity, dict[tuple[str, Leg], PositionView]]]: ...
    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]: ...
    def pnl(self) -> dict: ...
    def fee_schedule(self, condition_id: str) -> FeeSchedule: ...
    def tick_size(self, token_id: str) -> float | None: ...


@dataclass(frozen=True)
class DecisionReads:
    """What a decision reads of our state, for the market being traded (`condition_id`; None before any), as of
    the last write: its working orders, its positions (provisional shares included, see _holdings; read-only) and
    its fee schedule. Immutable and shared: published whole after each write, read without the lock."""

    condition_id: str | None
    orders: tuple[OrderView, ...]
    positions: Mapping[tuple[str, Leg], PositionView]
    fee: FeeSchedule


NOTHING_YET = DecisionReads(None, (), MappingProxyType({}), DEFAULT_SCHEDULE)


@dataclass(frozen=True)
class FillChange:
    """One fill that appeared or moved (`previous`: its status before, None when new), and what it did to its
    order (None: nothing)."""

    fill: FillView
    previous: str | None
    order: Transition | None = None


@dataclass(frozen=True)
class Submission:
    """What a worker sends for one order (prepare_submit), or why it sends nothing (`ended`)."""

    order: OrderView  # as it goes out: price on the current tick, size the exchange's precision accepts
    notes: tuple[tuple[str, str], ...] = ()  # (action, words) of each adjustment, for the order log
    ended: Transition | None = None  # the order ended here, never sent (cancelled meanwhile, no acceptable size)
    end_action: str = ""  # "canceled" | "refused"
    end_reason: str = ""
    tick: float = 0.0
    neg_risk: bool = False
    order_type: OrderType = OrderType.GTC  # a GTD too close to the window's end goes as a GTC
    expiration: int = 0  # GTD: unix seconds; 0 otherwise


@dataclass(frozen=True)
class Accepted:
    """The exchange accepted a submit: the order's transitions (the answer, then any fill it reported), the journal
    entry to re-write when the exchange named the order differently, and whether a deferred cancel is now due."""

    transitions: tuple[Transition, ...]
    journal: JournalOrder | None
    cancel_due: bool


class ExecutionState:
    """Our orders, fills, markets and positions; see the module docstring for who calls what."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._book = OrderBook()
        self._markets: dict[str, MarketIdentity] = {}
        self._current: MarketIdentity | None = None
        self._tokens: dict[str, TokenInfo] = {}
        self._ticks: dict[str, float] = {}
        self._resolutions: dict[str, Leg] = {}
        self._fee_schedules: dict[str, FeeSchedule] = {}
        # Each market's minimum order age and taker delay (venue/gateway.py MarketRules), read with its fee schedule.
        self._market_rules: dict = {}
        # The journal's attribution of exchange order ids to our strategies (an earlier run's orders, and ours).
        self._journal_orders: dict[str, JournalOrder] = {}
        # Trade ids of fills recorded in the journal (by an earlier run, or this one): a restarted trader finds
        # them again on the exchange, and they are not "missed by the user channel".
        self._recorded_fills: set[str] = set()
        # P&L of markets forgotten by prune(), one bucket per strategy and leg: (SETTLED, strategy, leg) -> position
        self._settled: dict[tuple[str, str, Leg], PositionView] = {}
        # Unresolved markets with journaled orders, found at load: the first reconciliation reads their trades
        # even when their window ended long ago, so a restart never loses a position awaiting resolution.
        self._backfill: set[str] = set()
        self._fills = FillStore(self._order_info, self._tokens.get)
        self._writes = 0  # nesting depth of _writing() (under the lock)
        self.published: DecisionReads = NOTHING_YET

    @contextmanager
    def _writing(self):
        """The lock, for a write that can change what `published` shows: re-published when the outermost one ends."""
        with self.lock:
            self._writes += 1
            try:
                yield
            finally:
                self._writes -= 1
                if not self._writes:
                    self._publish()

    def writing(self):
        """The lock, for several writes that publish once, when the outermost ends (a user-channel frame of many
        events: one DecisionReads instead of one per event, each folding the market's holdings)."""
        return self._writing()

    def _publish(self) -> None:
        """Build and swap in the current market's DecisionReads (under the lock, on the writing thread)."""
        current = self._current
        if current is None:
            self.published = NOTHING_YET
            return
        cond = current.condition_id
        orders = tuple(o.view() for o in self._book.in_market(cond) if not o.state.terminal)
        folded = fold(self._holdings(cond), self._resolutions)
        positions = MappingProxyType({(s, leg): p for (c, s, leg), p in folded.items() if c == cond})
        self.published = DecisionReads(cond, orders, positions, self._fee_schedules.get(cond, DEFAULT_SCHEDULE))

    # ================================================================================================
    # reads (StateReads): immutable answers
    # ================================================================================================
    @property
    def current(self) -> MarketIdentity | None:
        """The market being traded (set by set_current); None before."""
        return self._current

    def orders(self, working_only: bool = True, condition_id: str | None = None) -> list[OrderView]:
        """Our orders in the current market (or `condition_id`); working ones only unless asked."""
        reads = self.published
        if working_only and (condition_id is None or condition_id == reads.condition_id):
            return list(reads.orders)  # the current market's working orders: no lock
        with self.lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            return [o.view() for o in self._book.in_market(cond) if not working_only or not o.state.terminal]

    def all_orders(self, working_only: bool = True) -> list[OrderView]:
        with self.lock:
            return [o.view() for o in self._book.by_client.values() if not working_only or not o.state.terminal]

    def positions(self, condition_id: str | None = None) -> dict[tuple[str, Leg], PositionView]:
        """Positions of the current market (or `condition_id`), including *provisional* shares: matched
        according to the exchange's order report, with the trade report not in yet (see _holdings)."""
        reads = self.published
        if condition_id is None or condition_id == reads.condition_id:
            return dict(reads.positions)  # the current market's: no lock
        with self.lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            if cond is None:
                return {}
            folded = fold(self._holdings(cond), self._resolutions)
        return {(s, leg): p for (c, s, leg), p in folded.items() if c == cond}

    def all_positions(self) -> dict[tuple[str, str, Leg], PositionView]:
        """(condition_id, strategy, leg) -> position, every market we have fills in."""
        with self.lock:
            return fold(self._holdings(), self._resolutions)

    def pending_resolution(self) -> list[tuple[MarketIdentity, dict[tuple[str, Leg], PositionView]]]:
        """Older markets (not the current one) with shares still held and no resolution yet."""
        with self.lock:
            current = self._current.condition_id if self._current else None
            out = []
            # Market by market (a position is one market's fills in order): only the unresolved older markets' fills
            # are folded, not every fill kept for a day (the decision loop asks after a rotation and once a second).
            for c, market in self._markets.items():
                if c == current or c in self._resolutions:
                    continue
                holdings = self._holdings(c)
                if not holdings:
                    continue
                held = {(s, leg): p for (_, s, leg), p in fold(holdings, self._resolutions).items()
                        if abs(p.shares) > 1e-9}
                if held:
                    out.append((market, held))
            return out

    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]:
        with self.lock:
            return self._fills.fills(since, condition_id)

    def pnl(self) -> dict:
        """P&L of every market, forgotten ones and payouts included (decision/positions.py pnl_summary)."""
        with self.lock:
            return pnl_summary({**self._settled, **fold(self._holdings(), self._resolutions)}, self._resolutions)

    def fee_schedule(self, condition_id: str) -> FeeSchedule:
        """The market's taker fee schedule as the exchange publishes it (DEFAULT_SCHEDULE until read, or when
        it cannot be read: the status says so)."""
        reads = self.published
        if condition_id == reads.condition_id:
            return reads.fee
        with self.lock:
            return self._fee_schedules.get(condition_id, DEFAULT_SCHEDULE)

    def tick_size(self, token_id: str) -> float | None:
        with self.lock:
            return self._ticks.get(token_id)

    def market(self, condition_id: str) -> MarketIdentity | None:
        with self.lock:
            return self._markets.get(condition_id)

    def sizes(self) -> dict[str, int]:
        """How much is kept (memory stays bounded over weeks: prune)."""
        with self.lock:
            return {"orders": len(self._book.by_client), "exchange_ids": len(self._book.by_exchange),
                    "fills": len(self._fills), "markets": len(self._markets), "tokens": len(self._tokens),
                    "journal_orders": len(self._journal_orders), "settled": len(self._settled)}

    def known_markets(self) -> set[str]:
        with self.lock:
            return set(self._markets)

    def has_order(self, key: str) -> bool:
        """Whether an order is kept under this client id or exchange id."""
        with self.lock:
            return self._book.get(key) is not None

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
        orders = self._book.by_client.values() if condition_id is None else self._book.in_market(condition_id)
        for order in orders:
            if not order.order_id or order.filled <= 0:
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

    # ================================================================================================
    # markets
    # ================================================================================================
    def set_identity(self, our_owner: str, our_address: str) -> None:
        """Our API key and funder: trades of ours on orders we do not know are still recognised as ours."""
        with self.lock:
            self._fills.set_identity(our_owner, our_address)

    def register_market(self, market: MarketIdentity) -> bool:
        """Track a market (its tokens, fee schedule, tick). Returns True when it was not known."""
        with self._writing():
            known = market.condition_id in self._markets
            self._markets[market.condition_id] = market
            fee = self._fee_schedules.get(market.condition_id, DEFAULT_SCHEDULE)
            self._tokens[market.up_token] = TokenInfo(market.condition_id, Leg.UP, fee)
            self._tokens[market.down_token] = TokenInfo(market.condition_id, Leg.DOWN, fee)
            self._ticks.setdefault(market.up_token, market.tick_size)
            self._ticks.setdefault(market.down_token, market.tick_size)
            return not known

    def set_current(self, market: MarketIdentity) -> MarketIdentity | None:
        """Trade `market` from now on (registered first); older markets stay tracked. Returns the previous one."""
        with self._writing():
            self.register_market(market)
            previous, self._current = self._current, market
            return previous

    def restore(self, contents: JournalContents, now: float) -> list[MarketIdentity]:
        """What the order journal of earlier runs knew (attributions, recorded fills, markets, resolutions).
        Returns the markets it registered (the caller gives them to the ledger)."""
        registered = []
        with self._writing():
            self._journal_orders = dict(contents.orders)
            self._recorded_fills = set(contents.fills)
            for m in contents.markets.values():
                if self.register_market(m):
                    registered.append(m)
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
        return registered

    def backfill_markets(self) -> list[str]:
        """Unresolved markets from the journal that the next reconciliation reads in full."""
        with self.lock:
            return sorted(self._backfill)

    def set_tick(self, token_id: str, tick: float) -> float | None:
        """A token's tick from now on (`tick_size_change`, or learnt from a rejection). Returns the previous one."""
        with self.lock:
            old = self._ticks.get(token_id)
            self._ticks[token_id] = float(tick)
            return old

    def has_fee_schedule(self, condition_id: str) -> bool:
        with self.lock:
            return condition_id in self._fee_schedules

    def set_fee_schedule(self, condition_id: str, schedule: FeeSchedule, rules=None) -> None:
        """The market's fee schedule as read from the exchange: fills and provisional fills are charged by it.
        `rules`: the same read's order timing rules (MarketRules: minimum order age, taker delay), when given."""
        with self._writing():
            self._fee_schedules[condition_id] = schedule
            if rules is not None:
                self._market_rules[condition_id] = rules
            for token, info in list(self._tokens.items()):
                if info.condition_id == condition_id:
                    self._tokens[token] = TokenInfo(info.condition_id, info.leg, schedule)

    def resolve(self, condition_id: str, winning_leg: Leg) -> bool:
        """The market resolved: positions still held are realised at 1/0. False when already known."""
        with self._writing():
            if self._resolutions.get(condition_id) is winning_leg:
                return False
            self._resolutions[condition_id] = winning_leg
            return True

    def tracked_markets(self, now: float) -> list[str]:
        """Markets to reconcile and follow on the user channel: the current one, any with working orders,
        and any whose window ended less than TRACK_AFTER_END_WINDOWS windows ago (settlement statuses still move)."""
        with self.lock:
            working = {o.condition_id for o in self._book.working()}
            current = self._current.condition_id if self._current else None
            return [c for c, m in self._markets.items()
                    if c == current or c in working
                    or now - m.window_end < TRACK_AFTER_END_WINDOWS * max(1, m.window_end - m.window_start)]

    def reconcile_scope(self, now: float) -> dict[str, MarketIdentity]:
        """The markets a reconciliation reads: the tracked ones and the journal's backfill."""
        with self.lock:
            tracked = self.tracked_markets(now)
            backfill = [c for c in self._backfill if c in self._markets and c not in tracked]
            return {c: self._markets[c] for c in [*tracked, *backfill]}

    # ================================================================================================
    # intents (the decision thread)
    # ================================================================================================
    def new_order(self, want: Want, now: float) -> OrderView:
        """Record an order for the current market (pending submit). RuntimeError before any market is set."""
        with self._writing():
            market = self._current
            if market is None:
                raise RuntimeError("place() before start()")
            return self._book.new(want, market.token(want.leg), market.condition_id, now).view()

    def refusal(self, client_id: str, now: float) -> str | None:
        """Why a new order cannot go out under its market's rules (None: it can). The exchange's own state
        (cancel-only, blocked legs...) is the core's to judge."""
        with self.lock:
            order = self._book.by_client[client_id]
            market = self._markets[order.condition_id]
            if order.order_type in (OrderType.FAK, OrderType.FOK) and order.post_only:
                return "post-only is only possible for GTC/GTD orders"
            if not (order.size > 0):
                return f"size {order.size} is not positive"
            if order.order_type in (OrderType.GTC, OrderType.GTD) and order.size < market.min_order_size:
                return f"size {_fmt(order.size)} below the market minimum {_fmt(market.min_order_size)}"
            tick = self._ticks.get(order.token_id, market.tick_size)
            if not (tick <= order.price <= 1 - tick):
                return f"price {_fmt(order.price)} outside [{_fmt(tick)}, {_fmt(1 - tick)}]"
            if now >= market.window_end:
                return "market window has ended"
            return None

    def reject(self, client_id: str, reason: str, now: float) -> Transition:
        """The order will not be (or was not) accepted: refused locally, or rejected by the exchange."""
        with self._writing():
            return self._book.on_submit_rejected(client_id, reason, now)

    def request_cancel(self, key: str, reason: str, now: float) -> tuple[str, Transition | None]:
        """Cancel one order (client or exchange id): ("send" | "deferred" | "noop", transition). "send": the caller
        sends the cancel now; "deferred": the submit is unanswered, the cancel goes once it is known."""
        with self._writing():
            return self._book.request_cancel(key, reason, now)

    def request_cancel_all(self, reason: str, now: float) -> list[tuple[str, Transition]]:
        """request_cancel for every working order (all markets); noops left out."""
        out = []
        with self._writing():
            for order in self._book.working():
                action, t = self._book.request_cancel(order.client_id, reason, now)
                if action != "noop":
                    out.append((action, t))
        return out

    def cancel_unsent(self, client_ids: list[str]) -> None:
        """These cancels were not sent after all (no worker pool): the maintenance pass sends them."""
        with self.lock:
            for cid in client_ids:
                order = self._book.by_client.get(cid)
                if order is not None:
                    order.cancel_sent = False

    # ================================================================================================
    # submits and cancels (the worker threads)
    # ================================================================================================
    def prepare_submit(self, client_id: str, now: float) -> Submission:
        """The order as it goes out now: its price rounded to the token's current tick towards the safe side (the
        tick may have changed since the decision), its size to what the exchange's amount precision accepts, a
        GTD too close to the window's end sent as a GTC. Or why it ends here unsent (`ended`)."""
        with self._writing():
            order = self._book.by_client[client_id]
            if order.cancel_reason is not None:
                t = self._book.on_cancelled_before_send(client_id, now)
                return Submission(t.after, ended=t, end_action="canceled",
                                  end_reason=f"{order.cancel_reason} (before it was sent)")
            market = self._markets[order.condition_id]
            tick = self._ticks.get(order.token_id, market.tick_size)
            notes = []
            if not on_tick(order.price, tick):
                adjusted = round_price(order.price, tick, "down" if order.side is Side.BUY else "up")
                notes.append(("reprice", f"price {_fmt(order.price)} not on tick {_fmt(tick)} -> {_fmt(adjusted)}"))
                order.price = adjusted
            marketable = order.order_type in (OrderType.FAK, OrderType.FOK)
            safe = exchange_safe_size(order.side, order.price, order.size, tick, marketable)
            if safe != order.size:
                notes.append(("resize", f"size {_fmt(order.size)} -> {_fmt(safe)}: the exchange's amount "
                                        f"precision at price {_fmt(order.price)}"))
                order.size = safe
            if order.size <= 0 or (not marketable and order.size < market.min_order_size):
                why = "no size the exchange accepts at this price"
                t = self._book.on_submit_rejected(client_id, why, now)
                return Submission(t.after, tuple(notes), ended=t, end_action="refused", end_reason=why)
            expiration = 0
            if order.order_type is OrderType.GTD:
                expiration = int(market.window_end) + GTD_EARLY_EXPIRY_S
                if expiration - now < GTD_MIN_LIFETIME_S + GTD_CLOCK_MARGIN_S:
                    # Too close to the end for a GTD; a GTC is cancelled explicitly before the close.
                    order.order_type = OrderType.GTC
                    expiration = 0
            return Submission(order.view(), tuple(notes), tick=tick, neg_risk=market.neg_risk,
                              order_type=order.order_type, expiration=expiration)

    def cancelled_before_send(self, client_id: str, now: float) -> Transition | None:
        """Signed but not sent yet: when a cancel came meanwhile, the order ends here, never sent (the transition);
        None when it is still to go."""
        with self._writing():
            if self._book.by_client[client_id].cancel_reason is None:
                return None
            return self._book.on_cancelled_before_send(client_id, now)

    def signed(self, client_id: str, order_hash: str) -> JournalOrder:
        """The order is signed: known by its exchange id (the EIP-712 hash) from now on. Returns its journal entry
        (the caller writes it before sending: a restart then knows whose order it was)."""
        with self._writing():
            self._book.signed(client_id, order_hash)
            return self._attribute(self._book.by_client[client_id])

    def submit_accepted(self, client_id: str, order_hash: str, answer_id: str, status: str, filled: float,
                        now: float) -> Accepted:
        """POST /order answered success (`answer_id`: the order id in the answer; `filled`: shares matched on entry)."""
        with self._writing():
            order = self._book.by_client[client_id]
            entry = None
            if answer_id and answer_id.lower() != order_hash.lower():
                # Believed never to happen (the id is the EIP-712 digest), but unverified for V2 in
                # production: follow the exchange's id rather than lose track of the order.
                self._book.alias(client_id, answer_id)
                entry = self._attribute(order)
            transitions = [self._book.on_submit_accepted(client_id, status, filled, now)]
            self._hold_cancels(order, status, now)
            t2 = self._book.on_fill(order.order_id, self._fills.matched_shares(order.order_id), now)
            if t2 is not None:
                transitions.append(t2)
            return Accepted(tuple(transitions), entry, self._book.cancel_due(client_id, now))

    def _hold_cancels(self, order: Order, status: str, now: float) -> None:
        """The market's minimum order age (its info's `oas`) holds any cancel until the order is that old; an order
        answered `delayed` (taker delay, `itode`) cannot be cancelled until the delay has passed."""
        rules = self._market_rules.get(order.condition_id)
        until = now + (rules.min_order_age_s if rules is not None else 0.0)
        if str(status).lower() == "delayed":
            delay = rules.taker_delay_s if rules is not None and rules.taker_delay_s else TAKER_DELAY_S
            until = max(until, now + delay)
        if until > now:
            self._book.hold_cancels(order.client_id, until)

    def submit_unknown(self, client_id: str, why: str, now: float) -> Transition:
        """Timeout, 5xx or network error: the order may or may not rest on the exchange (looked up later)."""
        with self._writing():
            return self._book.on_submit_unknown(client_id, why, now)

    def submit_crashed(self, client_id: str, now: float) -> Transition | None:
        """A bug in the submit path: an order never sent is rejected, one maybe sent is unknown (looked up)."""
        with self._writing():
            order = self._book.by_client.get(client_id)
            if order is None or order.state is not OrderState.PENDING_SUBMIT:
                return None
            if order.order_id is None:
                return self._book.on_submit_rejected(client_id, "internal error before sending", now)
            return self._book.on_submit_unknown(client_id, "internal error", now)

    def exchange_ids(self, client_ids: list[str]) -> list[str]:
        """The exchange ids of these orders (those that have one)."""
        with self.lock:
            orders = (self._book.by_client.get(c) for c in client_ids)
            return [o.order_id for o in orders if o is not None and o.order_id]

    def cancel_result(self, order_id: str, canceled: bool, reason: str, now: float) -> Transition | None:
        """DELETE /order answered (or failed: canceled False with the reason); None for an order we do not keep."""
        with self._writing():
            return self._book.on_cancel_result(order_id, canceled, reason, now)

    def cancel_due(self, key: str, now: float | None = None) -> bool:
        """After a submit outcome: a deferred cancel must now be sent (marks it sent); not while the order is held
        (its minimum age or taker delay, at `now`): the maintenance pass sends it then."""
        with self.lock:
            order = self._book.get(key)
            return order is not None and self._book.cancel_due(order.client_id, now)

    def cancels_due(self, now: float | None = None) -> list[str]:
        """Client ids of every working order whose deferred cancel is now due (marked sent)."""
        with self.lock:
            return [o.client_id for o in self._book.working() if self._book.cancel_due(o.client_id, now)]

    def cancels_to_resend(self, now: float | None = None) -> list[OrderView]:
        """Working orders whose cancel was requested but is not (or no longer) in flight, and may go out at `now`."""
        with self.lock:
            return [o.view() for o in self._book.cancels_to_resend(now)]

    def mark_cancel_sent(self, client_id: str) -> None:
        with self.lock:
            self._book.mark_cancel_sent(client_id)

    def unknown_orders(self) -> list[str]:
        """Exchange ids of orders whose submit outcome is unknown (to look up)."""
        with self.lock:
            return [o.order_id for o in self._book.unknown() if o.order_id]

    # ================================================================================================
    # the exchange's reports (user channel, reconciliation, lookups)
    # ================================================================================================
    def apply_trade(self, report: TradeReport, now: float) -> list[FillChange]:
        """A trade report (user channel): our fills in it, and the fill amounts of their orders."""
        with self._writing():
            for order_id in [report.taker_order_id, *(m.order_id for m in report.maker_orders)]:
                self._adopt_from_journal(order_id)
            return [FillChange(fill, previous, self._book.on_fill(fill.order_id,
                                                                   self._fills.matched_shares(fill.order_id), now))
                    for fill, previous in self._fills.apply(report)]

    def apply_order_report(self, report: OrderReport, now: float) -> tuple[Transition | None, bool]:
        """An order report (user channel): (transition, a deferred cancel is now due)."""
        with self._writing():
            self._adopt_from_journal(report.order_id)
            t = self._book.on_exchange_order(report.order_id, report.status, report.size_matched, now,
                                             report.original_size)
            if t is None:
                return None, False
            return t, self._book.cancel_due(t.after.client_id, now)

    def reconcile(self, open_orders: list[OrderReport], trades: list[TradeReport], markets: set[str],
                  now: float) -> reconcile_mod.ReconcileResult:
        """The exchange's REST view of `markets` against ours (reconcile.py); the journal's backfill is done."""
        with self._writing():
            res = reconcile_mod.apply(self._book, self._fills, open_orders, trades, self._journal_orders,
                                      self._token_leg, markets, now, recorded_fills=self._recorded_fills)
            self._backfill.difference_update(markets)
            return res

    def order_state(self, key: str) -> OrderState | None:
        """An order's own state (not the pending-cancel display of its view); None for one we do not keep."""
        with self.lock:
            order = self._book.get(key)
            return order.state if order is not None else None

    def exchange_order(self, order_id: str, report: OrderReport, now: float) -> Transition | None:
        """GET /data/order answered with the order."""
        with self._writing():
            return self._book.on_exchange_order(order_id, report.status, report.size_matched, now,
                                                report.original_size)

    def lookup_missing(self, order_id: str, max_lookups: int, now: float) -> tuple[Transition | None, str]:
        """GET /data/order found nothing for an order whose submit outcome is unknown: after `max_lookups` misses it
        is taken as never accepted. Returns (transition, the order's error in words)."""
        with self._writing():
            order = self._book.by_exchange[order_id]
            t = self._book.on_lookup_missing(order.client_id, max_lookups, now)
            return t, order.error

    def missing_from_open_orders(self, order_id: str, now: float) -> Transition | None:
        """The exchange no longer has a live order of ours: filled or cancelled, as its fill amount says."""
        with self._writing():
            return self._book.on_missing_from_open_orders(order_id, now)

    def pending_sides(self) -> list[str]:
        """Order ids of maker fills of ours that arrived without a side (to look up)."""
        with self.lock:
            return self._fills.pending_orders()

    def infer_side(self, order_id: str) -> Side | None:
        with self.lock:
            return self._fills.infer_side(order_id)

    def resolve_side(self, order_id: str, side: Side, now: float) -> list[FillChange]:
        """The side of a pending maker order is known: its fills are added."""
        with self._writing():
            return [FillChange(fill, previous, self._book.on_fill(fill.order_id,
                                                                   self._fills.matched_shares(fill.order_id), now))
                    for fill, previous in self._fills.resolve_side(order_id, side)]

    def note_recorded(self, trade_id: str) -> bool:
        """A new fill is recorded in the journal from now on; False when it already was (nothing to write)."""
        with self.lock:
            if trade_id in self._recorded_fills:
                return False
            self._recorded_fills.add(trade_id)
            return True

    def condition_of(self, fill: FillView) -> str:
        """The market of one of our fills ("" when unknown)."""
        with self.lock:
            return self._fills.condition_of(fill.trade_id, fill.order_id) or ""

    def prune(self, now: float, on_forget=None) -> list[str]:
        """Bound memory per window over weeks (issue 27; retention counted in windows, so the same for any window
        length): done orders are kept KEEP_DONE_ORDERS_WINDOWS windows (mmctl orders --all); a market over for
        FORGET_MARKET_AFTER_WINDOWS windows with no working order and nothing left to settle (resolved, or every
        position flat) is folded into the one settled P&L bucket per strategy and leg (pnl() keeps counting it) and
        its fills, orders, journal attributions, recorded trade ids, resolution and tick/token entries are dropped.
        `on_forget(condition_id, fill keys)` is told each (the core's cash book forgets them too). Returns the
        condition ids forgotten."""
        forgotten = []
        with self._writing():
            current = self._current.condition_id if self._current else None
            window_s = (self._current.window_end - self._current.window_start) if self._current else 900
            self._book.prune(KEEP_DONE_ORDERS_WINDOWS * max(1, window_s), now)
            working = {o.condition_id for o in self._book.working()}
            for cond, m in list(self._markets.items()):
                length = max(1, m.window_end - m.window_start)
                if cond == current or cond in working or now - m.window_end < FORGET_MARKET_AFTER_WINDOWS * length:
                    continue
                folded = fold(self._holdings(cond), self._resolutions)
                if cond not in self._resolutions and any(abs(p.shares) > 1e-9 for p in folded.values()):
                    continue  # shares still held: pending_resolution() must keep showing them
                self._fold_settled(folded)
                keys = [(f.trade_id, f.order_id) for _, f in self._fills.fills_with_market(cond)]
                if on_forget is not None:
                    on_forget(cond, keys)
                self._recorded_fills.difference_update(trade for trade, _ in keys)
                self._resolutions.pop(cond, None)
                self._fills.forget_market(cond)
                self._book.forget_market(cond)
                for oid in [oid for oid, j in self._journal_orders.items() if j.condition_id == cond]:
                    del self._journal_orders[oid]
                for token in (m.up_token, m.down_token):
                    self._tokens.pop(token, None)
                    self._ticks.pop(token, None)
                del self._markets[cond]
                self._backfill.discard(cond)
                self._fee_schedules.pop(cond, None)
                self._market_rules.pop(cond, None)
                forgotten.append(cond)
        return forgotten

    # ---- internals ----------------------------------------------------------------------------------
    def _fold_settled(self, folded: dict) -> None:
        """A forgotten market's P&L into the one settled bucket per (strategy, leg): pnl() keeps counting it, and
        memory does not grow with every market ever traded."""
        for (_cond, strategy, leg), pos in folded.items():
            key = (SETTLED, strategy, leg)
            had = self._settled.get(key)
            self._settled[key] = pos if had is None else replace(
                had, realised_pnl=had.realised_pnl + pos.realised_pnl, fees=had.fees + pos.fees)

    def _attribute(self, order: Order) -> JournalOrder:
        entry = JournalOrder(order.order_id or "", order.client_id, order.strategy, order.leg.value,
                             order.side.value, order.price, order.size, order.role.value, order.order_type.value,
                             order.post_only, order.reason, order.token_id, order.condition_id, order.created_at)
        self._journal_orders[entry.order_id] = entry
        return entry

    def _adopt_from_journal(self, order_id: str) -> None:
        if order_id and order_id not in self._book.by_exchange and order_id in self._journal_orders:
            self._book.adopt(reconcile_mod.order_from_journal(self._journal_orders[order_id]))

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
