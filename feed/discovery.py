"""Finding each window's market through Gamma (polymarket-protocol.md section 3).

One market per window of the feed's series (polymm/series.py): event slug `btc-updown-15m-{T}` for the default,
`{asset}-updown-{5m|15m}-{T}` for the minute series, T = the window start in unix seconds (a multiple of the
window length); the hourly series are named by the US Eastern hour (`ethereum-up-or-down-april-5-2026-4am-et`,
until March 2026 without the year): each candidate slug is asked in turn, the current form first.

`parse_market` is pure (Gamma JSON -> MarketInfo, or a DiscoveryError saying what is wrong).
`GammaClient` does one HTTP lookup. `Discoverer` runs lookups in its own thread with backoff, so the
service's loop (watchdog, heartbeat) never blocks on HTTP, and reports in words what it is doing.

Gamma quirks handled here:
- `outcomes` and `clobTokenIds` are JSON *strings* holding arrays; tokens are matched to outcomes by
  name ("Up"/"Down"), not by position.
- `startDate` is the listing time, not the window start: the window is `eventStartTime` .. `endDate`.
- `makerBaseFee`/`takerBaseFee` (1000) are legacy; the fee is `feeSchedule.rate`.
- A market not created yet is an empty list from `/events?slug=` (or a 404 from `/events/slug/`).
"""
from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

from polymm import series as series_mod
from polymm.feed.market import MarketIdentity

log = logging.getLogger("polymm.feed.discovery")

DEFAULT_FEE_RATE = 0.07  # the 15m crypto markets' taker rate, used only if Gamma omits feeSchedule


class DiscoveryError(Exception):
    """Gamma answered, but not with a market we can use (the message says what and why)."""


class NotListedYet(DiscoveryError):
    """Gamma does not know this window's market (yet)."""


@dataclass(frozen=True, kw_only=True)
class MarketInfo(MarketIdentity):
    """The market identity plus what only discovery needs (slug, the raw fee schedule, listing state)."""

    slug: str
    fee_schedule: dict = field(default_factory=dict, compare=False)
    accepting_orders: bool = True
    closed: bool = False
    warnings: tuple[str, ...] = ()
    # The event's `eventMetadata.priceToBeat` ([3rd-party], polymarket-protocol.md 3): the window's opening BTC price
    # as Polymarket states it, when Gamma has it (not before the window starts). Only a cross-check for the feed.
    price_to_beat: float | None = field(default=None, compare=False)

    def describe(self) -> str:
        return f"{self.slug} ({self.condition_id[:10]}..)"


def window_start_for(now: float, window_s: int) -> int:
    return int(now // window_s) * window_s


def slug_for(window_start: int, series: series_mod.Series | None = None) -> str:
    """The first slug Gamma is asked for (the default series when none is given, whatever its window length)."""
    return (series or series_mod.default()).slug(window_start)


def _json_list(value, name: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise DiscoveryError(f"{name} is not valid JSON: {value[:80]!r}") from None
    if not isinstance(value, list):
        raise DiscoveryError(f"{name} is {type(value).__name__}, expected a list")
    return value


def _iso_ts(text, name: str) -> int:
    if not isinstance(text, str) or not text:
        raise DiscoveryError(f"{name} missing")
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise DiscoveryError(f"{name} is not an ISO time: {text!r}") from None


def _positive(doc: dict, key: str) -> float:
    value = doc.get(key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DiscoveryError(f"{key} is {value!r}, expected a positive number") from None
    if not number > 0 or math.isinf(number):
        raise DiscoveryError(f"{key} is {value!r}, expected a positive number")
    return number


def parse_market(doc: dict, window_start: int, window_s: int, slug: str | None = None) -> MarketInfo:
    """A Gamma event (with `markets`) or market object -> MarketInfo for the window starting at
    `window_start` (`slug`: the one asked for, when the answer does not say). Raises DiscoveryError naming the
    field that is missing or wrong."""
    if not isinstance(doc, dict):
        raise DiscoveryError(f"expected a JSON object, got {type(doc).__name__}")
    market = doc
    if "markets" in doc:
        markets = doc.get("markets") or []
        if not markets:
            raise NotListedYet(f"event {doc.get('slug', '?')} has no markets yet")
        market = markets[0]
    slug = market.get("slug") or doc.get("slug") or slug or slug_for(window_start)
    warnings: list[str] = []

    condition_id = market.get("conditionId")
    if not isinstance(condition_id, str) or not condition_id.startswith("0x"):
        raise DiscoveryError(f"conditionId is {condition_id!r}")
    outcomes = [str(o).strip().lower() for o in _json_list(market.get("outcomes"), "outcomes")]
    tokens = [str(t) for t in _json_list(market.get("clobTokenIds"), "clobTokenIds")]
    if len(outcomes) != len(tokens):
        raise DiscoveryError(f"{len(outcomes)} outcomes but {len(tokens)} clobTokenIds")
    by_outcome = dict(zip(outcomes, tokens))
    if "up" not in by_outcome or "down" not in by_outcome:
        raise DiscoveryError(f"outcomes are {outcomes}, expected Up and Down")
    up_token, down_token = by_outcome["up"], by_outcome["down"]
    if not (up_token.isdigit() and down_token.isdigit()) or up_token == down_token:
        raise DiscoveryError(f"clobTokenIds {tokens} are not two distinct token ids")

    start_text = market.get("eventStartTime") or doc.get("startTime")
    start = _iso_ts(start_text, "eventStartTime") if start_text else window_start
    if start != window_start:
        raise DiscoveryError(f"eventStartTime {start_text} is not the window start {window_start} of {slug}")
    end = _iso_ts(market.get("endDate") or doc.get("endDate"), "endDate")
    if end <= start:
        raise DiscoveryError(f"endDate {market.get('endDate')} is not after eventStartTime {start_text}")
    if end - start != window_s:
        warnings.append(f"window is {end - start}s long per Gamma, {window_s}s configured")

    tick = _positive(market, "orderPriceMinTickSize")
    min_size = _positive(market, "orderMinSize")
    schedule = market.get("feeSchedule") if isinstance(market.get("feeSchedule"), dict) else {}
    if "rate" in schedule:
        try:
            fee_rate = float(schedule["rate"])
        except (TypeError, ValueError):
            raise DiscoveryError(f"feeSchedule.rate is {schedule['rate']!r}") from None
    elif market.get("feesEnabled") is False:
        fee_rate = 0.0
    else:
        fee_rate = DEFAULT_FEE_RATE
        warnings.append(f"no feeSchedule on the market; assuming taker fee rate {DEFAULT_FEE_RATE}")
    if market.get("version") not in (None, "v1"):
        warnings.append(f"market version {market.get('version')!r} (Protocol V2 markets are not supported by the trader)")
    return MarketInfo(
        slug=slug,
        condition_id=condition_id,
        up_token=up_token,
        down_token=down_token,
        window_start=start,
        window_end=end,
        tick_size=tick,
        min_order_size=min_size,
        fee_rate=fee_rate,
        fee_schedule=dict(schedule),
        accepting_orders=bool(market.get("acceptingOrders", True)),
        closed=bool(market.get("closed", False)),
        warnings=tuple(warnings),
        price_to_beat=_price_to_beat(doc),
    )


def _price_to_beat(doc: dict) -> float | None:
    meta = doc.get("eventMetadata")
    value = meta.get("priceToBeat") if isinstance(meta, dict) else None
    try:
        number = float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and number > 0 and math.isfinite(number) else None


class GammaClient:
    """One lookup per call: `GET /events?slug=...` (the production-recommended form), once per candidate slug of the
    window (the hourly series have two namings) until one is listed."""

    def __init__(self, base_url: str, window_s: int | series_mod.Series, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        # A window length alone means the default series (what the feed followed before it knew series).
        self.series = (window_s if isinstance(window_s, series_mod.Series)
                       else series_mod.parse(series_mod.DEFAULT_SERIES, window_s=window_s))
        self.window_s = self.series.window_s
        self.timeout_s = timeout_s

    def _get(self, path: str):
        req = urllib.request.Request(self.base_url + path, headers={"Accept": "application/json", "User-Agent": "polymm-feed"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotListedYet(f"Gamma has no {path} (404)") from None
            raise DiscoveryError(f"Gamma {path}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DiscoveryError(f"Gamma unreachable at {self.base_url}: {reason}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise DiscoveryError(f"Gamma {path}: response is not JSON") from None

    def fetch(self, window_start: int) -> MarketInfo:
        slugs = self.series.slugs(window_start)
        for slug in slugs:
            try:
                return self._fetch_slug(slug, window_start)
            except NotListedYet:
                continue  # the older naming of an hourly window, or not listed yet
        raise NotListedYet(f"Gamma does not know {' or '.join(slugs)} yet")

    def _fetch_slug(self, slug: str, window_start: int) -> MarketInfo:
        events = self._get("/events?" + urllib.parse.urlencode({"slug": slug}))
        if isinstance(events, dict):  # some deployments answer the object itself
            events = [events]
        if not isinstance(events, list):
            raise DiscoveryError(f"Gamma /events?slug={slug}: expected a list, got {type(events).__name__}")
        matching = [e for e in events if isinstance(e, dict) and e.get("slug") in (slug, None)]
        if not matching:
            raise NotListedYet(f"Gamma does not know {slug} yet")
        return parse_market(matching[0], window_start, self.window_s, slug=slug)


@dataclass
class _Lookup:
    window_start: int
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    result: MarketInfo | None = None


class Discoverer:
    """Background lookups of the windows the service wants, retried with jittered exponential backoff.

    `want(T)` asks for a window; `get(T)` returns its MarketInfo once found; `describe(T)` says in words
    where the lookup stands (for logs and STATUS=)."""

    def __init__(
        self,
        fetch,
        *,
        slug_of=None,
        clock=time.time,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        urgent_max_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self._fetch = fetch
        self._slug_of = slug_of or slug_for  # for the log lines: the window's (first) slug
        self._clock = clock
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        # Once a window has started without its market, nothing is published: retry at least this often.
        self.urgent_max_s = urgent_max_s
        self._rng = rng or random.Random()
        self._lookups: dict[int, _Lookup] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="gamma-discovery", daemon=True)

    def start(self) -> "Discoverer":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def want(self, window_start: int) -> None:
        with self._cond:
            if window_start not in self._lookups:
                self._lookups[window_start] = _Lookup(window_start)
                self._cond.notify_all()

    def forget_before(self, window_start: int) -> None:
        with self._cond:
            for t in [t for t in self._lookups if t < window_start]:
                del self._lookups[t]

    def get(self, window_start: int) -> MarketInfo | None:
        with self._cond:
            lookup = self._lookups.get(window_start)
            return lookup.result if lookup else None

    def describe(self, window_start: int) -> str:
        with self._cond:
            lookup = self._lookups.get(window_start)
            if lookup is None:
                return "not requested"
            if lookup.result is not None:
                return "found"
            if not lookup.attempts:
                return "looking up"
            wait = max(0.0, lookup.next_try - self._clock())
            return f"{lookup.last_error}; retry {lookup.attempts + 1} in {wait:.1f}s"

    def poll_once(self) -> None:
        """Run every lookup that is due (the thread calls this; tests may call it directly)."""
        now = self._clock()
        with self._cond:
            due = [lk for lk in self._lookups.values() if lk.result is None and lk.next_try <= now]
        for lookup in sorted(due, key=lambda lk: lk.window_start):
            self._attempt(lookup)

    def _attempt(self, lookup: _Lookup) -> None:
        slug = self._slug_of(lookup.window_start)
        try:
            info = self._fetch(lookup.window_start)
        except DiscoveryError as e:
            with self._cond:
                repeated = str(e) == lookup.last_error
                lookup.attempts += 1
                now = self._clock()
                cap = self.backoff_max_s if now < lookup.window_start else min(self.urgent_max_s, self.backoff_max_s)
                delay = min(cap, self.backoff_initial_s * 2 ** (lookup.attempts - 1))
                delay *= self._rng.uniform(0.75, 1.25)
                if now < lookup.window_start < now + delay:
                    delay = lookup.window_start - now + 0.05  # markets may be listed right at their start
                lookup.next_try = now + delay
                lookup.last_error = str(e)
            # A long outage retries every second: say so at first, when the reason changes, then every 30th try.
            if not repeated or lookup.attempts <= 3 or lookup.attempts % 30 == 0:
                level = logging.INFO if isinstance(e, NotListedYet) and lookup.attempts < 3 else logging.WARNING
                log.log(level, "market %s not available: %s; retry %d in %.1fs", slug, e, lookup.attempts + 1, delay)
            return
        except Exception as e:  # a bug or an unexpected library error must not kill discovery
            with self._cond:
                lookup.attempts += 1
                lookup.next_try = self._clock() + self.backoff_max_s
                lookup.last_error = f"unexpected error: {e!r}"
            log.exception("market %s lookup failed unexpectedly", slug)
            return
        with self._cond:
            lookup.result = info
        for warning in info.warnings:
            log.warning("market %s: %s", slug, warning)
        log.info(
            "market %s found: condition %s, window %d-%d, tick %g, min size %g, fee rate %g (after %d retries)",
            slug, info.condition_id, info.window_start, info.window_end, info.tick_size, info.min_order_size,
            info.fee_rate, lookup.attempts,
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                pending = [lk.next_try for lk in self._lookups.values() if lk.result is None]
                wait = max(0.0, min(pending) - self._clock()) if pending else 1.0
                if wait > 0:
                    self._cond.wait(timeout=min(wait, 1.0))
                    continue
            self.poll_once()
