"""The trader's shared vocabulary: legs, sides, what a strategy wants, and read-only views of orders,
positions and fills.

This module is the contract between the strategies (pure functions that return `Want`s), the planner
that turns wants into place/cancel actions, and the execution core that makes the exchange agree.
Plain data only: no I/O, no clocks.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from polymm.feed.market import MarketIdentity  # noqa: F401 - re-exported: the trader's vocabulary


class Leg(str, enum.Enum):
    """One outcome token of the market."""

    UP = "up"
    DOWN = "down"

    @property
    def other(self) -> "Leg":
        return Leg.DOWN if self is Leg.UP else Leg.UP


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    GTC = "GTC"
    GTD = "GTD"
    FOK = "FOK"
    FAK = "FAK"


class OrderState(str, enum.Enum):
    PENDING_SUBMIT = "pending_submit"  # built and signed, sent or about to be; no answer yet
    UNKNOWN = "unknown"  # submit timed out or 5xx: outcome unknown until the exchange is asked
    LIVE = "live"  # resting, nothing filled
    PARTIALLY_FILLED = "partially_filled"  # resting, some filled
    PENDING_CANCEL = "pending_cancel"  # cancel sent (or deferred until the submit is known)
    FILLED = "filled"  # terminal
    CANCELED = "canceled"  # terminal (also market resolved, FAK/FOK remainder killed)
    REJECTED = "rejected"  # terminal: the exchange refused it

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_STATES  # a set built once (a tuple per call was ~0.7 us, on every publish)

    @property
    def working(self) -> bool:
        """Counts as an order that may still fill."""
        return not self.terminal


_TERMINAL_STATES = frozenset((OrderState.FILLED, OrderState.CANCELED, OrderState.REJECTED))


class Role(str, enum.Enum):
    """What an order is for; the planner only replaces an order with a want of the same role."""

    ENTRY = "entry"
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    FLATTEN = "flatten"


@dataclass(frozen=True)
class Want:
    """An order a strategy wants working (resting) or sent (FAK/FOK) now.

    Strategies return the full set of wants each decision; the planner diffs it against working
    orders with tolerances, so returning the same want twice does not churn.
    """

    strategy: str  # "s1" | "s2"
    leg: Leg
    side: Side
    price: float  # already on the tick (trader/decision/ticks.py)
    size: float  # shares, 2 decimals
    role: Role
    order_type: OrderType = OrderType.GTC
    post_only: bool = False
    reason: str = ""  # words for the order log line: "entry bid>=0.60", "tp avg+0.01", "stop bid<0.50"


@dataclass(frozen=True)
class OrderView:
    """What the execution core knows of one of our orders."""

    client_id: str  # ours, assigned before sending
    order_id: str | None  # the exchange's (EIP-712 order hash); known once signed
    strategy: str
    leg: Leg
    side: Side
    price: float
    size: float  # original size, shares
    filled: float  # shares matched so far
    state: OrderState
    role: Role
    order_type: OrderType
    post_only: bool
    created_at: float  # unix seconds
    updated_at: float  # unix seconds of the last state change
    reason: str = ""
    condition_id: str = ""  # the order's market ("" where a view is built without one: tests, the backtest)
    token_id: str = ""  # the leg's token
    # Why a cancel was requested (the state shows pending_cancel until the order ends). Words for log lines and the
    # ledger, not a change of the order: left out of equality, so a re-requested cancel is no new order event.
    cancel_reason: str | None = field(default=None, compare=False)
    # No cancel goes out before this (unix s; 0: none): the market's minimum order age, a taker delay (orders.py).
    hold_until: float = field(default=0.0, compare=False)

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.size - self.filled, 6))


@dataclass(frozen=True)
class FillView:
    """One of our fills (one trade id, one of our orders)."""

    trade_id: str
    order_id: str
    client_id: str | None
    strategy: str
    leg: Leg
    side: Side
    price: float
    size: float
    fee: float  # pUSD; makers pay none
    role: str  # "maker" | "taker"
    status: str  # MATCHED | MINED | CONFIRMED | FAILED
    ts: float  # unix seconds of the match


@dataclass(frozen=True)
class PositionView:
    """Position of one strategy in one leg, from its fills."""

    strategy: str
    leg: Leg
    shares: float = 0.0
    avg_price: float = 0.0  # average entry price of the shares held
    realised_pnl: float = 0.0  # pUSD, net of fees
    fees: float = 0.0
    first_fill_at: float | None = None  # unix seconds of the first fill of the current position
    last_fill_at: float | None = None


@dataclass(frozen=True)
class LegTop:
    """One leg's best bid and ask with their sizes; NaN where there is no level."""

    bid: float
    bid_size: float
    ask: float
    ask_size: float


@dataclass(frozen=True)
class MarketView:
    """The market as a strategy sees it at one decision: from the feed's shared memory.

    The book fields (`up_bid` ... `down_ask_size`, `bid()`, `ask()`) are the market WITHOUT our own orders
    (strategies.md: "best bid" and "best ask" mean the market without us): the engine subtracts every order
    of ours that can rest from the published depth (trader/decision/net_book.py). `up_raw`/`down_raw` keep
    the book as published, ours included, for the few places where our orders must count (how much is
    ahead of us in `mmctl orders`, the display); None when no order of ours rests on that leg (raw = net).
    A side in `net_unknown` had only our orders within the published depth, so the price without us is not
    known: its fields are NaN, and every rule treats it as an empty side (no bid: no entry), never as our own
    price. Views built without netting (the backtest replays a book that never held our orders) leave them
    at their defaults.
    """

    # Which market, its window and its trading rules (one definition: feed/market.py; the tick as the feed
    # publishes it now). Its fee_rate is Gamma's display rate; fees are charged with fee_rate/fee_exponent below.
    market: MarketIdentity
    # The market's taker fee schedule as the exchange publishes it (GET /clob-markets, with fee_exponent;
    # trader/decision/fees.py); without one read yet, Gamma's rate with exponent 1.
    fee_rate: float
    up_bid: float
    up_bid_size: float
    up_ask: float
    up_ask_size: float
    down_bid: float
    down_bid_size: float
    down_ask: float
    down_ask_size: float
    age_ms: float  # since the feed's last book change for this market (a quiet book grows old: not stale by itself)
    # The feed may be traded on: alive (status connected, heartbeat within risk.stale_feed_ms, its market socket
    # answering) and not frozen (market data within risk.quiet_feed_ms). A quiet book is fresh.
    fresh: bool
    crossed: bool = False
    accepting_orders: bool = True
    fee_exponent: float = 1.0  # with fee_rate: the market's taker fee schedule
    # The BTC reference price (issue 16): P(Up wins) from trader/decision/fair_value.py, NaN when the Chainlink price is
    # stale or the window's opening price unknown (a fair-value-guarded strategy then does not enter).
    fair_up: float = float("nan")
    btc: float = float("nan")  # Chainlink BTC/USD
    btc_age_ms: float = float("inf")  # by the price's own timestamp
    btc_open: float = float("nan")  # the window's opening price (NaN: unknown)
    stale_reason: str = ""  # why not fresh, in words ("" when fresh)

    def fair(self, leg: Leg) -> float:
        """The leg's fair value (NaN when unknown): Down wins exactly when Up does not."""
        return self.fair_up if leg is Leg.UP else 1.0 - self.fair_up
    up_raw: LegTop | None = None
    down_raw: LegTop | None = None
    net_unknown: frozenset = frozenset()  # {(Leg, Side)}: our orders fill the published depth of that side

    def bid(self, leg: Leg) -> float:
        """The best bid without our orders (NaN: none, or unknown: see `net_unknown`)."""
        return self.up_bid if leg is Leg.UP else self.down_bid

    def ask(self, leg: Leg) -> float:
        """The best ask without our orders."""
        return self.up_ask if leg is Leg.UP else self.down_ask

    def bid_size(self, leg: Leg) -> float:
        return self.up_bid_size if leg is Leg.UP else self.down_bid_size

    def ask_size(self, leg: Leg) -> float:
        return self.up_ask_size if leg is Leg.UP else self.down_ask_size

    def net(self, leg: Leg) -> LegTop:
        """The leg's top without our orders."""
        if leg is Leg.UP:
            return LegTop(self.up_bid, self.up_bid_size, self.up_ask, self.up_ask_size)
        return LegTop(self.down_bid, self.down_bid_size, self.down_ask, self.down_ask_size)

    def raw(self, leg: Leg) -> LegTop:
        """The leg's top as the exchange displays it, our orders included."""
        raw = self.up_raw if leg is Leg.UP else self.down_raw
        return raw if raw is not None else self.net(leg)

    def known(self, leg: Leg, side: "Side") -> bool:
        """False when the price of that side without our orders is beyond the published depth."""
        return (leg, side) not in self.net_unknown

    def token(self, leg: Leg) -> str:
        return self.up_token if leg is Leg.UP else self.down_token


# MarketIdentity (the market one window trades) is the feed's contract: feed/market.py defines it once.


# ---- execution core status and events (added by the execution core, helper D) -----------------
class ExchangeMode(str, enum.Enum):
    """What the exchange currently lets us do (trader/execution/exchange_state.py decides)."""

    NORMAL = "normal"
    ENGINE_RESTARTING = "engine_restarting"  # 425: no orders at all until `until`
    POST_ONLY = "post_only"  # after an engine restart: only post-only orders until `until`
    CANCEL_ONLY = "cancel_only"  # 503: cancels only
    RATE_LIMITED = "rate_limited"  # 429: nothing new until `until` (Retry-After)
    CLOSED_ONLY = "closed_only"  # account may only close positions: we place nothing


@dataclass(frozen=True)
class ExchangeStatus:
    """The execution core's health as the operator (mmctl status) and the decision loop see it."""

    mode: ExchangeMode = ExchangeMode.NORMAL
    until: float | None = None  # unix seconds the mode lasts until (None = until further notice)
    heartbeat_ok: bool = True  # dead-man switch heartbeats are being accepted
    user_stream_connected: bool = False
    last_reconcile_at: float | None = None
    blocked_legs: dict = field(default_factory=dict)  # {Leg: reason in words}
    warnings: list = field(default_factory=list)  # list[str], in words

    @property
    def can_place(self) -> bool:
        """New orders may be sent (post-only restrictions aside). False in closed-only mode, where only
        closing SELLs are accepted by the core (place() refuses the rest with the reason)."""
        return self.heartbeat_ok and self.mode in (ExchangeMode.NORMAL, ExchangeMode.POST_ONLY)

    @property
    def post_only_required(self) -> bool:
        return self.mode is ExchangeMode.POST_ONLY


@dataclass(frozen=True)
class OrderChanged:
    """ExecutionCore.poll_events(): one of our orders changed state or fill amount."""

    order: OrderView
    previous_state: OrderState | None


@dataclass(frozen=True)
class FillChanged:
    """ExecutionCore.poll_events(): a fill appeared, advanced (MINED/CONFIRMED) or was reversed (FAILED)."""

    fill: FillView
    previous_status: str | None  # None = new fill
    condition_id: str = ""  # the fill's market ("" when unknown)


@dataclass(frozen=True)
class StatusChanged:
    """ExecutionCore.poll_events(): the exchange mode, heartbeat or blocked legs changed."""

    status: ExchangeStatus


@dataclass(frozen=True)
class MarketResolvedEvent:
    """ExecutionCore.poll_events(): a market we held resolved; its positions are realised."""

    condition_id: str
    winning_leg: Leg
