"""Who won an ended window: asked of Gamma, told to the execution core.

Positions of an ended window are held to resolution; P&L is only final once the market says which leg paid 1.
The feed's shared memory carries the current market only, and the user channel says nothing about
resolution, so a background thread asks Gamma about every market the execution core still holds shares in
(`ExecutionCore.pending_resolution()`), and calls `ExecutionCore.resolve_market(condition_id, leg)` once Gamma
shows it closed with `outcomePrices` ["1","0"] or ["0","1"]. Exchange quirk: `outcomes` and `outcomePrices` are
JSON *strings* holding arrays, and a market can be `closed` for a while before its prices settle to 1/0 (UMA
resolution): only exact 1/0 prices count.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from polymm.trader.model import Leg

log = logging.getLogger("polymm.trader.resolution")

POLL_EVERY_S = 5.0
HTTP_TIMEOUT_S = 5.0


def slug_of(window_start: int) -> str:
    """Gamma's slug of the default series' market of a window (the "15m" stays whatever the window length)."""
    return f"btc-updown-15m-{int(window_start)}"


def winner_from_gamma(market: dict, condition_id: str) -> Leg | None:
    """The winning leg of one Gamma market object, or None while it is not resolved (pure)."""
    if str(market.get("conditionId", "")).lower() != condition_id.lower() or not market.get("closed"):
        return None
    try:
        outcomes = market["outcomes"]
        prices = market["outcomePrices"]
        outcomes = json.loads(outcomes) if isinstance(outcomes, str) else outcomes
        prices = json.loads(prices) if isinstance(prices, str) else prices
        paid = [float(p) for p in prices]
    except (KeyError, TypeError, ValueError):
        return None
    if sorted(paid) != [0.0, 1.0] or len(outcomes) != 2:
        return None
    name = str(outcomes[paid.index(1.0)]).strip().lower()
    return {"up": Leg.UP, "down": Leg.DOWN}.get(name)


class ResolutionWatcher:
    """Polls Gamma for the markets awaiting resolution; one background thread."""

    def __init__(self, core, gamma_url: str, *, every_s: float = POLL_EVERY_S, clock=time.time,
                 slugs_of=None) -> None:
        self.core = core
        # The series' slugs of a window (polymm/series.py Series.slugs: an hourly window has two namings, asked in
        # one request); the default series' when not given.
        self.slugs_of = slugs_of or (lambda window_start: (slug_of(window_start),))
        self.gamma_url = gamma_url.rstrip("/")
        self.every_s = every_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures: dict[str, int] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="polymm-resolution", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(HTTP_TIMEOUT_S + 1)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.check_once()
            except Exception:  # a Gamma hiccup must not end the watcher; it retries next round
                log.exception("resolution check failed")

    def check_once(self) -> int:
        """Ask about every ended market still held; returns how many resolved."""
        resolved = 0
        now = self.clock()
        for market, _positions in self.core.pending_resolution():
            if now < market.window_end:
                continue
            leg = self._ask(market)
            if leg is not None:
                log.info("market %s (window %d) resolved: %s won", market.condition_id, market.window_start, leg.value)
                self.core.resolve_market(market.condition_id, leg)
                resolved += 1
        return resolved

    def _ask(self, market) -> Leg | None:
        slugs = tuple(self.slugs_of(market.window_start))
        slug = slugs[0]
        url = f"{self.gamma_url}/markets?{urllib.parse.urlencode([('slug', s) for s in slugs])}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            n = self._failures[market.condition_id] = self._failures.get(market.condition_id, 0) + 1
            if n in (1, 10) or n % 100 == 0:
                log.warning("cannot ask Gamma whether %s resolved (%s); retrying", slug, exc)
            return None
        self._failures.pop(market.condition_id, None)
        markets = body if isinstance(body, list) else [body]
        for item in markets:
            if isinstance(item, dict):
                leg = winner_from_gamma(item, market.condition_id)
                if leg is not None:
                    return leg
        return None
