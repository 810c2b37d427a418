"""Accounts of the matching engine (sim/engine.py): pUSD and outcome tokens per maker address, what working
orders reserve, the balance check before an order is accepted, and the moves one trade makes (recorded in a
_Settlement so a failed trade can be reversed exactly). BACKGROUND is exempt from checks and reservations.

A part of Engine, which owns the state these methods use (Engine.__init__).
"""
from __future__ import annotations

from decimal import Decimal

from polymm.sim.fees import _fee
from polymm.sim.records import ZERO, SimOrder, MarketSpec, _Settlement


class Balances:
    """Methods of Engine; see the module docstring."""

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

    def _adjust_reservation(self, order: SimOrder, amount: Decimal) -> None:
        address = order.maker_address
        if address in self.unlimited:
            return
        if order.side == "BUY":
            self._reserved_pusd[address] = self._reserved_pusd.get(address, ZERO) + order.price * amount
        else:
            key = (address, order.token_id)
            self._reserved_tokens[key] = self._reserved_tokens.get(key, ZERO) + amount
