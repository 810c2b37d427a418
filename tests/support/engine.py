"""Small fakes for driving trader/engine.py without processes: a shm reader, an execution core, a pipeline."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields, replace

from polymm.feed.shm import Leg as ShmLeg
from polymm.feed.shm import Link, Snapshot
from polymm.trader.model import (Leg, MarketIdentity, OrderState, OrderType, OrderView, PositionView, Role, Side,
                                 Want)
from polymm.trader.decision.planner import Cancel, Place  # noqa: F401 - the real actions, re-exported for tests

WINDOW_START = 1_800_000_000
MARKET_FIELDS = {f.name for f in fields(MarketIdentity)}
CONDITION = "0x" + "ab" * 32


def shm_leg(bid=0.6, ask=0.61, *, t: float, seq: int = 1) -> ShmLeg:
    return ShmLeg(bid=bid, bid_size=100.0, ask=ask, ask_size=100.0, last_trade=math.nan, exchange_ts=t,
                  recv_ts=t, publish_ts=t, seq=seq)


def link(*, now: float, data_t: float | None = None, frame_t: float | None = None, connected: bool = True,
         since: float | None = None) -> Link:
    """The market socket's liveness as the feed publishes it: connected, a frame (a PONG at least) at `frame_t`
    (default now), market data last at `data_t` (default `frame_t`)."""
    frame_t = now if frame_t is None else frame_t
    data_t = frame_t if data_t is None else data_t
    return Link(connected=connected, serving_since=now - 100 if since is None else since, last_frame=max(frame_t, data_t),
                last_data=data_t, last_pong=frame_t, last_ping=frame_t, ping_interval_s=10.0, pong_timeout_s=5.0,
                stale_after_s=15.0, frames=100)


def snapshot(*, now: float, window_start: int = WINDOW_START, window_s: int = 60, seq: int = 1,
             status: str = "connected", up_bid: float = 0.6, up_ask: float = 0.61, crossed: bool = False,
             data_t: float | None = None, heartbeat: float | None = None, condition: str | None = None,
             socket: Link | None = None) -> Snapshot:
    """`data_t`: when the book last changed (a quiet book is old but alive); `socket`: its liveness (default: a live
    socket whose last market data is `data_t`)."""
    data_t = now if data_t is None else data_t
    return Snapshot(
        magic=1, version=1, writer_pid=1, writer_start=now - 100, heartbeat=now if heartbeat is None else heartbeat,
        status=status,
        market=MarketIdentity(condition or f"{CONDITION[:-4]}{window_start % 10000:04d}", f"{window_start}1",
                              f"{window_start}2", window_start, window_start + window_s, 0.01, 5.0, 0.07),
        crossed=crossed, seq=seq, updates_total=seq, updates_per_s=10.0, reconnects=0,
        disagreements=0, up=shm_leg(up_bid, up_ask, t=data_t, seq=seq),
        down=shm_leg(round(1 - up_ask, 2), round(1 - up_bid, 2), t=data_t, seq=seq),
        link=socket if socket is not None else link(now=now, data_t=data_t),
    )


class FakeReader:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.closed = False

    def snapshot(self) -> Snapshot:
        return self.snap

    def seq(self) -> int:
        return self.snap.seq

    def wait_update(self, last_seq: int, timeout_s: float, *, spin_s: float = 0.0) -> int:
        if self.snap.seq == last_seq:
            time.sleep(min(timeout_s, 0.001))
        return self.snap.seq

    def publish(self, same_book: bool = False, **changes) -> None:
        """A new top of book: the next sequence number, both legs stamped with it and the publish time now; the Up
        bid's size moves by one share unless `same_book` (a publish of the book already held, as a trade's
        `last_trade_price` frame makes the feed do) or the test gives the Up leg."""
        seq, now = self.snap.seq + 1, time.time()
        up = changes.pop("up", None)
        if up is None:
            up = self.snap.up if same_book else replace(self.snap.up, bid_size=self.snap.up.bid_size + 1)
        up = replace(up, seq=seq, publish_ts=now, recv_ts=now)
        down = replace(changes.pop("down", self.snap.down), seq=seq, publish_ts=now, recv_ts=now)
        identity = {k: changes.pop(k) for k in list(changes) if k in MARKET_FIELDS}  # e.g. tick_size
        market = replace(self.snap.market, **identity)
        self.snap = replace(self.snap, seq=seq, up=up, down=down, market=market, **changes)

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeCore:
    """Records what the engine asks; orders/positions are whatever the test puts in."""

    working: list[OrderView] = field(default_factory=list)
    held: dict = field(default_factory=dict)
    placed: list[Want] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    cancel_alls: list[str] = field(default_factory=list)
    markets: list = field(default_factory=list)
    reconciles: list[str] = field(default_factory=list)
    wake: threading.Event = field(default_factory=threading.Event)
    exchange: object = None  # model.ExchangeStatus, or None for "normal"
    awaiting: list = field(default_factory=list)
    ticks: list = field(default_factory=list)  # on_tick_size calls  # pending_resolution(): [(market, {(strategy, leg): position})]

    def start(self, market) -> None:
        self.markets.append(market)

    def set_market(self, market) -> None:
        self.markets.append(market)

    def place(self, want: Want) -> str:
        self.placed.append(want)
        return f"c{len(self.placed)}"

    def cancel(self, client_id: str, reason: str) -> None:
        self.cancelled.append((client_id, reason))

    def cancel_all(self, reason: str) -> None:
        self.cancel_alls.append(reason)
        self.working = []

    def orders(self, working_only: bool = True) -> list[OrderView]:
        return list(self.working)

    def positions(self) -> dict:
        return dict(self.held)

    def fills(self, since=None):
        return []

    def pnl(self) -> dict:
        """ExecutionCore.pnl()'s shape (trader/positions.pnl_summary), the part status reads."""
        return {"total": {"realised": round(sum(p.realised_pnl for p in self.held.values()), 6)}}

    def state(self):
        return self.exchange

    def pending_resolution(self) -> list:
        return list(self.awaiting)

    def poll_events(self, wait: bool = True) -> list:
        return []

    def on_tick_size(self, token_id: str, tick: float, *, log_change: bool = True) -> None:
        self.ticks.append((token_id, tick))

    def reconcile(self, reason: str) -> None:
        self.reconciles.append(reason)

    def stop(self, cancel_orders: bool = True) -> None:
        pass


@dataclass
class Decision:
    actions: list
    state: object
    notes: list = field(default_factory=list)
    flat: bool = True
    exposure_usd: float = 0.0  # what a wallet shared by several series is told (trader/wallet/)


class RecordingPipeline:
    """Stands in for trader/decision/decide.py: records its inputs, returns the actions a test queues."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.next_actions: list = []
        self.states_created = 0

    def new_state(self, market) -> dict:
        self.states_created += 1
        return {"window_start": market.market.window_start}

    def __call__(self, market, orders, positions, cfg, state, now, *, paused=False, flatten=False, **exchange):
        self.calls.append(dict(market=market, orders=orders, positions=positions, cfg=cfg, state=state, now=now,
                               paused=paused, flatten=flatten, **exchange))
        actions, self.next_actions = self.next_actions, []
        flat = not any(p.shares >= market.market.min_order_size for p in positions.values())
        return Decision(actions=actions, state=state, flat=flat)


def want(leg: Leg = Leg.UP, side: Side = Side.BUY, price: float = 0.6, size: float = 6.0,
         role: Role = Role.ENTRY) -> Want:
    return Want(strategy="s1", leg=leg, side=side, price=price, size=size, role=role, post_only=True, reason="test")


def order(client_id: str = "c1", *, leg: Leg = Leg.UP, side: Side = Side.BUY, price: float = 0.6) -> OrderView:
    now = time.time()
    return OrderView(client_id=client_id, order_id="0x01", strategy="s1", leg=leg, side=side, price=price, size=6.0,
                     filled=0.0, state=OrderState.LIVE, role=Role.ENTRY, order_type=OrderType.GTC, post_only=True,
                     created_at=now, updated_at=now)


def position(shares: float, leg: Leg = Leg.UP, avg: float = 0.6) -> dict:
    return {("s1", leg): PositionView(strategy="s1", leg=leg, shares=shares, avg_price=avg)}
