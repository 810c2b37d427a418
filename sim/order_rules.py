"""The market info's order timing rules as the sim enforces them (docs.polymarket.com "Get CLOB market info"):
`oas`, the minimum order age in seconds, and `itode`, whether taker order delay is enabled.

* Minimum order age: a cancel of an order younger than `oas` is answered in `not_canceled` (the order stays).
  Production's wording is not documented; the sim's says what happened. polymm must never send one (it holds the
  cancel instead), so the sim counts them (`early_cancels`, GET /_sim/state stats) for the tests to pin.
* Taker delay: a marketable order that is not post-only is answered `delayed` at once and matched
  TAKER_DELAY_S later against the book of that moment; a cancel meanwhile is refused with "cannot cancel because
  the order is in pending/delayed status" (Polymarket's announcement for the crypto Up/Down markets' 250 ms delay,
  as reported by Jinse Finance, 2026-06-03).

Both are off by default (the sim's market info says `oas` 0, `itode` false); the admin fault `order_rules`
switches them for every listed market.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polymm.sim.engine import SimOrder

TAKER_DELAY_S = 0.25
DELAYED = "cannot cancel because the order is in pending/delayed status"


@dataclass
class OrderRules:
    min_order_age_s: float = 0.0
    taker_delay: bool = False
    delay_s: float = TAKER_DELAY_S  # how long a delayed taker is held (tests may lengthen it to act within it)
    delayed: dict[str, tuple[float, "SimOrder"]] = field(default_factory=dict)  # order id -> (due, order)
    early_cancels: int = 0  # cancels that came before the minimum order age (refused)

    def marketable(self, side: str, price: Decimal, top: tuple[Decimal | None, Decimal | None]) -> bool:
        bid, ask = top
        return (ask is not None and price >= ask) if side == "BUY" else (bid is not None and price <= bid)

    def hold(self, order: "SimOrder", now: float) -> None:
        self.delayed[order.order_id] = (now + self.delay_s, order)

    def due(self, now: float) -> list["SimOrder"]:
        out = [order for oid, (at, order) in list(self.delayed.items()) if at <= now]
        for order in out:
            del self.delayed[order.order_id]
        return out

    def cancel_refusal(self, order_id: str, created_at: float | None, now: float) -> str | None:
        if order_id in self.delayed:
            return DELAYED
        if created_at is not None and now < created_at + self.min_order_age_s:
            self.early_cancels += 1
            return (f"order is younger than the market's minimum order age ({self.min_order_age_s:g} s): "
                    "not cancelled")
        return None

    def clear(self) -> None:
        self.min_order_age_s, self.taker_delay, self.delay_s = 0.0, False, TAKER_DELAY_S
