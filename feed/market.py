"""The market identity: the one definition of which market a window trades and its trading rules. (The fee
formula is the trader's: trader/decision/fees.py, with the schedule the exchange publishes per market.)

The feed discovers it (discovery.MarketInfo adds what only discovery needs), publishes it in the shared-memory
segment (shm.Snapshot.market reads it back) and the trader trades and journals it (trader/model.py re-exports
it; MarketView.market carries it into every decision). It is part of the feed's contract, so the trader imports
it from here and never the other way round. Nothing else repeats its fields: readers go through `.market`.
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
    fee_rate: float  # the taker fee rate Gamma shows (feeSchedule.rate); the trader charges the CLOB's schedule
    neg_risk: bool = False

    def token(self, leg: str) -> str:
        """The token id of a leg ("up"/"down", or the trader's Leg enum, whose values these are)."""
        return self.up_token if leg == "up" else self.down_token

