"""Polymarket's Data API positions endpoint (data-api.polymarket.com) as the sim serves it.

    GET /positions?user=0x..&market=c1,c2&sizeThreshold=1&redeemable=true&mergeable=true&limit=100&offset=0

Parameters, defaults and row fields follow the Data API's OpenAPI description
(docs.polymarket.com/api-reference/core/get-current-positions-for-a-user) and the recorded response
tests/fixtures/polymarket-recorded/nautilus-rust/test_data/data_api_positions_response.json.

`redeemable` is true for every position of a resolved condition: redeemPositions burns losers too (for
0), so a lost position stays listed, worth 0, until it is redeemed. `mergeable` is true while the market
is open and the wallet holds both outcomes. Money fields the sim can only approximate: avgPrice from the
wallet's still-remembered BUY fills, realizedPnl 0.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from aiohttp import web
from eth_utils import is_address, to_checksum_address

from polymm.sim.gamma import IMAGE, title

if TYPE_CHECKING:
    from polymm.sim.server import Sim

_TRUE = {"true": True, "false": False}


class DataApi:
    def __init__(self, sim: "Sim") -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/positions", self.get_positions)]

    async def get_positions(self, request: web.Request) -> web.Response:
        q = request.query
        user = q.get("user", "")
        if not is_address(user):
            return web.json_response({"error": "user: a 0x-prefixed 40-hex address is required"}, status=400)
        try:
            threshold = Decimal(q.get("sizeThreshold", "1"))
            limit = int(q.get("limit", "100"))
            offset = int(q.get("offset", "0"))
            redeemable = _TRUE[q.get("redeemable", "false").lower()]
            mergeable = _TRUE[q.get("mergeable", "false").lower()]
        except (ArithmeticError, ValueError, KeyError):
            return web.json_response({"error": "invalid query parameters"}, status=400)
        if not threshold.is_finite() or threshold < 0 or not 0 <= limit <= 500 or not 0 <= offset <= 10000:
            return web.json_response({"error": "sizeThreshold >= 0, 0 <= limit <= 500, 0 <= offset <= 10000"},
                                     status=400)
        markets = {m.lower() for m in q.get("market", "").split(",") if m}
        rows = positions(self.sim, to_checksum_address(user))
        rows = [r for r in rows
                if Decimal(str(r["size"])) >= threshold and (not markets or r["conditionId"] in markets)
                and (not redeemable or r["redeemable"]) and (not mergeable or r["mergeable"])]
        rows.sort(key=lambda r: r["size"], reverse=True)  # sortBy=TOKENS, DESC (the defaults)
        return web.json_response(rows[offset:offset + limit])


def positions(sim: "Sim", address: str) -> list[dict]:
    engine = sim.engine
    held = engine.positions_of(address)
    rows = []
    for token, size in held.items():
        if size <= 0:
            continue
        spec = engine.condition_of_token(token)
        if spec is None:
            continue
        up = token == spec.up_token
        other = spec.down_token if up else spec.up_token
        resolved = spec.winning_token is not None
        if resolved:
            price = Decimal(1) if token == spec.winning_token else Decimal(0)
        else:
            bid, ask = engine.top_of_book(token)
            price = (bid + ask) / 2 if bid is not None and ask is not None else (bid or ask or Decimal("0.5"))
        bought, cost = _bought(sim, address, token)
        avg = cost / bought if bought else Decimal(0)
        initial, current = size * avg, size * price
        rows.append({
            "proxyWallet": address.lower(), "asset": token, "conditionId": spec.condition_id,
            "size": float(size), "avgPrice": float(round(avg, 6)), "initialValue": float(round(initial, 6)),
            "currentValue": float(round(current, 6)), "cashPnl": float(round(current - initial, 6)),
            "percentPnl": float(round((current - initial) / initial * 100, 4)) if initial else 0.0,
            "totalBought": float(bought), "realizedPnl": 0.0, "percentRealizedPnl": 0.0,
            "curPrice": float(price), "redeemable": resolved,
            "mergeable": not resolved and held.get(other, Decimal(0)) > 0,
            "title": title(spec), "slug": spec.slug, "icon": IMAGE, "eventSlug": spec.slug,
            "outcome": "Up" if up else "Down", "outcomeIndex": 0 if up else 1,
            "oppositeOutcome": "Down" if up else "Up", "oppositeAsset": other,
            "endDate": _iso(spec.window_end), "negativeRisk": False,
        })
    return rows


def _bought(sim: "Sim", address: str, token: str) -> tuple[Decimal, Decimal]:
    shares = cost = Decimal(0)
    for t in sim.engine.trades(address, asset_id=token):
        if t.status == "FAILED":
            continue
        if t.taker_address == address and t.token_id == token and t.side == "BUY":
            shares += t.size
            cost += t.size * t.price
        for f in t.maker_fills:
            if f.maker_address == address and f.token_id == token and f.side == "BUY":
                shares += f.matched_amount
                cost += f.matched_amount * f.price
    return shares, cost


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
