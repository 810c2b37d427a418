"""Builders for ledger tests: markets, orders and fills as the execution core hands them to the writer."""
from __future__ import annotations

from dataclasses import dataclass

from polymm.trader.model import FillView, Leg, MarketIdentity, OrderType, Role, Side


def market(start: int, window_s: int = 60, n: int = 0) -> MarketIdentity:
    return MarketIdentity(condition_id=f"0xcond{start}{n}", up_token=f"up{start}", down_token=f"down{start}",
                          window_start=start, window_end=start + window_s, tick_size=0.01, min_order_size=5,
                          fee_rate=0.07)


def fill(trade: str, leg: Leg, side: Side, price: float, size: float, ts: float, *, role: str = "maker",
         fee: float = 0.0, status: str = "MATCHED", order: str | None = None, strategy: str = "s1") -> FillView:
    return FillView(trade_id=trade, order_id=order or f"order-{trade}", client_id=None, strategy=strategy, leg=leg,
                    side=side, price=price, size=size, fee=fee, role=role, status=status, ts=ts)


@dataclass
class OrderLike:
    client_id: str
    order_id: str | None
    condition_id: str
    strategy: str = "s1"
    leg: Leg = Leg.UP
    side: Side = Side.BUY
    price: float = 0.6
    size: float = 10.0
    order_type: OrderType = OrderType.GTC
    post_only: bool = True
    role: Role = Role.ENTRY
