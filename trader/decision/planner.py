"""Wants -> Place/Cancel actions against our working orders, without churn (pure).

Matching: a working order is kept when a want has the same strategy, leg, side, role, order type and post-only
flag, a price within half a tick and a size (the order's remaining shares) within `size_tol`. Strategies own the
requote rules (how far the bid must move, how long to wait); they return a want that mirrors a working order
they want kept, so the planner's tolerances are only about rounding.

Safety rules the planner enforces whatever the wants say:
- Cancels come before places in the returned list.
- A new order is placed only when no other working order of the same strategy, leg and side exists. For buys
  this is "never two working entry orders per leg per strategy" (a requote is cancel, then place once the cancel
  is confirmed, so the old order cannot fill on top of the new one). For sells it is also required by the
  exchange: a resting sell locks its shares, so a stop or a repriced take-profit would be rejected for
  insufficient balance until the old sell is gone.
- Fill-and-kill/fill-or-kill orders are never cancelled (they end by themselves); an order already being
  cancelled is not cancelled again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from polymm.trader.model import OrderState, OrderType, OrderView, Want

SIZE_TOL = 0.005  # shares: sizes travel with 2 decimals, so anything closer is the same size
_TAKERS = (OrderType.FAK, OrderType.FOK)


@dataclass(frozen=True)
class Place:
    want: Want


@dataclass(frozen=True)
class Cancel:
    client_id: str
    reason: str


Action = Place | Cancel


def matches(want: Want, order: OrderView, tick: float, size_tol: float = SIZE_TOL) -> bool:
    """Does this working order already do what the want asks?"""
    return (
        order.strategy == want.strategy
        and order.leg is want.leg
        and order.side is want.side
        and order.role is want.role
        and order.order_type is want.order_type
        and order.post_only == want.post_only
        and abs(order.price - want.price) < tick / 2
        and abs(order.remaining - want.size) <= size_tol
    )


def kept_orders(wants: Sequence[Want], working: Iterable[OrderView], tick: float) -> dict[int, OrderView]:
    """Index of each want that an existing working order already satisfies -> that order (one order per want)."""
    live = [o for o in working if o.state.working and o.state is not OrderState.PENDING_CANCEL]
    taken: set[str] = set()
    out: dict[int, OrderView] = {}
    for i, w in enumerate(wants):
        for o in live:
            if o.client_id not in taken and matches(w, o, tick):
                taken.add(o.client_id)
                out[i] = o
                break
    return out


def plan(
    wants: Sequence[Want],
    working: Sequence[OrderView],
    tick: float,
    *,
    reasons: Mapping[tuple, str] | None = None,
    default_reason: str = "no longer wanted",
) -> list[Action]:
    """The actions that make `working` what `wants` asks. A cancel is worded by `reasons[(strategy, leg, role)]`,
    else `reasons[(strategy, leg)]` (e.g. "stop: bid 0.49 < trigger 0.5"), else `default_reason`; a cancel
    replaced by a new want of the same role says "replace with ..."."""
    reasons = reasons or {}
    working = [o for o in working if o.state.working]
    kept = kept_orders(wants, working, tick)
    kept_ids = {o.client_id for o in kept.values()}
    new_wants = [w for i, w in enumerate(wants) if i not in kept]

    cancels: list[Action] = []
    for o in working:
        if o.client_id in kept_ids or o.state is OrderState.PENDING_CANCEL or o.order_type in _TAKERS:
            continue
        replacement = next((w for w in new_wants if _same_slot(w, o) and w.role is o.role), None)
        if replacement is not None:
            why = f"replace with {replacement.side.value} {replacement.size:g} @ {replacement.price:g} ({replacement.reason})"
        else:
            why = reasons.get((o.strategy, o.leg, o.role)) or reasons.get((o.strategy, o.leg)) or default_reason
        cancels.append(Cancel(o.client_id, why))

    places: list[Action] = []
    busy = {(o.strategy, o.leg, o.side) for o in working}
    for w in new_wants:
        slot = (w.strategy, w.leg, w.side)
        if slot in busy:
            continue  # wait until the other order of this slot is gone (see the module docstring)
        busy.add(slot)
        places.append(Place(w))
    return cancels + places


def _same_slot(w: Want, o: OrderView) -> bool:
    return w.strategy == o.strategy and w.leg is o.leg and w.side is o.side
