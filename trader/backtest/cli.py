"""`polymm-backtest TICKS.jsonl [--config FILE] [--set KEY=VALUE ...] [--json]`: replay recorded top-of-book
updates through the trader's own decision pipeline (trader/decide.py: S1, S2, risk, planner) against a simulated
exchange, and print orders, fills, final positions, resolution and P&L.

Input: one JSON object per line (contract 2, written by `polymm-feed --record FILE`):
`ts` (unix s), `window_start`, `up_bid`, `up_ask`, `down_bid`, `down_ask` (number or null) and optionally
`*_size`, `window_end` (default window_start + market.window_s), `tick_size` (0.01), `min_order_size` (5),
`fee_rate` (0.07) and `winner` ("up" | "down", see Resolution). Blank lines and lines starting with `#` are
skipped; any other bad line stops the run with its line number. Unknown fields are ignored.

Timing. The pipeline is called after every line (at its `ts`) and every `--step-ms` (100 ms) between lines, as
the live loop decides on every tick and at least every 50-100 ms. Orders and cancels take effect `--latency-ms`
after the decision (default 0); until then they are pending (the strategies see them as working, as live). With
zero latency the pipeline is called again at once after its actions took effect, as the live loop wakes on
order events. The feed counts as stale when no line arrived for `risk.stale_feed_ms` (the live trader judges
data age the same way), so gaps in a recording cancel entries as they would live.

Fill model (conservative; our own orders are assumed absent from the recorded book):
- A resting BUY fills when a later line's best ask is at or below its price; a resting SELL when the best bid is
  at or above it. Fills are at our limit price (no price improvement), as a maker (no fee), limited to the
  displayed size of that line (shared by all our orders on that side); an order placed at a line never fills
  against that same line.
- Fill-and-kill / fill-or-kill orders execute at once against the displayed top of book at their effective time
  (one level: the best price and its size; the rest of a FAK is cancelled, a FOK needs the whole size), paying
  the taker fee shares x fee_rate x p x (1 - p). When a line has no size for that side, the size is taken as
  unlimited.
- The exchange's checks are applied: price on the tick and in [tick, 1 - tick], size >= the market minimum,
  sells not above the free (not locked by resting sells) position, and a post-only order that would cross the
  book is rejected. Every rejection is listed with its reason.
- Orders still open at the window end are cancelled (the exchange does so when the market closes).

Resolution: a line may carry `winner` ("up" or "down"); the last such value of a window decides. Otherwise the
leg whose last best bid in the window is higher wins (the book near the end says which outcome is near 1). Equal
or missing bids: undetermined, and held shares are valued at that leg's last mid price (0.5 if unknown). Winning
shares pay 1, losing 0. P&L = sells - buys - fees + resolution payouts, per strategy; all numbers in pUSD.
A window resolves at its end here, so its positions do not count against `risk.max_exposure_usd` in the next
window; live they do until the market resolves (usually minutes later), so live can enter less than a backtest
in the first minutes of a window.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import msgspec

from polymm.trader.config import Config, ConfigError, load_config, warnings
from polymm.trader.decision.decide import Decision, DecisionState, decide, new_state
from polymm.trader.model import Leg, MarketView, OrderState, OrderType, OrderView, PositionView, Side, Want
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.strategy.common import taker_fee
from polymm.trader.decision.ticks import on_tick

DEFAULT_TICK = 0.01
TICK_SIZES = (0.1, 0.01, 0.005, 0.0025, 0.001, 0.0001)  # the exchange's tick sizes (py_clob_client_v2 TickSize)
DEFAULT_MIN_SIZE = 5.0
DEFAULT_FEE = 0.07
EPS = 1e-9
MAX_PASSES = 4  # decisions at one instant (each after the previous one's actions took effect)


class BadTicks(Exception):
    """A ticks file that cannot be replayed; the message names the line."""


class TickLine(msgspec.Struct):
    ts: float
    window_start: int
    up_bid: float | None
    up_ask: float | None
    down_bid: float | None
    down_ask: float | None
    up_bid_size: float | None = None
    up_ask_size: float | None = None
    down_bid_size: float | None = None
    down_ask_size: float | None = None
    window_end: int | None = None
    tick_size: float | None = None
    min_order_size: float | None = None
    fee_rate: float | None = None
    winner: Literal["up", "down"] | None = None


_DECODER = msgspec.json.Decoder(TickLine)


def read_ticks(path: str | Path) -> Iterator[tuple[int, TickLine]]:
    """(line number, TickLine) for every data line; BadTicks naming the line otherwise."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise BadTicks(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        last_ts = -math.inf
        for n, raw in enumerate(fh, 1):
            text = raw.strip()
            if not text or text.startswith(b"#"):
                continue
            try:
                line = _DECODER.decode(text)
            except msgspec.ValidationError as e:
                raise BadTicks(f"{path} line {n}: {e}") from None
            except msgspec.DecodeError as e:
                raise BadTicks(f"{path} line {n}: not JSON ({e})") from None
            _check_line(line, path, n)
            if line.ts < last_ts - 1.0:
                raise BadTicks(f"{path} line {n}: ts {line.ts} goes back in time (previous {last_ts})")
            last_ts = max(last_ts, line.ts)
            yield n, line


def _check_line(line: TickLine, path: str | Path, n: int) -> None:
    if not math.isfinite(line.ts) or line.ts <= 0:
        raise BadTicks(f"{path} line {n}: ts must be a positive unix time, got {line.ts}")
    for name in ("up_bid", "up_ask", "down_bid", "down_ask"):
        v = getattr(line, name)
        if v is not None and not (0 < v < 1):
            raise BadTicks(f"{path} line {n}: {name} {v} is outside (0, 1)")
    for name in ("up_bid_size", "up_ask_size", "down_bid_size", "down_ask_size"):
        v = getattr(line, name)
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise BadTicks(f"{path} line {n}: {name} {v} must be a size >= 0")
    if line.window_end is not None and line.window_end <= line.window_start:
        raise BadTicks(f"{path} line {n}: window_end {line.window_end} is not after window_start {line.window_start}")
    if line.tick_size is not None and line.tick_size not in TICK_SIZES:
        raise BadTicks(f"{path} line {n}: tick_size {line.tick_size} is not a Polymarket tick (one of {', '.join(map(str, TICK_SIZES))})")
    if line.min_order_size is not None and not line.min_order_size > 0:
        raise BadTicks(f"{path} line {n}: min_order_size must be > 0")
    if line.fee_rate is not None and not 0 <= line.fee_rate < 1:
        raise BadTicks(f"{path} line {n}: fee_rate {line.fee_rate} is outside [0, 1)")


# ---------------------------------------------------------------------------------------------------------
# The simulated exchange of one window.


@dataclass
class SimOrder:
    client_id: str
    want: Want
    created_at: float
    effective_at: float  # when the exchange gets it
    state: OrderState = OrderState.PENDING_SUBMIT
    filled: float = 0.0
    cancel_at: float | None = None
    cancel_reason: str = ""
    updated_at: float = 0.0

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
class SimPosition:
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


@dataclass
class Book:
    up_bid: float = math.nan
    up_ask: float = math.nan
    down_bid: float = math.nan
    down_ask: float = math.nan
    up_bid_size: float = math.inf
    up_ask_size: float = math.inf
    down_bid_size: float = math.inf
    down_ask_size: float = math.inf

    def bid(self, leg: Leg) -> float:
        return self.up_bid if leg is Leg.UP else self.down_bid

    def ask(self, leg: Leg) -> float:
        return self.up_ask if leg is Leg.UP else self.down_ask

    def size(self, leg: Leg, side: str) -> float:
        return getattr(self, f"{leg.value}_{side}_size")


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _size(v: float | None) -> float:
    return math.inf if v is None else float(v)


class WindowSim:
    """One market window: book, our orders, fills and positions; applies the pipeline's actions."""

    def __init__(self, first: TickLine, config: Config, latency_s: float, events: list[dict], tag: str):
        self.window_start = first.window_start
        self.window_end = first.window_end or first.window_start + config.market.window_s
        self.tick = first.tick_size or DEFAULT_TICK
        self.min_size = first.min_order_size or DEFAULT_MIN_SIZE
        self.fee_rate = first.fee_rate if first.fee_rate is not None else DEFAULT_FEE
        self.latency_s = latency_s
        self.book = Book()
        self.last_line_ts = -math.inf
        self.winner: str | None = None
        self.orders: dict[str, SimOrder] = {}
        self.positions: dict[tuple[str, Leg], SimPosition] = {}
        self.fills: list[dict] = []
        self.events = events  # order events (shared list: the report lists them in time order)
        self.placements: list[dict] = []  # state at each placement (property tests check the caps on it)
        self.notes: dict[str, float] = {}  # note -> first time seen
        self._ids = 0
        self._tag = tag

    # -- market data -------------------------------------------------------------------------------------

    def apply_line(self, line: TickLine) -> None:
        self.book = Book(
            _num(line.up_bid), _num(line.up_ask), _num(line.down_bid), _num(line.down_ask),
            _size(line.up_bid_size), _size(line.up_ask_size), _size(line.down_bid_size), _size(line.down_ask_size),
        )
        if line.tick_size:
            self.tick = line.tick_size
        if line.min_order_size:
            self.min_size = line.min_order_size
        if line.fee_rate is not None:
            self.fee_rate = line.fee_rate
        if line.winner is not None:
            self.winner = line.winner
        self.last_line_ts = line.ts
        self._match_resting(line.ts)

    def view(self, now: float, config: Config) -> MarketView:
        b = self.book
        age_ms = (now - self.last_line_ts) * 1000.0
        crossed = any(
            math.isfinite(bid) and math.isfinite(ask) and bid >= ask
            for bid, ask in ((b.up_bid, b.up_ask), (b.down_bid, b.down_ask))
        )
        return MarketView(
            window_start=self.window_start, window_end=self.window_end, condition_id=f"backtest-{self.window_start}",
            up_token="up", down_token="down", tick_size=self.tick, min_order_size=self.min_size,
            fee_rate=self.fee_rate, up_bid=b.up_bid, up_bid_size=b.up_bid_size, up_ask=b.up_ask,
            up_ask_size=b.up_ask_size, down_bid=b.down_bid, down_bid_size=b.down_bid_size, down_ask=b.down_ask,
            down_ask_size=b.down_ask_size, age_ms=age_ms, fresh=age_ms <= config.risk.stale_feed_ms,
            crossed=crossed, accepting_orders=now < self.window_end,
        )

    # -- what the pipeline sees ------------------------------------------------------------------------

    def order_views(self) -> list[OrderView]:
        return [o.view() for o in self.orders.values() if o.state.working]

    def position_views(self) -> dict[tuple[str, Leg], PositionView]:
        return {k: p.view(*k) for k, p in self.positions.items() if p.shares > EPS or p.first_fill_at is not None}

    # -- actions -------------------------------------------------------------------------------------------

    def submit(self, actions: list[Place | Cancel], now: float) -> None:
        for a in actions:
            if isinstance(a, Cancel):
                o = self.orders.get(a.client_id)
                if o is None or not o.state.working or o.state is OrderState.PENDING_CANCEL:
                    continue
                o.state = OrderState.PENDING_CANCEL
                o.cancel_at = now + self.latency_s
                o.cancel_reason = a.reason
                o.updated_at = now
                self._event(now, "cancel", o, a.reason)
            else:
                self._ids += 1
                cid = f"{self._tag}-{self._ids}"
                o = SimOrder(cid, a.want, created_at=now, effective_at=now + self.latency_s, updated_at=now)
                self.orders[cid] = o
                self._record_placement(o, now)
                self._event(now, "place", o, a.want.reason)
        self.settle_pending(now)

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

    def _arrive(self, o: SimOrder, at: float) -> None:
        """The exchange receives an order: checks, then taker execution or rest."""
        w = o.want
        reason = self._reject_reason(o, at)
        if reason:
            o.state = OrderState.REJECTED
            o.updated_at = at
            self._event(at, "rejected", o, reason)
            return
        if w.order_type in (OrderType.FAK, OrderType.FOK):
            self._take(o, at)
            return
        if o.state is not OrderState.PENDING_CANCEL:  # a cancel sent meanwhile arrives after it (at cancel_at)
            o.state = OrderState.LIVE
        o.updated_at = at

    def _reject_reason(self, o: SimOrder, at: float) -> str:
        w = o.want
        if at >= self.window_end:
            return "market closed"
        if not on_tick(w.price, self.tick):
            return f"price {w.price} not on tick {self.tick} or outside [tick, 1 - tick]"
        if w.size + EPS < self.min_size:
            return f"size {w.size} below the market minimum {self.min_size:g}"
        if w.side is Side.SELL:
            pos = self.positions.get((w.strategy, w.leg), SimPosition())
            locked = sum(
                x.remaining for x in self.orders.values()
                if x is not o and x.want.strategy == w.strategy and x.want.leg is w.leg and x.want.side is Side.SELL
                and x.state in (OrderState.LIVE, OrderState.PARTIALLY_FILLED, OrderState.PENDING_CANCEL)
                and x.effective_at <= at
            )
            if w.size > pos.shares - locked + EPS:
                return f"not enough balance: selling {w.size} with {pos.shares - locked:.2f} free"
        if w.post_only:
            bid, ask = self.book.bid(w.leg), self.book.ask(w.leg)
            if w.side is Side.BUY and math.isfinite(ask) and w.price >= ask - EPS:
                return f"post-only buy at {w.price} would cross the ask {ask}"
            if w.side is Side.SELL and math.isfinite(bid) and w.price <= bid + EPS:
                return f"post-only sell at {w.price} would cross the bid {bid}"
        return ""

    def _take(self, o: SimOrder, at: float) -> None:
        w = o.want
        if w.side is Side.BUY:
            px, avail = self.book.ask(w.leg), self.book.size(w.leg, "ask")
            ok = math.isfinite(px) and px <= w.price + EPS
        else:
            px, avail = self.book.bid(w.leg), self.book.size(w.leg, "bid")
            ok = math.isfinite(px) and px >= w.price - EPS
        qty = min(w.size, avail) if ok else 0.0
        if w.order_type is OrderType.FOK and qty + EPS < w.size:
            qty = 0.0
        qty = math.floor(qty * 100 + EPS) / 100
        if qty > 0:
            self._fill(o, qty, px, at, "taker")
            self._consume(w.leg, "ask" if w.side is Side.BUY else "bid", qty)
        o.updated_at = at
        if o.remaining > EPS:
            o.state = OrderState.CANCELED
            self._event(at, "killed", o, f"{o.remaining:g} unfilled ({w.order_type.value})")
        else:
            o.state = OrderState.FILLED

    def _consume(self, leg: Leg, side: str, qty: float) -> None:
        name = f"{leg.value}_{side}_size"
        setattr(self.book, name, max(0.0, getattr(self.book, name) - qty))

    def _match_resting(self, ts: float) -> None:
        for o in sorted(self.orders.values(), key=lambda x: x.created_at):
            if o.state not in (OrderState.LIVE, OrderState.PARTIALLY_FILLED, OrderState.PENDING_CANCEL):
                continue
            if o.effective_at >= ts or o.want.order_type in (OrderType.FAK, OrderType.FOK):
                continue
            w = o.want
            if w.side is Side.BUY:
                touch, side = self.book.ask(w.leg), "ask"
                crosses = math.isfinite(touch) and touch <= w.price + EPS
            else:
                touch, side = self.book.bid(w.leg), "bid"
                crosses = math.isfinite(touch) and touch >= w.price - EPS
            if not crosses:
                continue
            qty = math.floor(min(o.remaining, self.book.size(w.leg, side)) * 100 + EPS) / 100
            if qty <= 0:
                continue
            self._fill(o, qty, w.price, ts, "maker")
            self._consume(w.leg, side, qty)
            if o.remaining <= EPS:
                o.state = OrderState.FILLED
            elif o.state is not OrderState.PENDING_CANCEL:
                o.state = OrderState.PARTIALLY_FILLED
            o.updated_at = ts

    def _fill(self, o: SimOrder, qty: float, price: float, at: float, role: str) -> None:
        w = o.want
        fee = taker_fee(qty, price, self.fee_rate) if role == "taker" else 0.0
        pos = self.positions.setdefault((w.strategy, w.leg), SimPosition())
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
        pos.last_fill_at = at
        o.filled = round(o.filled + qty, 6)
        self.fills.append({
            "ts": at, "t": round(at - self.window_start, 3), "id": o.client_id, "strategy": w.strategy,
            "leg": w.leg.value, "side": w.side.value, "price": price, "size": qty, "role": role,
            "fee": round(fee, 6), "order_role": w.role.value,
        })

    # -- records ---------------------------------------------------------------------------------------------

    def _event(self, at: float, action: str, o: SimOrder, reason: str) -> None:
        w = o.want
        self.events.append({
            "ts": at, "window_start": self.window_start, "t": round(at - self.window_start, 3), "action": action,
            "id": o.client_id, "strategy": w.strategy, "leg": w.leg.value, "side": w.side.value, "price": w.price,
            "size": w.size, "type": w.order_type.value, "post_only": w.post_only, "role": w.role.value, "reason": reason,
        })

    def _record_placement(self, o: SimOrder, now: float) -> None:
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
            "bids": {"up": self.book.up_bid, "down": self.book.down_bid},
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
        if self.winner is not None:
            winner, how = self.winner, "winner field of the ticks file"
        elif math.isfinite(b.up_bid) and math.isfinite(b.down_bid) and b.up_bid != b.down_bid:
            winner = "up" if b.up_bid > b.down_bid else "down"
            how = f"last best bids: up {b.up_bid:g}, down {b.down_bid:g}"
        elif math.isfinite(b.up_bid) != math.isfinite(b.down_bid):
            winner = "up" if math.isfinite(b.up_bid) else "down"
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


# ---------------------------------------------------------------------------------------------------------
# The replay.


@dataclass
class Result:
    windows: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    placements: list[dict] = field(default_factory=list)
    decisions: int = 0
    lines: int = 0
    warnings: list[str] = field(default_factory=list)

    def pnl(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for w in self.windows:
            for strategy, s in w["pnl"].items():
                total[strategy] = round(total.get(strategy, 0.0) + s["net"], 6)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "decisions": self.decisions, "config_warnings": self.warnings,
            "windows": self.windows, "orders": self.events, "pnl": self.pnl(),
            "total_pnl": round(sum(self.pnl().values()), 6),
        }


class Backtest:
    """Runs the production pipeline (trader/decide.py) over ticks. Also used directly by tests."""

    def __init__(self, config: Config, *, step_s: float = 0.1, latency_s: float = 0.0):
        if step_s <= 0:
            raise ValueError("step must be > 0")
        if latency_s < 0:
            raise ValueError("latency must be >= 0")
        self.config = config
        self.step_s = step_s
        self.latency_s = latency_s
        self.result = Result(warnings=warnings(config))
        self.sim: WindowSim | None = None
        self.state: DecisionState | None = None
        self.now = -math.inf
        self._next_step = math.inf

    def run(self, lines: Iterator[tuple[int, TickLine]] | list[TickLine]) -> Result:
        """Replay (line number, TickLine) pairs (read_ticks) or plain TickLines; BadTicks names the line."""
        for i, item in enumerate(lines, 1):
            n, line = item if isinstance(item, tuple) else (i, item)
            try:
                self.feed(line)
            except BadTicks as e:
                raise BadTicks(f"line {n}: {e}") from None
        self.finish()
        return self.result

    def feed(self, line: TickLine) -> None:
        self.result.lines += 1
        if self.sim is not None and line.window_start != self.sim.window_start:
            if line.window_start < self.sim.window_start:
                raise BadTicks(f"window_start {line.window_start} goes back to an earlier window")
            self._close_window()
        if self.sim is None:
            self.sim = WindowSim(line, self.config, self.latency_s, self.result.events, f"w{len(self.result.windows) + 1}")
            self.state = new_state(self.sim.view(line.ts, self.config))
            self._next_step = line.ts
        ts = max(line.ts, self.now)
        self._advance_to(ts)
        self.sim.apply_line(line)
        self._decide(ts)

    def finish(self) -> None:
        if self.sim is not None:
            self._close_window()

    def _advance_to(self, ts: float) -> None:
        """Periodic decisions (and pending actions taking effect) between the last instant and `ts`."""
        sim = self.sim
        end = min(ts, sim.window_end)
        while True:
            pending = [t for t in sim.pending_times() if t > self.now]
            nxt = min([self._next_step] + pending)
            if nxt >= end:
                break
            self._decide(nxt)

    def _decide(self, now: float) -> None:
        sim = self.sim
        self.now = max(self.now, now)
        sim.settle_pending(now)
        while self._next_step <= now + EPS:
            self._next_step += self.step_s
        if now >= sim.window_end:
            return
        for _ in range(MAX_PASSES):
            d: Decision = decide(sim.view(now, self.config), sim.order_views(), sim.position_views(), self.config, self.state, now)
            self.state = d.state
            self.result.decisions += 1
            for note in d.notes:
                sim.notes.setdefault(note, now)
            if not d.actions:
                break
            sim.submit(d.actions, now)
            if self.latency_s > 0:
                break

    def _close_window(self) -> None:
        sim = self.sim
        # The window's remaining time: periodic decisions run on the last book (it goes stale, as live).
        self._advance_to(sim.window_end)
        sim.close(sim.window_end)
        resolution = sim.resolve()
        self.result.windows.append({
            "window_start": sim.window_start, "window_end": sim.window_end, "fills": sim.fills,
            "notes": [{"t": round(t - sim.window_start, 3), "note": n} for n, t in sim.notes.items()],
            **resolution,
        })
        self.result.placements += sim.placements
        self.now = max(self.now, sim.window_end)
        self.sim = None
        self.state = None


# ---------------------------------------------------------------------------------------------------------
# Command line.


def _fmt_t(t: float) -> str:
    return f"t+{t:8.3f}s"


def render_text(result: Result) -> str:
    out: list[str] = []
    for w in result.warnings:
        out.append(f"config warning: {w}")
    for win in result.windows:
        ws = win["window_start"]
        out.append(f"window {ws} .. {win['window_end']}")
        events = [e for e in result.events if e["window_start"] == ws]
        out.append(f"  orders ({len([e for e in events if e['action'] == 'place'])} placed):")
        for e in events:
            flags = " post_only" if e["post_only"] else ""
            out.append(
                f"    {_fmt_t(e['t'])} {e['action']:<9} {e['id']:<7} {e['strategy']} {e['leg']:<4} {e['side']:<4} "
                f"{e['size']:>8.2f} @ {e['price']:<6g} {e['type']}{flags} {e['role']}: {e['reason']}"
            )
        out.append(f"  fills ({len(win['fills'])}):")
        for f in win["fills"]:
            out.append(
                f"    {_fmt_t(f['t'])} {f['id']:<7} {f['strategy']} {f['leg']:<4} {f['side']:<4} {f['size']:>8.2f} @ "
                f"{f['price']:<6g} {f['role']} fee {f['fee']:.4f} ({f['order_role']})"
            )
        out.append("  positions at the end:")
        for p in win["positions"]:
            dust = " (dust)" if p["dust"] else ""
            out.append(f"    {p['strategy']} {p['leg']:<4} {p['shares']:.2f} @ {p['avg_price']:.4f}{dust} -> payout {p['payout']:.4f}")
        if not win["positions"]:
            out.append("    none")
        out.append(f"  resolution: {win['winner'] or 'undetermined'} ({win['how']})")
        for strategy, s in win["pnl"].items():
            out.append(
                f"  pnl {strategy}: bought {s['bought']:.4f} sold {s['sold']:.4f} fees {s['fees']:.4f} "
                f"payout {s['payout']:.4f} net {s['net']:+.4f}"
            )
    total = result.pnl()
    out.append(f"lines {result.lines}, decisions {result.decisions}, windows {len(result.windows)}")
    out.append("pnl: " + (", ".join(f"{k} {v:+.4f}" for k, v in total.items()) or "no trades") + f"; total {sum(total.values()):+.4f}")
    return "\n".join(out) + "\n"


def _parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected KEY=VALUE, e.g. --set s1.entry_threshold=0.62")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="polymm-backtest",
        description="Replay recorded top-of-book ticks through S1/S2, risk and the planner against a simulated "
        "exchange (conservative fills; see the module documentation).",
    )
    parser.add_argument("ticks", help="JSON-lines file of top-of-book updates (polymm-feed --record)")
    parser.add_argument("--config", help="trader config file (TOML); default: built-in defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--step-ms", type=float, default=100.0, help="decide at least this often between ticks (default 100)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="orders and cancels take effect this long after the decision (default 0)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, _parse_sets(args.set))
    except ConfigError as e:
        print(f"polymm-backtest: config error: {e}", file=sys.stderr)
        return 2
    if args.step_ms <= 0 or args.latency_ms < 0:
        print("polymm-backtest: --step-ms must be > 0 and --latency-ms >= 0", file=sys.stderr)
        return 2
    bt = Backtest(config, step_s=args.step_ms / 1000.0, latency_s=args.latency_ms / 1000.0)
    try:
        result = bt.run(read_ticks(args.ticks))
    except BadTicks as e:
        print(f"polymm-backtest: {e}", file=sys.stderr)
        return 2
    if result.lines == 0:
        print(f"polymm-backtest: {args.ticks}: no ticks", file=sys.stderr)
        return 2
    try:
        if args.json:
            sys.stdout.write(json.dumps(_finite(result.to_json()), indent=1, allow_nan=False) + "\n")
        else:
            sys.stdout.write(render_text(result))
    except BrokenPipeError:  # `polymm-backtest ... | head`
        return 0
    return 0


def _finite(x: Any) -> Any:
    """JSON has no NaN/inf: an unknown number is null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


if __name__ == "__main__":
    raise SystemExit(main())
