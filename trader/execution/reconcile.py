"""Reconciliation: the exchange's REST view (open orders, recent trades) against ours (pure part).

Run at start before any new order, after every user-socket reconnect (the channel does not replay what
was missed), after heartbeats recover, and periodically. REST is the source of truth after any gap:

- every trade row goes through the fill store (idempotent: known fills change nothing, missed ones
  are added, FAILED ones reversed). A fill new to the store that an earlier run recorded (its trade id is in
  the journal) is restored, not "missed": after a restart only a fill nobody recorded is worth a warning;
- an exchange open order we know: its state and fill amount are taken from the exchange;
- an exchange open order we do not know: adopted with its journal attribution (restart), else adopted
  as strategy "external" and reported (it is on our wallet, but not placed by this trader);
- a local working order missing from the exchange's open orders, and every order whose submit outcome
  is unknown: listed for a GET /data/order lookup (the caller does the I/O and applies the answer).

Returns the differences in words; the caller logs them. Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from polymm.trader.execution.fills import EXTERNAL, FillStore, OrderInfo, TradeReport
from polymm.trader.model import FillView, Leg, OrderState, OrderType, Role, Side
from polymm.trader.execution.order_journal import JournalOrder
from polymm.trader.execution.orders import Order, OrderBook, Transition
from polymm.trader.venue.user_wire import OrderReport


@dataclass
class ReconcileResult:
    differences: list[str] = field(default_factory=list)
    need_lookup: list[str] = field(default_factory=list)  # exchange order ids to GET /data/order
    order_changes: list[Transition] = field(default_factory=list)
    fill_changes: list[tuple[FillView, str | None]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)  # trade ids recorded before a restart, found again


def order_from_journal(j: JournalOrder) -> Order:
    return Order(
        client_id=j.client_id, strategy=j.strategy, leg=Leg(j.leg), side=Side(j.side), price=j.price, size=j.size,
        role=Role(j.role), order_type=OrderType(j.order_type), post_only=j.post_only, reason=j.reason,
        token_id=j.token_id, condition_id=j.condition_id, created_at=j.created_at, updated_at=j.created_at,
        state=OrderState.UNKNOWN, order_id=j.order_id,
    )


def order_from_exchange(r: OrderReport, leg: Leg, condition_id: str) -> Order:
    return Order(
        client_id=f"external-{r.order_id[:18]}", strategy=EXTERNAL, leg=leg, side=Side(r.side or "BUY"),
        price=r.price, size=r.original_size, role=Role.ENTRY,
        order_type=OrderType(r.order_type) if r.order_type in OrderType.__members__ else OrderType.GTC,
        post_only=False, reason="found on the exchange", token_id=r.asset_id, condition_id=condition_id,
        created_at=r.created_at, updated_at=r.created_at, state=OrderState.UNKNOWN, order_id=r.order_id,
    )


def describe_order(o: Order) -> str:
    return (f"id={o.order_id or o.client_id} strategy={o.strategy} leg={o.leg.value} side={o.side.value} "
            f"price={o.price:g} size={o.size:g}")


def apply(book: OrderBook, fills: FillStore, open_orders: list[OrderReport], trades: list[TradeReport],
          journal: dict[str, JournalOrder], token_leg: Callable[[str], tuple[str, Leg] | None],
          markets: set[str], now: float, recorded_fills: set[str] | frozenset[str] = frozenset()) -> ReconcileResult:
    """Bring `book` and `fills` in line with the exchange's `open_orders` and `trades` for `markets`.
    `recorded_fills`: trade ids an earlier run recorded (the journal)."""
    res = ReconcileResult()

    # Orders first, so fills of adopted orders are attributed to their strategy.
    exchange_open: set[str] = set()
    for r in open_orders:
        exchange_open.add(r.order_id)
        local = book.by_exchange.get(r.order_id)
        adopted = local is None
        if local is None:
            j = journal.get(r.order_id)
            if j is not None:
                local = order_from_journal(j)
                book.adopt(local)
                fills.attribute(r.order_id, OrderInfo(local.client_id, local.strategy, local.leg, local.side))
                res.differences.append(f"open order adopted from the journal: {describe_order(local)}")
            else:
                where = token_leg(r.asset_id)
                if where is None:
                    continue  # not one of our markets
                local = order_from_exchange(r, where[1], where[0])
                book.adopt(local)
                res.differences.append(f"open order on our wallet not placed by this trader, tracked as external: "
                                       f"{describe_order(local)}")
        t = book.on_exchange_order(r.order_id, r.status, r.size_matched, now, r.original_size)
        if t is not None and t.before is not None and (t.before.state != t.after.state or t.before.filled != t.after.filled):
            res.order_changes.append(t)
            if not adopted:
                res.differences.append(
                    f"order {local.order_id}: local {t.before.state.value} filled={t.before.filled:g} -> exchange "
                    f"{t.after.state.value} filled={t.after.filled:g}")

    for tr in trades:
        for fill, previous in fills.apply(tr):
            res.fill_changes.append((fill, previous))
            if previous is None and fill.trade_id in recorded_fills:
                if fill.trade_id not in res.restored:
                    res.restored.append(fill.trade_id)
            elif previous is None:
                res.differences.append(
                    f"fill missed by the user channel: trade={fill.trade_id} id={fill.order_id} strategy={fill.strategy} "
                    f"leg={fill.leg.value} side={fill.side.value} price={fill.price:g} size={fill.size:g} "
                    f"status={fill.status}")
            elif fill.status == "FAILED":
                res.differences.append(f"fill reversed (FAILED) missed by the user channel: trade={fill.trade_id} "
                                       f"id={fill.order_id}")

    for order in list(book.by_client.values()):
        if order.condition_id not in markets or order.order_id is None:
            continue
        t = book.on_fill(order.order_id, fills.matched_shares(order.order_id), now)
        if t is not None:
            res.order_changes.append(t)
        if order.state is OrderState.UNKNOWN:
            res.need_lookup.append(order.order_id)
        elif not order.state.terminal and order.order_id not in exchange_open and not order.submit_unanswered:
            res.need_lookup.append(order.order_id)
    return res
