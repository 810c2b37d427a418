"""Positions and P&L per market, strategy and leg, folded from fills (pure).

Recomputed from the fill store on demand rather than updated incrementally: a few dozen fills per
window make that cheap, and it makes positions immune to duplicated, reordered or reversed (FAILED)
trade reports - the store already settled those, and the fold only sees the result.

Accounting: average-cost. BUY adds shares at its price; SELL realises (price - avg) per share; taker
fees (pUSD) are subtracted from realised P&L as they are paid. At resolution the winning leg pays 1 pUSD
per share and the losing leg 0: what is still held is realised at that payout and the position closes.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from polymm.trader.model import FillView, Leg, PositionView, Side

_EPS = 1e-9


@dataclass
class _Book:
    shares: float = 0.0
    avg: float = 0.0
    realised: float = 0.0
    fees: float = 0.0
    first_fill_at: float | None = None
    last_fill_at: float | None = None

    def add(self, fill: FillView) -> None:
        signed = fill.size if fill.side is Side.BUY else -fill.size
        self.fees += fill.fee
        self.realised -= fill.fee
        if abs(self.shares) <= _EPS:
            self.first_fill_at = fill.ts
        self.last_fill_at = fill.ts
        if self.shares * signed >= 0:  # opening or adding
            total = self.shares + signed
            self.avg = (self.avg * abs(self.shares) + fill.price * abs(signed)) / abs(total) if abs(total) > _EPS else 0.0
            self.shares = total
            return
        closing = min(abs(signed), abs(self.shares))
        direction = 1.0 if self.shares > 0 else -1.0
        self.realised += direction * (fill.price - self.avg) * closing
        self.shares += signed
        if abs(self.shares) <= _EPS:
            self.shares, self.avg = 0.0, 0.0
        elif self.shares * direction < 0:  # flipped through zero: the rest opens at this price
            self.avg = fill.price
            self.first_fill_at = fill.ts

    def resolve(self, payout: float) -> None:
        if abs(self.shares) > _EPS:
            self.realised += (payout - self.avg) * self.shares
        self.shares, self.avg = 0.0, 0.0


Key = tuple[str, str, Leg]  # (condition_id, strategy, leg)


def fold(fills: Iterable[tuple[str, FillView]], resolutions: dict[str, Leg]) -> dict[Key, PositionView]:
    """Positions from (condition_id, fill) in match order; FAILED fills count zero."""
    books: dict[Key, _Book] = {}
    for condition_id, fill in fills:
        if fill.status == "FAILED":
            continue
        books.setdefault((condition_id, fill.strategy, fill.leg), _Book()).add(fill)
    for (condition_id, _, leg), book in books.items():
        winner = resolutions.get(condition_id)
        if winner is not None:
            book.resolve(1.0 if leg is winner else 0.0)
    return {
        key: PositionView(strategy=key[1], leg=key[2], shares=round(b.shares, 6), avg_price=round(b.avg, 6),
                          realised_pnl=round(b.realised, 6), fees=round(b.fees, 6),
                          first_fill_at=b.first_fill_at if abs(b.shares) > _EPS else None,
                          last_fill_at=b.last_fill_at)
        for key, b in books.items()
    }


def pnl_summary(positions: dict[Key, PositionView], resolutions: dict[str, Leg]) -> dict:
    """{"total": {...}, "by_strategy": {s: {...}}, "by_strategy_leg": {"s1/up": {...}}, "markets": {cond: {...}}}
    with realised (net of fees), fees, open shares; resolved markets say which leg won."""
    def bucket() -> dict:
        return {"realised": 0.0, "fees": 0.0, "open_shares": 0.0}

    total, by_strategy, by_leg, markets = bucket(), {}, {}, {}
    for (condition_id, strategy, leg), pos in positions.items():
        targets = (total, by_strategy.setdefault(strategy, bucket()), by_leg.setdefault(f"{strategy}/{leg.value}", bucket()),
                   markets.setdefault(condition_id, {**bucket(), "resolved": None}))
        for t in targets:
            t["realised"] += pos.realised_pnl
            t["fees"] += pos.fees
            t["open_shares"] += pos.shares
    for condition_id, m in markets.items():
        winner = resolutions.get(condition_id)
        m["resolved"] = winner.value if winner else None
    for b in [total, *by_strategy.values(), *by_leg.values(), *markets.values()]:
        for k in ("realised", "fees", "open_shares"):
            b[k] = round(b[k], 6)
    return {"total": total, "by_strategy": by_strategy, "by_strategy_leg": by_leg, "markets": markets}
