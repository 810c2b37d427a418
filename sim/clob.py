"""CLOB REST: the subset py-clob-client-v2 uses for trading (polymarket-protocol.md sections 1.3, 2.4, 5, 6).

Shapes follow the recorded responses in tests/fixtures (http_open_order.json, trades.json, book.json).
Every private route checks L2 HMAC first (401 `Unauthorized/Invalid api key`). Errors are
`{"error": "<production text>"}` with production's status code; anything "not found" is a 404.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from polymm.sim import auth, chain as chain_mod, faults as faults_mod, gamma, orders
from polymm.sim.engine import BACKGROUND, MSG_NOT_READY, SimOrder, Trade

if TYPE_CHECKING:
    from polymm.sim.server import Sim

log = logging.getLogger("polymm.sim.clob")

INITIAL_CURSOR = "MA=="  # base64("0")
END_CURSOR = "LTE="  # base64("-1")
MAX_BATCH = 15
MAX_CANCEL_IDS = 3000
# The spenders GET /balance-allowance reports (sim/chain.py holds the approvals). COLLATERAL: the pUSD allowance
# of each exchange (V2, neg-risk V2 and its adapter, V3); CONDITIONAL: the CTF's approval of the V2 ones. The
# position manager's approval of Exchange V3 is only readable on chain (eth_call): whether production's
# CONDITIONAL answer carries it is not documented (docs/venue.md), so the sim does not.
COLLATERAL_SPENDERS = (orders.EXCHANGE_V2, orders.NEG_RISK_EXCHANGE_V2, "0xd91E80cF2E7be2e162c6513ceD06f1dD0dA35296",
                       orders.EXCHANGE_V3)
CONDITIONAL_OPERATORS = (orders.EXCHANGE_V2, orders.NEG_RISK_EXCHANGE_V2, "0xd91E80cF2E7be2e162c6513ceD06f1dD0dA35296")
INVALID_HEARTBEAT = "Invalid Heartbeat ID"
NO_ORDERBOOK = "No orderbook exists for the requested token id"


# ---- small wire helpers (shared with ws.py) --------------------------------------------------------
def num(value: Decimal | int | None) -> str:
    """A Decimal as production prints amounts: plain digits, no exponent, no trailing zeros."""
    if value is None:
        return ""
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


def ms(ts: float) -> str:
    return str(int(ts * 1000))


def secs(ts: float) -> str:
    return str(int(ts))


def tx_hash(trade_id: str) -> str:
    """The settlement transaction hash the sim pretends the trade was mined in."""
    return "0x" + keccak(("tx:" + trade_id).encode()).hex()


def trade_tx_hash(trade: Trade) -> str:
    # Production learns the hash when the operator's transaction is mined; until then it is empty. The
    # SDK's post_order polls /data/trades for exactly this (see ClobApi.place).
    return tx_hash(trade.trade_id) if trade.status in ("MINED", "CONFIRMED", "RETRYING") else ""


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers,
                             dumps=_dumps)


def fault_answer(fault: faults_mod.PostFault) -> web.Response:
    """What an injected POST /order(s) fault answers instead of the real result."""
    return web.json_response(fault.body(), status=fault.status, headers=fault.headers())


def _dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def ok(body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, headers=headers, dumps=_dumps)


def checksum(address: str) -> str:
    return to_checksum_address(address)


# ---- REST shapes -----------------------------------------------------------------------------------
def order_json(order: SimOrder, associate_trades: list[str]) -> dict:
    """GET /data/order/{id} and /data/orders rows (http_open_order.json)."""
    return {
        "id": order.order_id,
        "status": order.status,
        "owner": order.owner,
        "maker_address": order.maker_address,
        "market": order.market,
        "asset_id": order.token_id,
        "side": order.side,
        "original_size": num(order.original_size),
        "size_matched": num(order.size_matched),
        "price": num(order.price),
        "outcome": order.outcome,
        "expiration": str(order.expiration),
        "order_type": order.order_type,
        "associate_trades": list(associate_trades),
        "created_at": int(order.created_at),
    }


# The synthetic liquidity is one engine account called BACKGROUND; on the wire it looks like any other
# participant (a uuid owner and an address), as other people's orders do in production messages.
BACKGROUND_OWNER = "6d2c1f3e-5b1a-4c8e-9f3d-2a7b8c9d0e1f"
BACKGROUND_ADDRESS = "0x5E7a9b3C2D1F0E4A6b8C7D9e0F1A2B3C4d5E6f70"


def wire_owner(owner: str) -> str:
    return BACKGROUND_OWNER if owner == BACKGROUND else owner


def wire_address(address: str) -> str:
    return BACKGROUND_ADDRESS if address == BACKGROUND else address


def maker_orders_json(trade: Trade) -> list[dict]:
    return [{
        "order_id": f.order_id,
        "owner": wire_owner(f.owner),
        "maker_address": wire_address(f.maker_address),
        "matched_amount": num(f.matched_amount),
        "price": num(f.price),
        "fee_rate_bps": "0",  # makers pay no fee
        "asset_id": f.token_id,
        "outcome": f.outcome,
        "side": f.side,
    } for f in trade.maker_fills]


def trade_json(trade: Trade, viewer_owner: str) -> dict:
    """A /data/trades row as seen by one API key (trades.json). Top-level fields describe the TAKER;
    a maker finds its fill in maker_orders (the classic trap: top-level size is the taker's)."""
    return {
        "id": trade.trade_id,
        "taker_order_id": trade.taker_order_id,
        "market": trade.market,
        "asset_id": trade.token_id,
        "side": trade.side,
        "size": num(trade.size),
        "fee_rate_bps": str(trade.fee_rate_bps),
        "price": num(trade.price),
        "status": trade.status,
        "match_time": secs(trade.match_time),
        "last_update": secs(trade.last_update or trade.match_time),
        "outcome": trade.outcome,
        "bucket_index": 0,
        "owner": viewer_owner,
        "maker_address": wire_address(trade.taker_address),
        "transaction_hash": trade_tx_hash(trade),
        "maker_orders": maker_orders_json(trade),
        "trader_side": "TAKER" if trade.taker_owner == viewer_owner else "MAKER",
    }


def book_json(sim: "Sim", token_id: str, now: float) -> dict | None:
    """GET /book (and the WS `book` snapshot's levels): bids ascending, asks descending, best LAST."""
    spec = sim.engine.market_of_token(token_id)
    if spec is None:
        return None
    bids, asks = sim.engine.book(token_id)
    body = {
        "market": spec.condition_id,
        "asset_id": token_id,
        "timestamp": ms(now),
        "hash": "",
        "bids": [{"price": num(p), "size": num(s)} for p, s in reversed(bids)],
        "asks": [{"price": num(p), "size": num(s)} for p, s in reversed(asks)],
        "min_order_size": num(spec.min_size),
        "tick_size": num(spec.tick_size),
        "neg_risk": False,
        "last_trade_price": num(sim.last_trade.get(token_id, Decimal("0.5"))),
    }
    # The SDK's get_order_book_hash: SHA-1 of the compact JSON in this key order with hash "".
    body["hash"] = hashlib.sha1(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    return body


def clob_market_json(spec, up_top: tuple[Decimal | None, Decimal | None]) -> dict:
    bid, ask = up_top
    if spec.winning_token is not None:
        up_price = Decimal(1) if spec.winning_token == spec.up_token else Decimal(0)
    elif bid is not None and ask is not None:
        up_price = (bid + ask) / 2
    else:
        up_price = Decimal("0.5")
    question = gamma.title(spec)
    return {
        "enable_order_book": True, "active": True, "closed": bool(spec.closed), "archived": False,
        "accepting_orders": bool(spec.accepting_orders and not spec.closed),
        "accepting_order_timestamp": None,
        "minimum_order_size": int(spec.min_size) if spec.min_size == spec.min_size.to_integral() else float(spec.min_size),
        "minimum_tick_size": float(spec.tick_size), "condition_id": spec.condition_id,
        "question_id": "0x" + keccak(("question:" + spec.condition_id).encode()).hex(), "question": question,
        "description": gamma.DESCRIPTION, "market_slug": spec.slug,
        "end_date_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.window_end)),
        "game_start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.window_start)),
        "seconds_delay": 0, "fpmm": "", "maker_base_fee": 1000, "taker_base_fee": 1000,
        "notifications_enabled": False, "neg_risk": False, "neg_risk_market_id": "", "neg_risk_request_id": "",
        "icon": gamma.IMAGE, "image": gamma.IMAGE, "rewards": {"rates": [], "min_size": 50, "max_spread": 4.5},
        "is_50_50_outcome": False,
        "tokens": [
            {"token_id": spec.up_token, "outcome": "Up", "price": float(up_price),
             "winner": spec.winning_token == spec.up_token},
            {"token_id": spec.down_token, "outcome": "Down", "price": float(1 - up_price),
             "winner": spec.winning_token == spec.down_token},
        ],
        "tags": ["Crypto", "Bitcoin", "Up or Down", "Crypto Prices", "Recurring", "15M"],
    }


def paginate(rows: list[dict], cursor: str, page_size: int) -> dict | None:
    """Production's cursor: base64 of the offset; "MA==" starts, "LTE=" (base64 "-1") means done."""
    try:
        offset = int(base64.b64decode(cursor or INITIAL_CURSOR, validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if offset < 0:
        return {"data": [], "next_cursor": END_CURSOR, "limit": page_size, "count": 0}
    page = rows[offset:offset + page_size]
    end = offset + page_size
    next_cursor = base64.b64encode(str(end).encode()).decode() if end < len(rows) else END_CURSOR
    return {"data": page, "next_cursor": next_cursor, "limit": page_size, "count": len(page)}


# ---- the API ---------------------------------------------------------------------------------------
class ClobApi:
    def __init__(self, sim: "Sim") -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),
            web.get("/ok", self.get_ok),
            web.get("/time", self.get_time),
            web.get("/version", self.get_version),
            web.get("/tick-size", self.get_tick_size),
            web.get("/neg-risk", self.get_neg_risk),
            web.get("/fee-rate", self.get_fee_rate),
            web.get("/book", self.get_book),
            web.post("/books", self.post_books),
            web.get("/midpoint", self.get_midpoint),
            web.get("/price", self.get_price),
            web.get("/spread", self.get_spread),
            web.get("/last-trade-price", self.get_last_trade_price),
            web.get("/markets-by-token/{token_id}", self.get_market_by_token),
            web.get("/clob-markets/{condition_id}", self.get_clob_market),
            web.get("/markets/{condition_id}", self.get_market),
            web.post("/auth/api-key", self.create_api_key),
            web.get("/auth/derive-api-key", self.derive_api_key),
            web.get("/auth/api-keys", self.get_api_keys),
            web.delete("/auth/api-key", self.delete_api_key),
            web.get("/auth/ban-status/closed-only", self.get_closed_only),
            web.post("/order", self.post_order),
            web.post("/orders", self.post_orders),
            web.delete("/order", self.cancel_order),
            web.delete("/orders", self.cancel_orders),
            web.delete("/cancel-all", self.cancel_all),
            web.delete("/cancel-market-orders", self.cancel_market_orders),
            web.get("/data/orders", self.get_orders),
            web.get("/data/order/{order_id}", self.get_order),
            web.get("/data/trades", self.get_trades),
            web.get("/balance-allowance", self.get_balance_allowance),
            web.get("/balance-allowance/update", self.update_balance_allowance),
            web.post("/v1/heartbeats", self.post_heartbeat),
        ]

    # ---- auth ------------------------------------------------------------------------------------
    async def _l2(self, request: web.Request) -> tuple[auth.ApiKey, bytes]:
        body = await request.read()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise auth.AuthError() from None
        key = auth.verify_l2(self.sim.keys, request.headers, request.method, request.path, text)
        return key, body

    async def create_api_key(self, request: web.Request) -> web.Response:
        return self._derive(request)

    async def derive_api_key(self, request: web.Request) -> web.Response:
        return self._derive(request)

    def _derive(self, request: web.Request) -> web.Response:
        # Both routes answer the same deterministic credentials: production's create refuses a second
        # key for the same nonce and derive returns the existing one; the SDK's create_or_derive ends
        # up with the same triple either way.
        address, nonce = auth.verify_l1(request.headers)
        key = self.sim.keys.derive(checksum(address), nonce)
        self.sim.engine.ensure_account(key.address)
        return ok(key.creds_json())

    async def get_api_keys(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        return ok({"apiKeys": [k.key for k in self.sim.keys.by_address(key.address)]})

    async def delete_api_key(self, request: web.Request) -> web.Response:
        await self._l2(request)
        # Keys are derived deterministically, so "deleting" one would only make derive hand it back.
        return ok("OK")

    async def get_closed_only(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        addresses = {a.lower() for a in self.sim.addresses_of(key)}
        return ok({"closed_only": bool(addresses & self.sim.faults.closed_only)})

    # ---- public market data ----------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        return ok("OK")

    async def get_ok(self, request: web.Request) -> web.Response:
        return ok("OK")

    async def get_time(self, request: web.Request) -> web.Response:
        return ok(int(time.time() + self.sim.faults.clock_skew_s))

    async def get_version(self, request: web.Request) -> web.Response:
        return ok({"version": self.sim.order_version})

    def _spec_of(self, request: web.Request):
        token_id = request.query.get("token_id", "")
        return token_id, (self.sim.engine.market_of_token(token_id) if token_id else None)

    async def get_tick_size(self, request: web.Request) -> web.Response:
        token_id, spec = self._spec_of(request)
        if spec is None:
            return error(404, NO_ORDERBOOK)
        return ok({"minimum_tick_size": float(spec.tick_size)})

    async def get_neg_risk(self, request: web.Request) -> web.Response:
        token_id, spec = self._spec_of(request)
        if spec is None:
            return error(404, NO_ORDERBOOK)
        return ok({"neg_risk": False})

    async def get_fee_rate(self, request: web.Request) -> web.Response:
        token_id, spec = self._spec_of(request)
        if spec is None:
            return error(404, NO_ORDERBOOK)
        # Legacy V1 base fee (Gamma's takerBaseFee); V2 orders carry no fee field.
        return ok({"base_fee": 1000})

    async def get_book(self, request: web.Request) -> web.Response:
        token_id = request.query.get("token_id", "")
        if not token_id:
            return error(400, "Invalid token id")
        body = book_json(self.sim, token_id, time.time())
        if body is None:
            return error(404, NO_ORDERBOOK)
        return ok(body)

    async def post_books(self, request: web.Request) -> web.Response:
        try:
            wanted = msgspec.json.decode(await request.read(), type=list[dict[str, Any]])
        except orders.JSON_ERRORS:
            return error(400, "Invalid payload")
        if len(wanted) > 500:
            return error(400, "Too many token ids in payload, max allowed: 500")
        now = time.time()
        books = [book_json(self.sim, str(item.get("token_id", "")), now) for item in wanted]
        return ok([b for b in books if b is not None])

    def _top(self, token_id: str) -> tuple[Decimal | None, Decimal | None]:
        bids, asks = self.sim.engine.book(token_id)
        return (bids[0][0] if bids else None), (asks[0][0] if asks else None)

    def _two_sided(self, request: web.Request, answer) -> web.Response:
        """`answer(bid, ask)` for a token whose book has both sides, else production's 404."""
        token_id, spec = self._spec_of(request)
        bid, ask = self._top(token_id) if spec is not None else (None, None)
        if bid is None or ask is None:
            return error(404, NO_ORDERBOOK)
        return ok(answer(bid, ask))

    async def get_midpoint(self, request: web.Request) -> web.Response:
        return self._two_sided(request, lambda bid, ask: {"mid": num((bid + ask) / 2)})

    async def get_price(self, request: web.Request) -> web.Response:
        token_id, spec = self._spec_of(request)
        side = request.query.get("side", "").upper()
        if spec is None:
            return error(404, NO_ORDERBOOK)
        if side not in ("BUY", "SELL"):
            return error(400, "Invalid side")
        bid, ask = self._top(token_id)
        # The price you would trade at: a BUY takes the best ask, a SELL hits the best bid.
        price = ask if side == "BUY" else bid
        if price is None:
            return error(404, NO_ORDERBOOK)
        return ok({"price": num(price)})

    async def get_spread(self, request: web.Request) -> web.Response:
        return self._two_sided(request, lambda bid, ask: {"spread": num(ask - bid)})

    async def get_last_trade_price(self, request: web.Request) -> web.Response:
        token_id, spec = self._spec_of(request)
        if spec is None:
            return error(404, NO_ORDERBOOK)
        price = self.sim.last_trade.get(token_id, Decimal("0.5"))
        return ok({"price": num(price), "side": self.sim.last_trade_side.get(token_id, "")})

    async def get_market_by_token(self, request: web.Request) -> web.Response:
        spec = self.sim.engine.market_of_token(request.match_info["token_id"])
        if spec is None:
            return error(404, "market not found")
        return ok({"condition_id": spec.condition_id, "primary_token_id": spec.up_token,
                   "secondary_token_id": spec.down_token})

    async def get_clob_market(self, request: web.Request) -> web.Response:
        spec = self.sim.engine.market(request.match_info["condition_id"])
        if spec is None:
            return error(404, "market not found")
        return ok({
            "c": spec.condition_id,
            "t": [{"t": spec.up_token, "o": "Up"}, {"t": spec.down_token, "o": "Down"}],
            "mts": float(spec.tick_size),
            # fee details: what the SDK's get_clob_market_info reads (fd.r rate, fd.e exponent, fd.to taker only)
            "fd": {"r": float(spec.fee_rate), "e": gamma.plain_number(spec.fee_exponent), "to": True},
            "mbf": 1000,
            "tbf": 1000,
            "ao": bool(spec.accepting_orders and not spec.closed),
            "mos": float(spec.min_size),
            "sd": 0,
            "itode": self.sim.order_rules.taker_delay,
            "oas": int(self.sim.order_rules.min_order_age_s),
        })

    async def get_market(self, request: web.Request) -> web.Response:
        """The SDK's get_market (CLOB market object, http_responses/market.json). Shares the port with
        Gamma, whose `/markets?slug=` and `/markets/slug/{slug}` routes keep their meaning."""
        spec = self.sim.engine.market(request.match_info["condition_id"])
        if spec is None:
            return error(404, "market not found")
        return ok(clob_market_json(spec, self._top(spec.up_token)))

    # ---- orders ----------------------------------------------------------------------------------
    async def post_order(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        fault = self.sim.faults.take_post_fault()
        if fault is not None and not fault.places_order:
            return fault_answer(fault)
        try:
            payload = orders.decode_order(body)
            result = self.place(key, payload)
        except orders.OrderRejected as rejected:
            log.info("order rejected key=%s reason=%s", key.key[:8], rejected.message)
            return error(rejected.http_status, rejected.message, rejected.headers, **rejected.extra)
        if fault is not None:
            return fault_answer(fault)
        return ok(result)

    async def post_orders(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        fault = self.sim.faults.take_post_fault()
        if fault is not None and not fault.places_order:
            return fault_answer(fault)
        try:
            payloads = orders.decode_orders(body)
        except orders.OrderRejected as rejected:
            return error(rejected.http_status, rejected.message)
        if len(payloads) > MAX_BATCH:
            return error(400, f"Too many orders in payload: {len(payloads)}, max allowed: {MAX_BATCH}")
        if not payloads:
            return error(400, orders.INVALID_PAYLOAD)
        results = []
        for payload in payloads:
            try:
                results.append(self.place(key, payload))
            except orders.OrderRejected as rejected:
                # Batch answers are per order: one bad order does not fail its neighbours.
                results.append({"errorMsg": rejected.message, "orderID": rejected.order_id,
                                "takingAmount": "", "makingAmount": "", "status": "", "success": False})
        if fault is not None:
            return fault_answer(fault)
        return ok(results)

    def place(self, key: auth.ApiKey, payload: orders.OrderPayload) -> dict:
        """Verify one signed order and hand it to the engine; the POST /order answer, or OrderRejected."""
        sim = self.sim
        now = time.time()
        order = payload.order
        if payload.owner != key.key:
            raise orders.OrderRejected(orders.OWNER_MISMATCH)
        spec = sim.engine.market_of_token(order.tokenId)
        # BTC Up/Down markets are never neg-risk; the signature must be for the order version served
        order_id = orders.verify_order(order, key.address, version=sim.order_version,
                                       check_funder=sim.strict_funder)
        maker = checksum(order.maker)
        # The exchange settles on chain: without the wallet's approval for the served version's exchange the
        # order cannot settle, and production refuses it as a balance/allowance problem.
        missing = sim.chain.trading_refusal(maker, order.side, sim.order_version)
        if missing is not None:
            log.info("order refused for a missing approval (%s)", missing)
            raise orders.OrderRejected(orders.NOT_ENOUGH_BALANCE, order_id=order_id)
        for address in {key.address, maker}:
            if address.lower() in sim.faults.closed_only:
                raise orders.OrderRejected(f"'{address}' address in closed only mode", order_id=order_id)
        if sim.faults.stop_accepting:
            raise orders.OrderRejected(MSG_NOT_READY, order_id=order_id)
        if now < sim.faults.post_only_until and not payload.postOnly:
            left = max(1, math.ceil(sim.faults.post_only_until - now))
            raise orders.OrderRejected(faults_mod.POST_ONLY_MODE, 503, order_id=order_id,
                                       headers={"Retry-After": str(left)}, code="post_only_mode",
                                       retry_after_seconds=left)
        try:
            terms = orders.terms(order, payload.orderType, spec.tick_size if spec else Decimal("0.01"))
        except orders.OrderRejected as rejected:
            rejected.order_id = order_id
            raise
        sim.remember_funder(key, order.signatureType, maker)
        sim_order = SimOrder(order_id=order_id, owner=key.key, maker_address=maker,
                             market=spec.condition_id if spec else "", token_id=order.tokenId, side=order.side,
                             price=terms.price, original_size=terms.size, order_type=payload.orderType,
                             post_only=payload.postOnly, expiration=int(order.expiration), created_at=now)
        rules = sim.order_rules
        if rules.taker_delay and not payload.postOnly and rules.marketable(order.side, terms.price,
                                                                           self._top(order.tokenId)):
            # itode: held, answered `delayed`, matched TAKER_DELAY_S later (sim/order_rules.py; Sim.tick submits it).
            rules.hold(sim_order, now)
            sim.stats["orders_accepted"] += 1
            return {"errorMsg": "", "orderID": order_id, "takingAmount": "", "makingAmount": "",
                    "status": "delayed", "success": True}
        result = sim.engine.submit(sim_order, now)
        sim.after_engine_call()
        if not result.ok:
            raise orders.OrderRejected(result.error, result.http_status or 400, order_id=order_id)
        sim.stats["orders_accepted"] += 1
        log.debug("order accepted id=%s side=%s price=%s size=%s type=%s status=%s", order_id[:12], order.side,
                  terms.price, terms.size, payload.orderType, result.status)
        response: dict[str, Any] = {"errorMsg": "", "orderID": order_id, "takingAmount": "", "makingAmount": "",
                                    "status": result.status, "success": True}
        if result.trades:
            # V2 settles asynchronously: the answer names the trades but carries no transactionsHashes
            # yet, so the SDK's post_order (without defer_exec) polls /data/trades until each trade has a
            # transaction_hash, i.e. until MINED here (mined_after_s, 1 s by default).
            response["makingAmount"] = num(result.making_amount)
            response["takingAmount"] = num(result.taking_amount)
            response["tradeIDs"] = [t.trade_id for t in result.trades]
        return response

    def cancel(self, key: auth.ApiKey, order_ids: list[str]) -> dict:
        now = time.time()
        canceled: list[str] = []
        not_canceled: dict[str, str] = {}
        for order_id in order_ids:
            known = self.sim.engine.get_order(order_id)
            held = self.sim.order_rules.cancel_refusal(order_id, known.created_at if known is not None else None, now)
            if held is not None:
                not_canceled[order_id] = held
                continue
            reason = self.sim.engine.cancel(order_id, key.key, now)
            if reason is None:
                canceled.append(order_id)
            else:
                not_canceled[order_id] = reason
        self.sim.after_engine_call()
        return {"canceled": canceled, "not_canceled": not_canceled}

    async def cancel_order(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        try:
            wanted = msgspec.json.decode(body, type=_CancelOne)
        except orders.JSON_ERRORS:
            return error(400, orders.INVALID_PAYLOAD)
        return ok(self.cancel(key, [wanted.orderID]))

    async def cancel_orders(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        try:
            ids = msgspec.json.decode(body, type=list[str])
        except orders.JSON_ERRORS:
            return error(400, orders.INVALID_PAYLOAD)
        if len(ids) > MAX_CANCEL_IDS:
            return error(400, f"Too many orders in payload: {len(ids)}, max allowed: {MAX_CANCEL_IDS}")
        return ok(self.cancel(key, list(dict.fromkeys(ids))))

    async def cancel_all(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        canceled, not_canceled = self.sim.engine.cancel_all(key.key, time.time())
        self.sim.after_engine_call()
        return ok({"canceled": canceled, "not_canceled": not_canceled})

    async def cancel_market_orders(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        try:
            wanted = msgspec.json.decode(body or b"{}", type=_CancelMarket)
        except orders.JSON_ERRORS:
            return error(400, orders.INVALID_PAYLOAD)
        canceled, not_canceled = self.sim.engine.cancel_market(
            key.key, time.time(), market=wanted.market or None, asset_id=wanted.asset_id or None)
        self.sim.after_engine_call()
        return ok({"canceled": canceled, "not_canceled": not_canceled})

    async def get_orders(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        q = request.query
        found = self.sim.engine.open_orders(key.key, market=q.get("market") or None,
                                            asset_id=q.get("asset_id") or None)
        if q.get("id"):
            found = [o for o in found if o.order_id == q["id"]]
        rows = [order_json(o, self.sim.associate_trades.get(o.order_id, ())) for o in found]
        page = paginate(rows, q.get("next_cursor", INITIAL_CURSOR), self.sim.page_size)
        if page is None:
            return error(400, "invalid next_cursor")
        return ok(page)

    async def get_order(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        order = self.sim.engine.get_order(request.match_info["order_id"])
        if order is None or order.owner != key.key:
            return error(404, "order not found")
        return ok(order_json(order, self.sim.associate_trades.get(order.order_id, ())))

    async def get_trades(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        q = request.query
        try:
            after = float(q["after"]) if q.get("after") else None
            before = float(q["before"]) if q.get("before") else None
        except ValueError:
            return error(400, "invalid after/before")
        seen: dict[str, Trade] = {}
        addresses = self.sim.addresses_of(key)
        maker_filter = q.get("maker_address")
        if maker_filter:
            addresses = [a for a in addresses if auth.same_address(a, maker_filter)]
        for address in addresses:
            for trade in self.sim.engine.trades(address, market=q.get("market") or None,
                                                asset_id=q.get("asset_id") or None, trade_id=q.get("id") or None,
                                                after=after, before=before):
                seen[trade.trade_id] = trade
        newest_first = sorted(seen.values(), key=lambda t: t.match_time, reverse=True)
        rows = [trade_json(t, key.key) for t in newest_first]
        page = paginate(rows, q.get("next_cursor", INITIAL_CURSOR), self.sim.page_size)
        if page is None:
            return error(400, "invalid next_cursor")
        return ok(page)

    async def get_balance_allowance(self, request: web.Request) -> web.Response:
        key, _ = await self._l2(request)
        q = request.query
        asset_type = q.get("asset_type", "COLLATERAL").upper()
        try:
            signature_type = int(q.get("signature_type", "0") or 0)
        except ValueError:
            return error(400, "invalid signature_type")
        address = self.sim.funder_of(key, signature_type)
        if asset_type == "COLLATERAL":
            self.sim.engine.ensure_account(address)
            amount = self.sim.engine.balance(address)
        elif asset_type == "CONDITIONAL":
            token_id = q.get("token_id", "")
            if not token_id:
                return error(400, "token_id is required for CONDITIONAL balances")
            amount = self.sim.engine.position(address, token_id)
        else:
            return error(400, "invalid asset_type")
        # Production answers base units (6 decimals) and the allowance per exchange contract.
        units = int((amount * 1_000_000).to_integral_value())
        chain = self.sim.chain
        if asset_type == "COLLATERAL":
            allowances = {s: str(chain.allowance(address, s)) for s in COLLATERAL_SPENDERS}
        else:
            allowances = {s: str(2**256 - 1 if chain.approved_for_all(chain_mod.CTF, address, s) else 0)
                          for s in CONDITIONAL_OPERATORS}
        return ok({"balance": str(units), "allowances": allowances})

    async def update_balance_allowance(self, request: web.Request) -> web.Response:
        return await self.get_balance_allowance(request)

    async def post_heartbeat(self, request: web.Request) -> web.Response:
        key, body = await self._l2(request)
        try:
            wanted = msgspec.json.decode(body or b"{}", type=_Heartbeat)
        except orders.JSON_ERRORS:
            return error(400, "Invalid payload")
        accepted, next_id = self.sim.heartbeats.beat(key.key, wanted.heartbeat_id, time.time())
        if not accepted:
            # Production's shape for this one error differs from the usual {"error": ...}.
            return web.json_response({"error_msg": INVALID_HEARTBEAT, "heartbeat_id": next_id}, status=400)
        return ok({"heartbeat_id": next_id})


class _CancelOne(msgspec.Struct):
    orderID: str


class _CancelMarket(msgspec.Struct):
    market: str = ""
    asset_id: str = ""


class _Heartbeat(msgspec.Struct):
    heartbeat_id: str = ""


class Heartbeats:
    """The dead-man switch: once a key has heart-beaten, silence longer than `timeout_s` cancels all of
    that key's orders (polymarket-protocol.md section 2.4). Each accepted beat returns the next id."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._expected: dict[str, str] = {}
        self._last: dict[str, float] = {}

    def beat(self, owner: str, heartbeat_id: str, now: float) -> tuple[bool, str]:
        expected = self._expected.get(owner)
        if expected is not None and heartbeat_id != expected:
            return False, expected
        next_id = str(uuid.uuid4())
        self._expected[owner] = next_id
        self._last[owner] = now
        return True, next_id

    def expired(self, now: float) -> list[str]:
        """Keys whose switch fires now; their chain is reset (a new chain starts with an empty id)."""
        gone = [owner for owner, last in self._last.items() if now - last > self.timeout_s]
        for owner in gone:
            del self._last[owner]
            self._expected.pop(owner, None)
        return gone

    def describe(self, now: float) -> dict:
        return {owner[:8]: round(now - last, 3) for owner, last in self._last.items()}
