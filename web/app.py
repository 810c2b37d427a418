"""The HTTP API and the page, as one aiohttp application (`create_app`).

Security, in the order a request meets it (middleware `guard`):
1. Host check: bound to loopback, only loopback host names are served (a DNS-rebinding page cannot make the
   browser talk to us under its own name).
2. Rate limits per client address (web/limits.py), and a lockout after repeated bad tokens.
3. The bearer token (`Authorization: Bearer ...`) on every request, GET included. There are no cookies, so a
   cross-site page can make a browser send nothing that authenticates; we answer no CORS, so it cannot read or
   send the header either. `GET /mm-bot` without a token answers 401 with the page's static code (no data; it
   asks for the token), which is how a browser opens the page at all.
4. Request bodies are capped (MAX_BODY), JSON is decoded strictly (a 400 in words), and every answer carries
   no-store caching, a strict Content-Security-Policy and no-referrer.
No response carries a secret: config values are redacted by the trader and again here (views.config_json).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.resources
import logging
import re
import time
from typing import Any

import msgspec
from aiohttp import web

from polymm.ctl import protocol as p

from . import bearer as tokens
from .limits import AuthFailures, RateLimiter
from .pnl import PnlReader
from .stream import Hub, TooManyStreams
from .trader_link import TraderError, TraderLink
from .units import SERVICES, Systemd, UnitError
from .views import (BadRequest, change_json, changed_settings, config_json, parse_json, refusal_json,
                    settings_from_body, status_json)

log = logging.getLogger("polymm.web")

MAX_BODY = 64 * 1024  # a full config change is < 4 KiB
PAGE_PATHS = ("/", "/mm-bot", "/mm-bot/")
SSE_KEEPALIVE_S = 15.0
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
DONE_WORDS = {"start": "started", "stop": "stopped", "restart": "restarted"}


def _page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy: the inline script and style are allowed by their hashes, nothing
    else runs (an injected script or attribute handler would not)."""
    html = importlib.resources.files("polymm.web").joinpath("page.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in bodies)
    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html.encode("utf-8"), csp


API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _json(data: Any, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json",
                        headers=headers or None)


def _error(status: int, detail: str, **extra: Any) -> web.Response:
    return _json({"detail": p.one_line(detail), **extra}, status)


def host_allowed(host: str | None, allowed: set[str] | None) -> bool:
    """Whether the Host header names us. `allowed` None: any host (remote access allowed by the operator)."""
    if allowed is None:
        return True
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return name in allowed or name.startswith("127.")


class Api:
    def __init__(self, token: str, link: TraderLink, systemd: Systemd, pnl: PnlReader | None,
                 allowed_hosts: set[str] | None, clock=time.time, rate: RateLimiter | None = None,
                 failures: AuthFailures | None = None) -> None:
        self.token = token
        self.link = link
        self.systemd = systemd
        self.pnl = pnl
        self.allowed_hosts = allowed_hosts
        self.clock = clock
        self.rate = rate or RateLimiter()
        self.failures = failures or AuthFailures()
        self.page, self.page_csp = _page()
        self.hub = Hub(self._stream_events)

    # -- middleware ------------------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler) -> web.StreamResponse:
        response = await self._guarded(request, handler)
        response.headers.setdefault("Content-Security-Policy", API_CSP)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        return response

    async def _guarded(self, request: web.Request, handler) -> web.StreamResponse:
        client = request.remote or "?"
        if not host_allowed(request.host, self.allowed_hosts):
            return _error(421, f"this service answers only to a loopback host name, not {request.host!r}; see "
                               "--allowed-host")
        now = time.monotonic()
        locked = self.failures.locked(client, now)
        if locked:
            return _json({"detail": f"too many requests with a wrong token from {client}: try again in "
                                    f"{locked:.0f} s"}, 429, **{"Retry-After": str(int(locked) + 1)})
        wait = self.rate.allow(client, now)
        if wait:
            return _json({"detail": f"too many requests: at most {self.rate.rate:g} a second from one address "
                                    f"(bursts of {self.rate.burst})"}, 429, **{"Retry-After": str(int(wait) + 1)})
        if not tokens.matches(request.headers.get("Authorization"), self.token):
            if request.headers.get("Authorization"):
                self.failures.failed(client, now)
                log.warning("refused %s %s from %s: wrong token", request.method, request.path, client)
            return self._unauthorised(request)
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return _error(413, f"request body too large: at most {MAX_BODY} bytes")
            if exc.status == 404:
                return _error(404, f"no such route: {request.method} {request.path}")
            if exc.status == 405:
                allowed = exc.headers.get("Allow", "")
                return _error(405, f"{request.method} is not allowed on {request.path} (allowed: {allowed})")
            return _error(exc.status, exc.reason)
        except BadRequest as exc:
            return _error(400, str(exc))
        except Exception:  # noqa: BLE001 - a bug of ours is a 500 in words, the traceback goes to the log
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, "internal error in polymm-web (its log has the details)")

    def _unauthorised(self, request: web.Request) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="polymm"'}
        if request.method == "GET" and request.path in PAGE_PATHS:
            # The page's static code (no data): it asks for the token and sends it with every request it makes.
            return web.Response(body=self.page, status=401, content_type="text/html", charset="utf-8",
                                headers={**headers, "Content-Security-Policy": self.page_csp})
        return _json({"detail": "missing or wrong token: send `Authorization: Bearer <token>` (the token is in "
                                "/etc/polymm/web.token)"}, 401, **headers)

    # -- reads -----------------------------------------------------------------------------------------

    async def page_view(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": self.page_csp})

    async def _status(self) -> dict:
        async def units():
            try:
                return await self.systemd.states(), None
            except UnitError as exc:
                return None, exc.message

        async def trader():
            try:
                return await self.link.status(), None
            except TraderError as exc:
                return None, exc.message

        async def ledger():
            return None if self.pnl is None else await asyncio.to_thread(self.pnl.read, self.clock())
        (unit_states, units_problem), (reply, trader_problem), pnl = await asyncio.gather(units(), trader(), ledger())
        return status_json(units=unit_states, units_problem=units_problem, reply=reply, trader_problem=trader_problem,
                           pnl=pnl, now=self.clock())

    async def status_view(self, request: web.Request) -> web.Response:
        return _json(await self._status())

    async def pnl_view(self, request: web.Request) -> web.Response:
        if self.pnl is None:
            return _error(404, "no ledger configured (--ledger)")
        return _json((await asyncio.to_thread(self.pnl.read, self.clock())).as_dict())

    async def config_view(self, request: web.Request) -> web.Response:
        try:
            return _json(config_json(await self.link.config()))
        except TraderError as exc:
            return _error(exc.status, exc.message, code=exc.code)

    # -- changes ---------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()  # aiohttp enforces client_max_size (413)
        return parse_json(raw) if raw.strip() else {}

    async def config_put(self, request: web.Request) -> web.Response:
        flat = settings_from_body(await self._body(request))
        try:
            current = await self.link.config()
            settings, unchanged = changed_settings(flat, current.entries)
            if not settings:
                return _json({"status": "unchanged", "message": "no change: every value given is already in effect",
                              "changes": [], "unchanged": unchanged, "pending_restart": [], "warnings": []})
            reply = await self.link.set(settings)
        except TraderError as exc:
            if exc.status == 422 or exc.problems:
                return _json(refusal_json(exc.message, exc.code, exc.problems), 422)
            return _error(exc.status, exc.message, code=exc.code)
        log.info("config set from %s: %s", request.remote, ", ".join(f"{c.key}: {c.old} -> {c.new}"
                                                                     for c in reply.changes) or "no change")
        return _json(change_json(reply, unchanged))

    async def unit_action(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        body = await self._body(request)
        service = request.query.get("service") or (body.get("service") if isinstance(body, dict) else None) or "all"
        if service not in SERVICES:
            return _error(400, f"unknown service {service!r}: one of {', '.join(SERVICES)}")
        log.info("%s of %s requested from %s", verb, service, request.remote)
        try:
            units = await self.systemd.act(verb, service)
        except UnitError as exc:
            log.warning("%s of %s failed: %s", verb, service, exc.message)
            return _error(exc.status, exc.message)
        message = f"{' and '.join(units)} {DONE_WORDS[verb]}"
        return _json({"status": DONE_WORDS[verb], "message": message, "units": list(units)})

    async def trader_action(self, request: web.Request) -> web.Response:
        op = request.match_info["op"].replace("-", "_")
        body = await self._body(request)
        if op == "flatten" and not (isinstance(body, dict) and body.get("confirm") is True):
            return _error(400, 'flatten sells every position at the market: confirm with the body {"confirm": true}')
        log.info("%s requested from %s", op, request.remote)
        try:
            reply = await self.link.action(op)
        except TraderError as exc:
            return _error(exc.status, exc.message, code=exc.code)
        return _json({"status": "done", "message": reply.message, "count": reply.count, "paused": reply.paused,
                      "warnings": list(reply.warnings)})

    # -- the live stream ---------------------------------------------------------------------------------

    async def _stream_events(self) -> list[tuple[str, dict]]:
        events = [("status", await self._status())]
        if self.pnl is not None:
            events.append(("pnl", (await asyncio.to_thread(self.pnl.read, self.clock())).as_dict()))
        return events

    async def events_view(self, request: web.Request) -> web.StreamResponse:
        try:
            queue = self.hub.subscribe(request.remote or "?")
        except TooManyStreams as exc:
            return _error(429, str(exc))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = API_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    name, data = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"event: {name}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(queue)
        return response


def create_app(api: Api) -> web.Application:
    app = web.Application(middlewares=[api.guard], client_max_size=MAX_BODY)
    app.add_routes([
        web.get("/", api.page_view, allow_head=False),
        web.get("/mm-bot", api.page_view, allow_head=False),
        web.get("/mm-bot/", api.page_view, allow_head=False),
        web.get("/mm-bot/status", api.status_view, allow_head=False),
        web.get("/mm-bot/config", api.config_view, allow_head=False),
        web.put("/mm-bot/config", api.config_put),
        web.get("/mm-bot/pnl", api.pnl_view, allow_head=False),
        web.get("/mm-bot/events", api.events_view, allow_head=False),
        web.post(r"/mm-bot/{verb:start|stop|restart}", api.unit_action),
        web.post(r"/mm-bot/{op:pause|resume|flatten|cancel-all}", api.trader_action),
    ])

    async def on_shutdown(_app: web.Application) -> None:
        await api.hub.close()
    app.on_shutdown.append(on_shutdown)
    return app
