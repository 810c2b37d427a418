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
* Modules: this one is the facade (Engine: its state, markets, queries, time) and re-exports the records
  (records.py: markets, orders, trades, events, messages); Engine's parts are matching.py (validation,
  matching, resting, cancels, level events), balances.py (accounts, reservations, a trade's moves),
  settlement.py (trade status, failed trades, resolution, redeem/merge); book.py is the Up-space book and
  fees.py the taker fee.
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
import heapq
from collections import deque
from decimal import Decimal

from polymm.sim.balances import Balances
from polymm.sim.book import _Market
from polymm.sim.matching import Matching
# The records are part of the engine's contract: importers take them from here.
from polymm.sim.records import (BACKGROUND, FEE_QUANTUM, MSG_BALANCE, MSG_CANCEL_GONE, MSG_FAK, MSG_FOK,
                                MSG_INVALID_EXPIRATION, MSG_INVALID_PAYLOAD, MSG_NOT_READY, MSG_POST_ONLY_CROSSES,
                                MSG_POST_ONLY_TYPE, ONE, PRICE_QUANTUM, ZERO, CtfError, Event, LastTrade, LevelChange,
                                MakerFill, MarketResolved, MarketSpec, OrderEvent, OrderStatus, OrderType, Side,
                                SimOrder, SubmitResult, TickSizeChange, Trade, TradeEvent, TradeStatus, _Settlement)
from polymm.sim.settlement import Settlement

__all__ = ["Engine", "BACKGROUND", "FEE_QUANTUM", "MSG_BALANCE", "MSG_CANCEL_GONE", "MSG_FAK", "MSG_FOK",
    "MSG_INVALID_EXPIRATION", "MSG_INVALID_PAYLOAD", "MSG_NOT_READY", "MSG_POST_ONLY_CROSSES", "MSG_POST_ONLY_TYPE",
    "ONE", "PRICE_QUANTUM", "ZERO", "CtfError", "Event", "LastTrade", "LevelChange", "MakerFill", "MarketResolved",
    "MarketSpec", "OrderEvent", "OrderStatus", "OrderType", "Side", "SimOrder", "SubmitResult", "TickSizeChange",
    "Trade", "TradeEvent", "TradeStatus"]


class Engine(Matching, Settlement, Balances):
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
