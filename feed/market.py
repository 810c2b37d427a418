"""The market identity: the one definition of which market a window trades and its trading rules, and the
one definition of its fee formula (`taker_fee`).

The feed discovers it (discovery.MarketInfo adds what only discovery needs), publishes it in the shared-memory
segment (shm.Snapshot.market reads it back) and the trader trades and journals it (trader/model.py re-exports
it). It is part of the feed's contract, so the trader imports it from here and never the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarketIdentity:
    """One window's market: what orders and fills need to know about it (and what the order journal keeps)."""

    condition_id: str
    up_token: str
    down_token: str
    window_start: int
    window_end: int
    tick_size: float
    min_order_size: float
    fee_rate: float  # the taker fee rate; makers pay none
    neg_risk: bool = False

    def token(self, leg: str) -> str:
        """The token id of a leg ("up"/"down", or the trader's Leg enum, whose values these are)."""
        return self.up_token if leg == "up" else self.down_token


def taker_fee(shares: float, price: float, rate: float) -> float:
    """Polymarket's taker fee in pUSD: shares x rate x p x (1 - p); makers pay none."""
    return shares * rate * price * (1.0 - price)
