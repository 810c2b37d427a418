"""polymm-sim: a local Polymarket (Gamma, CLOB REST, market and user WebSockets, RTDS, Data API positions,
the gasless relayer) on one port.

    polymm-sim --host 127.0.0.1 --port 0 --seed 1 --window-s 60 --ready-file /tmp/sim.json

`--port 0` picks a free port; the ready file (written atomically once the sim serves, removed on exit)
holds {"gamma_url", "clob_url", "ws_market_url", "ws_user_url", "ws_rtds_url", "admin_url", "data_url",
"relayer_url"}.

One asyncio loop owns everything: HTTP handlers call the engine directly (it is not thread-safe and
needs no lock this way), and a periodic task steps the synthetic market, runs the dead-man switch and
turns engine events into WebSocket frames.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import time
from decimal import Decimal
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from polymm import logs
from polymm import series as series_mod
from polymm.sim import auth, rtds, script, ws
from polymm.sim.admin import AdminApi
from polymm.sim.chain import Chain
from polymm.sim.clob import ClobApi, Heartbeats, error
from polymm.sim.data_api import DataApi
from polymm.sim.engine import (BACKGROUND, Engine, LastTrade, LevelChange, MarketResolved, MarketSpec, OrderEvent,
                               TickSizeChange, TradeEvent)
from polymm.sim.faults import Faults
from polymm.sim.gamma import GammaApi
from polymm.sim.market import MarketCalendar, SyntheticMarket
from polymm.sim.order_rules import OrderRules
from polymm.sim.relayer import PREFIX as RELAYER_PREFIX, Relayer

log = logging.getLogger("polymm.sim")

MAX_BODY = 1024 * 1024  # bigger request bodies get 413


class Sim:
    """All sim state, owned by the event loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = Engine(default_fund=Decimal(str(args.fund)), mined_after_s=args.mined_after_s,
                             confirmed_after_s=args.confirmed_after_s, auto_redeem=args.redeem == "auto")
        # One synthetic market per series served (--series); the first is `calendar`/`market` (what a single-series
        # caller, the demo and most tests, use). Every window length is the series' own unless --window-s
        # compresses them all.
        self.series: tuple[series_mod.Series, ...] = args.series
        self.calendars = {s.name: MarketCalendar(args.seed, s.window_s, s) for s in self.series}
        for calendar in self.calendars.values():
            calendar.fee_rate = Decimal(str(args.fee_rate))
            calendar.fee_exponent = Decimal(str(args.fee_exponent))
        self.calendar = self.calendars[self.series[0].name]
        self.order_version = args.order_version  # GET /version; orders must be signed for it
        self.listed_ahead = args.listed_ahead
        market_options = {}
        if args.btc_vol is not None:
            market_options["vol_per_sqrt_s"] = args.btc_vol
        if args.resolve_delay_s:
            market_options["resolve_delay_s"] = args.resolve_delay_s
        if args.script:
            market_options["script"] = load_script(args.script)
        self.retain_s = args.retain_s
        self.markets = {name: SyntheticMarket(self.engine, calendar, args.seed, listed_ahead=args.listed_ahead,
                                              retain_s=args.retain_s, **market_options)
                        for name, calendar in self.calendars.items()}
        self.market = self.markets[self.series[0].name]
        self.keys = auth.ApiKeys(hashlib.sha256(f"polymm-sim:{args.seed}".encode()).digest())
        self.relayer = Relayer(self, hashlib.sha256(f"polymm-sim-relayer:{args.seed}".encode()).digest(),
                               execute_after_s=args.relayer_execute_after_s,
                               confirm_after_s=args.relayer_confirm_after_s, gas_cap=args.relayer_gas_cap)
        self.chain = Chain(self, approvals=args.approvals, pol_wei=int(Decimal(str(args.pol)) * 10**18))
        self.strict_funder = args.strict_funder  # orders whose maker is not the signer's wallet are refused
        self.order_rules = OrderRules()  # the market info's oas / itode (admin fault `order_rules`)
        self.faults = Faults()
        self.heartbeats = Heartbeats(args.heartbeat_timeout_s)
        self.page_size = args.page_size
        self.stats = {"orders_accepted": 0, "ws_messages": 0, "ticks": 0, "tick_errors": 0}
        # Every HTTP request by "METHOD /path" (the request log tests read: e.g. that paper trading sent no order).
        self.requests: dict[str, int] = {}
        self.started_at = time.time()
        self.market_ch = ws.MarketChannel(self, args.ws_subscribe_timeout_s, args.ws_idle_timeout_s)
        self.user_ch = ws.UserChannel(self, args.ws_subscribe_timeout_s, args.ws_idle_timeout_s)
        self.rtds_ch = rtds.RtdsChannel(self, args.ws_subscribe_timeout_s, args.ws_idle_timeout_s)
        self.last_trade: dict[str, Decimal] = {}
        self.last_trade_side: dict[str, str] = {}
        self.associate_trades: dict[str, list[str]] = {}  # order id -> trade ids (real accounts only)
        self._funders: dict[str, dict[int, str]] = {}  # api key -> signature type -> maker address
        self._winners: dict[str, str] = {}  # condition id -> winning token, kept after the engine forgets...
        self._won_at: dict[str, float] = {}  # ...for retain_s after the resolution
        self._known_markets: set[str] = set()
        self._pending_failures: list[tuple[float, str]] = []
        self._level_seq = 0
        self._best_seen: dict[str, tuple[Decimal | None, Decimal | None]] = {}

    # ---- accounts of an API key ------------------------------------------------------------------
    def remember_funder(self, key: auth.ApiKey, signature_type: int, maker: str) -> None:
        self._funders.setdefault(key.key, {})[signature_type] = maker

    def funder_of(self, key: auth.ApiKey, signature_type: int) -> str:
        """Whose balance /balance-allowance reports: the maker of the key's last order of that signature type,
        else the wallet production derives from the EOA for it (proxy, Safe, current deposit wallet)."""
        if signature_type == 0:
            return key.address
        remembered = self._funders.get(key.key, {}).get(signature_type)
        if remembered is not None:
            return remembered
        from eth_utils import to_checksum_address

        from polymm.sim import relayer_requests as rr

        derived = {1: rr.proxy_of, 2: rr.safe_of, 3: rr.beacon_deposit_wallet_of}.get(signature_type)
        return to_checksum_address(derived(key.address)) if derived is not None else key.address

    def addresses_of(self, key: auth.ApiKey) -> list[str]:
        """The key's EOA, the makers of its orders and the wallets its EOA controls (proxy, Safe, deposit wallet)."""
        return list(dict.fromkeys([key.address, *self._funders.get(key.key, {}).values(),
                                   *(self.funder_of(key, t) for t in (1, 2, 3))]))

    # ---- the series served -------------------------------------------------------------------------
    def market_of(self, condition_id: str) -> SyntheticMarket:
        """The synthetic market (series) a window belongs to; the first series' for an unknown id."""
        for market in self.markets.values():
            if market.fair(condition_id) is not None:
                return market
        return self.market

    def lookup_slug(self, slug: str, now: float | None = None) -> tuple[SyntheticMarket, int] | None:
        """(the series' market, window start) a Gamma slug names (an hourly slug without its year: the year closest
        to `now`), or None."""
        for market in self.markets.values():
            start = market.series.window_of_slug(slug, near=now)
            if start is not None:
                return market, start
        return None

    def winner_of(self, spec: MarketSpec) -> str:
        won = self._winners.get(spec.condition_id)
        if won is not None:
            return won
        # A window from before the sim started: a stable pretend outcome (its BTC path was never simulated).
        return spec.up_token if int(spec.condition_id[2:4], 16) % 2 == 0 else spec.down_token

    # ---- the periodic work -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.time()
            self.tick(started)
            self.stats["ticks"] += 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._until_next_tick(time.time()))
            except asyncio.TimeoutError:
                pass

    def _until_next_tick(self, now: float) -> float:
        """Wake at most every --tick-s, and just after the synthetic market's next grid step, so what the
        background does reaches the WebSockets without waiting for the next tick."""
        wait = self.args.tick_s
        grid = self.market.grid_time()  # every series' market steps on the same grid
        if grid is not None:
            wait = min(wait, grid + self.market.step_s - now + 0.001)
        return max(0.0, wait)

    def tick(self, now: float) -> None:
        # Each step is guarded on its own: a failing market step must not stop the dead-man switch or
        # the event fan-out.
        for step in (*(m.step for m in self.markets.values()), self._release_delayed, self._announce_new_markets,
                     self._dead_man_switch, self._run_trade_failures,
                     self.relayer.tick, self.drain, self._flush_held, self._forget_old_markets,
                     self.rtds_ch.publish_new):
            try:
                step(now)
            except Exception:
                self.stats["tick_errors"] += 1
                log.exception("sim tick step %s failed (the sim keeps serving)", getattr(step, "__name__", step))

    def _release_delayed(self, now: float) -> None:
        """Takers held by the taker delay (sim/order_rules.py) reach the matching engine when it ends. The client
        had only `delayed` for an answer, so an order that does not rest afterwards (refused, or a FAK/FOK whose
        remainder is killed) ends with a CANCELLATION on the user channel saying what matched; fills come as
        trades, as for any order."""
        import dataclasses

        from polymm.sim.records import OrderEvent

        for order in self.order_rules.due(now):
            result = self.engine.submit(order, now)
            if not result.ok:
                log.info("delayed order %s refused when it matched: %s", order.order_id[:12], result.error)
            if result.ok and order.order_type not in ("FAK", "FOK"):
                continue
            matched = (result.taking_amount if order.side == "BUY" else result.making_amount) if result.ok else 0
            done = dataclasses.replace(order, status="CANCELED", size_matched=min(order.original_size,
                                                                                   type(order.original_size)(matched)))
            if done.remaining > 0:
                self.user_ch.publish(order.owner, order.market, ws.order_msg(
                    OrderEvent("CANCELLATION", done, now), self.associate_trades.get(order.order_id)))

    def _dead_man_switch(self, now: float) -> None:
        for owner in self.heartbeats.expired(now):
            canceled, _ = self.engine.cancel_all(owner, now)
            log.warning("dead-man switch: no heartbeat for %.1f s from key %s..., cancelled %d orders",
                        self.heartbeats.timeout_s, owner[:8], len(canceled))

    def _flush_held(self, now: float) -> None:
        self.market_ch.flush_held()
        self.user_ch.flush_held()

    def after_engine_call(self) -> None:
        """REST handlers call this after changing the engine so WS frames go out at once."""
        self.drain(time.time())

    def _announce_new_markets(self, now: float) -> None:
        for spec in self.engine.markets():
            if spec.condition_id not in self._known_markets:
                self._known_markets.add(spec.condition_id)
                self.market_ch.publish_custom(ws.new_market_msg(spec, now))

    def _forget_old_markets(self, now: float) -> None:
        # Resolved books are dropped a few windows later so hours of 60 s windows stay flat in memory;
        # Gamma still answers for them (closed, with the remembered winner).
        for spec in self.engine.markets():
            if spec.closed and spec.window_end < now - 3 * (spec.window_end - spec.window_start):
                if spec.winning_token:
                    self._winners[spec.condition_id] = spec.winning_token
                    self._won_at.setdefault(spec.condition_id, now)
                self.engine.forget_market(spec.condition_id)
                self._known_markets.discard(spec.condition_id)
                for token in (spec.up_token, spec.down_token):
                    self.last_trade.pop(token, None)
                    self.last_trade_side.pop(token, None)
                    self._best_seen.pop(token, None)
        # Everything kept per order, trade or market goes once it is older than retain_s (bounded per window).
        old = now - self.retain_s
        for cond in [c for c, at in self._won_at.items() if at < old]:
            self._winners.pop(cond, None)
            del self._won_at[cond]
        for order_id in [o for o in self.associate_trades if self.engine.get_order(o) is None]:
            del self.associate_trades[order_id]
        self.relayer.prune(old)

    def _run_trade_failures(self, now: float) -> None:
        due = [tid for at, tid in self._pending_failures if at <= now]
        self._pending_failures = [(at, tid) for at, tid in self._pending_failures if at > now]
        for trade_id in due:
            try:
                self.engine.fail_trade(trade_id, now)
                log.warning("fault: trade %s turned FAILED", trade_id)
            except ValueError as exc:
                log.warning("fault: could not fail trade %s: %s", trade_id, exc)

    # ---- engine events -> WebSocket frames -------------------------------------------------------
    def drain(self, now: float) -> None:
        events, self.engine.events = self.engine.events, []
        if not events:
            return
        self.user_ch.begin_batch()
        try:
            self._dispatch(events, now)
        finally:
            self.user_ch.end_batch()

    def _dispatch(self, events: list, now: float) -> None:
        # Trades first: an order UPDATE emitted just before its trade must already list it.
        for event in events:
            if isinstance(event, TradeEvent) and event.trade.status == "MATCHED":
                self._associate(event.trade)
        run: list[LevelChange] = []
        books_after: dict[str, float] = {}
        for event in events:
            if isinstance(event, LevelChange):
                run.append(event)
                continue
            if run:
                self._publish_levels(run)
                run = []
            if isinstance(event, OrderEvent):
                order = event.order
                if order.owner != BACKGROUND:
                    self.user_ch.publish(order.owner, order.market,
                                         ws.order_msg(event, self.associate_trades.get(order.order_id)))
            elif isinstance(event, TradeEvent):
                self._on_trade(event, now)
            elif isinstance(event, LastTrade):
                self.last_trade[event.token_id] = event.price
                self.last_trade_side[event.token_id] = event.side
                self.market_ch.publish_to_asset(event.token_id, ws.last_trade_msg(event))
                spec = self.engine.market(event.market)
                if spec is not None:
                    books_after[spec.up_token] = event.ts
                    books_after[spec.down_token] = event.ts
            elif isinstance(event, TickSizeChange):
                self.market_ch.publish_to_asset(event.token_id, ws.tick_size_msg(event))
            elif isinstance(event, MarketResolved):
                self._winners[event.market] = event.winning_token
                self._won_at[event.market] = event.ts
                spec = self.engine.market(event.market)
                if spec is not None:
                    self.market_ch.publish_custom(ws.market_resolved_msg(spec, event.winning_token, event.ts))
        if run:
            self._publish_levels(run)
        # Production sends a fresh `book` after a trade changed it.
        for token, ts in books_after.items():
            self.market_ch.publish_book(token, ts)

    def _publish_levels(self, run: list[LevelChange]) -> None:
        by_market: dict[str, list[dict]] = {}
        ts_of: dict[str, float] = {}
        tops: dict[str, tuple[str, Decimal | None, Decimal | None, float]] = {}
        for change in run:
            self._level_seq += 1
            by_market.setdefault(change.market, []).append(ws.price_change_entry(change, self._level_seq))
            ts_of[change.market] = change.ts
            tops[change.token_id] = (change.market, change.best_bid, change.best_ask, change.ts)
        for market, entries in by_market.items():
            self.market_ch.publish_price_changes(market, entries, ts_of[market])
        for token, (market, bid, ask, ts) in tops.items():
            if self._best_seen.get(token) != (bid, ask):
                self._best_seen[token] = (bid, ask)
                self.market_ch.publish_to_asset(token, ws.best_bid_ask_msg(market, token, bid, ask, ts),
                                                custom_only=True)

    def _associate(self, trade) -> None:
        for order_id, owner in [(trade.taker_order_id, trade.taker_owner),
                                *((f.order_id, f.owner) for f in trade.maker_fills)]:
            if owner != BACKGROUND:
                ids = self.associate_trades.setdefault(order_id, [])
                if trade.trade_id not in ids:
                    ids.append(trade.trade_id)

    def _on_trade(self, event: TradeEvent, now: float) -> None:
        trade = event.trade
        if trade.status == "MATCHED":
            parties = {trade.taker_address, *(f.maker_address for f in trade.maker_fills)} - {BACKGROUND}
            if parties and self.faults.should_fail_trade(parties):
                # After the MATCHED frame went out, as production's failed settlement would.
                self._pending_failures.append((now + 0.3, trade.trade_id))
        for recipient in ws.trade_recipients(trade):
            self.user_ch.publish(recipient, trade.market, ws.trade_msg(trade, recipient, event.ts))

    # ---- shutdown --------------------------------------------------------------------------------
    async def close_sockets(self) -> None:
        for channel in (self.market_ch, self.user_ch, self.rtds_ch):
            for conn in list(channel.conns):
                conn.closed = True
                try:
                    await conn.ws.close(code=1001, message=b"server shutting down")
                except Exception:
                    pass


# ---- HTTP plumbing ----------------------------------------------------------------------------------
def request_log(sim: Sim):
    @web.middleware
    async def count(request: web.Request, handler):
        # By route ("GET /data/order/{order_id}"), not by path: one counter per endpoint, not one per order id or
        # market slug (a sim running for days must stay flat in memory).
        route = request.match_info.route.resource
        key = f"{request.method} {route.canonical if route is not None else request.path}"
        sim.requests[key] = sim.requests.get(key, 0) + 1
        return await handler(request)
    return count


@web.middleware
async def errors_as_json(request: web.Request, handler):
    """Nothing reaches a client as a traceback: every failure is a JSON error with a production-style code."""
    try:
        return await handler(request)
    except auth.AuthError as exc:
        return error(401, exc.message)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error(404, "not found")
        if exc.status == 405:
            return error(405, "method not allowed")
        if exc.status == 413:
            return error(413, "request body too large")
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason or "bad request")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "Internal server error")


class QuietUnparseableRequests(logging.Filter):
    """aiohttp answers a request it cannot parse (a URL over 8 KB, broken HTTP) with 400 itself and logs a
    traceback: that is the client's fault, so one warning line without the traceback is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: unparseable request ({type(exc).__name__}: {exc.message[:120]!r})"
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def build_app(sim: Sim, admin: bool = True) -> web.Application:
    app = web.Application(middlewares=[request_log(sim), errors_as_json], client_max_size=MAX_BODY)
    app["sim"] = sim
    app.add_routes(GammaApi(sim).routes())
    app.add_routes(ClobApi(sim).routes())
    app.add_routes([web.get("/ws/market", sim.market_ch.handle), web.get("/ws/user", sim.user_ch.handle),
                    web.get("/rtds", sim.rtds_ch.handle)])
    app.add_routes(DataApi(sim).routes())
    app.add_routes(sim.relayer.routes())
    app.add_routes(sim.chain.routes())
    app.add_routes([web.get("/api/geoblock", geoblock)])
    if admin:
        app.add_routes(AdminApi(sim).routes())
        app.add_routes(sim.relayer.admin_routes())
        app.add_routes(sim.chain.admin_routes())
    return app


async def geoblock(request: web.Request) -> web.Response:
    """polymarket.com/api/geoblock (docs.polymarket.com/api-reference/geoblock): is the caller's IP allowed to
    place orders. The admin fault `geoblock` decides the answer."""
    sim = request.app["sim"]
    blocked, country, region = sim.faults.geoblock
    return web.json_response({"blocked": blocked, "ip": request.remote or "127.0.0.1", "country": country,
                              "region": region})


def urls(host: str, port: int) -> dict[str, str]:
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    return {"gamma_url": base, "clob_url": base, "ws_market_url": f"ws://{shown}:{port}/ws/market",
            "ws_user_url": f"ws://{shown}:{port}/ws/user", "ws_rtds_url": f"ws://{shown}:{port}/rtds",
            "admin_url": f"{base}/_sim", "data_url": base, "relayer_url": f"{base}{RELAYER_PREFIX}",
            "rpc_url": f"{base}/rpc", "geoblock_url": f"{base}/api/geoblock"}


def write_ready_file(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)  # readers never see a half-written file


async def serve(args: argparse.Namespace) -> None:
    sim = Sim(args)
    logging.getLogger("aiohttp.server").addFilter(QuietUnparseableRequests())
    sim.tick(time.time())  # list the windows before the first request can ask for them
    app = build_app(sim, admin=not args.no_admin)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the real port when --port 0
    endpoints = urls(args.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ticker = loop.create_task(sim.run(stop))
    if args.exit_after_s > 0:
        loop.call_later(args.exit_after_s, stop.set)
    ready = Path(args.ready_file) if args.ready_file else None
    if ready is not None:
        write_ready_file(ready, endpoints)
    log.info("polymm-sim serving on %s (seed=%s series=%s fund=%s)", endpoints["clob_url"], args.seed,
             ",".join(f"{s.name}:{s.window_s}s" for s in sim.series), args.fund)
    try:
        await stop.wait()
    finally:
        log.info("polymm-sim stopping")
        ticker.cancel()
        try:
            await ticker
        except (asyncio.CancelledError, Exception):
            pass
        await sim.close_sockets()
        await runner.cleanup()
        if ready is not None:
            try:
                ready.unlink()
            except FileNotFoundError:
                pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="polymm-sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see --ready-file)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--series", default=series_mod.DEFAULT_SERIES,
                   help=f"the series served, comma separated (e.g. btc-15m,eth-5m,sol-1h; default "
                        f"{series_mod.DEFAULT_SERIES})")
    p.add_argument("--window-s", type=int, default=None,
                   help="compress every series' windows to this many seconds (default: each series' own: 300, 900, 3600)")
    p.add_argument("--ready-file", default=None, help="write the endpoint URLs here (JSON) once serving")
    p.add_argument("--fund", type=float, default=1000.0, help="pUSD a new account starts with")
    p.add_argument("--heartbeat-timeout-s", type=float, default=10.0, help="dead-man switch timeout")
    p.add_argument("--listed-ahead", type=int, default=4, help="future windows listed besides the live one")
    p.add_argument("--mined-after-s", type=float, default=1.0, help="trade MATCHED -> MINED delay")
    p.add_argument("--confirmed-after-s", type=float, default=3.0, help="trade MATCHED -> CONFIRMED delay")
    p.add_argument("--tick-s", type=float, default=0.1, help="how often the market steps and events go out")
    p.add_argument("--page-size", type=int, default=500, help="rows per /data/orders and /data/trades page")
    p.add_argument("--ws-subscribe-timeout-s", type=float, default=10.0,
                   help="close sockets that do not subscribe within this time")
    p.add_argument("--ws-idle-timeout-s", type=float, default=30.0,
                   help="close sockets that send nothing (no PING) for this long")
    p.add_argument("--btc-vol", type=float, default=None,
                   help="synthetic BTC volatility per sqrt(second) (default: the market's realistic 1.2e-4); "
                        "short windows move P(Up) fast, a smaller value calms them")
    p.add_argument("--resolve-delay-s", type=float, default=0.0,
                   help="a window resolves this long after it ends (production: the oracle takes a while)")
    p.add_argument("--redeem", choices=("auto", "manual"), default="auto",
                   help="auto: resolution pays winners at once (a wallet that approved Polymarket's auto-redeem "
                        "operator); manual: positions stay conditional tokens until redeemed through the relayer")
    p.add_argument("--relayer-execute-after-s", type=float, default=0.0,
                   help="a relayed transaction executes this long after /submit")
    p.add_argument("--relayer-confirm-after-s", type=float, default=1.0,
                   help="an executed relayed transaction turns STATE_CONFIRMED this long after it was mined")
    p.add_argument("--relayer-gas-cap", type=int, default=10_000_000,
                   help="gas a SAFE or WALLET relayed transaction may use; a batch needing more reverts (PROXY "
                        "transactions: the signed gas limit, at most the relay hub's 650k)")
    p.add_argument("--approvals", choices=("all", "v2", "v3", "none"), default="all",
                   help="token approvals every wallet starts with: all (a polymarket.com account's), the order "
                        "version 2 or 3 ones only, or none (POST /_sim/chain changes one wallet's)")
    p.add_argument("--pol", type=float, default=5.0, help="POL (for gas) every address starts with on the sim's chain")
    p.add_argument("--strict-funder", action="store_true",
                   help="refuse orders whose maker is not the signer's proxy / Safe / deposit wallet, as production "
                        "does (off by default: many tests trade from made-up funders)")
    p.add_argument("--script", default=None, metavar="FILE",
                   help="a scripted market (tests; sim/script.py), every window follows it: JSON "
                   '{"steps": [{"at": seconds since the window start, "fair": P(Up)} or {"at": ..., "bids": '
                   '[[price, size], ...], "asks": [...]}, ...]} or the short {"fair": [[seconds, P(Up)], ...]}; '
                   "fair steps move the synthetic ladder, book steps rest exactly their levels, no random takers, "
                   "the last fair step's favourite wins. POST /_sim/book adds a book step to one window, now")
    p.add_argument("--no-admin", action="store_true", help="do not serve the /_sim admin endpoints")
    p.add_argument("--exit-after-s", type=float, default=0.0,
                   help="stop by itself after this long (0 = never): a guard for unattended soaks")
    p.add_argument("--order-version", type=int, default=2, choices=(2, 3),
                   help="exchange order version served by GET /version; orders must be signed for it (default 2)")
    p.add_argument("--fee-rate", type=float, default=0.07,
                   help="taker fee rate of new markets (GET /clob-markets fd.r, Gamma feeSchedule.rate; default 0.07)")
    p.add_argument("--fee-exponent", type=float, default=1.0,
                   help="taker fee exponent of new markets (fd.e, feeSchedule.exponent; default 1)")
    p.add_argument("--retain-s", type=float, default=3600.0,
                   help="finished orders, trades, resolved markets and relayer transactions are forgotten this long "
                        "after they end (default 3600; a soak of short windows uses less)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    problems = []
    if args.window_s is not None and args.window_s <= 0:
        problems.append("--window-s must be positive")
    else:
        try:
            args.series = series_mod.parse_list(args.series, window_s=args.window_s)
        except series_mod.SeriesError as exc:
            problems.append(f"--series: {exc}")
    if args.page_size <= 0:
        problems.append("--page-size must be positive")
    if args.tick_s <= 0:
        problems.append("--tick-s must be positive")
    if args.heartbeat_timeout_s <= 0:
        problems.append("--heartbeat-timeout-s must be positive")
    if args.btc_vol is not None and not args.btc_vol > 0:
        problems.append("--btc-vol must be positive")
    if args.exit_after_s < 0:
        problems.append("--exit-after-s must not be negative")
    if args.fund < 0:
        problems.append("--fund must not be negative")
    if not 0 <= args.fee_rate < 1:
        problems.append("--fee-rate must be in [0, 1)")
    if not 0 <= args.fee_exponent <= 10:
        problems.append("--fee-exponent must be in [0, 10]")
    if args.resolve_delay_s < 0:
        problems.append("--resolve-delay-s must not be negative")
    if args.relayer_gas_cap < 21_000:
        problems.append("--relayer-gas-cap must be at least 21000")
    if args.pol < 0:
        problems.append("--pol must not be negative")
    if args.relayer_execute_after_s < 0 or args.relayer_confirm_after_s < 0:
        problems.append("--relayer-execute-after-s and --relayer-confirm-after-s must not be negative")
    if problems:
        p.error("; ".join(problems))
    return args


def load_script(path: str) -> script.Script:
    """--script FILE -> the script every window follows; SystemExit with the reason for a bad file."""
    try:
        return script.load(path)
    except script.ScriptError as exc:
        raise SystemExit(f"polymm-sim: --script {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("polymm-sim", args.log_level)
    try:
        asyncio.run(serve(args))
    except OSError as exc:  # port in use, bad host
        log.error("polymm-sim cannot serve on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
