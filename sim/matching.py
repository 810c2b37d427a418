"""Orders in, trades out (sim/engine.py): validation with production's messages, matching at the maker's price
(plain, mint and merge crosses), resting, cancelling, the books as the server shows them, and the coalesced
level events.

A part of Engine, which owns the state these methods use (Engine.__init__).
"""
from __future__ import annotations

import copy
import hashlib
import heapq
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from polymm.sim.book import _BookSide, _crosses, _fillable, _is_up_bid, _Market, _up_price
from polymm.sim.fees import _fee_per_share, _round_fee
from polymm.sim.records import (MSG_BALANCE, MSG_CANCEL_GONE, MSG_FAK, MSG_FOK, MSG_INVALID_EXPIRATION,
                                MSG_INVALID_PAYLOAD, MSG_NOT_READY, MSG_POST_ONLY_CROSSES, MSG_POST_ONLY_TYPE, ONE,
                                PRICE_QUANTUM, ZERO, LastTrade, LevelChange, MakerFill, OrderEvent, OrderStatus,
                                SimOrder, SubmitResult, Trade, TradeEvent, _Settlement)


class Matching:
    """Methods of Engine; see the module docstring."""

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


def _reject(message: str, status: int = 400) -> SubmitResult:
    return SubmitResult(ok=False, error=message, http_status=status)


def _is_cross(fill: MakerFill, taker: SimOrder) -> bool:
    """The maker is on the other token (mint/merge): the taker's price is the complement."""
    return fill.token_id != taker.token_id


def _fmt(value: Decimal) -> str:
    """Decimal as production prints numbers in messages: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")
