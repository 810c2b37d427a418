"""A tiny scripted Polymarket stand-in for the feed's protocol tests: Gamma `/events?slug=` and the market
channel WebSocket, in a background thread on a free port. It records what clients send, so tests can check
the subscription is the first frame and that PINGs come; tests push frames, drop or freeze connections.
(The full simulator is polymm.sim; this one exists so protocol details are checked exactly.)"""
from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timezone

from aiohttp import WSMsgType, web


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def gamma_event(window_start: int, window_s: int, up: str, down: str, tick: float = 0.01) -> dict:
    slug = f"btc-updown-15m-{window_start}"
    market = {
        "slug": slug,
        "conditionId": "0x" + f"{window_start:064x}",
        "outcomes": json.dumps(["Up", "Down"]),
        "clobTokenIds": json.dumps([up, down]),
        "eventStartTime": iso(window_start),
        "endDate": iso(window_start + window_s),
        "orderPriceMinTickSize": tick,
        "orderMinSize": 5,
        "feeSchedule": {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2},
        "acceptingOrders": True,
        "closed": False,
    }
    return {"slug": slug, "markets": [market]}


class FakePolymarket:
    def __init__(self) -> None:
        self.events: dict[str, dict] = {}  # slug -> event
        self.books: dict[str, tuple[list, list]] = {}  # token -> (bids, asks) as (price, size) tuples
        self.received: list[list[str]] = []  # per connection: text frames the client sent
        self.frozen = False
        self.muted = False  # nothing at all, not even a PONG: a half-open (black-holed) connection
        self.gamma_requests = 0
        # RTDS (/rtds): what clients sent per connection, and the history dump answered to a subscription.
        self.rtds_received: list[list[str]] = []
        self.rtds_history: list[dict] = []
        self._rtds_conns: list[web.WebSocketResponse] = []
        self._conns: list[web.WebSocketResponse] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    # -- test side --------------------------------------------------------------------------------------

    def start(self) -> "FakePolymarket":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    @property
    def gamma_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/market"

    def list_market(self, window_start: int, window_s: int, up: str, down: str) -> None:
        self.events[f"btc-updown-15m-{window_start}"] = gamma_event(window_start, window_s, up, down)

    def push(self, frame: dict | list) -> None:
        text = json.dumps(frame)
        asyncio.run_coroutine_threadsafe(self._broadcast(text), self._loop).result(5)

    def drop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(5)

    @property
    def rtds_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/rtds"

    def push_rtds(self, frame: dict) -> None:
        text = json.dumps(frame)

        async def send():
            if not self.frozen:
                for ws in list(self._rtds_conns):
                    if not ws.closed:
                        await ws.send_str(text)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    def drop_rtds(self) -> None:
        async def close():
            for ws in list(self._rtds_conns):
                await ws.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    def connections(self) -> int:
        return len(self.received)

    def stop(self) -> None:
        async def shutdown():
            await self._close_all()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- server side ----------------------------------------------------------------------------------------

    def book_frame(self, token: str) -> dict:
        bids, asks = self.books.get(token, ([], []))
        return {
            "event_type": "book",
            "asset_id": token,
            "market": "0xm",
            "timestamp": "1",
            "bids": [{"price": str(p), "size": str(s)} for p, s in sorted(bids)],  # best LAST, as production
            "asks": [{"price": str(p), "size": str(s)} for p, s in sorted(asks, reverse=True)],
        }

    async def _broadcast(self, text: str) -> None:
        if self.frozen:
            return
        for ws in list(self._conns):
            if not ws.closed:
                await ws.send_str(text)

    async def _close_all(self) -> None:
        for ws in list(self._conns):
            await ws.close()

    async def _events(self, request: web.Request) -> web.Response:
        self.gamma_requests += 1
        event = self.events.get(request.query.get("slug", ""))
        return web.json_response([event] if event else [])

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        frames: list[str] = []
        self.received.append(frames)
        self._conns.append(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frames.append(msg.data)
                if self.muted:
                    continue
                if msg.data == "PING":
                    await ws.send_str("PONG")  # PONGs go on even when data is frozen
                    continue
                if len(frames) == 1:
                    sub = json.loads(msg.data)
                    if not self.frozen:
                        await ws.send_str(json.dumps([self.book_frame(t) for t in sub["assets_ids"]]))
        finally:
            self._conns.remove(ws)
        return ws

    async def _rtds_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        frames: list[str] = []
        self.rtds_received.append(frames)
        self._rtds_conns.append(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frames.append(msg.data)
                if msg.data == "PING":
                    await ws.send_str("PONG")
                elif not self.frozen:
                    for frame in self.rtds_history:
                        await ws.send_str(json.dumps(frame))
        finally:
            self._rtds_conns.remove(ws)
        return ws

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/events", self._events)
        app.router.add_get("/ws/market", self._ws)
        app.router.add_get("/rtds", self._rtds_ws)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
