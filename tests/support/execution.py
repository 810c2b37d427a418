"""Helpers for the execution-core tests against the sim (tests/trader/execution/test_exec_*.py)."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from polymm.sim.testing import RunningSim, new_wallet
from polymm.trader.execution.core import ExecutionCore, MarketIdentity
from polymm.trader.venue.gateway import CancelResult, FeeDetails, Gateway, PostResult
from polymm.trader.model import Leg, OrderType, Role, Side, Want
from polymm.trader.venue.signing import OrderSigner
from tests.support.waiting import wait_for  # noqa: F401 - re-exported for the exec suites


def open_market() -> MarketIdentity:
    """A market whose window opened a minute ago and has 14 minutes left, built when a test runs. An identity
    built at import expires while a long suite (CI runs the slow tests too: 20+ minutes) is still running, and the
    core then refuses every order with "market window has ended"."""
    now = int(time.time())
    return MarketIdentity("0xcond", "111", "222", now - 60, now + 840, 0.01, 5, 0.07)


# A test on the live market needs this much of its window left (a quarter of shorter windows): the sim closes a
# market at its window's end and cancels what rests on it, so a test that started in a window's last seconds (a long
# suite reaches a 15-minute boundary sooner or later) lost its orders half-way.
MIN_WINDOW_LEFT_S = 60.0


def live_market(sim: RunningSim, min_left_s: float = MIN_WINDOW_LEFT_S) -> MarketIdentity:
    """The sim's live market, with at least `min_left_s` (at most a quarter of the window) left: waits for the next
    window otherwise."""

    def with_time_left():
        m = sim.admin.live_market()
        end = float(m["window_end"])
        need = min(min_left_s, (end - float(m["window_start"])) / 4)
        return m if end - time.time() >= need else None

    m = with_time_left()
    if m is None:
        m = wait_for(with_time_left, timeout_s=min_left_s + 10, every_s=0.2, what="the sim's next window")
    return MarketIdentity(
        condition_id=m["condition_id"], up_token=m["up_token"], down_token=m["down_token"],
        window_start=int(m["window_start"]), window_end=int(m["window_end"]), tick_size=float(m["tick_size"]),
        min_order_size=float(m.get("min_order_size", 5)), fee_rate=float(m.get("fee_rate", 0.07)),
    )


@contextlib.contextmanager
def running_core(sim: RunningSim, state_dir: Path, **kw) -> Iterator[ExecutionCore]:
    """A started core on the sim's live market (faults cleared first); stopped afterwards."""
    sim.admin.fault("clear")
    core, _ = make_core(sim, state_dir, **kw)
    core.start(live_market(sim))
    try:
        yield core
    finally:
        core.stop()


def make_core(sim: RunningSim, state_dir: Path, pk: str | None = None, **kw) -> tuple[ExecutionCore, str]:
    pk = pk or new_wallet()[0]
    gateway = Gateway(sim.urls["clob_url"], pk)
    kw.setdefault("reconcile_every_s", 30.0)
    core = ExecutionCore(gateway, ws_user_url=sim.urls["ws_user_url"], state_dir=state_dir, **kw)
    return core, pk




def want(leg: Leg, side: Side, price: float, size: float, *, strategy: str = "s1", post_only: bool = True,
         order_type: OrderType = OrderType.GTC, role: Role = Role.ENTRY, reason: str = "test") -> Want:
    return Want(strategy, leg, side, price, size, role, order_type, post_only, reason)


def book_top(sim: RunningSim, token: str) -> tuple[float, float]:
    """(best bid, best ask) of one token from the sim's public REST book."""
    import httpx

    book = httpx.get(f"{sim.urls['clob_url']}/book", params={"token_id": token}, timeout=5).json()
    bids = [float(level["price"]) for level in book.get("bids", [])]
    asks = [float(level["price"]) for level in book.get("asks", [])]
    return (max(bids) if bids else float("nan")), (min(asks) if asks else float("nan"))


def marketable(ask: float, slack: float = 0.05) -> float:
    """A taking BUY's limit: a few cents through the ask read a moment ago, so the synthetic market moving
    between that read and the order's arrival does not leave a FAK with nothing to match. It still fills
    at the resting orders' prices."""
    return min(round(ask + slack, 2), 0.99)


class ScriptedExchange:
    """Just enough of Gateway for the core: every order rests; reads return nothing."""

    def __init__(self) -> None:
        # A wallet of its own: the core locks its wallet machine-wide (an abstract socket), and a fixed one collided
        # with the previous test's core on the way out, or with another test run on the same host.
        self.signer = OrderSigner(new_wallet()[0])
        self.address = self.funder = self.signer.address
        self.api_key = "key-1"
        self.posted = []

    order_version = 2
    version_problem = None

    def connect(self):
        pass

    def refresh_version(self):
        return self.order_version

    def sign(self, token_id, side, price, size, tick, *, neg_risk=False, expiration=0, version=None):
        return self.signer.build(token_id, side, price, size, tick, neg_risk=neg_risk, expiration=expiration,
                                 version=self.order_version if version is None else version)

    def fee_details(self, condition_id):
        return FeeDetails(0.07, 1.0)

    def closed_only(self):
        return False

    def heartbeat(self, heartbeat_id):
        return "hb"

    def open_orders(self, market=None, asset_id=None):
        return []

    def trades(self, market=None, asset_id=None, after=None, trade_id=None):
        return []

    def get_order(self, order_id):
        return None

    def post_order(self, order, order_type="GTC", post_only=False):
        self.posted.append(order)
        return PostResult(order.order_hash, "live", 0.0, 0.0)

    def cancel_order(self, order_id):
        return CancelResult((order_id,), {})

    def cancel_orders(self, ids):
        return CancelResult(tuple(ids), {})

    def cancel_all(self):
        return CancelResult((), {})

    def cancel_market(self, market=None, asset_id=None):
        return CancelResult((), {})
