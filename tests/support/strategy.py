"""Small builders for the strategy, risk, planner and backtest tests: books, positions, orders, configs."""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from polymm.trader.config import Config, load_config
from polymm.trader.model import (Leg, MarketIdentity, MarketView, OrderState, OrderType, OrderView, PositionView, Role,
                                 Side, Want)

WS = 1_800_000_000  # a window start (unix seconds, multiple of 900)
WE = WS + 900
_ids = itertools.count(1)


def book(
    up_bid: float = 0.50,
    up_ask: float | None = None,
    *,
    down_bid: float | None = None,
    down_ask: float | None = None,
    window_start: int = WS,
    window_s: int = 900,
    tick: float = 0.01,
    min_size: float = 5.0,
    fee: float = 0.07,
    fresh: bool = True,
    age_ms: float = 5.0,
    crossed: bool = False,
    size: float = 100.0,
) -> MarketView:
    """A top of book; Down mirrors Up (a bid for Up at p is an ask for Down at 1 - p) unless given."""
    up_ask = round(up_bid + tick, 6) if up_ask is None else up_ask
    down_bid = round(1 - up_ask, 6) if down_bid is None else down_bid
    down_ask = round(1 - up_bid, 6) if down_ask is None else down_ask
    return MarketView(
        market=MarketIdentity("0xcond", "111", "222", window_start, window_start + window_s, tick, min_size, fee),
        fee_rate=fee,
        up_bid=up_bid,
        up_bid_size=size,
        up_ask=up_ask,
        up_ask_size=size,
        down_bid=down_bid,
        down_bid_size=size,
        down_ask=down_ask,
        down_ask_size=size,
        age_ms=age_ms,
        fresh=fresh,
        crossed=crossed,
    )


def down_book(down_bid: float, down_ask: float | None = None, **kw: Any) -> MarketView:
    """A book where Down is the strong leg."""
    down_ask = round(down_bid + 0.01, 6) if down_ask is None else down_ask
    return book(up_bid=round(1 - down_ask, 6), up_ask=round(1 - down_bid, 6), down_bid=down_bid, down_ask=down_ask, **kw)


def pos(leg: Leg, shares: float, avg: float, first_fill_at: float | None = WS + 10, strategy: str = "s1") -> PositionView:
    return PositionView(strategy=strategy, leg=leg, shares=shares, avg_price=avg, first_fill_at=first_fill_at, last_fill_at=first_fill_at)


def order(
    leg: Leg,
    side: Side,
    price: float,
    size: float,
    role: Role,
    *,
    strategy: str = "s1",
    filled: float = 0.0,
    created_at: float = WS + 1,
    order_type: OrderType = OrderType.GTC,
    post_only: bool = True,
    state: OrderState = OrderState.LIVE,
    client_id: str | None = None,
) -> OrderView:
    cid = client_id or f"c{next(_ids)}"
    return OrderView(
        client_id=cid,
        order_id=f"0x{cid}",
        strategy=strategy,
        leg=leg,
        side=side,
        price=price,
        size=size,
        filled=filled,
        state=state,
        role=role,
        order_type=order_type,
        post_only=post_only,
        created_at=created_at,
        updated_at=created_at,
    )


def order_from(want: Want, *, created_at: float, filled: float = 0.0, state: OrderState = OrderState.LIVE) -> OrderView:
    """The working order a placed want becomes."""
    return order(
        want.leg, want.side, want.price, want.size, want.role, strategy=want.strategy, filled=filled,
        created_at=created_at, order_type=want.order_type, post_only=want.post_only, state=state,
    )


def config(**settings: Any) -> Config:
    """Defaults plus dotted-key settings: config(**{"s2.enabled": True})."""
    return load_config(None, settings)


def write_ticks(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def oscillating_ask_ticks(pattern: str, base: float, seed: int = 24, start_s: int = 300, end_s: int = 900,
                          every_s: int = 1) -> list[dict[str, Any]]:
    """A window where S1 enters Up at 0.62 (6.45 shares at the $4 cap; filled one second later), then, every
    `every_s` seconds to the end, the Up ask moves by 1-3 ticks within [base, base + 0.03] while the bid stays at
    0.61 (the take-profit at 0.63 or above never fills). `pattern` "swing": base, base+1, base, base+2, base, base+3
    ticks, ...; "random": each move a different offset of 0-3 ticks than the one before (seeded)."""
    import random

    rows: list[dict[str, Any]] = [
        {"ts": WS + start_s, "window_start": WS, "up_bid": 0.62, "up_ask": 0.63, "down_bid": 0.37, "down_ask": 0.38},
        {"ts": WS + start_s + 1, "window_start": WS, "up_bid": 0.61, "up_ask": 0.62, "down_bid": 0.38, "down_ask": 0.39},
    ]
    rng = random.Random(seed)
    offset = 0
    for i, t in enumerate(range(start_s + 2, end_s, every_s)):
        if pattern == "swing":
            offset = 0 if i % 2 == 0 else 1 + (i // 2) % 3
        elif pattern == "random":
            offset = rng.choice([o for o in range(4) if o != offset])
        else:
            raise ValueError(f"pattern {pattern!r}: swing or random")
        ask = round(base + offset * 0.01, 2)
        rows.append({"ts": WS + t, "window_start": WS, "up_bid": 0.61, "up_ask": ask, "down_bid": round(1 - ask, 2),
                     "down_ask": 0.39})
    return rows
