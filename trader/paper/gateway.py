"""The paper exchange behind the execution core's two doors to Polymarket: the REST gateway (trader/venue/gateway.py)
and the user channel (trader/venue/user_stream.py). The execution core, the engine, the strategies and mmctl run
unchanged and cannot tell; nothing here opens a network connection or touches a key.

- PaperSigner stands in for the EIP-712 signer: an order needs an id, not a signature (no key is ever read, so a
  PK in the environment is never used).
- PaperGateway answers every call the core makes, from the paper exchange (trader/paper/exchange.py).
- PaperUserStream delivers the paper exchange's order and trade events as the user channel does, through the same
  decoder (trader/venue/user_wire.py), so they reach the core in the types live events have.
"""
from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable

import httpx

from polymm.trader.execution.exchange_state import classify
from polymm.trader.model import OrderState, OrderType, Side
from polymm.trader.paper.exchange import PAPER_ADDRESS, PAPER_OWNER, PaperExchange, PaperRejected
from polymm.trader.venue.gateway import CancelResult, PostResult, fetch_market_rules
from polymm.trader.venue.user_wire import WireError, decode_user_frame

log = logging.getLogger("polymm.trader.paper")

# What the exchange answers a fill-and-kill order that found nothing to take (polymarket-protocol.md; the sim
# answers the same), so the core treats a paper FAK exactly like a live one.
NO_MATCH_FAK = "no orders found to match with FAK order. FAK orders are partially filled or killed if no match is found."
USDC_UNITS = 1_000_000


@dataclass(frozen=True)
class PaperOrder:
    """A "signed" paper order: what post_order needs."""

    order_hash: str
    token_id: str
    side: Side
    price: float
    size: float
    expiration: int
    version: int = 0  # no order version: never signed


class PaperSigner:
    def __init__(self, address: str = PAPER_ADDRESS) -> None:
        self.address = self.funder = address  # the paper wallet (trader/paper/exchange.py paper_address)
        self._seq = itertools.count(1)
        self._prefix = secrets.token_hex(8)  # ids unique across restarts (the journal keeps them)

    def build(self, token_id: str, side: Side, price: float, size: float, tick: float, *, neg_risk: bool = False,
              expiration: int = 0) -> PaperOrder:
        if not (tick <= price <= 1 - tick):
            raise ValueError(f"price {price} outside [{tick}, {1 - tick}]")
        oid = f"0x{self._prefix}{next(self._seq):056x}"
        return PaperOrder(oid, token_id, Side(side), float(price), float(size), int(expiration))


class PaperGateway:
    """Gateway's interface over the paper exchange. Every method may block for the modelled latency only."""

    signature_type = 0
    clob_url = "paper://local"

    def __init__(self, exchange: PaperExchange, market_clob_url: str | None = None) -> None:
        self.exchange = exchange
        # The exchange's public market info (fee schedule) is read as live reads it: paper fees are the market's
        # own. Nothing else goes there, and no key is involved (GET /clob-markets is public).
        self.market_clob_url = market_clob_url
        self._http = httpx.Client(timeout=5.0) if market_clob_url else None
        self.signer = PaperSigner(exchange.address)
        self.address = self.signer.address
        self.funder = self.signer.funder
        self._heartbeat = 0

    def __repr__(self) -> str:
        return "PaperGateway(paper exchange, no keys)"

    # ---- order version: paper orders are not signed, so there is no exchange order version to follow --------
    version_problem = None

    def refresh_version(self) -> None:
        return None

    def sign(self, token_id: str, side: Side, price: float, size: float, tick: float, *, neg_risk: bool = False,
             expiration: int = 0, version: int | None = None) -> PaperOrder:
        """What the execution core calls to sign: a paper order needs an id, not a signature."""
        return self.signer.build(token_id, side, price, size, tick, neg_risk=neg_risk, expiration=expiration)

    def connect(self) -> None:
        self.exchange.start()

    @property
    def api_key(self) -> str:
        return PAPER_OWNER

    def ws_auth(self) -> dict:
        return {}  # nothing secret: the paper user channel is in-process

    # ---- orders -----------------------------------------------------------------------------------
    def post_order(self, order: PaperOrder, order_type: str = "GTC", post_only: bool = False) -> PostResult:
        kind = OrderType(order_type)
        try:
            o = self.exchange.place(order.order_hash, order.token_id, order.side, order.price, order.size, kind,
                                    post_only)
        except PaperRejected as exc:
            raise classify(400, str(exc)) from None
        if o.state is OrderState.PENDING_SUBMIT and o.delayed_until:
            # Held by the market's taker delay, as the exchange answers it: matched when the delay ends (the fills
            # come on the user channel).
            return PostResult(order_id=order.order_hash, status="delayed", making_amount=0.0, taking_amount=0.0)
        if kind in (OrderType.FAK, OrderType.FOK) and o.filled <= 0:
            raise classify(400, NO_MATCH_FAK)
        cost = sum(f["size"] * f["price"] for f in self._fills_of(o.client_id))
        shares = round(o.filled, 6)
        making, taking = (cost, shares) if order.side is Side.BUY else (shares, cost)
        status = "matched" if o.filled > 0 else "live"
        return PostResult(order_id=order.order_hash, status=status, making_amount=round(making, 6),
                          taking_amount=round(taking, 6))

    def _fills_of(self, order_id: str) -> list[dict]:
        return self.exchange.fills_of(order_id)

    def post_orders(self, items) -> list:
        out = []
        for order, order_type, post_only in items:
            try:
                out.append(self.post_order(order, order_type, post_only))
            except Exception as exc:  # noqa: BLE001 - per-order errors, as the batch endpoint answers
                out.append(exc)
        return out

    def cancel_order(self, order_id: str) -> CancelResult:
        return self.cancel_orders([order_id])

    def cancel_orders(self, order_ids: list[str]) -> CancelResult:
        done, refused = self.exchange.cancel(list(order_ids))
        return CancelResult(tuple(done), refused)

    def cancel_market(self, market: str | None = None, asset_id: str | None = None) -> CancelResult:
        ids = self.exchange.working_ids(market)
        return self.cancel_orders(ids) if ids else CancelResult((), {})

    def cancel_all(self) -> CancelResult:
        return self.cancel_market()

    # ---- reads ------------------------------------------------------------------------------------
    def get_order(self, order_id: str) -> dict | None:
        return self.exchange.order_row(order_id)

    def open_orders(self, market: str | None = None, asset_id: str | None = None) -> list[dict]:
        return [r for r in self.exchange.open_orders(market) if asset_id is None or r["asset_id"] == asset_id]

    def trades(self, market: str | None = None, asset_id: str | None = None, after: float | None = None,
               trade_id: str | None = None) -> list[dict]:
        return [t for t in self.exchange.trades(market, after)
                if (asset_id is None or t["asset_id"] == asset_id) and (trade_id is None or t["id"] == trade_id)]

    def balance_allowance(self, asset_type: str = "COLLATERAL", token_id: str | None = None) -> dict:
        # The exchange's shape: base units (6 decimals) and an allowance per contract (paper needs none).
        return {"balance": str(int(self.exchange.balance() * USDC_UNITS)), "allowances": {"paper": "unlimited"}}

    def update_balance_allowance(self, asset_type: str = "COLLATERAL", token_id: str | None = None) -> dict:
        return self.balance_allowance(asset_type, token_id)

    def heartbeat(self, heartbeat_id: str) -> str:
        self._heartbeat += 1  # no dead-man switch to arm: nothing rests anywhere but here
        return f"paper-{self._heartbeat}"

    def closed_only(self) -> bool:
        return False

    def server_time(self) -> float:
        return time.time()

    def market_rules(self, condition_id: str):
        """The market's rules from the exchange's public market info (fee schedule, minimum order age, taker
        delay); the paper exchange applies them from then on. Without an endpoint (unit tests) the core's
        conservative default fee applies, said in status, and no timing rule."""
        if self._http is None:
            raise ValueError("paper exchange without a CLOB endpoint to read the fee schedule from")
        rules = fetch_market_rules(self._http, self.market_clob_url, condition_id)
        self.exchange.set_fee_schedule(condition_id, float(rules.fee.r), float(rules.fee.e), rules.min_order_age_s,
                                       rules.taker_delay_s)
        return rules

    def fee_details(self, condition_id: str):
        return self.market_rules(condition_id).fee

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self.exchange.stop()


def paper_user_stream(exchange: PaperExchange):
    """A UserStream class (same constructor) whose events come from `exchange`."""

    class PaperUserStream:
        def __init__(self, url: str, auth: Callable[[], dict], markets: Callable[[], list[str]],
                     on_events: Callable[[list], None], on_connected: Callable[[bool], None],
                     on_disconnected: Callable[[str], None], **_options) -> None:
            self.url = url
            self._on_events = on_events
            self._on_connected = on_connected
            self.connected = False
            self.connects = 0
            self.frames = 0
            self.bad_frames = 0

        def start(self) -> None:
            exchange.subscribe(self._deliver)
            self.connected = True
            self.connects += 1
            self._on_connected(False)

        def stop(self) -> None:
            exchange.unsubscribe(self._deliver)
            self.connected = False

        def subscribe(self, markets: list[str]) -> None:
            pass  # every paper event is ours

        def drop(self) -> None:
            pass

        def _deliver(self, batch: list[dict]) -> None:
            # Through the live decoder: the core gets the same typed events as from Polymarket.
            self.frames += 1
            try:
                events, skipped = decode_user_frame(json.dumps(batch))
            except WireError as exc:
                self.bad_frames += 1
                log.error("user channel: %s", exc)
                return
            for what in skipped:
                log.warning("user channel: skipped %s", what)
            if events:
                self._on_events(events)

    return PaperUserStream
