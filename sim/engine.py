"""polymm-sim matching engine: the exchange's books, accounts and trades, with no I/O and no clock of
its own (callers pass `now`). Deterministic: same inputs, same outputs.

CONTRACT (used by sim/server.py, sim/clob.py, sim/ws.py and sim/market.py). Implementation: sim helper A.

One market = one condition with two outcome tokens (Up, Down). The two books are one: a BUY Up at p is
also an offer to sell Down at 1 - p. Matching crosses:
  BUY Up @p   vs resting SELL Up @<=p           (plain trade)
  BUY Up @p   vs resting BUY Down @>=1-p         (mint: a pUSD pair becomes one Up + one Down)
  SELL Up @p  vs resting BUY Up @>=p             (plain trade)
  SELL Up @p  vs resting SELL Down @<=1-p        (merge: one Up + one Down become 1 pUSD)
and the same with Up/Down swapped. Price-time priority; the taker gets the maker's price.
Prices and sizes are Decimal. Fees: taker pays size * fee_rate * p * (1 - p), rounded to 5 dp, in pUSD
(production charges at match time); makers pay nothing.
Balances: pUSD and outcome tokens per maker address. A BUY reserves price*size pUSD while working, a
SELL reserves its shares; not enough free balance -> error "not enough balance / allowance".

Every state change is reported as an Event appended to `Engine.events` (the server drains it and turns
events into WebSocket messages); nothing in here knows about JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Side = Literal["BUY", "SELL"]
OrderType = Literal["GTC", "GTD", "FOK", "FAK"]
# REST/WS order status strings exactly as production spells them.
OrderStatus = Literal["LIVE", "MATCHED", "CANCELED", "CANCELED_MARKET_RESOLVED", "INVALID"]
TradeStatus = Literal["MATCHED", "MINED", "CONFIRMED", "RETRYING", "FAILED"]

BACKGROUND = "__background__"  # owner/address of the synthetic liquidity (unlimited balance)


@dataclass
class MarketSpec:
    condition_id: str  # 0x + 64 hex
    slug: str  # btc-updown-15m-{T} (the 15m is in the slug whatever --window-s is)
    up_token: str  # decimal string (a uint256)
    down_token: str
    window_start: int  # unix seconds
    window_end: int
    tick_size: Decimal = Decimal("0.01")
    min_size: Decimal = Decimal("5")
    fee_rate: Decimal = Decimal("0.07")
    accepting_orders: bool = True
    closed: bool = False
    winning_token: str | None = None  # set at resolution


@dataclass
class SimOrder:
    order_id: str  # the EIP-712 order hash (the server computes it from the signed order)
    owner: str  # API key that posted it (routes user-channel events)
    maker_address: str  # the funder whose balances move
    market: str  # condition id
    token_id: str
    side: Side
    price: Decimal
    original_size: Decimal
    order_type: OrderType = "GTC"
    post_only: bool = False
    expiration: int = 0  # unix seconds, GTD only
    created_at: float = 0.0
    size_matched: Decimal = Decimal(0)
    status: OrderStatus = "LIVE"
    outcome: str = ""  # "Up" | "Down"


@dataclass
class MakerFill:
    order_id: str
    owner: str
    maker_address: str
    token_id: str
    outcome: str
    side: Side
    price: Decimal  # the maker order's own price (in its own token)
    matched_amount: Decimal


@dataclass
class Trade:
    trade_id: str  # uuid-like string
    market: str
    taker_order_id: str
    taker_owner: str
    taker_address: str
    token_id: str  # the taker's token
    outcome: str
    side: Side  # the taker's side
    size: Decimal  # the taker's matched size in this trade
    price: Decimal  # the taker's average price in its own token
    fee_rate_bps: int
    taker_fee: Decimal
    match_time: float
    maker_fills: list[MakerFill] = field(default_factory=list)
    status: TradeStatus = "MATCHED"
    last_update: float = 0.0


@dataclass
class SubmitResult:
    ok: bool
    order: SimOrder | None = None
    status: str = ""  # "live" | "matched" | "unmatched" (POST /order's status field)
    trades: list[Trade] = field(default_factory=list)
    making_amount: Decimal = Decimal(0)
    taking_amount: Decimal = Decimal(0)
    error: str = ""  # the production message when not ok
    http_status: int = 200


# ---- events (drained by the server) -------------------------------------------------------------
@dataclass
class LevelChange:
    """Total size now resting at one price level of one token's book ("0" = level gone)."""

    market: str
    token_id: str
    side: Side  # BUY = bid level, SELL = ask level
    price: Decimal
    size: Decimal
    best_bid: Decimal | None
    best_ask: Decimal | None
    ts: float


@dataclass
class OrderEvent:
    kind: Literal["PLACEMENT", "UPDATE", "CANCELLATION"]
    order: SimOrder  # a copy as of the event
    ts: float


@dataclass
class TradeEvent:
    trade: Trade  # a copy as of the event (status changes re-send the same trade id)
    ts: float


@dataclass
class LastTrade:
    market: str
    token_id: str
    price: Decimal
    side: Side
    size: Decimal
    fee_rate_bps: int
    ts: float


@dataclass
class TickSizeChange:
    market: str
    token_id: str
    old_tick: Decimal
    new_tick: Decimal
    ts: float


@dataclass
class MarketResolved:
    market: str
    winning_token: str
    ts: float


Event = LevelChange | OrderEvent | TradeEvent | LastTrade | TickSizeChange | MarketResolved


class Engine:
    """Books, accounts and trades for any number of markets. Not thread-safe: one owner (the server's
    event loop) calls it."""

    def __init__(self, *, default_fund: Decimal = Decimal(1000), mined_after_s: float = 1.0,
                 confirmed_after_s: float = 3.0) -> None:
        self.events: list[Event] = []
        raise NotImplementedError

    # markets
    def add_market(self, spec: MarketSpec) -> None: ...
    def market(self, condition_id: str) -> MarketSpec | None: ...
    def market_of_token(self, token_id: str) -> MarketSpec | None: ...
    def stop_accepting(self, condition_id: str, now: float) -> None:
        """No new orders; open orders end CANCELED_MARKET_RESOLVED (with CANCELLATION events)."""
    def resolve(self, condition_id: str, winning_token: str, now: float) -> None:
        """Winning token pays 1 pUSD per share to every holder; MarketResolved event."""
    def set_tick_size(self, condition_id: str, tick: Decimal, now: float) -> None:
        """TickSizeChange events for both tokens."""

    # accounts
    def fund(self, address: str, pusd: Decimal) -> None: ...
    def ensure_account(self, address: str) -> None:
        """A new address starts with default_fund pUSD."""
    def balance(self, address: str) -> Decimal:
        """Total pUSD (including what working BUYs reserve)."""
    def free_balance(self, address: str) -> Decimal: ...
    def position(self, address: str, token_id: str) -> Decimal: ...

    # orders
    def submit(self, order: SimOrder, now: float) -> SubmitResult:
        """Validate (market accepting, tick, min size, post-only crossing, duplicate id, balance) and
        match. Error messages are production's (polymarket-protocol.md section 6)."""
    def cancel(self, order_id: str, owner: str, now: float) -> str | None:
        """None when cancelled; else the reason for not_canceled ("order not found", "order already matched"...)."""
    def cancel_all(self, owner: str, now: float) -> tuple[list[str], dict[str, str]]: ...
    def cancel_market(self, owner: str, now: float, market: str | None = None,
                      asset_id: str | None = None) -> tuple[list[str], dict[str, str]]: ...
    def get_order(self, order_id: str) -> SimOrder | None: ...
    def open_orders(self, owner: str, market: str | None = None, asset_id: str | None = None) -> list[SimOrder]: ...
    def trades(self, address: str, market: str | None = None, asset_id: str | None = None,
               trade_id: str | None = None, after: float | None = None, before: float | None = None) -> list[Trade]:
        """Trades where the address was taker or one of the makers."""
    def fail_trade(self, trade_id: str, now: float) -> None:
        """Fault injection: the trade goes FAILED and every balance it moved is reversed."""
    def book(self, token_id: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks) aggregated by price, each best FIRST (the server reorders for the wire)."""
    def advance(self, now: float) -> None:
        """Time-driven transitions: trades MATCHED -> MINED -> CONFIRMED, GTD expiry (60 s early, as production)."""
