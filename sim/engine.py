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
Prices and sizes are Decimal. Fees: taker pays size * fee_rate * (p * (1 - p)) ^ fee_exponent, rounded to 5 dp, in pUSD
(production charges at match time); makers pay nothing.
Balances: pUSD and outcome tokens per maker address. A BUY reserves price*size pUSD while working, a
SELL reserves its shares; not enough free balance -> error "not enough balance / allowance".

Every state change is reported as an Event appended to `Engine.events` (the server drains it and turns
events into WebSocket messages); nothing in here knows about JSON.

Implementation notes
--------------------
* Storage: each market keeps ONE book in "Up space". A resting order sits there at its Up-equivalent
  price: BUY Up @p and SELL Down @(1-p) are Up bids at p; SELL Up @p and BUY Down @(1-p) are Up asks at
  p. Price-time priority therefore holds across both tokens, and the Down book is the exact mirror of
  the Up book (`book(down)` mirrors it on the fly), so the two can never disagree.
* Settlement is per party and generic: whoever BUYs token t at their own price x pays x per share and
  gets the shares; whoever SELLs gives the shares and receives x. When both sides BUY (mint) or both
  SELL (merge) the pUSD/tokens the pair needs come from / go to the collateral, so at all times
      sum(pUSD over accounts) + fees_collected + outstanding pairs  is constant (pairs = sum of Up
      positions = sum of Down positions; resolution turns the winning side into pUSD - at once with
      auto_redeem, else holder by holder through redeem_positions; merge_positions turns pairs back).
* BACKGROUND (the synthetic liquidity of sim/market.py) is an ordinary account that is exempt from
  balance checks and reservations: it may go negative in pUSD and in tokens ("unlimited balance").
  Every conservation sum above still holds exactly when it is included. Orders and trades that only
  involve BACKGROUND are not kept after they end (memory stays flat over hours of synthetic flow), and
  a trade with no non-background party emits no TradeEvent (nobody to tell); its LevelChange and
  LastTrade events are emitted as usual.
* Events are coalesced per operation: one LevelChange per touched level per token, with the final
  level total and that token's best bid/ask after the whole operation.
"""
from __future__ import annotations

import copy
import hashlib
import heapq
import uuid
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal
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
    slug: str  # btc-updown-15m-{T} (the 15m is in the slug whatever --window-s is)
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


# ---- the book ------------------------------------------------------------------------------------
class _Level:
    __slots__ = ("total", "orders")

    def __init__(self) -> None:
        self.total = ZERO
        self.orders: deque[SimOrder] = deque()


class _BookSide:
    """One side of the Up-space book: price -> FIFO level, plus an ascending price list."""

    __slots__ = ("levels", "prices", "is_bid")

    def __init__(self, is_bid: bool) -> None:
        self.levels: dict[Decimal, _Level] = {}
        self.prices: list[Decimal] = []  # ascending
        self.is_bid = is_bid

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def best_first(self) -> list[Decimal]:
        return self.prices[::-1] if self.is_bid else list(self.prices)

    def add(self, price: Decimal, order: SimOrder) -> None:
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = _Level()
            insort(self.prices, price)
        level.orders.append(order)
        level.total += order.remaining

    def reduce(self, price: Decimal, amount: Decimal) -> None:
        self.levels[price].total -= amount

    def remove_order(self, price: Decimal, order: SimOrder) -> None:
        level = self.levels[price]
        level.orders.remove(order)
        level.total -= order.remaining
        self.drop_if_empty(price)

    def drop_if_empty(self, price: Decimal) -> None:
        level = self.levels.get(price)
        if level is not None and not level.orders:
            del self.levels[price]
            del self.prices[bisect_left(self.prices, price)]

    def total_at(self, price: Decimal) -> Decimal:
        level = self.levels.get(price)
        return level.total if level is not None else ZERO


class _Market:
    __slots__ = ("spec", "bids", "asks")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.bids = _BookSide(is_bid=True)  # Up-space bids: BUY Up, SELL Down
        self.asks = _BookSide(is_bid=False)  # Up-space asks: SELL Up, BUY Down


def _up_price(order: SimOrder, spec: MarketSpec) -> Decimal:
    return order.price if order.token_id == spec.up_token else ONE - order.price


def _is_up_bid(order: SimOrder, spec: MarketSpec) -> bool:
    """BUY Up and SELL Down both want Up-space price to be low: they are Up bids."""
    return (order.side == "BUY") == (order.token_id == spec.up_token)


@dataclass
class _Settlement:
    """Everything one trade moved, so fail_trade can reverse it exactly."""

    pusd: list[tuple[str, Decimal]]  # (address, delta)
    tokens: list[tuple[str, str, Decimal]]  # (address, token, delta)
    fee: Decimal
    order_fills: list[tuple[str, Decimal]]  # (order_id, matched amount) incl. the taker's


class Engine:
    """Books, accounts and trades for any number of markets. Not thread-safe: one owner (the server's
    event loop) calls it."""

    def __init__(self, *, default_fund: Decimal = Decimal(1000), mined_after_s: float = 1.0,
                 confirmed_after_s: float = 3.0, gtd_min_lead_s: float = 180.0,
                 gtd_early_expiry_s: float = 60.0, auto_redeem: bool = True) -> None:
        self.events: list[Event] = []
        # True: resolution pays every holder at once (a wallet that approved Polymarket's auto-redeem
        # operator). False: positions stay conditional tokens until the wallet redeems them
        # (redeem_positions, via the sim's relayer) - what a wallet without that approval sees.
        self.auto_redeem = auto_redeem
        # condition id -> spec of a resolved market (winning_token set): kept after forget_market, so a
        # resolved position can still be redeemed hours later (production: no deadline).
        self._resolved: dict[str, MarketSpec] = {}
        self.default_fund = Decimal(default_fund)
        self.mined_after_s = mined_after_s
        self.confirmed_after_s = confirmed_after_s
        # Production: GTD needs expiration >= now + 3 min and is expired 60 s before `expiration`.
        self.gtd_min_lead_s = gtd_min_lead_s
        self.gtd_early_expiry_s = gtd_early_expiry_s
        self.unlimited: set[str] = {BACKGROUND}
        self.fees_collected = ZERO
        self._markets: dict[str, _Market] = {}
        self._token_market: dict[str, _Market] = {}
        self._pusd: dict[str, Decimal] = {}
        self._reserved_pusd: dict[str, Decimal] = {}
        self._positions: dict[tuple[str, str], Decimal] = {}
        self._reserved_tokens: dict[tuple[str, str], Decimal] = {}
        self._orders: dict[str, SimOrder] = {}  # every order still known (BACKGROUND ones only while live)
        self._resting: dict[str, SimOrder] = {}  # order id -> resting order
        self._resting_by_owner: dict[str, dict[str, SimOrder]] = {}
        self._trades: dict[str, Trade] = {}
        self._trades_by_address: dict[str, list[str]] = {}
        self._settlements: dict[str, _Settlement] = {}
        self._pending_trades: deque[str] = deque()  # MATCHED/MINED trades in match order
        self._gtd_heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._trade_seq = 0

    # ---- markets ---------------------------------------------------------------------------------
    def add_market(self, spec: MarketSpec) -> None:
        if spec.condition_id in self._markets:
            return  # idempotent: the market calendar re-announces listed windows
        m = _Market(spec)
        self._markets[spec.condition_id] = m
        self._token_market[spec.up_token] = m
        self._token_market[spec.down_token] = m

    def market(self, condition_id: str) -> MarketSpec | None:
        m = self._markets.get(condition_id)
        return m.spec if m else None

    def market_of_token(self, token_id: str) -> MarketSpec | None:
        m = self._token_market.get(token_id)
        return m.spec if m else None

    def markets(self) -> list[MarketSpec]:
        return [m.spec for m in self._markets.values()]

    def forget_market(self, condition_id: str) -> None:
        """Drop a resolved market's book and token index (long runs); balances and trades stay."""
        m = self._markets.get(condition_id)
        if m is None or not m.spec.closed:
            return
        del self._markets[condition_id]
        self._token_market.pop(m.spec.up_token, None)
        self._token_market.pop(m.spec.down_token, None)

    def stop_accepting(self, condition_id: str, now: float) -> None:
        """No new orders; open orders end CANCELED_MARKET_RESOLVED (with CANCELLATION events)."""
        m = self._markets[condition_id]
        m.spec.accepting_orders = False
        touched: set[tuple[bool, Decimal]] = set()
        for order in [o for o in self._resting.values() if o.market == condition_id]:
            touched.add(self._unrest(m, order))
            self._end_order(order, "CANCELED_MARKET_RESOLVED", now, event=True)
        self._emit_levels(m, touched, now)

    def resolve(self, condition_id: str, winning_token: str, now: float) -> None:
        """Winning token pays 1 pUSD per share to every holder; MarketResolved event."""
        m = self._markets[condition_id]
        spec = m.spec
        if winning_token not in (spec.up_token, spec.down_token):
            raise ValueError(f"{winning_token} is not a token of market {condition_id}")
        if spec.closed:
            return
        if spec.accepting_orders or any(o.market == condition_id for o in self._resting.values()):
            self.stop_accepting(condition_id, now)
        for key in [k for k in self._positions if k[1] in (spec.up_token, spec.down_token)]:
            self._reserved_tokens.pop(key, None)  # no order can hold shares of a closed market
            if self.auto_redeem:  # every position of this market becomes pUSD (winner 1, loser 0)
                shares = self._positions.pop(key)
                if key[1] == winning_token and shares:
                    self._pusd[key[0]] = self._pusd.get(key[0], ZERO) + shares
        spec.closed = True
        spec.winning_token = winning_token
        self._resolved[condition_id] = spec
        self.events.append(MarketResolved(condition_id, winning_token, now))

    def set_tick_size(self, condition_id: str, tick: Decimal, now: float) -> None:
        """TickSizeChange events for both tokens."""
        spec = self._markets[condition_id].spec
        tick = Decimal(tick)
        if tick == spec.tick_size:
            return
        old = spec.tick_size
        spec.tick_size = tick
        for token in (spec.up_token, spec.down_token):
            self.events.append(TickSizeChange(condition_id, token, old, tick, now))

    # ---- accounts --------------------------------------------------------------------------------
    def fund(self, address: str, pusd: Decimal) -> None:
        self.ensure_account(address)
        self._pusd[address] += Decimal(pusd)

    def ensure_account(self, address: str) -> None:
        """A new address starts with default_fund pUSD."""
        if address not in self._pusd:
            self._pusd[address] = ZERO if address in self.unlimited else self.default_fund

    def balance(self, address: str) -> Decimal:
        """Total pUSD (including what working BUYs reserve)."""
        return self._pusd.get(address, ZERO)

    def free_balance(self, address: str) -> Decimal:
        return self._pusd.get(address, ZERO) - self._reserved_pusd.get(address, ZERO)

    def position(self, address: str, token_id: str) -> Decimal:
        return self._positions.get((address, token_id), ZERO)

    def free_position(self, address: str, token_id: str) -> Decimal:
        key = (address, token_id)
        return self._positions.get(key, ZERO) - self._reserved_tokens.get(key, ZERO)

    def accounts(self) -> dict[str, Decimal]:
        """address -> total pUSD (conservation checks, admin state)."""
        return dict(self._pusd)

    def positions_of_token(self, token_id: str) -> dict[str, Decimal]:
        return {a: v for (a, t), v in self._positions.items() if t == token_id}

    def positions_of(self, address: str) -> dict[str, Decimal]:
        """token id -> shares the address holds (non-zero only), listed or resolved markets alike."""
        return {t: v for (a, t), v in self._positions.items() if a == address and v}

    def condition(self, condition_id: str) -> MarketSpec | None:
        """The spec of a listed market or of a resolved one the books have forgotten."""
        m = self._markets.get(condition_id)
        return m.spec if m is not None else self._resolved.get(condition_id)

    def condition_of_token(self, token_id: str) -> MarketSpec | None:
        m = self._token_market.get(token_id)
        if m is not None:
            return m.spec
        for spec in self._resolved.values():
            if token_id in (spec.up_token, spec.down_token):
                return spec
        return None

    # ---- conditional-token operations (what the collateral adapter does on chain) -------------------
    def redeem_positions(self, address: str, condition_id: str) -> Decimal:
        """CTF redeemPositions with index sets [1, 2]: burns the address's whole balance of both
        outcomes of a resolved condition and pays 1 pUSD per winning share (losers burn for 0).
        Returns the payout. Raises CtfError (the transaction reverts) before resolution."""
        spec = self._resolved.get(condition_id)
        if spec is None:
            raise CtfError("result for condition not received yet")
        payout = ZERO
        for token in (spec.up_token, spec.down_token):
            shares = self._positions.pop((address, token), ZERO)
            if token == spec.winning_token and shares > 0:
                payout += shares
        if payout:
            self.ensure_account(address)
            self._pusd[address] += payout
        return payout

    def merge_positions(self, address: str, condition_id: str, amount: Decimal) -> None:
        """CTF mergePositions with partition [1, 2]: `amount` Up + `amount` Down become `amount` pUSD.
        Needs that many free shares of each (shares a working SELL reserves cannot merge)."""
        spec = self.condition(condition_id)
        if spec is None:
            raise CtfError(f"condition {condition_id} is not prepared")
        amount = Decimal(amount)
        if amount <= 0:
            raise CtfError("merge amount must be positive")
        up, down = spec.up_token, spec.down_token
        if self.free_position(address, up) < amount or self.free_position(address, down) < amount:
            raise CtfError("ERC1155: burn amount exceeds balance")
        for token in (up, down):
            key = (address, token)
            self._positions[key] -= amount
            if not self._positions[key]:
                del self._positions[key]
        self.ensure_account(address)
        self._pusd[address] += amount

    # ---- orders ----------------------------------------------------------------------------------
    def submit(self, order: SimOrder, now: float) -> SubmitResult:
        """Validate (market accepting, tick, min size, post-only crossing, duplicate id, balance) and
        match. Error messages are production's (polymarket-protocol.md section 6)."""
        m = self._token_market.get(order.token_id)
        if m is None:
            # Production answers this for a token whose book does not exist (unknown or long closed).
            return _reject(f"the orderbook {order.token_id} does not exist")
        spec = m.spec
        error = self._validate(m, order, now)
        if error:
            return _reject(error)
        order = copy.copy(order)
        order.market = spec.condition_id
        order.outcome = "Up" if order.token_id == spec.up_token else "Down"
        order.size_matched = ZERO
        order.status = "LIVE"
        order.created_at = order.created_at or now
        self.ensure_account(order.maker_address)

        is_bid = _is_up_bid(order, spec)
        limit = _up_price(order, spec)
        opposite = m.asks if is_bid else m.bids
        crosses = _crosses(opposite, is_bid, limit)
        if crosses and order.post_only:
            return _reject(MSG_POST_ONLY_CROSSES)
        if order.order_type in ("FOK", "FAK"):
            fillable = _fillable(opposite, is_bid, limit, order.original_size)
            if order.order_type == "FOK" and fillable < order.original_size:
                return _reject(MSG_FOK)
            if order.order_type == "FAK" and fillable == ZERO:
                return _reject(MSG_FAK)
        if not self._has_balance(spec, order, crosses):
            return _reject(MSG_BALANCE)

        self._orders[order.order_id] = order
        touched: set[tuple[bool, Decimal]] = set()
        trade = self._match(m, order, is_bid, limit, opposite, touched, now) if crosses else None
        rests = order.remaining > 0 and order.order_type in ("GTC", "GTD")
        if rests:
            self._rest(m, order, is_bid, limit)
            touched.add((is_bid, limit))
            # PLACEMENT = the order works on the book; when part of it matched on entry an UPDATE
            # follows with the same cumulative size_matched, so consumers that track fills from
            # UPDATEs see every match.
            self._order_event("PLACEMENT", order, now)
            if trade is not None:
                self._order_event("UPDATE", order, now)
        else:
            # Filled, or the FAK/FOK remainder is killed: the order is done (no CANCELLATION event:
            # it never worked on the book, as production).
            order.status = "MATCHED"
            self._order_event("UPDATE", order, now)
            self._forget_if_background(order)
        self._emit_levels(m, touched, now)

        result = SubmitResult(ok=True, order=copy.copy(order), status="live" if trade is None else "matched")
        if trade is not None:
            result.trades = [copy.copy(trade)]
            notional = sum((f.matched_amount * (ONE - f.price if _is_cross(f, order) else f.price)
                            for f in trade.maker_fills), ZERO)
            if order.side == "BUY":
                result.making_amount, result.taking_amount = notional, trade.size
            else:
                result.making_amount, result.taking_amount = trade.size, notional
        return result

    def cancel(self, order_id: str, owner: str, now: float) -> str | None:
        """None when cancelled; else the reason for not_canceled. Production answers one text for an
        unknown, already cancelled, already matched or someone else's order (MSG_CANCEL_GONE)."""
        order = self._resting.get(order_id)
        if order is None or order.owner != owner:
            return MSG_CANCEL_GONE
        m = self._markets[order.market]
        touched = {self._unrest(m, order)}
        self._end_order(order, "CANCELED", now, event=True)
        self._emit_levels(m, touched, now)
        return None

    def cancel_all(self, owner: str, now: float) -> tuple[list[str], dict[str, str]]:
        return self.cancel_market(owner, now)

    def cancel_market(self, owner: str, now: float, market: str | None = None,
                      asset_id: str | None = None) -> tuple[list[str], dict[str, str]]:
        # The live order objects, not open_orders()' copies: ending a copy would leave the stored
        # order LIVE and GET /data/order/{id} would keep saying so after a cancel-all.
        targets = sorted(
            (o for o in self._resting_by_owner.get(owner, {}).values()
             if (market is None or o.market == market) and (asset_id is None or o.token_id == asset_id)),
            key=lambda o: o.created_at,
        )
        canceled: list[str] = []
        by_market: dict[str, set[tuple[bool, Decimal]]] = {}
        for order in targets:
            m = self._markets[order.market]
            by_market.setdefault(order.market, set()).add(self._unrest(m, order))
            self._end_order(order, "CANCELED", now, event=True)
            canceled.append(order.order_id)
        for cid, touched in by_market.items():
            self._emit_levels(self._markets[cid], touched, now)
        return canceled, {}

    def get_order(self, order_id: str) -> SimOrder | None:
        order = self._orders.get(order_id)
        return copy.copy(order) if order is not None else None

    def open_orders(self, owner: str, market: str | None = None, asset_id: str | None = None) -> list[SimOrder]:
        found = []
        for order in self._resting_by_owner.get(owner, {}).values():
            if market is not None and order.market != market:
                continue
            if asset_id is not None and order.token_id != asset_id:
                continue
            found.append(copy.copy(order))
        found.sort(key=lambda o: o.created_at)
        return found

    def trades(self, address: str, market: str | None = None, asset_id: str | None = None,
               trade_id: str | None = None, after: float | None = None, before: float | None = None) -> list[Trade]:
        """Trades where the address was taker or one of the makers."""
        found = []
        for tid in self._trades_by_address.get(address, ()):
            t = self._trades[tid]
            if trade_id is not None and tid != trade_id:
                continue
            if market is not None and t.market != market:
                continue
            if asset_id is not None and t.token_id != asset_id and all(f.token_id != asset_id for f in t.maker_fills):
                continue
            if after is not None and t.match_time < after:
                continue
            if before is not None and t.match_time > before:
                continue
            found.append(copy.copy(t))
        return found

    def get_trade(self, trade_id: str) -> Trade | None:
        t = self._trades.get(trade_id)
        return copy.copy(t) if t is not None else None

    def fail_trade(self, trade_id: str, now: float) -> None:
        """Fault injection: the trade goes FAILED and every balance it moved is reversed.

        Orders keep their place: a fill taken back from an order still on the book returns to the book
        (behind nothing: same queue position); an order that had left the book stays off it with its
        size_matched reduced (production does not resurrect orders either)."""
        trade = self._trades.get(trade_id)
        if trade is None or trade.status in ("FAILED", "CONFIRMED"):
            raise ValueError(f"trade {trade_id} cannot fail (unknown or final)")
        market = self._markets.get(trade.market)
        if market is None or market.spec.closed:
            # Resolution already paid the positions out; reversing now would resurrect shares.
            raise ValueError(f"trade {trade_id} cannot fail: its market is resolved")
        s = self._settlements.pop(trade_id)
        for address, delta in s.pusd:
            self._pusd[address] = self._pusd.get(address, ZERO) - delta
        for address, token, delta in s.tokens:
            key = (address, token)
            self._positions[key] = self._positions.get(key, ZERO) - delta
        self.fees_collected -= s.fee
        touched_by_market: dict[str, set[tuple[bool, Decimal]]] = {}
        for order_id, amount in s.order_fills:
            order = self._orders.get(order_id)
            if order is None:
                continue
            order.size_matched -= amount
            if order_id in self._resting:
                m = self._markets[order.market]
                is_bid = _is_up_bid(order, m.spec)
                price = _up_price(order, m.spec)
                (m.bids if is_bid else m.asks).levels[price].total += amount
                self._adjust_reservation(order, amount)
                touched_by_market.setdefault(order.market, set()).add((is_bid, price))
            self._order_event("UPDATE", order, now)
        for cid, touched in touched_by_market.items():
            self._emit_levels(self._markets[cid], touched, now)
        trade.status = "FAILED"
        trade.last_update = now
        self.events.append(TradeEvent(copy.copy(trade), now))

    def prune(self, before: float) -> int:
        """Forget finished orders created before `before` and final trades matched before it (a sim
        running for days must not grow without bound). Returns how many records went. A pruned
        order id is no longer reported as a duplicate: ids carry a timestamp, so a true resubmit
        arrives within seconds, not hours."""
        gone = 0
        for order_id in [oid for oid, o in self._orders.items()
                         if o.created_at < before and oid not in self._resting]:
            del self._orders[order_id]
            gone += 1
        old_trades = {tid for tid, t in self._trades.items()
                      if t.match_time < before and t.status in ("CONFIRMED", "FAILED")}
        for tid in old_trades:
            del self._trades[tid]
            self._settlements.pop(tid, None)
        if old_trades:
            for address, tids in list(self._trades_by_address.items()):
                kept = [tid for tid in tids if tid not in old_trades]
                if kept:
                    self._trades_by_address[address] = kept
                else:
                    del self._trades_by_address[address]
        return gone + len(old_trades)

    def book(self, token_id: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks) aggregated by price, each best FIRST (the server reorders for the wire)."""
        m = self._token_market.get(token_id)
        if m is None:
            return [], []
        up_bids = [(p, m.bids.levels[p].total) for p in m.bids.best_first()]
        up_asks = [(p, m.asks.levels[p].total) for p in m.asks.best_first()]
        if token_id == m.spec.up_token:
            return up_bids, up_asks
        # Down bids are the Up asks mirrored (Up ask at p = Down bid at 1-p), best first stays best first.
        return [(ONE - p, s) for p, s in up_asks], [(ONE - p, s) for p, s in up_bids]

    def top_of_book(self, token_id: str) -> tuple[Decimal | None, Decimal | None]:
        m = self._token_market[token_id]
        return self._best(m, token_id)

    def advance(self, now: float) -> None:
        """Time-driven transitions: trades MATCHED -> MINED -> CONFIRMED, GTD expiry (60 s early, as production)."""
        self._advance_trades(now)
        while self._gtd_heap and self._gtd_heap[0][0] <= now:
            _, _, order_id = heapq.heappop(self._gtd_heap)
            order = self._resting.get(order_id)
            if order is None:
                continue
            m = self._markets[order.market]
            touched = {self._unrest(m, order)}
            self._end_order(order, "CANCELED", now, event=True)
            self._emit_levels(m, touched, now)

    def _advance_trades(self, now: float) -> None:
        # Pending trades are in match order and the delays are fixed, so the first trade not yet due
        # for MINED ends the scan.
        for trade_id in self._pending_trades:
            trade = self._trades.get(trade_id)
            if trade is None or trade.status not in ("MATCHED", "MINED"):
                continue
            if now < trade.match_time + self.mined_after_s:
                break
            if trade.status == "MATCHED":
                self._set_trade_status(trade, "MINED", now)
            if now >= trade.match_time + self.confirmed_after_s:
                self._set_trade_status(trade, "CONFIRMED", now)
                self._settlements.pop(trade_id, None)  # final: nothing to reverse any more
        while self._pending_trades:
            trade = self._trades.get(self._pending_trades[0])
            if trade is not None and trade.status in ("MATCHED", "MINED"):
                break
            self._pending_trades.popleft()

    def _set_trade_status(self, trade: Trade, status: TradeStatus, now: float) -> None:
        trade.status = status
        trade.last_update = now
        self.events.append(TradeEvent(copy.copy(trade), now))

    # ---- validation ------------------------------------------------------------------------------
    def _validate(self, m: _Market, order: SimOrder, now: float) -> str:
        spec = m.spec
        if not spec.accepting_orders or spec.closed:
            # Production has one text for a book that does not take orders (before open and after the
            # close alike); a closed market's book soon disappears ("the orderbook ... does not exist").
            return MSG_NOT_READY
        if order.side not in ("BUY", "SELL") or order.order_type not in ("GTC", "GTD", "FOK", "FAK"):
            return MSG_INVALID_PAYLOAD
        if order.post_only and order.order_type not in ("GTC", "GTD"):
            # Production rejects postOnly with FOK/FAK; its exact text is not documented, so this
            # wording is ours (same prefix as the crossing rejection).
            return MSG_POST_ONLY_TYPE
        tick = spec.tick_size
        price = order.price
        if price % tick != 0 or price < tick or price > ONE - tick:
            return f"order {order.order_id} is invalid. Price ({_fmt(price)}) breaks minimum tick size rule: {_fmt(tick)}"
        if order.original_size <= 0:
            return MSG_INVALID_PAYLOAD
        if order.order_type in ("GTC", "GTD") and order.original_size < spec.min_size:
            return (f"order {order.order_id} is invalid. Size ({_fmt(order.original_size)}) lower than the "
                    f"minimum: {_fmt(spec.min_size)}")
        if order.order_type == "GTD" and (not order.expiration or order.expiration < now + self.gtd_min_lead_s):
            return MSG_INVALID_EXPIRATION
        if order.order_id in self._orders:
            return f"order {order.order_id} is invalid. Duplicated."
        return ""

    def _has_balance(self, spec: MarketSpec, order: SimOrder, crosses: bool) -> bool:
        if order.maker_address in self.unlimited:
            return True
        if order.side == "SELL":
            return self.free_position(order.maker_address, order.token_id) >= order.original_size
        cost = order.price * order.original_size
        if crosses:
            # A taker BUY pays the fee on top. Cost per share with fee, x + r*(x*(1-x))^e, rises with the
            # execution price x, so the fee at the limit price bounds what any fill can cost.
            cost += _fee(order.original_size, spec, order.price, up=True)
        return self.free_balance(order.maker_address) >= cost

    # ---- matching --------------------------------------------------------------------------------
    def _match(self, m: _Market, taker: SimOrder, is_bid: bool, limit: Decimal, opposite: _BookSide,
               touched: set[tuple[bool, Decimal]], now: float) -> Trade | None:
        spec = m.spec
        taker_is_up = taker.token_id == spec.up_token
        fills: list[MakerFill] = []
        settlement = _Settlement([], [], ZERO, [])
        fee_exact = ZERO
        notional = ZERO
        maker_finished: list[SimOrder] = []
        last_up_price = None
        while taker.remaining > 0:
            best = opposite.best()
            if best is None or (best > limit if is_bid else best < limit):
                break
            level = opposite.levels[best]
            while level.orders and taker.remaining > 0:
                maker = level.orders[0]
                amount = min(maker.remaining, taker.remaining)
                # The taker trades at the maker's price, seen in the taker's own token.
                taker_price = best if taker_is_up else ONE - best
                self._settle_party(settlement, taker, taker_price, amount)
                self._settle_party(settlement, maker, maker.price, amount)
                # Mint/merge need no extra move: when both BUY (mint) the two pUSD legs sum to
                # -amount, when both SELL (merge) to +amount: the pair's collateral.
                fee_exact += amount * _fee_per_share(spec, taker_price)
                notional += amount * taker_price
                maker.size_matched += amount
                taker.size_matched += amount
                level.total -= amount
                self._adjust_reservation(maker, -amount)
                settlement.order_fills.append((maker.order_id, amount))
                fills.append(MakerFill(maker.order_id, maker.owner, maker.maker_address, maker.token_id,
                                       maker.outcome, maker.side, maker.price, amount))
                if maker.remaining == 0:
                    level.orders.popleft()
                    self._resting.pop(maker.order_id, None)
                    owned = self._resting_by_owner.get(maker.owner)
                    if owned is not None:
                        owned.pop(maker.order_id, None)
                    maker.status = "MATCHED"
                    maker_finished.append(maker)
                self._order_event("UPDATE", maker, now)
                last_up_price = best
            touched.add((not is_bid, best))
            opposite.drop_if_empty(best)
        if not fills:
            return None
        size = taker.size_matched
        fee = _round_fee(fee_exact)
        # Fees are paid in pUSD by the taker: on top of a BUY, out of a SELL's proceeds.
        self._move_pusd(settlement, taker.maker_address, -fee)
        settlement.fee = fee
        self.fees_collected += fee
        settlement.order_fills.append((taker.order_id, size))
        self._trade_seq += 1
        trade = Trade(
            trade_id=str(uuid.UUID(bytes=hashlib.sha256(f"trade:{self._trade_seq}".encode()).digest()[:16],
                                   version=4)),
            market=spec.condition_id, taker_order_id=taker.order_id, taker_owner=taker.owner,
            taker_address=taker.maker_address, token_id=taker.token_id, outcome=taker.outcome,
            side=taker.side, size=size, price=(notional / size).quantize(PRICE_QUANTUM, ROUND_HALF_UP).normalize(),
            fee_rate_bps=int(spec.fee_rate * 10000), taker_fee=fee, match_time=now, maker_fills=fills,
            last_update=now)
        last_price = last_up_price if taker_is_up else ONE - last_up_price
        self.events.append(LastTrade(spec.condition_id, taker.token_id, last_price, taker.side,
                                     size, trade.fee_rate_bps, now))
        parties = {taker.maker_address, *(f.maker_address for f in fills)} - self.unlimited
        if parties:
            self._trades[trade.trade_id] = trade
            self._settlements[trade.trade_id] = settlement
            self._pending_trades.append(trade.trade_id)
            for address in parties:
                self._trades_by_address.setdefault(address, []).append(trade.trade_id)
            self.events.append(TradeEvent(copy.copy(trade), now))
        for maker in maker_finished:
            self._forget_if_background(maker)
        return trade

    def _settle_party(self, s: _Settlement, order: SimOrder, price: Decimal, amount: Decimal) -> None:
        pay = price * amount
        if order.side == "BUY":
            self._move_pusd(s, order.maker_address, -pay)
            self._move_tokens(s, order.maker_address, order.token_id, amount)
        else:
            self._move_pusd(s, order.maker_address, pay)
            self._move_tokens(s, order.maker_address, order.token_id, -amount)

    def _move_pusd(self, s: _Settlement, address: str, delta: Decimal) -> None:
        if delta:
            self._pusd[address] = self._pusd.get(address, ZERO) + delta
            s.pusd.append((address, delta))

    def _move_tokens(self, s: _Settlement, address: str, token: str, delta: Decimal) -> None:
        key = (address, token)
        self._positions[key] = self._positions.get(key, ZERO) + delta
        s.tokens.append((address, token, delta))

    # ---- resting orders and reservations ---------------------------------------------------------
    def _rest(self, m: _Market, order: SimOrder, is_bid: bool, up_price: Decimal) -> None:
        (m.bids if is_bid else m.asks).add(up_price, order)
        self._resting[order.order_id] = order
        self._resting_by_owner.setdefault(order.owner, {})[order.order_id] = order
        self._adjust_reservation(order, order.remaining)
        if order.order_type == "GTD":
            self._seq += 1
            heapq.heappush(self._gtd_heap, (order.expiration - self.gtd_early_expiry_s, self._seq, order.order_id))

    def _unrest(self, m: _Market, order: SimOrder) -> tuple[bool, Decimal]:
        """Take a resting order off the book and free its reservation; returns the touched level."""
        is_bid = _is_up_bid(order, m.spec)
        price = _up_price(order, m.spec)
        (m.bids if is_bid else m.asks).remove_order(price, order)
        self._adjust_reservation(order, -order.remaining)
        self._resting.pop(order.order_id, None)
        owned = self._resting_by_owner.get(order.owner)
        if owned is not None:
            owned.pop(order.order_id, None)
            if not owned:
                del self._resting_by_owner[order.owner]
        return is_bid, price

    def _order_event(self, kind: Literal["PLACEMENT", "UPDATE", "CANCELLATION"], order: SimOrder,
                     now: float) -> None:
        # Order events go to the order's owner on the user channel; the background has no channel.
        if order.maker_address not in self.unlimited:
            self.events.append(OrderEvent(kind, copy.copy(order), now))

    def _end_order(self, order: SimOrder, status: OrderStatus, now: float, *, event: bool) -> None:
        order.status = status
        if event:
            self._order_event("CANCELLATION", order, now)
        self._forget_if_background(order)

    def _forget_if_background(self, order: SimOrder) -> None:
        if order.maker_address in self.unlimited and order.order_id not in self._resting:
            self._orders.pop(order.order_id, None)

    def _adjust_reservation(self, order: SimOrder, amount: Decimal) -> None:
        address = order.maker_address
        if address in self.unlimited:
            return
        if order.side == "BUY":
            self._reserved_pusd[address] = self._reserved_pusd.get(address, ZERO) + order.price * amount
        else:
            key = (address, order.token_id)
            self._reserved_tokens[key] = self._reserved_tokens.get(key, ZERO) + amount

    # ---- events ----------------------------------------------------------------------------------
    def _best(self, m: _Market, token_id: str) -> tuple[Decimal | None, Decimal | None]:
        bid, ask = m.bids.best(), m.asks.best()
        if token_id == m.spec.up_token:
            return bid, ask
        return (ONE - ask if ask is not None else None), (ONE - bid if bid is not None else None)

    def _emit_levels(self, m: _Market, touched: set[tuple[bool, Decimal]], now: float) -> None:
        """One LevelChange per touched Up-space level for the Up token and its mirror for Down."""
        if not touched:
            return
        spec = m.spec
        up_bb, up_ba = self._best(m, spec.up_token)
        down_bb, down_ba = self._best(m, spec.down_token)
        for is_bid, price in sorted(touched, key=lambda t: (not t[0], t[1])):
            total = (m.bids if is_bid else m.asks).total_at(price)
            self.events.append(LevelChange(spec.condition_id, spec.up_token, "BUY" if is_bid else "SELL",
                                           price, total, up_bb, up_ba, now))
        for is_bid, price in sorted(touched, key=lambda t: (t[0], -t[1])):
            total = (m.bids if is_bid else m.asks).total_at(price)
            # An Up bid at p is a Down ask at 1-p and vice versa.
            self.events.append(LevelChange(spec.condition_id, spec.down_token, "SELL" if is_bid else "BUY",
                                           ONE - price, total, down_bb, down_ba, now))


# ---- helpers -------------------------------------------------------------------------------------
def _reject(message: str, status: int = 400) -> SubmitResult:
    return SubmitResult(ok=False, error=message, http_status=status)


def _crosses(opposite: _BookSide, is_bid: bool, limit: Decimal) -> bool:
    best = opposite.best()
    if best is None:
        return False
    return best <= limit if is_bid else best >= limit


def _fillable(opposite: _BookSide, is_bid: bool, limit: Decimal, wanted: Decimal) -> Decimal:
    """How much of `wanted` the book can fill up to `limit` (stops counting once enough)."""
    total = ZERO
    for price in opposite.best_first():
        if (price > limit) if is_bid else (price < limit):
            break
        total += opposite.levels[price].total
        if total >= wanted:
            return wanted
    return total


def _is_cross(fill: MakerFill, taker: SimOrder) -> bool:
    """The maker is on the other token (mint/merge): the taker's price is the complement."""
    return fill.token_id != taker.token_id


def _fee_per_share(spec: MarketSpec, price: Decimal) -> Decimal:
    return spec.fee_rate * (price * (ONE - price)) ** spec.fee_exponent


def _fee(size: Decimal, spec: MarketSpec, price: Decimal, *, up: bool = False) -> Decimal:
    exact = size * _fee_per_share(spec, price)
    return exact.quantize(FEE_QUANTUM, rounding=ROUND_UP if up else ROUND_HALF_UP)


def _round_fee(exact: Decimal) -> Decimal:
    return exact.quantize(FEE_QUANTUM, rounding=ROUND_HALF_UP)


def _fmt(value: Decimal) -> str:
    """Decimal as production prints numbers in messages: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")
