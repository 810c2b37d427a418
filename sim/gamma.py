"""Gamma (market discovery) as Polymarket serves it for the Up/Down windows of the series the sim serves.

Field names, types and the JSON-string quirks follow the recorded real market
(tests/fixtures/polymarket-recorded/nautilus-rust/test_data/gamma_market.json) plus the V2-era fields of
polymarket-protocol.md section 3 (`feeSchedule`, `version`, event `eventMetadata.priceToBeat`).
The rendering functions are pure: the server hands them a spec and the live prices.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal

from aiohttp import web
from eth_hash.auto import keccak

from polymm import series as series_mod
from polymm.sim.engine import MarketSpec

# Titles are in US Eastern time, as production writes them; without a tz database UTC titles are unambiguous.
_EASTERN = series_mod.EASTERN or timezone.utc

SLUG_PREFIX = "btc-updown-15m-"
SERIES_SLUG = "btc-up-or-down-15m"
IMAGE = "https://polymarket-upload.s3.us-east-2.amazonaws.com/BTC+fullsize.png"
RESOLUTION_SOURCE = "https://data.chain.link/streams/btc-usd"
DESCRIPTION = (
    "This market will resolve to \"Up\" if the Bitcoin price at the end of the time range specified in the title is "
    "greater than or equal to the price at the beginning of that range. Otherwise, it will resolve to \"Down\".\n"
    "The resolution source for this market is information from Chainlink, specifically the BTC/USD data stream "
    "available at https://data.chain.link/streams/btc-usd.\nPlease note that this market is about the price "
    "according to Chainlink data stream BTC/USD, not according to other sources or spot markets."
)
# The hourly markets' rule text (docs/venue.md, Series and discovery): Binance's 1-hour candle, open vs close.
HOURLY_DESCRIPTION = (
    "This market will resolve to \"Up\" if the close price is greater than or equal to the open price for the "
    "{pair} 1 hour candle that begins on the time and date specified in the title. Otherwise, this market will "
    "resolve to \"Down\". The resolution source for this market is information from Binance, specifically the "
    "{pair} pair (https://www.binance.com/en/trade/{pair_url})."
)


@dataclass(frozen=True)
class SeriesText:
    """What Gamma says about a window's series: titles, slugs, rule text and resolution source."""

    series_slug: str
    series_title: str
    recurrence: str
    resolution_source: str
    description: str
    image: str


def series_text(spec: MarketSpec) -> SeriesText:
    s = series_mod.parse(spec.series)
    if s.is_default:
        return SeriesText(SERIES_SLUG, "BTC Up or Down 15m", "15m", RESOLUTION_SOURCE, DESCRIPTION, IMAGE)
    code, pair = s.asset.code, s.asset.binance.upper().replace("USDT", "/USDT")
    if s.window == "1h":
        return SeriesText(f"{code}-up-or-down-hourly", f"{code.upper()} Up or Down Hourly", "hourly",
                          f"https://www.binance.com/en/trade/{pair.replace('/', '_')}",
                          HOURLY_DESCRIPTION.format(pair=pair, pair_url=pair.replace("/", "_")),
                          IMAGE.replace("BTC", code.upper()))
    stream = s.asset.chainlink.replace("/", "-")
    text = DESCRIPTION.replace("Bitcoin", s.asset.title).replace("BTC/USD", s.asset.chainlink.upper()).replace(
        "btc-usd", stream)
    return SeriesText(f"{code}-up-or-down-{s.window}", f"{code.upper()} Up or Down {s.window}", s.window,
                      f"https://data.chain.link/streams/{stream}", text, IMAGE.replace("BTC", code.upper()))
# Gamma's 404 body. The exact production text is not recorded in our fixtures; the status code is what
# clients branch on.
NOT_FOUND = {"type": "not found error", "error": "not found"}


def slug_for(window_start: int) -> str:
    return f"{SLUG_PREFIX}{window_start}"


def window_of_slug(slug: str) -> int | None:
    """The window start in a `btc-updown-15m-{T}` slug, or None for any other slug."""
    if not slug.startswith(SLUG_PREFIX):
        return None
    tail = slug[len(SLUG_PREFIX):]
    if not tail.isdigit() or len(tail) > 12:
        return None
    return int(tail)


@dataclass(frozen=True)
class LivePrices:
    best_bid: Decimal | None = None  # Up token
    best_ask: Decimal | None = None
    last_trade: Decimal | None = None
    price_to_beat: float | None = None  # BTC at window open, when known


def _iso(ts: float, micros: bool = False) -> str:
    moment = datetime.fromtimestamp(ts, timezone.utc)
    if micros:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(moment: datetime) -> str:
    return moment.strftime("%I:%M%p").lstrip("0")


def title(spec: MarketSpec) -> str:
    """As production writes them: 'Bitcoin Up or Down - May 10, 2:30PM-2:45PM ET'; an hourly window names its
    hour alone: 'Ethereum Up or Down - April 5, 4AM ET'."""
    s = series_mod.parse(spec.series)
    start = datetime.fromtimestamp(spec.window_start, _EASTERN)
    end = datetime.fromtimestamp(spec.window_end, _EASTERN)
    zone = "ET" if _EASTERN is not timezone.utc else "UTC"
    if s.window == "1h" and not s.compressed and spec.window_end - spec.window_start == 3600:
        hour = start.strftime("%I%p").lstrip("0")
        return f"{s.asset.title} Up or Down - {start.strftime('%B')} {start.day}, {hour} {zone}"
    return f"{s.asset.title} Up or Down - {start.strftime('%B')} {start.day}, {_clock(start)}-{_clock(end)} {zone}"


def number_id(text: str, modulo: int) -> str:
    return str(int.from_bytes(keccak(text.encode())[:8], "big") % modulo + 1_000_000)


def plain_number(value: Decimal) -> int | float:
    """1 rather than 1.0 for an integral Decimal (production prints fee exponents as integers)."""
    return int(value) if value == value.to_integral() else float(value)


def _f(value: Decimal | None, default: float) -> float:
    return float(value) if value is not None else default


def _outcome_prices(spec: MarketSpec, live: LivePrices) -> list[str]:
    if spec.winning_token is not None:
        return ["1", "0"] if spec.winning_token == spec.up_token else ["0", "1"]
    if live.best_bid is not None and live.best_ask is not None:
        up = (live.best_bid + live.best_ask) / 2
    elif live.last_trade is not None:
        up = live.last_trade
    else:
        up = Decimal("0.5")
    up = up.quantize(Decimal("0.001"))
    return [str(up.normalize()), str((1 - up).normalize())]


def market_json(spec: MarketSpec, live: LivePrices, now: float, listed_at: float,
                with_events: bool = True) -> dict:
    """One Gamma market object. `listed_at` is when the market was created (Gamma's `startDate`)."""
    accepting = bool(spec.accepting_orders and not spec.closed and now < spec.window_end)
    closed = bool(spec.closed)
    bid = _f(live.best_bid, 0.0)
    ask = _f(live.best_ask, 1.0)
    question = title(spec)
    text = series_text(spec)
    market = {
        "id": number_id(spec.condition_id, 10_000_000),
        "question": question,
        "conditionId": spec.condition_id,
        "slug": spec.slug,
        "resolutionSource": text.resolution_source,
        "endDate": _iso(spec.window_end),
        "liquidity": "20000",
        "startDate": _iso(listed_at, micros=True),
        "image": text.image,
        "icon": text.image,
        "description": text.description,
        # Quirk: these three are JSON *strings* holding arrays, not arrays.
        "outcomes": json.dumps(["Up", "Down"], separators=(", ", ": ")),
        "outcomePrices": json.dumps(_outcome_prices(spec, live), separators=(", ", ": ")),
        "volume": "0",
        "active": True,
        "closed": closed,
        "marketMakerAddress": "",
        "createdAt": _iso(listed_at - 4, micros=True),
        "updatedAt": _iso(now, micros=True),
        "new": False,
        "featured": False,
        "archived": False,
        "restricted": True,
        "groupItemThreshold": "0",
        "questionID": "0x" + keccak(("question:" + spec.condition_id).encode()).hex(),
        "enableOrderBook": True,
        "orderPriceMinTickSize": float(spec.tick_size),
        "orderMinSize": float(spec.min_size) if spec.min_size != spec.min_size.to_integral() else int(spec.min_size),
        "volumeNum": 0.0,
        "liquidityNum": 20000.0,
        "endDateIso": _iso(spec.window_end)[:10],
        "startDateIso": _iso(listed_at)[:10],
        "hasReviewedDates": True,
        "volume24hr": 0.0,
        "volume1wk": 0.0,
        "volume1mo": 0.0,
        "volume1yr": 0.0,
        "clobTokenIds": json.dumps([spec.up_token, spec.down_token], separators=(", ", ": ")),
        "volume24hrClob": 0.0,
        "volume1wkClob": 0.0,
        "volume1moClob": 0.0,
        "volume1yrClob": 0.0,
        "volumeClob": 0.0,
        "liquidityClob": 20000.0,
        # Legacy base fees: production still shows 1000 here; the real schedule is feeSchedule.
        "makerBaseFee": 1000,
        "takerBaseFee": 1000,
        "acceptingOrders": accepting,
        "negRisk": False,
        "ready": False,
        "funded": False,
        "acceptingOrdersTimestamp": _iso(listed_at),
        "cyom": False,
        "competitive": 0.99,
        "pagerDutyNotificationEnabled": False,
        "approved": True,
        "rewardsMinSize": 50,
        "rewardsMaxSpread": 4.5,
        "spread": round(max(ask - bid, 0.0), 6),
        "lastTradePrice": _f(live.last_trade, 0.0),
        "bestBid": bid,
        "bestAsk": ask,
        "automaticallyActive": True,
        "clearBookOnStart": False,
        "showGmpSeries": False,
        "showGmpOutcome": False,
        "manualActivation": False,
        "negRiskOther": False,
        "umaResolutionStatuses": "[]",
        "pendingDeployment": False,
        "deploying": False,
        "rfqEnabled": False,
        "eventStartTime": _iso(spec.window_start),
        "holdingRewardsEnabled": False,
        "feesEnabled": True,
        "requiresTranslation": False,
        "makerRebatesFeeShareBps": 10000,
        "feeType": "crypto_fees_v2",
        "feeSchedule": {"exponent": plain_number(spec.fee_exponent), "rate": float(spec.fee_rate), "takerOnly": True,
                        "rebateRate": 0.2},
        "version": "v1",  # CTF market: sign with exchange domain "2" and use clobTokenIds
    }
    if with_events:
        market["events"] = [event_json(spec, live, now, listed_at, with_markets=False)]
    return market


def event_json(spec: MarketSpec, live: LivePrices, now: float, listed_at: float, with_markets: bool = True) -> dict:
    question = title(spec)
    text = series_text(spec)
    closed = bool(spec.closed)
    event = {
        "id": number_id("event:" + spec.condition_id, 1_000_000),
        "ticker": spec.slug,
        "slug": spec.slug,
        "title": question,
        "description": text.description,
        "resolutionSource": text.resolution_source,
        "startDate": _iso(listed_at + 36, micros=True),
        "creationDate": _iso(listed_at + 36, micros=True),
        "endDate": _iso(spec.window_end),
        "image": text.image,
        "icon": text.image,
        "active": True,
        "closed": closed,
        "archived": False,
        "new": False,
        "featured": False,
        "restricted": True,
        "liquidity": 20000.0,
        "volume": 0.0,
        "openInterest": 0,
        "createdAt": _iso(listed_at - 4, micros=True),
        "updatedAt": _iso(now, micros=True),
        "competitive": 0.99,
        "volume24hr": 0.0,
        "volume1wk": 0.0,
        "volume1mo": 0.0,
        "volume1yr": 0.0,
        "enableOrderBook": True,
        "liquidityClob": 20000.0,
        "negRisk": False,
        "commentCount": 0,
        "series": [{
            "id": "10192",
            "ticker": text.series_slug,
            "slug": text.series_slug,
            "title": text.series_title,
            "seriesType": "single",
            "recurrence": text.recurrence,
            "image": "",
            "icon": "",
            "active": True,
            "closed": False,
            "archived": False,
            "featured": False,
            "restricted": True,
            "createdAt": "2025-11-21T21:46:22.201627Z",
            "updatedAt": _iso(now, micros=True),
            "volume24hr": 0.0,
            "volume": 0.0,
            "liquidity": 0.0,
            "commentCount": 0,
            "requiresTranslation": False,
        }],
        "cyom": False,
        "showAllOutcomes": True,
        "showMarketImages": True,
        "enableNegRisk": False,
        "automaticallyActive": True,
        "startTime": _iso(spec.window_start),
        "seriesSlug": text.series_slug,
        "negRiskAugmented": False,
        "pendingDeployment": False,
        "deploying": False,
        "requiresTranslation": False,
    }
    if live.price_to_beat is not None:
        # [3rd-party] production fills this with the window-open reference price.
        event["eventMetadata"] = {"priceToBeat": live.price_to_beat}
    if with_markets:
        event["markets"] = [market_json(spec, live, now, listed_at, with_events=False)]
    return event


# ---- routes ------------------------------------------------------------------------------------------
class GammaApi:
    """`/events/slug/{slug}`, `/events?slug=`, `/markets/slug/{slug}`, `/markets?slug=` for the sim's windows.

    Listed: the live window and `listed_ahead` future ones (production lists a day ahead; the sim's
    synthetic market quotes only these). Past windows answer closed; later ones do not exist yet (404)."""

    def __init__(self, sim) -> None:
        self.sim = sim

    def routes(self):
        return [
            web.get("/events/slug/{slug}", self.event_by_slug),
            web.get("/events", self.events),
            web.get("/markets/slug/{slug}", self.market_by_slug),
            web.get("/markets", self.markets),
        ]

    def lookup(self, slug: str, now: float) -> tuple[MarketSpec, LivePrices, float] | None:
        found = self.sim.lookup_slug(slug, now)
        if found is None:
            return None
        market, start = found
        calendar = market.calendar
        listed_until = calendar.window_start(now) + self.sim.listed_ahead * calendar.window_s
        if start > listed_until:
            return None
        fresh = calendar.spec_for(start)
        spec = self.sim.engine.market(fresh.condition_id)
        if spec is None:
            # A window that ended before the sim started, or one the engine has since forgotten.
            spec = fresh
            spec.accepting_orders = False
            spec.closed = True
            spec.winning_token = self.sim.winner_of(fresh)
        if self.sim.faults.stop_accepting and spec.accepting_orders:
            spec = replace(spec, accepting_orders=False)  # a copy: the engine's spec is not the fault's to change
        live = LivePrices(price_to_beat=market.window_open_price(start))
        if not spec.closed:
            bids, asks = self.sim.engine.book(spec.up_token)
            live = LivePrices(best_bid=bids[0][0] if bids else None, best_ask=asks[0][0] if asks else None,
                              last_trade=self.sim.last_trade.get(spec.up_token), price_to_beat=live.price_to_beat)
        listed_at = start - self.sim.listed_ahead * calendar.window_s
        return spec, live, listed_at

    def _one(self, request, render):
        """`/.../slug/{slug}`: the rendered window, or Gamma's 404."""
        now = time.time()
        found = self.lookup(request.match_info["slug"], now)
        if found is None:
            return _json(NOT_FOUND, 404)
        spec, live, listed_at = found
        return _json(render(spec, live, now, listed_at))

    def _listed(self, request, render):
        """`/...?slug=a&slug=b`: a list of the windows found (unknown slugs are left out, as Gamma does)."""
        now = time.time()
        found = [self.lookup(slug, now) for slug in request.query.getall("slug", [])]
        return _json([render(s, live, now, at) for s, live, at in (f for f in found if f is not None)])

    async def event_by_slug(self, request):
        return self._one(request, event_json)

    async def events(self, request):
        return self._listed(request, event_json)

    async def market_by_slug(self, request):
        return self._one(request, market_json)

    async def markets(self, request):
        return self._listed(request, market_json)


def _json(body, status: int = 200):
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
