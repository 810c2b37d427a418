"""The matching engine's records (sim/engine.py): markets, orders, trades, submit results, the events the
server drains, and production's error messages. Plain data; prices and sizes are Decimal.
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

ZERO = Decimal(0)
ONE = Decimal(1)
FEE_QUANTUM = Decimal("0.00001")  # production rounds fees to 5 dp
PRICE_QUANTUM = Decimal("0.000001")  # the taker's average price: pUSD has 6 decimals

# Production messages (polymarket-protocol.md section 6). All are HTTP 400.
MSG_NOT_READY = "the market is not yet ready to process new orders"
MSG_BALANCE = "not enough balance / allowance"
MSG_POST_ONLY_CROSSES = "invalid post-only order: order crosses book"
MSG_FOK = "order couldn't be fully filled. FOK orders are fully filled or killed."
MSG_FAK = "no orders found to match with FAK order. FAK orders are partially filled or killed if no match is found."
MSG_POST_ONLY_TYPE = "invalid post-only order: only GTC and GTD orders can be post-only"
MSG_INVALID_EXPIRATION = "invalid expiration"
MSG_INVALID_PAYLOAD = "Invalid order payload"
# Cancel failures (`not_canceled` values); production uses one text for unknown, cancelled and matched.
MSG_CANCEL_GONE = "order can't be found - already canceled or matched"


class CtfError(Exception):
    """A conditional-token operation that would revert on chain; the message says why."""


@dataclass
class MarketSpec:
    condition_id: str  # 0x + 64 hex
    slug: str  # the series' slug for the window (polymm/series.py): btc-updown-15m-{T}, eth-updown-5m-{T}, ...
    up_token: str  # decimal string (a uint256)
    down_token: str
    window_start: int  # unix seconds
    window_end: int
    tick_size: Decimal = Decimal("0.01")
    min_size: Decimal = Decimal("5")
    fee_rate: Decimal = Decimal("0.07")
    fee_exponent: Decimal = Decimal("1")  # the market's fee schedule (GET /clob-markets fd.r / fd.e)
    accepting_orders: bool = True
    closed: bool = False
    winning_token: str | None = None  # set at resolution
    series: str = "btc-15m"  # the series the window belongs to (Gamma's titles and texts follow its asset)


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

    @property
    def remaining(self) -> Decimal:
        return self.original_size - self.size_matched


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

@dataclass
class _Settlement:
    """Everything one trade moved, so fail_trade can reverse it exactly."""

    pusd: list[tuple[str, Decimal]]  # (address, delta)
    tokens: list[tuple[str, str, Decimal]]  # (address, token, delta)
    fee: Decimal
    order_fills: list[tuple[str, Decimal]]  # (order_id, matched amount) incl. the taker's
