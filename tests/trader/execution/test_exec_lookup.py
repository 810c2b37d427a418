"""An order whose submit outcome is unknown, looked up the way production answers: GET /data/order/{id}
returns nothing for an order that matched on entry (py-clob-client issue #217: "if the order was filled, it
will be in get_trades"). The fill must still be found, through the trades, not the order be called rejected
with its shares forgotten."""
from __future__ import annotations

import time

import pytest

from tests.support.execution import ScriptedExchange, wait_for, want, open_market
from polymm.trader.execution.exchange_state import ServerError
from polymm.trader.execution.core import ExecutionCore, MarketIdentity
from polymm.trader.model import Leg, OrderState, OrderType, Side

MARKET = open_market()


@pytest.fixture(autouse=True)
def _fresh_market():
    """Each test gets a window open now (open_market: one built at import ends mid-suite)."""
    global MARKET
    MARKET = open_market()


class TakerFilledButLookupEmpty(ScriptedExchange):
    """A submit answers 500 "order timed out" although the order matched in full as a taker; afterwards
    the order lookup finds nothing and only /data/trades knows (production's behaviour for matched orders)."""

    def __init__(self) -> None:
        super().__init__()
        self.trade_rows: list[dict] = []
        self.lookups = 0

    def trades(self, market=None, asset_id=None, after=None, trade_id=None):
        return list(self.trade_rows)

    def get_order(self, order_id):
        self.lookups += 1
        return None

    def post_order(self, order, order_type="GTC", post_only=False):
        now = int(time.time())
        self.trade_rows.append({
            "id": "trade-taker-1", "taker_order_id": order.order_hash, "market": MARKET.condition_id,
            "asset_id": MARKET.up_token, "side": "BUY", "size": "10", "price": "0.55", "fee_rate_bps": "700",
            "status": "CONFIRMED", "match_time": str(now), "last_update": str(now), "outcome": "Up",
            "owner": self.api_key, "maker_address": self.funder, "trader_side": "TAKER", "maker_orders": [],
        })
        raise ServerError(500, "order timed out")


def test_matched_taker_order_missing_from_the_order_lookup_is_found_in_the_trades():
    exchange = TakerFilledButLookupEmpty()
    core = ExecutionCore(exchange, reconcile_every_s=3600)  # no periodic pass would rescue it in time
    core.start(MARKET)
    try:
        cid = core.place(want(Leg.UP, Side.BUY, 0.55, 10, post_only=False, order_type=OrderType.FAK))
        wait_for(lambda: ("s1", Leg.UP) in core.positions(), timeout_s=30, what="the fill found through the trades")
        held = core.positions()[("s1", Leg.UP)]
        assert held.shares == 10 and held.fees > 0  # a taker fill, with its fee
        assert exchange.lookups >= 1  # it was looked up first, and the empty answer led to the trades
        assert [f.client_id for f in core.fills()] == [cid]
        order = next(o for o in core.orders(working_only=False) if o.client_id == cid)
        assert order.state is not OrderState.REJECTED
    finally:
        core.stop()
