"""Builders for the ledger tests (tests/trader/ledger/): markets, orders and fills as the execution core hands them to the writer."""
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


def synthetic_ledger(path, windows: int, start: int, window_s: int = 60, seed: int = 1) -> None:
    """A ledger of `windows` traded windows: each buys 10 shares of one leg (maker), sells some back at a take-profit
    in half the windows (taker, with fee), and holds the rest to resolution. Deterministic for a seed."""
    import random

    from polymm.trader.ledger import LedgerWriter
    from polymm.feed.market import taker_fee

    rng = random.Random(seed)
    w = LedgerWriter(path, "live")
    w.start({"source": "synthetic"})
    for i in range(windows):
        m = market(start + i * window_s, window_s)
        w.window(m, ts=m.window_start)
        leg = Leg.UP if rng.random() < 0.5 else Leg.DOWN
        entry = round(rng.uniform(0.55, 0.8), 2)
        order = OrderLike(f"c{i}", f"o{i}", m.condition_id, leg=leg, price=entry)
        w.order_action("submit", order, "entry", ts=m.window_start + 1)
        w.fill(fill(f"t{i}a", leg, Side.BUY, entry, 10, m.window_start + 2, order=f"o{i}"), m.condition_id)
        if rng.random() < 0.5:
            price = round(min(0.99, entry + rng.choice((-0.1, 0.02, 0.05))), 2)
            w.fill(fill(f"t{i}b", leg, Side.SELL, price, 5, m.window_start + 20, role="taker",
                        fee=taker_fee(5, price, 0.07), order=f"o{i}s"), m.condition_id)
        w.resolution(m.condition_id, Leg.UP if rng.random() < entry else Leg.DOWN, ts=m.window_end + 5)
    w.close()
