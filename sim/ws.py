"""The CLOB WebSockets: `/ws/market` (public books) and `/ws/user` (our orders and trades).

Behaviour follows polymarket-protocol.md section 2 and the recorded messages in tests/fixtures:
* the first frame must be the subscription, else the socket is closed after `subscribe_timeout_s`;
  a second initial subscription, or anything unparseable, gets the text `INVALID OPERATION` (what
  production answers, see nautilus_trader PR #3717);
* text `PING` is answered `PONG`; a socket that sends nothing for `idle_timeout_s` is closed;
* the initial `book` dump is one JSON array of snapshots (production sends it as a list); everything
  else is single objects unless the `wrap_in_list` fault is on;
* `new_market`, `market_resolved` and `best_bid_ask` only reach sockets that set `custom_feature_enabled`.

Message shapes are built by the pure `*_msg` functions below; `Conn` applies the delivery faults (freeze,
delay, duplicate, reorder) on the way out.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable

import msgspec
from aiohttp import WSMsgType, web

from polymm.sim import gamma
from polymm.sim.clob import book_json, maker_orders_json, ms, num, secs, trade_tx_hash, wire_address, wire_owner
from polymm.sim.engine import BACKGROUND, LastTrade, LevelChange, MarketSpec, OrderEvent, TickSizeChange, Trade
from polymm.sim.faults import Faults
from polymm.sim.orders import JSON_ERRORS

if TYPE_CHECKING:
    from polymm.sim.server import Sim

log = logging.getLogger("polymm.sim.ws")

INVALID_OPERATION = "INVALID OPERATION"
MAX_FRAME = 256 * 1024  # bigger client frames close the socket with 1009 (message too big)
MAX_QUEUE = 20_000  # frames waiting for a slow reader before we drop it, as production drops slow consumers


# ---- message shapes ---------------------------------------------------------------------------------
def book_msg(sim: "Sim", token_id: str, now: float) -> dict | None:
    body = book_json(sim, token_id, now)
    if body is None:
        return None
    # The WS snapshot carries the REST book's levels and hash but not its market-parameter keys.
    return {"event_type": "book", "asset_id": body["asset_id"], "market": body["market"], "bids": body["bids"],
            "asks": body["asks"], "timestamp": body["timestamp"], "hash": body["hash"]}


def _level_hash(change: LevelChange, seq: int) -> str:
    return hashlib.sha1(f"{change.token_id}:{change.price}:{change.size}:{change.ts}:{seq}".encode()).hexdigest()


def _best(value: Decimal | None, empty: str) -> str:
    # An empty side: "0" for bids and "1" for asks (the price_change schema always carries both).
    return num(value) if value is not None else empty


def price_change_entry(change: LevelChange, seq: int) -> dict:
    return {"asset_id": change.token_id, "price": num(change.price), "size": num(change.size), "side": change.side,
            "hash": _level_hash(change, seq), "best_bid": _best(change.best_bid, "0"),
            "best_ask": _best(change.best_ask, "1")}


def price_change_msg(market: str, entries: list[dict], ts: float) -> dict:
    return {"market": market, "price_changes": entries, "event_type": "price_change", "timestamp": ms(ts)}


def last_trade_msg(event: LastTrade) -> dict:
    return {"asset_id": event.token_id, "event_type": "last_trade_price", "fee_rate_bps": str(event.fee_rate_bps),
            "market": event.market, "price": num(event.price), "side": event.side, "size": num(event.size),
            "timestamp": ms(event.ts)}


def tick_size_msg(event: TickSizeChange) -> dict:
    return {"event_type": "tick_size_change", "asset_id": event.token_id, "market": event.market,
            "old_tick_size": num(event.old_tick), "new_tick_size": num(event.new_tick), "timestamp": ms(event.ts)}


def best_bid_ask_msg(market: str, token_id: str, bid: Decimal | None, ask: Decimal | None, ts: float) -> dict:
    spread = (ask - bid) if (bid is not None and ask is not None) else None
    return {"event_type": "best_bid_ask", "market": market, "asset_id": token_id, "best_bid": _best(bid, "0"),
            "best_ask": _best(ask, "1"), "spread": num(spread) if spread is not None else "1", "timestamp": ms(ts)}


def _market_id(spec: MarketSpec) -> str:
    return gamma.number_id(spec.condition_id, 10_000_000)


def new_market_msg(spec: MarketSpec, ts: float) -> dict:
    question = gamma.title(spec)
    tokens = [spec.up_token, spec.down_token]
    return {
        "event_type": "new_market", "id": _market_id(spec), "question": question, "market": spec.condition_id,
        "slug": spec.slug, "description": gamma.DESCRIPTION, "assets_ids": tokens, "outcomes": ["Up", "Down"],
        "event_message": {"id": gamma.number_id("event:" + spec.condition_id, 1_000_000), "ticker": spec.slug,
                          "slug": spec.slug, "title": question, "description": gamma.DESCRIPTION},
        "timestamp": ms(ts), "tags": ["crypto", "bitcoin", "up-or-down", "15M"],
        "condition_id": spec.condition_id, "active": True, "clob_token_ids": tokens,
        "sports_market_type": "", "line": "", "game_start_time": "",
        "order_price_min_tick_size": num(spec.tick_size), "group_item_title": "",
    }


def market_resolved_msg(spec: MarketSpec, winning_token: str, ts: float) -> dict:
    return {
        "event_type": "market_resolved", "id": _market_id(spec), "market": spec.condition_id,
        "assets_ids": [spec.up_token, spec.down_token], "winning_asset_id": winning_token,
        "winning_outcome": "Up" if winning_token == spec.up_token else "Down", "timestamp": ms(ts),
        "tags": ["crypto", "bitcoin", "up-or-down", "15M"],
    }


def order_msg(event: OrderEvent, associate_trades: list[str] | None) -> dict:
    o = event.order
    return {
        "asset_id": o.token_id, "associate_trades": list(associate_trades) if associate_trades else None,
        "created_at": secs(o.created_at), "event_type": "order", "expiration": str(o.expiration), "id": o.order_id,
        "maker_address": o.maker_address, "market": o.market, "order_owner": o.owner, "order_type": o.order_type,
        "original_size": num(o.original_size), "outcome": o.outcome, "owner": o.owner, "price": num(o.price),
        "side": o.side, "size_matched": num(o.size_matched), "status": o.status, "timestamp": ms(event.ts),
        "type": event.kind,
    }


def trade_msg(trade: Trade, recipient: str, ts: float) -> dict:
    """A user-channel trade as one recipient sees it: `owner` is the recipient, top-level fields describe the
    taker, `trade_owner` is the taker's key, our maker fills are in `maker_orders`."""
    return {
        "asset_id": trade.token_id, "bucket_index": 0, "event_type": "trade", "fee_rate_bps": str(trade.fee_rate_bps),
        "id": trade.trade_id, "last_update": secs(trade.last_update or trade.match_time),
        "maker_address": wire_address(trade.taker_address), "maker_orders": maker_orders_json(trade), "market": trade.market,
        "match_time": secs(trade.match_time), "outcome": trade.outcome, "owner": recipient, "price": num(trade.price),
        "side": trade.side, "size": num(trade.size), "status": trade.status, "taker_order_id": trade.taker_order_id,
        # Seconds, as the newest real trade messages (user_trade3/4.json, 2025-11) carry it; 2024 recordings
        # had milliseconds, so consumers must accept both (order events still carry milliseconds).
        "timestamp": secs(ts), "trade_owner": wire_owner(trade.taker_owner),
        "trader_side": "TAKER" if trade.taker_owner == recipient else "MAKER",
        "transaction_hash": trade_tx_hash(trade), "type": "TRADE",
    }


_encode = msgspec.json.Encoder().encode


def encode(message: Any) -> str:
    return _encode(message).decode()


# ---- one connection -----------------------------------------------------------------------------------
class Conn:
    """One subscriber socket and its outgoing queue. Delivery faults act here, per frame."""

    def __init__(self, ws: web.WebSocketResponse, transport, channel: str, faults: Faults, stats: dict) -> None:
        self.ws = ws
        self.transport = transport
        self.channel = channel
        self.faults = faults
        self.stats = stats
        self.queue: deque[tuple[float, str]] = deque()
        self.ready = asyncio.Event()
        self.held: str | None = None  # a frame held back by the reorder fault
        self.held_since = 0.0
        self.subscribed = False
        self.assets: set[str] = set()
        self.custom = False
        self.owner: str | None = None  # user channel: the API key
        self.markets: set[str] = set()  # user channel filter (empty = all)
        self.closed = False
        self._sender: asyncio.Task | None = None

    def start(self) -> None:
        self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def stop(self) -> None:
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except (asyncio.CancelledError, Exception):
                pass

    def abort(self) -> None:
        """Fault: the connection dies without a close frame, like a network drop."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send_control(self, text: str) -> None:
        """PONG and protocol answers: not subject to freeze/duplicate/reorder."""
        self._enqueue(text, delay=0.0)

    def send_data(self, text: str) -> None:
        f = self.faults
        if self.closed:
            return
        if self.channel == "market" and f.freeze_market_ws:
            return  # frozen: data silently stops, the socket stays up and PONGs continue
        if f.wrap_in_list and not text.startswith("["):
            text = "[" + text + "]"
        if f.reorder_next > 0:
            if self.held is None:
                self.held, self.held_since = text, time.monotonic()
                return
            held, self.held = self.held, None
            f.reorder_next -= 1
            # The swapped pair still goes through the duplicate fault: the two switches combine (a frame
            # arriving late AND twice is what a client must survive), neither silently masks the other.
            self._emit(text)
            self._emit(held)
            return
        self._emit(text)

    def _emit(self, text: str) -> None:
        """Queue one data frame, twice while the duplicate fault has frames left."""
        f = self.faults
        self._enqueue(text, f.ws_delay_s)
        if f.duplicate_next > 0:
            f.duplicate_next -= 1
            self._enqueue(text, f.ws_delay_s)

    def flush_held(self, older_than_s: float = 0.5) -> None:
        if self.held is not None and time.monotonic() - self.held_since >= older_than_s:
            held, self.held = self.held, None
            self._emit(held)

    def _enqueue(self, text: str, delay: float) -> None:
        if self.closed:
            return
        if len(self.queue) >= MAX_QUEUE:
            log.warning("dropping slow %s subscriber: %d frames queued", self.channel, len(self.queue))
            self.abort()
            return
        self.queue.append((time.monotonic() + delay, text))
        self.ready.set()

    async def _send_loop(self) -> None:
        while not self.closed:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            due, text = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.queue.popleft()
            try:
                await self.ws.send_str(text)
            except Exception:  # peer gone (ConnectionResetError, ClientConnectionResetError...)
                self.closed = True
                return
            self.stats["ws_messages"] += 1


# ---- channels -----------------------------------------------------------------------------------------
class _Channel:
    channel = ""

    def __init__(self, sim: "Sim", subscribe_timeout_s: float, idle_timeout_s: float) -> None:
        self.sim = sim
        self.subscribe_timeout_s = subscribe_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.conns: set[Conn] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, autoping=False)
        await ws.prepare(request)
        conn = Conn(ws, request.transport, self.channel, self.sim.faults, self.sim.stats)
        conn.start()
        self.conns.add(conn)
        try:
            await self._serve(conn)
        except Exception:
            log.exception("%s socket failed", self.channel)
        finally:
            self.conns.discard(conn)
            await conn.stop()
            if not ws.closed:
                try:
                    await ws.close()
                except Exception:
                    pass
        return ws

    async def _serve(self, conn: Conn) -> None:
        loop = asyncio.get_running_loop()
        subscribe_by = loop.time() + self.subscribe_timeout_s
        last_seen = loop.time()
        while not conn.closed:
            now = loop.time()
            if not conn.subscribed and now >= subscribe_by:
                log.info("closing %s socket: no subscription within %.0f s", self.channel, self.subscribe_timeout_s)
                await conn.ws.close(code=1008, message=b"subscription required")
                return
            if now - last_seen >= self.idle_timeout_s:
                log.info("closing %s socket: silent for %.0f s (no PING)", self.channel, self.idle_timeout_s)
                await conn.ws.close(code=1000, message=b"ping timeout")
                return
            limit = last_seen + self.idle_timeout_s if conn.subscribed else min(subscribe_by, last_seen + self.idle_timeout_s)
            try:
                msg = await conn.ws.receive(timeout=max(limit - now, 0.01))
            except asyncio.TimeoutError:
                continue
            last_seen = loop.time()
            if msg.type == WSMsgType.TEXT:
                text = msg.data
                if text.strip().upper() == "PING":
                    conn.send_control("PONG")
                    continue
                self._on_message(conn, text)
            elif msg.type == WSMsgType.PING:
                await conn.ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                continue
            elif msg.type == WSMsgType.BINARY:
                conn.send_control(INVALID_OPERATION)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (an oversized frame ends here with 1009)
                return

    def _on_message(self, conn: Conn, text: str) -> None:
        raise NotImplementedError

    def drop_all(self) -> int:
        conns = list(self.conns)
        for conn in conns:
            conn.abort()
        return len(conns)

    def flush_held(self) -> None:
        for conn in self.conns:
            conn.flush_held()


def _decode_object(text: str) -> dict | None:
    try:
        value = msgspec.json.decode(text)
    except JSON_ERRORS:
        return None
    return value if isinstance(value, dict) else None


def _string_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


class MarketChannel(_Channel):
    channel = "market"

    def _on_message(self, conn: Conn, text: str) -> None:
        message = _decode_object(text)
        if message is None:
            conn.send_control(INVALID_OPERATION)
            return
        assets = _string_list(message.get("assets_ids"))
        operation = message.get("operation")
        if assets is None:
            conn.send_control(INVALID_OPERATION)
            return
        if not conn.subscribed:
            if str(message.get("type", "")).lower() != "market" or operation is not None:
                conn.send_control(INVALID_OPERATION)
                return
            conn.subscribed = True
            conn.custom = bool(message.get("custom_feature_enabled", False))
            conn.assets = set(assets)
            if message.get("initial_dump", True):
                self._send_books(conn, assets)
            return
        if operation == "subscribe":
            new = [a for a in assets if a not in conn.assets]
            conn.assets.update(assets)
            if message.get("custom_feature_enabled") is not None:
                conn.custom = bool(message["custom_feature_enabled"])
            self._send_books(conn, new)
        elif operation == "unsubscribe":
            conn.assets.difference_update(assets)
        else:
            conn.send_control(INVALID_OPERATION)

    def _send_books(self, conn: Conn, assets: Iterable[str]) -> None:
        now = time.time()
        books = [b for b in (book_msg(self.sim, a, now) for a in assets) if b is not None]
        if books:
            # Production delivers the snapshot dump as one JSON array.
            conn.send_data(encode(books))

    # ---- fan-out (called by the server's drain) --------------------------------------------------
    def publish_price_changes(self, market: str, entries: list[dict], ts: float) -> None:
        if not self.conns:
            return
        whole: str | None = None
        for conn in self.conns:
            if not conn.subscribed or not conn.assets:
                continue
            mine = [e for e in entries if e["asset_id"] in conn.assets]
            if not mine:
                continue
            if len(mine) == len(entries):
                whole = whole or encode(price_change_msg(market, entries, ts))
                conn.send_data(whole)
            else:
                conn.send_data(encode(price_change_msg(market, mine, ts)))

    def publish_to_asset(self, token_id: str, message: dict, custom_only: bool = False) -> None:
        text: str | None = None
        for conn in self.conns:
            if conn.subscribed and token_id in conn.assets and (conn.custom or not custom_only):
                text = text or encode(message)
                conn.send_data(text)

    def publish_book(self, token_id: str, now: float) -> None:
        if any(c.subscribed and token_id in c.assets for c in self.conns):
            book = book_msg(self.sim, token_id, now)
            if book is not None:
                self.publish_to_asset(token_id, book)

    def publish_custom(self, message: dict) -> None:
        """new_market / market_resolved: every socket with the custom feature on, whatever it subscribed."""
        text: str | None = None
        for conn in self.conns:
            if conn.subscribed and conn.custom:
                text = text or encode(message)
                conn.send_data(text)


class UserChannel(_Channel):
    """Frames produced by one engine operation for one socket go out together: one object when there is
    one, else one JSON array (production batches user messages this way at times, nautilus PR #2963)."""

    channel = "user"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batch: dict[Conn, list[str]] | None = None

    def begin_batch(self) -> None:
        self._batch = {}

    def end_batch(self) -> None:
        batch, self._batch = self._batch, None
        for conn, texts in (batch or {}).items():
            conn.send_data(texts[0] if len(texts) == 1 else "[" + ",".join(texts) + "]")

    def _on_message(self, conn: Conn, text: str) -> None:
        message = _decode_object(text)
        if message is None:
            conn.send_control(INVALID_OPERATION)
            return
        markets = _string_list(message.get("markets"))
        if markets is None:
            conn.send_control(INVALID_OPERATION)
            return
        if not conn.subscribed:
            creds = message.get("auth")
            if str(message.get("type", "")).lower() != "user" or not isinstance(creds, dict):
                conn.send_control(INVALID_OPERATION)
                return
            key = self.sim.keys.check_ws_auth(str(creds.get("apiKey", "")), str(creds.get("secret", "")),
                                              str(creds.get("passphrase", "")))
            if key is None:
                # Production drops the socket on bad credentials (no error frame is documented).
                log.info("closing user socket: bad credentials")
                conn.closed = True
                asyncio.get_running_loop().create_task(conn.ws.close(code=1008, message=b"Unauthorized"))
                return
            conn.subscribed = True
            conn.owner = key.key
            conn.markets = set(markets)
            return
        operation = message.get("operation")
        if operation == "subscribe":
            conn.markets.update(markets)
        elif operation == "unsubscribe":
            conn.markets.difference_update(markets)
            if not conn.markets:
                conn.markets = {"__none__"}  # unsubscribed from everything: nothing more arrives
        else:
            conn.send_control(INVALID_OPERATION)

    def publish(self, owner: str, market: str, message: dict) -> None:
        if owner == BACKGROUND:
            return
        text: str | None = None
        for conn in self.conns:
            if conn.subscribed and conn.owner == owner and (not conn.markets or market in conn.markets):
                text = text or encode(message)
                if self._batch is not None:
                    self._batch.setdefault(conn, []).append(text)
                else:
                    conn.send_data(text)

    def has_owner(self, owner: str) -> bool:
        return any(c.owner == owner for c in self.conns)


def trade_recipients(trade: Trade) -> list[str]:
    owners = [trade.taker_owner, *(f.owner for f in trade.maker_fills)]
    return [o for o in dict.fromkeys(owners) if o != BACKGROUND]
