"""One market window in the fill model: its book, our orders on it, their fills and positions (the rules are in
the package docstring, trader/fill_model/__init__.py). The backtest drives it with the decision pipeline's
actions (`submit`); the paper exchange with the orders it receives (`place`, `cancel`). A `line` is anything
with the tick file's fields (trader/backtest/ticks_file.py `TickLine`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polymm.trader.config import Config
from polymm.trader.decision.fair_value import FairValue
from polymm.trader.model import (Leg, MarketIdentity, MarketView, OrderState, OrderType, OrderView, PositionView, Side,
                                 Want)
from polymm.trader.decision.fees import DEFAULT_SCHEDULE, FeeSchedule, taker_fee
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.ticks import on_tick
from polymm.trader.fill_model.book import ASK, BID, Book, _key

if TYPE_CHECKING:  # a line is anything with these fields (the backtest's tick file, paper trading's snapshot)
    from polymm.trader.backtest.ticks_file import TickLine

EPS = 1e-9
# A line without these fields gets the market's usual values.
DEFAULT_TICK = 0.01
DEFAULT_MIN_SIZE = 5.0
DEFAULT_FEE = DEFAULT_SCHEDULE  # a line without a fee schedule: the documented conservative default

@dataclass
class ModelOrder:
    client_id: str
    want: Want
    created_at: float
    effective_at: float  # when the exchange gets it
    state: OrderState = OrderState.PENDING_SUBMIT
    filled: float = 0.0
    cancel_at: float | None = None
    cancel_reason: str = ""
    updated_at: float = 0.0
    rested: bool = False  # reached the exchange and rests on the book (its taker part, if any, is done)
    delayed_until: float = 0.0  # a marketable order the exchange holds (taker delay): it matches then

    def view(self) -> OrderView:
        w = self.want
        return OrderView(
            client_id=self.client_id, order_id=self.client_id, strategy=w.strategy, leg=w.leg, side=w.side,
            price=w.price, size=w.size, filled=round(self.filled, 6), state=self.state, role=w.role,
            order_type=w.order_type, post_only=w.post_only, created_at=self.created_at,
            updated_at=self.updated_at or self.created_at, reason=w.reason,
        )

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.want.size - self.filled, 6))


@dataclass
class ModelPosition:
    shares: float = 0.0
    avg_price: float = 0.0
    realised: float = 0.0  # net of fees, before resolution
    fees: float = 0.0
    bought: float = 0.0  # pUSD spent
    sold: float = 0.0  # pUSD received
    first_fill_at: float | None = None
    last_fill_at: float | None = None

    def view(self, strategy: str, leg: Leg) -> PositionView:
        return PositionView(
            strategy=strategy, leg=leg, shares=round(self.shares, 6), avg_price=self.avg_price,
            realised_pnl=self.realised, fees=self.fees, first_fill_at=self.first_fill_at, last_fill_at=self.last_fill_at,
        )


class WindowFillModel:
    """One market window: book, our orders, fills and positions; applies the pipeline's actions."""

    def __init__(self, first: TickLine, config: Config, latency_s: float, events: list[dict], tag: str,
                 cash: float | None = None):
        self.window_start = first.window_start
        self.window_end = first.window_end or first.window_start + config.market.window_s
        self.tick = first.tick_size or DEFAULT_TICK
        self.min_size = first.min_order_size or DEFAULT_MIN_SIZE
        self.fee_rate = first.fee_rate if first.fee_rate is not None else DEFAULT_FEE.rate
        fee_exponent = getattr(first, "fee_exponent", None)  # paper trading's snapshots may not carry it
        self.fee_exponent = fee_exponent if fee_exponent is not None else DEFAULT_FEE.exponent
        self._identity_key: tuple | None = None  # _identity(): the MarketIdentity of the current rules
        self._identity_now: MarketIdentity | None = None
        self.latency_s = latency_s
        # The exchange's order timing rules (its market info: `oas`, `itode`): no cancel takes effect before an
        # order is min_order_age_s old, and a marketable order is held taker_delay_s before it matches (and cannot be
        # cancelled meanwhile). Lines may carry them (min_order_age_s, taker_delay_s); paper sets them from the info.
        self.min_order_age_s = getattr(first, "min_order_age_s", None) or 0.0
        self.taker_delay_s = getattr(first, "taker_delay_s", None) or 0.0
        self.book = Book()
        # (leg, side, price) -> shares of that displayed level our fills took; stays taken until the data shows
        # the level gone (the data never contains our orders, so it keeps showing what we took).
        self.consumed: dict[tuple[Leg, str, float], float] = {}
        # Collateral (pUSD) when the exchange's balance check applies (paper trading); None = unlimited.
        self.cash = cash
        self.last_line_ts = -math.inf
        self.winner: str | None = None
        self.orders: dict[str, ModelOrder] = {}
        self.positions: dict[tuple[str, Leg], ModelPosition] = {}
        self.fills: list[dict] = []
        self.events = events  # order events (shared list: the report lists them in time order)
        self.placements: list[dict] = []  # state at each placement (property tests check the caps on it)
        self.notes: dict[str, float] = {}  # note -> first time seen
        self.btc = self.btc_ts = self.btc_open = math.nan  # the BTC reference price of the latest line that had one
        self._ids = 0
        self._tag = tag

    # -- market data -------------------------------------------------------------------------------------

    def apply_line(self, line: TickLine) -> None:
        btc = getattr(line, "btc", None)  # lines without the reference price (older recordings) leave it unknown
        if btc is not None:
            self.btc, self.btc_ts = btc, line.btc_ts
            self.btc_open = line.btc_open if line.btc_open is not None else math.nan
        self.apply_book(book_of(line), line.ts, tick=line.tick_size, min_size=line.min_order_size,
                        fee_rate=line.fee_rate, fee_exponent=getattr(line, "fee_exponent", None), winner=line.winner,
                        min_order_age_s=getattr(line, "min_order_age_s", None),
                        taker_delay_s=getattr(line, "taker_delay_s", None))

    def apply_book(self, book: Book, ts: float, *, tick: float | None = None, min_size: float | None = None,
                   fee_rate: float | None = None, fee_exponent: float | None = None,
                   winner: str | None = None, min_order_age_s: float | None = None,
                   taker_delay_s: float | None = None) -> None:
        """A new snapshot of the market at `ts`: forget what we took from levels the data shows gone, then match
        our resting orders against it."""
        self.book = book
        for key in [k for k in self.consumed if book.gone(*k)]:
            del self.consumed[key]
        if tick:
            self.tick = tick
        if min_size:
            self.min_size = min_size
        if fee_rate is not None:
            self.fee_rate = fee_rate
        if fee_exponent is not None:
            self.fee_exponent = fee_exponent
        if winner is not None:
            self.winner = winner
        if min_order_age_s is not None:
            self.min_order_age_s = min_order_age_s
        if taker_delay_s is not None:
            self.taker_delay_s = taker_delay_s
        self.last_line_ts = ts
        self._match_resting(ts)

    def available(self, leg: Leg, side: str, price: float, displayed: float) -> float:
        """What is left of a displayed level after our earlier fills took from it."""
        return max(0.0, displayed - self.consumed.get((leg, side, _key(price)), 0.0))

    def view(self, now: float, config: Config, fair: FairValue | None = None) -> MarketView:
        b = self.book
        fair_up = math.nan
        if fair is not None and self.btc == self.btc:
            fair_up = fair.fair_up(self.btc, self.btc_ts, self.btc_open, now, self.window_end,
                                   config.risk.stale_ref_ms / 1000.0)
        age_ms = (now - self.last_line_ts) * 1000.0
        crossed = any(
            math.isfinite(b.bid(leg)) and math.isfinite(b.ask(leg)) and b.bid(leg) >= b.ask(leg) for leg in Leg
        )
        return MarketView(
            market=self._identity(),
            fee_rate=self.fee_rate, up_bid=b.bid(Leg.UP), up_bid_size=b.size(Leg.UP, BID), up_ask=b.ask(Leg.UP),
            up_ask_size=b.size(Leg.UP, ASK), down_bid=b.bid(Leg.DOWN), down_bid_size=b.size(Leg.DOWN, BID),
            down_ask=b.ask(Leg.DOWN), down_ask_size=b.size(Leg.DOWN, ASK), age_ms=age_ms,
            # A recording has a line per book change only: a gap is a quiet book unless it outlasts the quiet limit
            # (the live trader's rule for a live socket without market data; the recording has no socket to judge).
            fresh=age_ms <= config.risk.quiet_feed_ms,
            stale_reason="" if age_ms <= config.risk.quiet_feed_ms else
            f"no recorded line for {age_ms / 1000:.1f} s (risk.quiet_feed_ms {config.risk.quiet_feed_ms:g})",
            crossed=crossed, accepting_orders=now < self.window_end, fair_up=fair_up, btc=self.btc,
            btc_age_ms=(now - self.btc_ts) * 1000.0 if self.btc_ts == self.btc_ts else math.inf, btc_open=self.btc_open,
            fee_exponent=self.fee_exponent,
        )

    def _identity(self) -> MarketIdentity:
        """This window's market identity, built again only when its rules change (a view per tick)."""
        key = (self.window_end, self.tick, self.min_size, self.fee_rate)
        if key != self._identity_key:
            self._identity_key = key
            self._identity_now = MarketIdentity(f"backtest-{self.window_start}", "up", "down", self.window_start,
                                                self.window_end, self.tick, self.min_size, self.fee_rate)
        return self._identity_now

    # -- what the pipeline sees ------------------------------------------------------------------------

    def order_views(self) -> list[OrderView]:
        return [o.view() for o in self.orders.values() if o.state.working]

    def position_views(self) -> dict[tuple[str, Leg], PositionView]:
        return {k: p.view(*k) for k, p in self.positions.items() if p.shares > EPS or p.first_fill_at is not None}

    # -- actions -------------------------------------------------------------------------------------------

    def submit(self, actions: list[Place | Cancel], now: float) -> None:
        """The decision pipeline's actions, sent at `now` (they reach the exchange `latency_s` later)."""
        for a in actions:
            if isinstance(a, Cancel):
                self.cancel(a.client_id, a.reason, now)
            else:
                self.place(a.want, now)
        self.settle_pending(now)

    def place(self, want: Want, now: float, order_id: str | None = None) -> ModelOrder:
        """An order sent at `now`; it reaches the exchange at now + latency (settle_pending)."""
        if order_id is None:
            self._ids += 1
            order_id = f"{self._tag}-{self._ids}"
        o = ModelOrder(order_id, want, created_at=now, effective_at=now + self.latency_s, updated_at=now)
        self.orders[order_id] = o
        self._record_placement(o, now)
        self._event(now, "place", o, want.reason)
        return o

    def cancel(self, order_id: str, reason: str, now: float) -> bool:
        """A cancel sent at `now`; it reaches the exchange at now + latency. False: nothing to cancel."""
        o = self.orders.get(order_id)
        if o is None or not o.state.working or o.state is OrderState.PENDING_CANCEL:
            return False
        o.state = OrderState.PENDING_CANCEL
        # Held, not dropped: the cancel takes effect once the order is min_order_age_s old at the exchange and no
        # longer held by the taker delay (live holds it in the execution core the same way).
        o.cancel_at = max(now + self.latency_s, o.effective_at + self.min_order_age_s, o.delayed_until)
        o.cancel_reason = reason
        o.updated_at = now
        self._event(now, "cancel", o, reason)
        return True

    def settle_pending(self, now: float) -> None:
        """Pending submits/cancels whose latency has passed reach the exchange, in the order they were sent."""
        due = sorted(
            [(o.effective_at, 0, o) for o in self.orders.values() if o.state is OrderState.PENDING_SUBMIT and o.effective_at <= now + EPS]
            + [(o.cancel_at, 1, o) for o in self.orders.values() if o.state is OrderState.PENDING_CANCEL and o.cancel_at is not None and o.cancel_at <= now + EPS],
            key=lambda x: (x[0], x[1], x[2].created_at),
        )
        for at, kind, o in due:
            if kind == 0:
                self._arrive(o, at)
            elif o.state is OrderState.PENDING_CANCEL:
                o.state = OrderState.CANCELED
                o.updated_at = at
                self._event(at, "cancelled", o, o.cancel_reason)

    def pending_times(self) -> list[float]:
        out = [o.effective_at for o in self.orders.values() if o.state is OrderState.PENDING_SUBMIT]
        out += [o.cancel_at for o in self.orders.values() if o.state is OrderState.PENDING_CANCEL and o.cancel_at is not None]
        return out

    def _arrive(self, o: ModelOrder, at: float) -> None:
        """The exchange receives an order: checks, then the marketable part takes, the rest rests (GTC/GTD) or
        is killed (FAK/FOK)."""
        w = o.want
        if self.taker_delay_s > 0 and not w.post_only and not o.delayed_until and self._marketable(o):
            # The exchange holds a marketable order (itode) and matches it against the book of `delayed_until`.
            o.delayed_until = o.effective_at = at + self.taker_delay_s
            self._event(at, "delayed", o, f"taker delay {self.taker_delay_s * 1000:g} ms")
            return
        reason = self._reject_reason(o, at)
        if reason:
            o.state = OrderState.REJECTED
            o.updated_at = at
            self._event(at, "rejected", o, reason)
            return
        if not w.post_only:
            self._take(o, at)
        if w.order_type in (OrderType.FAK, OrderType.FOK):
            o.updated_at = at
            if o.remaining > EPS:
                o.state = OrderState.CANCELED
                self._event(at, "killed", o, f"{o.remaining:g} unfilled ({w.order_type.value})")
            else:
                o.state = OrderState.FILLED
            return
        o.rested = o.remaining > EPS
        if o.remaining <= EPS:
            o.state = OrderState.FILLED
        elif o.state is not OrderState.PENDING_CANCEL:  # a cancel sent meanwhile arrives after it (at cancel_at)
            o.state = OrderState.PARTIALLY_FILLED if o.filled > EPS else OrderState.LIVE
        o.updated_at = at

    def _marketable(self, o: ModelOrder) -> bool:
        w = o.want
        return bool(self.book.reachable(w.leg, ASK if w.side is Side.BUY else BID, w.price))

    def _reject_reason(self, o: ModelOrder, at: float) -> str:
        w = o.want
        if at >= self.window_end:
            return "market closed"
        if not on_tick(w.price, self.tick):
            return f"price {w.price} not on tick {self.tick} or outside [tick, 1 - tick]"
        if w.size + EPS < self.min_size:
            return f"size {w.size} below the market minimum {self.min_size:g}"
        if w.side is Side.SELL:
            pos = self.positions.get((w.strategy, w.leg), ModelPosition())
            locked = sum(
                x.remaining for x in self.orders.values()
                if x is not o and x.want.strategy == w.strategy and x.want.leg is w.leg and x.want.side is Side.SELL
                and x.rested and x.state.working
            )
            if w.size > pos.shares - locked + EPS:
                return f"not enough balance: selling {w.size} with {pos.shares - locked:.2f} free"
        if w.side is Side.BUY and self.cash is not None:
            locked = sum(x.remaining * x.want.price for x in self.orders.values()
                         if x is not o and x.want.side is Side.BUY and x.rested and x.state.working)
            if w.size * w.price > self.cash - locked + EPS:
                return (f"not enough balance: buying {w.size:g} at {w.price:g} needs {w.size * w.price:.2f} pUSD, "
                        f"{self.cash - locked:.2f} free")
        if w.post_only:
            bid, ask = self.book.bid(w.leg), self.book.ask(w.leg)
            if w.side is Side.BUY and math.isfinite(ask) and w.price >= ask - EPS:
                return f"post-only buy at {w.price} would cross the ask {ask}"
            if w.side is Side.SELL and math.isfinite(bid) and w.price <= bid + EPS:
                return f"post-only sell at {w.price} would cross the bid {bid}"
        return ""

    def _take(self, o: ModelOrder, at: float) -> None:
        """The marketable part of an order: walk the opposite side level by level up to the limit, each level at
        its own price and for what is left of it, paying the taker fee per level. A FOK takes all or nothing."""
        w = o.want
        side = ASK if w.side is Side.BUY else BID
        plan: list[tuple[float, float]] = []
        want = o.remaining
        for price, displayed in self.book.reachable(w.leg, side, w.price):
            qty = _lots(min(want, self.available(w.leg, side, price, displayed)))
            if qty > 0:
                plan.append((price, qty))
                want = round(want - qty, 6)
            if want <= EPS:
                break
        if w.order_type is OrderType.FOK and want > EPS:
            return
        for price, qty in plan:
            self._fill(o, qty, price, at, "taker")
            self._consume(w.leg, side, price, qty)
        o.updated_at = at

    def _consume(self, leg: Leg, side: str, price: float, qty: float) -> None:
        key = (leg, side, _key(price))
        self.consumed[key] = self.consumed.get(key, 0.0) + qty

    def _match_resting(self, ts: float) -> None:
        """Resting orders the market traded through: a BUY fills from asks at or below its price, a SELL from bids
        at or above it, at its own price (maker, no fee), oldest order first, for what is left of those levels.
        When the opposite side reaches our price everything ahead of us at that price must be gone (the book is
        never crossed), so queue position needs no further state."""
        for o in sorted(self.orders.values(), key=lambda x: x.created_at):
            if not o.rested or not o.state.working or o.effective_at >= ts:
                continue
            w = o.want
            side = ASK if w.side is Side.BUY else BID
            for price, displayed in self.book.reachable(w.leg, side, w.price):
                qty = _lots(min(o.remaining, self.available(w.leg, side, price, displayed)))
                if qty <= 0:
                    continue
                self._fill(o, qty, w.price, ts, "maker")
                self._consume(w.leg, side, price, qty)
                if o.remaining <= EPS:
                    break
            if o.remaining <= EPS:
                o.state = OrderState.FILLED
                o.updated_at = ts
            elif o.filled > EPS and o.state is OrderState.LIVE:
                o.state = OrderState.PARTIALLY_FILLED
                o.updated_at = ts

    def _fill(self, o: ModelOrder, qty: float, price: float, at: float, role: str) -> None:
        w = o.want
        fee = taker_fee(qty, price, FeeSchedule(self.fee_rate, self.fee_exponent)) if role == "taker" else 0.0
        pos = self.positions.setdefault((w.strategy, w.leg), ModelPosition())
        if w.side is Side.BUY:
            cost = pos.shares * pos.avg_price + qty * price
            pos.shares = round(pos.shares + qty, 6)
            pos.avg_price = cost / pos.shares
            pos.bought += qty * price
            if pos.first_fill_at is None:
                pos.first_fill_at = at
        else:
            pos.realised += qty * (price - pos.avg_price)
            pos.shares = round(pos.shares - qty, 6)
            pos.sold += qty * price
            if pos.shares <= EPS:
                pos.shares, pos.first_fill_at = 0.0, None
        pos.realised -= fee
        pos.fees += fee
        if self.cash is not None:
            self.cash += (-qty * price if w.side is Side.BUY else qty * price) - fee
        pos.last_fill_at = at
        o.filled = round(o.filled + qty, 6)
        self.fills.append({
            "ts": at, "t": round(at - self.window_start, 3), "id": o.client_id, "strategy": w.strategy,
            "leg": w.leg.value, "side": w.side.value, "price": price, "size": qty, "role": role,
            "fee": round(fee, 6), "order_role": w.role.value,
        })

    # -- records ---------------------------------------------------------------------------------------------

    def _event(self, at: float, action: str, o: ModelOrder, reason: str) -> None:
        w = o.want
        self.events.append({
            "ts": at, "window_start": self.window_start, "t": round(at - self.window_start, 3), "action": action,
            "id": o.client_id, "strategy": w.strategy, "leg": w.leg.value, "side": w.side.value, "price": w.price,
            "size": w.size, "type": w.order_type.value, "post_only": w.post_only, "role": w.role.value, "reason": reason,
        })

    def _record_placement(self, o: ModelOrder, now: float) -> None:
        """What a property test needs to judge this placement: the book, positions and working buys (incl. it)."""
        buys: dict[str, float] = {}
        for x in self.orders.values():
            if x.state.working and x.want.side is Side.BUY:
                key = f"{x.want.strategy}:{x.want.leg.value}"
                buys[key] = buys.get(key, 0.0) + x.remaining
        self.placements.append({
            "ts": now, "window_start": self.window_start, "window_end": self.window_end, "tick": self.tick,
            "min_size": self.min_size, "want": {"strategy": o.want.strategy, "leg": o.want.leg.value,
            "side": o.want.side.value, "price": o.want.price, "size": o.want.size, "role": o.want.role.value},
            "bids": {"up": self.book.bid(Leg.UP), "down": self.book.bid(Leg.DOWN)},
            "held": {f"{s}:{leg.value}": p.shares for (s, leg), p in self.positions.items()},
            "open_buys": buys,
        })

    # -- end of window ----------------------------------------------------------------------------------

    def close(self, at: float) -> None:
        """The market closes: everything still open is cancelled by the exchange."""
        self.settle_pending(at)
        for o in self.orders.values():
            if o.state.working:
                o.state = OrderState.CANCELED
                o.updated_at = at
                self._event(at, "expired", o, "market closed with the order open")

    def resolve(self) -> dict[str, Any]:
        b = self.book
        up_bid, down_bid = b.bid(Leg.UP), b.bid(Leg.DOWN)
        if self.winner is not None:
            winner, how = self.winner, "winner field of the ticks file"
        elif math.isfinite(up_bid) and math.isfinite(down_bid) and up_bid != down_bid:
            winner = "up" if up_bid > down_bid else "down"
            how = f"last best bids: up {up_bid:g}, down {down_bid:g}"
        elif math.isfinite(up_bid) != math.isfinite(down_bid):
            winner = "up" if math.isfinite(up_bid) else "down"
            how = "only one leg had a bid at the end"
        else:
            winner, how = None, "undetermined: equal or missing last bids; held shares valued at the last mid"
        payout_price = {}
        for leg in (Leg.UP, Leg.DOWN):
            if winner is not None:
                payout_price[leg] = 1.0 if leg.value == winner else 0.0
            else:
                bid, ask = b.bid(leg), b.ask(leg)
                payout_price[leg] = (bid + ask) / 2 if math.isfinite(bid) and math.isfinite(ask) else 0.5
        pnl: dict[str, dict[str, float]] = {}
        positions = []
        for (strategy, leg), p in sorted(self.positions.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
            payout = p.shares * payout_price[leg]
            cost = p.shares * p.avg_price
            s = pnl.setdefault(strategy, {"bought": 0.0, "sold": 0.0, "fees": 0.0, "payout": 0.0, "net": 0.0})
            s["bought"] += p.bought
            s["sold"] += p.sold
            s["fees"] += p.fees
            s["payout"] += payout
            s["net"] += p.realised + payout - cost
            positions.append({
                "strategy": strategy, "leg": leg.value, "shares": round(p.shares, 6), "avg_price": round(p.avg_price, 6),
                "dust": 0 < p.shares < self.min_size - EPS, "payout": round(payout, 6),
            })
        for s in pnl.values():
            for k in s:
                s[k] = round(s[k], 6)
        return {"winner": winner, "how": how, "positions": positions, "pnl": pnl}


def _lots(qty: float) -> float:
    """Shares the exchange can match: whole cents of a share, rounded down."""
    return math.floor(qty * 100 + EPS) / 100 if math.isfinite(qty) else qty


def book_of(line: TickLine) -> Book:
    """The book of a tick line: its depth when it has any, else its top of book."""
    sides = {(leg, side): getattr(line, f"{leg.value}_{side}s", None) for leg in Leg for side in (BID, ASK)}
    if any(v is not None for v in sides.values()):
        return Book.depth({k: v or () for k, v in sides.items()})
    return Book.top(line.up_bid, line.up_ask, line.down_bid, line.down_ask, line.up_bid_size, line.up_ask_size,
                    line.down_bid_size, line.down_ask_size)
