"""ExecutionCore with a scripted in-process exchange (no sockets): races between the user channel's
order and trade reports, and what orders() + positions() show in between."""
from __future__ import annotations

import time

from exec_helpers import wait_for, want
from polymm.trader.execution import ExecutionCore, MarketIdentity
from polymm.trader.gateway import CancelResult, PostResult
from polymm.trader.model import Leg, OrderState, OrderType, Side
from polymm.trader.signing import OrderSigner
from polymm.trader.user_wire import WireMakerOrder, WireOrder, WireTrade

MARKET = MarketIdentity("0xcond", "111", "222", int(time.time()) - 60, int(time.time()) + 840, 0.01, 5, 0.07)


class ScriptedExchange:
    """Just enough of Gateway for the core: every order rests; reads return nothing."""

    def __init__(self) -> None:
        self.signer = OrderSigner("0x" + "5a" * 32)
        self.address = self.funder = self.signer.address
        self.api_key = "key-1"
        self.posted = []

    def connect(self):
        pass

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


def started_core() -> tuple[ExecutionCore, ScriptedExchange]:
    exchange = ScriptedExchange()
    core = ExecutionCore(exchange, reconcile_every_s=3600)
    core.start(MARKET)
    return core, exchange


def order_update(order_id: str, matched: str, size: str, status: str = "MATCHED") -> WireOrder:
    return WireOrder(id=order_id, status=status, type="UPDATE", market=MARKET.condition_id, asset_id=MARKET.up_token,
                     side="BUY", price="0.62", original_size=size, size_matched=matched, owner="key-1")


def maker_trade(order_id: str, size: str, status: str) -> WireTrade:
    return WireTrade(id="trade-1", status=status, market=MARKET.condition_id, asset_id=MARKET.up_token, side="SELL",
                     size=size, price="0.62", taker_order_id="0xsomeone", trader_side="MAKER", owner="key-1",
                     maker_orders=[WireMakerOrder(order_id=order_id, matched_amount=size, price="0.62",
                                                  asset_id=MARKET.up_token, owner="key-1", side="BUY")])


def test_order_filled_before_its_trade_arrives_still_counts_as_held():
    core, _ = started_core()
    try:
        cid = core.place(want(Leg.UP, Side.BUY, 0.62, 6.45))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        core._on_ws_events([order_update(order_id, "6.45", "6.45")])  # the UPDATE beats the trade
        assert core.orders() == []  # no longer working...
        held = core.positions()[("s1", Leg.UP)]
        assert held.shares == 6.45 and held.fees == 0.0  # ...but held (post-only: a maker, no fee)
        assert core.fills() == []  # nothing invented in the fill list
        core._on_ws_events([maker_trade(order_id, "6.45", "MATCHED")])
        assert core.positions()[("s1", Leg.UP)].shares == 6.45  # the trade replaces, never adds
        assert len(core.fills()) == 1 and core.fills()[0].client_id == cid
        core._on_ws_events([maker_trade(order_id, "6.45", "FAILED")])
        assert ("s1", Leg.UP) not in core.positions() or core.positions()[("s1", Leg.UP)].shares == 0
    finally:
        core.stop()


def test_partial_update_then_partial_trade_counts_the_rest_provisionally():
    core, _ = started_core()
    try:
        core.place(want(Leg.UP, Side.BUY, 0.62, 10, post_only=False, order_type=OrderType.GTC))
        wait_for(lambda: core.orders() and core.orders()[0].state is OrderState.LIVE, what="live")
        order_id = core.orders()[0].order_id
        core._on_ws_events([order_update(order_id, "7", "10", status="LIVE")])
        assert core.orders()[0].state is OrderState.PARTIALLY_FILLED and core.orders()[0].remaining == 3
        pos = core.positions()[("s1", Leg.UP)]
        assert pos.shares == 7 and pos.fees > 0  # not post-only: a taker fee is assumed until the trade says
        core._on_ws_events([maker_trade(order_id, "4", "MATCHED")])
        assert core.positions()[("s1", Leg.UP)].shares == 7
    finally:
        core.stop()
