"""The sim's admin endpoint (`/_sim/...`): faults, funding, state and shortcuts for tests.

Not part of Polymarket's API; `polymm-sim --no-admin` turns it off. Every route answers JSON; a bad
request gets 400 with the reason in words.

    GET  /_sim/state                      market, BTC, faults, stats, requests ("METHOD /path" -> count), connections
    POST /_sim/fault    {"name": ..., ...} see FAULTS below
    POST /_sim/fund     {"address", "amount"}
    GET  /_sim/balance?address=           pUSD (total, free) and positions in listed markets
    GET  /_sim/orders?address=            open orders whose maker is that address
    GET  /_sim/trades?address=            trades that address took part in
    POST /_sim/resolve_now {"condition_id"?, "winner"?: "Up"|"Down"}   end a window early
    POST /_sim/book  {"condition_id"?, "bids": [[price, size], ...], "asks": [...]}
                     a book step for a window, now (sim/script.py, as --script gives every window): exactly these
                     background levels (Up prices) rest, the synthetic ladder and random takers leave the window
                     alone from then on (again: the levels are replaced); for tests
    POST /_sim/take  {"condition_id"?, "side": "BUY"|"SELL", "price", "size"}   a background fill-and-kill on Up

Where a request may name no `condition_id`, it means the live window of the first series served, or of
`"series": "eth-5m"` when given (a sim serving several series: `polymm-sim --series btc-15m,eth-5m`).
"""
from __future__ import annotations

import math
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable

import msgspec
from aiohttp import web
from eth_utils import is_address, to_checksum_address

from polymm.sim import script
from polymm.sim.clob import num, order_json, trade_json
from polymm.sim.orders import JSON_ERRORS

if TYPE_CHECKING:
    from polymm.sim.engine import MarketSpec
    from polymm.sim.server import Sim


# Production's tick sizes (polymarket-protocol.md section 5).
ALLOWED_TICKS = {Decimal("0.1"), Decimal("0.01"), Decimal("0.005"), Decimal("0.0025"), Decimal("0.001"),
                 Decimal("0.0001")}


class AdminError(Exception):
    pass


def _bool(params: dict, name: str, default: bool = True) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise AdminError(f"{name} must be true or false")
    return value


def _number(params: dict, name: str, default: float | None = None, minimum: float = 0.0) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise AdminError(f"{name} must be a number >= {minimum}")
    return float(value)


def _count(params: dict, name: str = "count", default: int = 1) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdminError(f"{name} must be a positive integer")
    return value


_decimal = script.number  # a JSON number as a Decimal, as written (ScriptError, a 400 in words, when not)


def _address(value: Any) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise AdminError(f"not an address: {value!r}")
    return to_checksum_address(value)


class AdminApi:
    def __init__(self, sim: "Sim") -> None:
        self.sim = sim
        self.faults: dict[str, Callable[[dict], dict]] = {
            "drop_ws": self._drop_ws,
            "freeze_market_ws": self._freeze,
            "freeze_rtds": self._freeze_rtds,
            "ws_delay": self._delay,
            "duplicate": self._duplicate,
            "reorder": self._reorder,
            "wrap_in_list": self._wrap,
            "post_status": self._post_status,
            "fail_next_trade": self._fail_next_trade,
            "stop_accepting": self._stop_accepting,
            "post_only_mode": self._post_only_mode,
            "closed_only": self._closed_only,
            "tick_size": self._tick_size,
            "order_version": self._order_version,
            "fee_schedule": self._fee_schedule,
            "clock_skew": self._clock_skew,
            "order_rules": self._order_rules,
            "geoblock": self._geoblock,
            "clear": self._clear,
        }

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/state", self.state),
            web.post("/_sim/fault", self.fault),
            web.post("/_sim/fund", self.fund),
            web.get("/_sim/balance", self.balance),
            web.get("/_sim/orders", self.orders),
            web.get("/_sim/trades", self.trades),
            web.post("/_sim/resolve_now", self.resolve_now),
            web.post("/_sim/book", self.book),
            web.post("/_sim/take", self.take),
        ]

    async def _params(self, request: web.Request) -> dict:
        body = await request.read()
        if not body:
            return {}
        try:
            params = msgspec.json.decode(body)
        except JSON_ERRORS as exc:
            raise AdminError(f"body is not JSON: {exc}") from None
        if not isinstance(params, dict):
            raise AdminError("body must be a JSON object")
        return params

    async def _answer(self, work) -> web.Response:
        try:
            return web.json_response(await work)
        except (AdminError, script.ScriptError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    # ---- state -----------------------------------------------------------------------------------
    async def state(self, request: web.Request) -> web.Response:
        sim = self.sim
        now = time.time()
        markets = []
        for spec in sorted(sim.engine.markets(), key=lambda s: s.window_start):
            up_bids, up_asks = sim.engine.book(spec.up_token)
            markets.append({
                "slug": spec.slug, "condition_id": spec.condition_id, "up_token": spec.up_token,
                "down_token": spec.down_token, "window_start": spec.window_start, "window_end": spec.window_end,
                "accepting_orders": spec.accepting_orders, "closed": spec.closed, "tick_size": num(spec.tick_size),
                "min_size": num(spec.min_size), "fee_rate": num(spec.fee_rate),
                "fee_exponent": num(spec.fee_exponent),
                "winning_token": spec.winning_token, "fair_up": sim.market_of(spec.condition_id).fair(spec.condition_id),
                "up_best_bid": num(up_bids[0][0]) if up_bids else None,
                "up_best_ask": num(up_asks[0][0]) if up_asks else None,
                "open_price": sim.market_of(spec.condition_id).window_open_price(spec.window_start),
                "series": spec.series,
            })
        live = sim.calendar.window_start(now)
        series = {name: {"window_s": m.calendar.window_s, "live_window_start": m.calendar.window_start(now),
                         "live_slug": m.series.slug(m.calendar.window_start(now)), "price": m.btc_price()}
                  for name, m in sim.markets.items()}
        return web.json_response({
            "now": now, "started_at": sim.started_at, "window_s": sim.calendar.window_s, "live_window_start": live,
            "live_slug": sim.calendar.series.slug(live), "btc": sim.market.btc_price(), "markets": markets,
            "series": series,
            "faults": sim.faults.describe(), "stats": dict(sim.stats), "requests": dict(sim.requests),
            "heartbeats_age_s": sim.heartbeats.describe(now),
            "connections": {"market": len(sim.market_ch.conns), "user": len(sim.user_ch.conns),
                            "rtds": len(sim.rtds_ch.conns)},
            "fees_collected": num(sim.engine.fees_collected), "order_version": sim.order_version,
            "order_rules": {"min_order_age_s": sim.order_rules.min_order_age_s,
                            "taker_delay": sim.order_rules.taker_delay,
                            "early_cancels": sim.order_rules.early_cancels},
        })

    # ---- faults ----------------------------------------------------------------------------------
    async def fault(self, request: web.Request) -> web.Response:
        async def work():
            params = await self._params(request)
            name = params.pop("name", None)
            handler = self.faults.get(name) if isinstance(name, str) else None
            if handler is None:
                raise AdminError(f"unknown fault {name!r}; known: {', '.join(sorted(self.faults))}")
            result = handler(params)
            return {"fault": name, **result, "faults": self.sim.faults.describe()}
        return await self._answer(work())

    def _drop_ws(self, params: dict) -> dict:
        channel = params.get("channel", "all")
        if channel not in ("all", "market", "user", "rtds"):
            raise AdminError("channel must be all, market, user or rtds")
        dropped = 0
        if channel in ("all", "market"):
            dropped += self.sim.market_ch.drop_all()
        if channel in ("all", "user"):
            dropped += self.sim.user_ch.drop_all()
        if channel in ("all", "rtds"):
            dropped += self.sim.rtds_ch.drop_all()
        return {"dropped": dropped}

    def _freeze(self, params: dict) -> dict:
        self.sim.faults.freeze_market_ws = _bool(params, "on")
        return {}

    def _freeze_rtds(self, params: dict) -> dict:
        self.sim.faults.freeze_rtds = _bool(params, "on")
        return {}

    def _delay(self, params: dict) -> dict:
        self.sim.faults.ws_delay_s = _number(params, "seconds", 0.0)
        return {}

    def _duplicate(self, params: dict) -> dict:
        self.sim.faults.duplicate_next = _count(params)
        return {}

    def _reorder(self, params: dict) -> dict:
        self.sim.faults.reorder_next = _count(params)
        return {}

    def _wrap(self, params: dict) -> dict:
        self.sim.faults.wrap_in_list = _bool(params, "on")
        return {}

    def _post_status(self, params: dict) -> dict:
        status = params.get("status")
        try:
            self.sim.faults.add_post_faults(int(status) if isinstance(status, int) else -1, _count(params),
                                            _number(params, "retry_after_s", 1.0))
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        return {}

    def _fail_next_trade(self, params: dict) -> dict:
        self.sim.faults.fail_next_trades = _count(params)
        address = params.get("address")
        self.sim.faults.fail_trades_of = _address(address) if address is not None else None
        return {}

    def _stop_accepting(self, params: dict) -> dict:
        self.sim.faults.stop_accepting = _bool(params, "on")
        return {}

    def _post_only_mode(self, params: dict) -> dict:
        self.sim.faults.post_only_until = time.time() + _number(params, "seconds", 120.0)
        return {}

    def _closed_only(self, params: dict) -> dict:
        address = _address(params.get("address")).lower()
        if _bool(params, "on"):
            self.sim.faults.closed_only.add(address)
        else:
            self.sim.faults.closed_only.discard(address)
        return {}

    def _tick_size(self, params: dict) -> dict:
        """Change a market's tick now (tick_size_change frames go out). The synthetic market switches the
        LIVE window's tick back to 0.01 on its next step unless the fair value is beyond 0.96/0.04, so a
        change that must stick should target a window listed ahead."""
        sim = self.sim
        now = time.time()
        try:
            tick = Decimal(str(params.get("tick")))
        except InvalidOperation:
            raise AdminError("tick must be a number") from None
        if tick not in ALLOWED_TICKS:
            raise AdminError(f"tick must be one of {', '.join(str(t) for t in sorted(ALLOWED_TICKS))}")
        condition_id, spec = self._market(params, now)
        old = spec.tick_size
        sim.engine.set_tick_size(condition_id, tick, now)
        sim.drain(now)
        return {"condition_id": condition_id, "old_tick": num(old), "new_tick": num(tick)}

    def _order_version(self, params: dict) -> dict:
        """The exchange moves to another order version now: GET /version names it and orders signed for any
        other version are refused with `order_version_mismatch`. `version` may be one the sim cannot verify
        (e.g. 4): then every order is refused, as it would be by an exchange polymm does not know yet."""
        version = params.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 99:
            raise AdminError("version must be an integer from 1 to 99")
        old, self.sim.order_version = self.sim.order_version, version
        return {"old_version": old, "version": version}

    def _fee_schedule(self, params: dict) -> dict:
        """Set the taker fee schedule (rate, exponent) of every listed market and of the windows listed
        later (GET /clob-markets fd, Gamma feeSchedule, and what the matching engine charges)."""
        rate = _number(params, "rate")
        exponent = _number(params, "exponent", 1.0)
        if rate >= 1 or exponent > 10:
            raise AdminError("rate must be in [0, 1) and exponent in [0, 10]")
        rate_d, exponent_d = Decimal(str(rate)), Decimal(str(exponent))
        for calendar in self.sim.calendars.values():
            calendar.fee_rate, calendar.fee_exponent = rate_d, exponent_d
        changed = 0
        for spec in self.sim.engine.markets():
            spec.fee_rate, spec.fee_exponent = rate_d, exponent_d
            changed += 1
        return {"rate": rate, "exponent": exponent, "markets": changed}

    def _clock_skew(self, params: dict) -> dict:
        """GET /time answers the exchange's clock `seconds` ahead of ours (negative: behind)."""
        seconds = params.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise AdminError("seconds must be a number")
        self.sim.faults.clock_skew_s = float(seconds)
        return {}

    def _order_rules(self, params: dict) -> dict:
        """The market info's `oas` (min_order_age_s) and `itode` (taker_delay) for every market (sim/order_rules.py)."""
        rules = self.sim.order_rules
        rules.min_order_age_s = _number(params, "min_order_age_s", rules.min_order_age_s)
        rules.taker_delay = _bool(params, "taker_delay", rules.taker_delay)
        rules.delay_s = _number(params, "delay_s", rules.delay_s)
        return {"min_order_age_s": rules.min_order_age_s, "taker_delay": rules.taker_delay, "delay_s": rules.delay_s,
                "early_cancels": rules.early_cancels}

    def _geoblock(self, params: dict) -> dict:
        """GET /api/geoblock answers blocked (true by default) for `country` (default US) and `region`."""
        country, region = params.get("country", "US"), params.get("region", "")
        if not isinstance(country, str) or not isinstance(region, str):
            raise AdminError("country and region must be strings")
        self.sim.faults.geoblock = (_bool(params, "blocked"), country, region)
        return {}

    def _market(self, params: dict, now: float) -> tuple[str, "MarketSpec"]:
        """The market a request names by `condition_id`, or the live window's (of `series`, else the first series
        served) when it names none."""
        condition_id = params.get("condition_id")
        if condition_id is None:
            name = params.get("series")
            market = self.sim.markets.get(name) if name is not None else self.sim.market
            if market is None:
                raise AdminError(f"the sim does not serve series {name!r} (it serves {', '.join(self.sim.markets)})")
            condition_id = market.calendar.spec_for(market.calendar.window_start(now)).condition_id
        spec = self.sim.engine.market(condition_id) if isinstance(condition_id, str) else None
        if spec is None:
            raise AdminError(f"no such market: {condition_id!r}")
        return condition_id, spec

    def _clear(self, params: dict) -> dict:
        self.sim.faults.clear()
        self.sim.order_rules.clear()
        # The exchange-side settings tests switch are faults too: back to what the command line said.
        args = self.sim.args
        self.sim.order_version = args.order_version
        if (self.sim.calendar.fee_rate, self.sim.calendar.fee_exponent) != (Decimal(str(args.fee_rate)),
                                                                             Decimal(str(args.fee_exponent))):
            self._fee_schedule({"rate": args.fee_rate, "exponent": args.fee_exponent})
        return {}

    # ---- accounts --------------------------------------------------------------------------------
    async def fund(self, request: web.Request) -> web.Response:
        async def work():
            params = await self._params(request)
            address = _address(params.get("address"))
            try:
                amount = Decimal(str(params.get("amount")))
            except InvalidOperation:
                raise AdminError("amount must be a number") from None
            if not amount.is_finite():
                raise AdminError("amount must be finite")
            self.sim.engine.fund(address, amount)
            return {"address": address, "balance": num(self.sim.engine.balance(address))}
        return await self._answer(work())

    async def balance(self, request: web.Request) -> web.Response:
        async def work():
            address = _address(request.query.get("address"))
            engine = self.sim.engine
            positions = {}
            for spec in engine.markets():
                for token in (spec.up_token, spec.down_token):
                    held = engine.position(address, token)
                    if held:
                        positions[token] = num(held)
            return {"address": address, "pusd": num(engine.balance(address)),
                    "free_pusd": num(engine.free_balance(address)), "positions": positions}
        return await self._answer(work())

    async def orders(self, request: web.Request) -> web.Response:
        async def work():
            address = _address(request.query.get("address"))
            found = []
            for key in self._owners_of(address):
                found += [order_json(o, self.sim.associate_trades.get(o.order_id, ()))
                          for o in self.sim.engine.open_orders(key) if o.maker_address == address]
            return {"address": address, "orders": found}
        return await self._answer(work())

    async def trades(self, request: web.Request) -> web.Response:
        async def work():
            address = _address(request.query.get("address"))
            trades = self.sim.engine.trades(address)
            viewer = next(iter(self._owners_of(address)), "")
            return {"address": address, "trades": [trade_json(t, viewer) for t in trades]}
        return await self._answer(work())

    def _owners_of(self, address: str) -> list[str]:
        sim = self.sim
        owners = [k.key for k in sim.keys.by_address(address)]
        owners += [key for key, funders in sim._funders.items() if address in funders.values()]
        return list(dict.fromkeys(owners))

    # ---- market shortcuts ------------------------------------------------------------------------
    @staticmethod
    def _levels(params: dict, name: str, tick: Decimal) -> list[tuple[Decimal, Decimal]]:
        try:
            levels = script.levels(params.get(name, []), name)
        except script.ScriptError as exc:
            raise AdminError(str(exc)) from None
        for price, _size in levels:
            if 0 < price < 1 and price % tick:
                raise AdminError(f"{name}: price {price} is not a price on the tick {tick} in (0, 1)")
        return levels

    async def book(self, request: web.Request) -> web.Response:
        """A book step for one window, now: the one way to script a market (sim/script.py), as --script does for
        every window from a file."""
        async def work():
            params = await self._params(request)
            now = time.time()
            condition_id, spec = self._market(params, now)
            bids = self._levels(params, "bids", spec.tick_size)
            asks = self._levels(params, "asks", spec.tick_size)
            try:
                self.sim.market_of(condition_id).script_book(condition_id, bids, asks, now)
            except ValueError as exc:  # ScriptError too: a price out of (0, 1), crossed levels, a refused level
                raise AdminError(str(exc)) from None
            self.sim.drain(now)
            up_bids, up_asks = self.sim.engine.book(spec.up_token)
            return {"condition_id": condition_id, "bids": [[num(p), num(s)] for p, s in up_bids],
                    "asks": [[num(p), num(s)] for p, s in up_asks]}
        return await self._answer(work())

    async def take(self, request: web.Request) -> web.Response:
        async def work():
            params = await self._params(request)
            now = time.time()
            condition_id, spec = self._market(params, now)
            side = params.get("side")
            if side not in ("BUY", "SELL"):
                raise AdminError("side must be BUY or SELL")
            price, size = _decimal(params.get("price"), "price"), _decimal(params.get("size"), "size")
            if not (0 < price < 1) or size <= 0:
                raise AdminError("price must be in (0, 1) and size > 0")
            try:
                ok = self.sim.market_of(condition_id).take(condition_id, side, price, size, now)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
            self.sim.drain(now)
            return {"condition_id": condition_id, "accepted": ok}
        return await self._answer(work())

    async def resolve_now(self, request: web.Request) -> web.Response:
        async def work():
            params = await self._params(request)
            sim = self.sim
            now = time.time()
            condition_id, spec = self._market(params, now)
            if spec.closed:
                raise AdminError(f"market {condition_id} is already resolved")
            winner = params.get("winner")
            if winner is None:
                fair = sim.market_of(condition_id).fair(condition_id)
                winner = "Up" if fair is None or fair >= 0.5 else "Down"
            if winner not in ("Up", "Down"):
                raise AdminError("winner must be Up or Down")
            token = spec.up_token if winner == "Up" else spec.down_token
            # Stops the book (open orders end CANCELED_MARKET_RESOLVED) and pays the winner; the synthetic
            # market sees the market closed and leaves it alone at its scheduled end.
            sim.engine.resolve(condition_id, token, now)
            sim.drain(now)
            return {"condition_id": condition_id, "winner": winner, "winning_token": token}
        return await self._answer(work())
