"""What happens to a market and its trades after matching (sim/engine.py): trades MATCHED -> MINED ->
CONFIRMED, a trade failed and reversed (fault injection), a market closing and resolving (auto-redeem or not),
and the conditional-token operations a wallet sends through the relayer (redeem, merge).

A part of Engine, which owns the state these methods use (Engine.__init__).
"""
from __future__ import annotations

import copy
from decimal import Decimal

from polymm.sim.book import _is_up_bid, _up_price
from polymm.sim.records import ZERO, CtfError, MarketResolved, Trade, TradeEvent, TradeStatus


class Settlement:
    """Methods of Engine; see the module docstring."""

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
