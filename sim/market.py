"""A synthetic "Up or Down" market of one series for polymm-sim: the window calendar, a seeded random walk of the
asset's price, each window's fair P(Up), and background liquidity and takers trading around it in the engine.
The sim runs one per series it serves (`--series btc-15m,eth-5m`); the markets of one asset share the price path
(the walk depends only on the seed, the asset and the grid), as production's series of one asset share a price.

Determinism: everything runs on a fixed time grid (`step_s`, default 0.25 s) anchored at the first
`step(now)`. The BTC path depends only on the seed and the number of grid steps elapsed; quotes and
background takers are decided on the same grid from their own seeded generators, so how often `step()`
is called does not change the market. Engine calls made while catching up on the grid carry the grid
time of the step they belong to.
"""
from __future__ import annotations

import hashlib
import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from polymm import series as series_mod

from .engine import BACKGROUND, Engine, MarketSpec, SimOrder
from .script import Level, Script, Step, book_step

log = logging.getLogger("polymm.sim.market")

ONE = Decimal(1)
COARSE_TICK = Decimal("0.01")
FINE_TICK = Decimal("0.001")
# Production switches the tick to 0.001 when the book trades above 0.96 or below 0.04, and back.
FINE_ABOVE = 0.96
FINE_BELOW = 0.04
# Hysteresis for switching back so a fair value hovering at 0.96 does not flap the tick.
COARSE_BETWEEN = (0.05, 0.95)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


# A starting price per asset, in the range each traded at in 2026 (the walk is what matters, not the level).
START_PRICE = {"btc": 95_000.0, "eth": 3_500.0, "sol": 150.0, "xrp": 2.5}


class MarketCalendar:
    """Which window of one series is live at a time, and the deterministic identity of each window's market."""

    def __init__(self, seed: int, window_s: int, series: series_mod.Series | None = None) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.seed = seed
        self.window_s = int(window_s)
        self.series = series or series_mod.default(self.window_s)
        if self.series.window_s != self.window_s:
            raise ValueError(f"series {self.series} has {self.series.window_s} s windows, not {self.window_s}")
        # The fee schedule new windows get (--fee-rate / --fee-exponent; the admin's fee_schedule changes it).
        self.fee_rate = Decimal("0.07")
        self.fee_exponent = Decimal("1")

    def window_start(self, now: float) -> int:
        return int(now // self.window_s) * self.window_s

    def spec_for(self, window_start: int) -> MarketSpec:
        """A fresh MarketSpec for the window starting at `window_start` (ids derived from seed and T).

        Token ids are uint256 decimal strings like production's `clobTokenIds`; Up is outcome 0."""
        t = int(window_start)
        if t % self.window_s:
            raise ValueError(f"{t} is not a window start (multiple of {self.window_s})")
        # The default series keeps the ids it always had (recorded tests rely on them); the others mix their name in.
        key = (self.seed,) if self.series.is_default else (self.seed, self.series.name)
        condition_id = "0x" + _digest(*key, t, "condition").hex()
        up_token = str(int.from_bytes(_digest(*key, t, "up"), "big"))
        down_token = str(int.from_bytes(_digest(*key, t, "down"), "big"))
        return MarketSpec(condition_id=condition_id, slug=self.series.slug(t), up_token=up_token,
                          down_token=down_token, window_start=t, window_end=t + self.window_s,
                          fee_rate=self.fee_rate, fee_exponent=self.fee_exponent, series=self.series.name)


def fair_up_probability(btc: float, open_price: float, seconds_left: float, vol_per_sqrt_s: float,
                        clamp: float = 0.002) -> float:
    """P(BTC at the window end >= open) for a driftless log-normal walk, clamped to [clamp, 1-clamp]."""
    log_return = math.log(btc / open_price)
    spread = vol_per_sqrt_s * math.sqrt(max(seconds_left, 0.0))
    if spread <= 0.0:
        p = 1.0 if log_return >= 0 else 0.0
    else:
        p = 0.5 * (1.0 + math.erf(log_return / (spread * math.sqrt(2.0))))
    return min(max(p, clamp), 1.0 - clamp)


@dataclass
class _Window:
    spec: MarketSpec
    open_price: float | None = None
    close_price: float | None = None
    fair: float = 0.5
    resolved: bool = False
    quote_center: Decimal | None = None  # the fair value the ladder was built around
    last_requote: float = -math.inf
    last_refill: float = -math.inf
    target: dict[tuple[str, Decimal], Decimal] = field(default_factory=dict)  # the ladder being kept


class SyntheticMarket:
    """Drives the engine: lists windows ahead, moves BTC, quotes and trades as background, resolves."""

    def __init__(self, engine: Engine, calendar: MarketCalendar, seed: int, *, listed_ahead: int = 4,
                 step_s: float = 0.25, vol_per_sqrt_s: float = 1.2e-4,
                 levels: int = 5, level_size: float = 60.0, requote_move: float = 0.01,
                 min_requote_s: float = 1.0, refill_below: float = 0.4, taker_rate_per_s: float = 0.5,
                 taker_size: tuple[float, float] = (5.0, 60.0), resolve_delay_s: float = 0.0,
                 retain_s: float = 3600.0, script: Script | None = None, btc_start: float | None = None) -> None:
        self.engine = engine
        self.calendar = calendar
        self.seed = seed
        self.listed_ahead = listed_ahead
        self.step_s = step_s
        self.vol_per_sqrt_s = vol_per_sqrt_s
        self.levels = levels
        self.level_size = level_size
        self.requote_move = Decimal(repr(requote_move))
        self.min_requote_s = min_requote_s
        self.refill_below = refill_below
        self.taker_rate_per_s = taker_rate_per_s
        self.taker_size = taker_size
        self.resolve_delay_s = resolve_delay_s
        self.retain_s = retain_s  # finished orders/trades older than this are forgotten at each resolution
        # A scripted market (sim/script.py; --script): every window follows this script unless it has its own
        # (POST /_sim/book adds a step to one window's). Seeded and deterministic like the rest: the same script
        # gives the same book at the same offsets.
        self.script = script
        # Separate generators: the price path must not depend on how much trading happened. The default series keeps
        # the seeds it always had; the path is the asset's (every series of one asset walks the same path).
        series = calendar.series
        self.series = series
        self.asset = series.asset.code
        self._btc_rng = random.Random(f"{seed}:{self.asset}")
        self._taker_rng = random.Random(f"{seed}:takers" if series.is_default else f"{seed}:{series.name}:takers")
        self._btc = btc_start if btc_start is not None else START_PRICE[self.asset]
        self._origin: float | None = None
        self._steps_done = 0  # grid steps processed (the next one is _steps_done)
        self._windows: dict[int, _Window] = {}
        self._by_condition: dict[str, _Window] = {}
        self._ladders: dict[str, dict[tuple[str, Decimal], list[str]]] = {}  # cid -> (side, up price) -> ids
        self._bg_seq = 0
        # The BTC price at each whole grid second, newest last: what the sim's RTDS publishes (sim/rtds.py).
        # A window's open is the point stamped exactly at its start.
        self.price_points: deque[tuple[float, float]] = deque(maxlen=600)
        self._scripts: dict[str, Script] = {}  # cid -> the window's own script (the admin's book steps added)
        self._book_applied: dict[str, int] = {}  # cid -> index of the script's book step resting now
        self._book_orders: dict[str, list[str]] = {}  # cid -> background order ids of that book step

    # ---- read side (tests, demo, admin) ----------------------------------------------------------
    def btc_price(self) -> float:
        return self._btc

    def window_open_price(self, window_start: int) -> float | None:
        w = self._windows.get(window_start)
        return w.open_price if w else None

    def fair(self, condition_id: str) -> float | None:
        w = self._by_condition.get(condition_id)
        return w.fair if w else None

    def grid_time(self) -> float | None:
        """Time of the last processed grid step."""
        if self._origin is None:
            return None
        return self._origin + (self._steps_done - 1) * self.step_s

    # ---- driving ---------------------------------------------------------------------------------
    def step(self, now: float) -> None:
        """Catch up on every grid step up to `now`, then let the engine's timers run."""
        if self._origin is None:
            self._origin = math.floor(now / self.step_s) * self.step_s
        while True:
            t = self._origin + self._steps_done * self.step_s
            if t > now:
                break
            if self._steps_done > 0:
                self._walk()
            self._steps_done += 1
            self._on_grid(t)
        self.engine.advance(now)

    def _walk(self) -> None:
        z = self._btc_rng.gauss(0.0, 1.0)
        self._btc *= math.exp(self.vol_per_sqrt_s * math.sqrt(self.step_s) * z)

    def _on_grid(self, t: float) -> None:
        self.engine.advance(t)
        if abs(t - round(t)) < 1e-6:
            self.price_points.append((float(round(t)), self._btc))
        live_start = self.calendar.window_start(t)
        self._list_windows(live_start)
        for start in sorted(self._windows):
            w = self._windows.get(start)  # resolving one window may forget much older ones
            if w is None or w.resolved:
                continue
            if t >= w.spec.window_end or w.spec.closed:
                self._close(w, t)
            elif t >= start:
                if w.open_price is None:
                    # The first grid price at/after T is the window's open (when the sim starts
                    # mid-window, the price at start stands in for it).
                    w.open_price = self._btc
                script = self.script_of(w)
                fair = script.fair_at(t - start) if script is not None else None
                w.fair = (fair if fair is not None else
                          fair_up_probability(self._btc, w.open_price, w.spec.window_end - t, self.vol_per_sqrt_s))
                if script is not None:
                    self._follow_book(w, script, t)
                self._maybe_switch_tick(w, t)
                self._quote(w, t)
            else:
                self._quote(w, t)  # listed ahead: quoted around 0.5, no takers yet
        self._background_taker(live_start, t)

    def script_of(self, w: _Window) -> Script | None:
        """The script a window follows: its own, else every window's (--script), else none."""
        return self._scripts.get(w.spec.condition_id, self.script)

    def _list_windows(self, live_start: int) -> None:
        for i in range(self.listed_ahead + 1):
            start = live_start + i * self.calendar.window_s
            if start in self._windows:
                continue
            spec = self.calendar.spec_for(start)
            self.engine.add_market(spec)
            spec = self.engine.market(spec.condition_id) or spec  # the engine's own (mutable) copy
            w = _Window(spec)
            self._windows[start] = w
            self._by_condition[spec.condition_id] = w
            self._ladders[spec.condition_id] = {}

    def _close(self, w: _Window, t: float) -> None:
        cid = w.spec.condition_id
        if w.spec.closed:  # resolved early from outside (the admin's resolve_now): keep its verdict
            w.close_price = w.close_price or self._btc
            w.fair = 1.0 if w.spec.winning_token == w.spec.up_token else 0.0
            w.resolved = True
            return
        if w.close_price is None:
            w.close_price = self._btc
            if w.open_price is None:  # never live while we ran: resolve on the flat path
                w.open_price = w.close_price
            self.engine.stop_accepting(cid, t)
            self._ladders[cid] = {}
        if t >= w.spec.window_end + self.resolve_delay_s:
            script = self.script_of(w)
            fair = script.fair_at(w.spec.window_end - w.spec.window_start) if script is not None else None
            up_wins = fair >= 0.5 if fair is not None else w.close_price >= w.open_price
            self.engine.resolve(cid, w.spec.up_token if up_wins else w.spec.down_token, t)
            w.fair = 1.0 if up_wins else 0.0
            w.resolved = True
            self.engine.prune(t - self.retain_s)
            self._forget_windows_before(t - self.retain_s)

    def _forget_windows_before(self, horizon: float) -> None:
        for start in [s for s, w in self._windows.items() if w.resolved and w.spec.window_end < horizon]:
            w = self._windows.pop(start)
            cid = w.spec.condition_id
            for kept in (self._by_condition, self._ladders, self._scripts, self._book_applied, self._book_orders):
                kept.pop(cid, None)

    def _maybe_switch_tick(self, w: _Window, t: float) -> None:
        tick = w.spec.tick_size
        if tick == COARSE_TICK and (w.fair > FINE_ABOVE or w.fair < FINE_BELOW):
            self.engine.set_tick_size(w.spec.condition_id, FINE_TICK, t)
            w.quote_center = None  # re-quote on the new grid
        elif tick == FINE_TICK and COARSE_BETWEEN[0] <= w.fair <= COARSE_BETWEEN[1]:
            self.engine.set_tick_size(w.spec.condition_id, COARSE_TICK, t)
            w.quote_center = None

    # ---- background liquidity --------------------------------------------------------------------
    def _target_ladder(self, w: _Window) -> dict[tuple[str, Decimal], Decimal]:
        """(side, Up price) -> size: `levels` bids below and asks above fair, one tick either side."""
        tick = w.spec.tick_size
        fair = Decimal(repr(w.fair))
        best_bid = ((fair - tick / 2) / tick).to_integral_value(ROUND_FLOOR) * tick
        best_ask = ((fair + tick / 2) / tick).to_integral_value(ROUND_CEILING) * tick
        if best_ask - best_bid < 2 * tick:
            best_bid = best_ask - 2 * tick
        target: dict[tuple[str, Decimal], Decimal] = {}
        for i in range(self.levels):
            for side, price in (("BUY", best_bid - i * tick), ("SELL", best_ask + i * tick)):
                if tick <= price <= ONE - tick:
                    target[(side, price)] = self._level_size(w, side, price, i)
        return target

    def _level_size(self, w: _Window, side: str, price: Decimal, depth: int) -> Decimal:
        # Stable per price (a hash, not a generator draw) so re-quotes do not shuffle sizes.
        jitter = int.from_bytes(_digest(self.seed, w.spec.condition_id, side, price)[:4], "big") / 2**32
        size = self.level_size * (1.0 + 0.5 * depth) * (0.75 + 0.5 * jitter)
        return Decimal(int(size))

    def _quote(self, w: _Window, t: float) -> None:
        if not w.spec.accepting_orders or w.spec.condition_id in self._book_applied:
            return  # a scripted book rests there: the ladder leaves the window alone
        cid = w.spec.condition_id
        tick = w.spec.tick_size
        fair = Decimal(repr(w.fair))
        # Re-centre only when fair moved a cent (not a fine tick): production books do not re-quote on
        # every wiggle, and each re-quote is several price_change messages.
        moved = w.quote_center is None or abs(fair - w.quote_center) >= max(self.requote_move, tick)
        if moved and t - w.last_requote >= self.min_requote_s:
            w.quote_center = fair
            w.last_requote = t
            self._requote(w, t, self._target_ladder(w))
        elif w.quote_center is not None and t - w.last_refill >= self.min_requote_s:
            w.last_refill = t
            self._refill(w, t)
        self._ladders[cid] = {k: v for k, v in self._ladders[cid].items() if v}

    def _requote(self, w: _Window, t: float, target: dict[tuple[str, Decimal], Decimal]) -> None:
        ladder = self._ladders[w.spec.condition_id]
        # Cancel first: a new bid must not trade against our own stale ask.
        for key in [k for k in ladder if k not in target and not self._may_linger(w, k, target)]:
            for order_id in ladder.pop(key):
                self.engine.cancel(order_id, BACKGROUND, t)
        w.target = target
        for key, size in target.items():
            self._top_up(w, key, size, t)

    def _may_linger(self, w: _Window, key: tuple[str, Decimal], target: dict[tuple[str, Decimal], Decimal]) -> bool:
        """An old level left behind the new ladder (a bid below its bottom, an ask above its top) may
        stay for a couple of ticks: dropping it at every move would double the price_change traffic."""
        side, price = key
        same_side = [p for s, p in target if s == side]
        if not same_side or price % w.spec.tick_size:
            return False  # levels off the current tick (left from a finer tick) always go
        slack = 2 * w.spec.tick_size
        if side == "BUY":
            return min(same_side) - slack <= price < max(same_side)
        return min(same_side) < price <= max(same_side) + slack

    def _refill(self, w: _Window, t: float) -> None:
        for key, size in w.target.items():
            self._top_up(w, key, size, t)

    def _top_up(self, w: _Window, key: tuple[str, Decimal], size: Decimal, t: float) -> None:
        """Bring the background's size at one level back to target once takers ate most of it."""
        ladder = self._ladders[w.spec.condition_id]
        ids = [oid for oid in ladder.get(key, []) if self._live(oid)]
        resting = sum((self.engine.get_order(oid).remaining for oid in ids), Decimal(0))
        if resting >= size * Decimal(repr(self.refill_below)) and ids:
            ladder[key] = ids
            return
        side, up_price = key
        order_id = self._submit_background(w, w.spec.up_token, side, up_price, size - resting, "GTC", t)
        if order_id is not None and self._live(order_id):
            ids.append(order_id)
        ladder[key] = ids

    def _live(self, order_id: str) -> bool:
        order = self.engine.get_order(order_id)
        return order is not None and order.status == "LIVE"

    def _submit_background(self, w: _Window, token: str, side: str, price: Decimal, size: Decimal,
                           order_type: str, t: float) -> str | None:
        self._bg_seq += 1
        order_id = "0x" + _digest(self.seed, "background", self._bg_seq).hex()
        order = SimOrder(order_id=order_id, owner=BACKGROUND, maker_address=BACKGROUND,
                         market=w.spec.condition_id, token_id=token, side=side, price=price,  # type: ignore[arg-type]
                         original_size=size, order_type=order_type, created_at=t)  # type: ignore[arg-type]
        result = self.engine.submit(order, t)
        return order_id if result.ok else None

    # ---- scripts (sim/script.py): --script for every window, the admin's /_sim/book for one, now -----
    def script_book(self, condition_id: str, bids: list[Level], asks: list[Level], t: float) -> None:
        """From now on this window's background book is exactly `bids`/`asks` ((Up price, size) levels): a book
        step at the current offset is added to the script the window follows, and rests at once (the ladder's
        levels, or the previous book step's, are cancelled first; whatever other traders rest stays). The BTC
        walk (or the script's fair steps) and resolution go on. ValueError (ScriptError) says what is wrong."""
        w = self._by_condition.get(condition_id)
        if w is None:
            raise ValueError(f"no such window: {condition_id}")
        step = book_step(max(0.0, t - w.spec.window_start), bids, asks)
        script = (self.script_of(w) or Script()).plus(step)
        self._scripts[condition_id] = script
        self._apply_book(w, next(i for i, s in enumerate(script.steps) if s is step), step, t)

    def _follow_book(self, w: _Window, script: Script, t: float) -> None:
        """A book step of the window's script that took effect since the last grid step: rest its levels."""
        current = script.book_at(t - w.spec.window_start)
        if current is None or self._book_applied.get(w.spec.condition_id) == current[0]:
            return
        try:
            self._apply_book(w, *current, t)
        except ValueError as exc:  # a file's level the exchange refuses (off the window's tick): said, not fatal
            log.error("script: the book step at %gs of window %s cannot rest: %s", current[1].at_s,
                      w.spec.condition_id, exc)

    def _apply_book(self, w: _Window, index: int, step: Step, t: float) -> None:
        cid = w.spec.condition_id
        self._book_applied[cid] = index
        for ids in self._ladders.get(cid, {}).values():
            for order_id in ids:
                self.engine.cancel(order_id, BACKGROUND, t)
        self._ladders[cid] = {}
        for order_id in self._book_orders.get(cid, []):
            self.engine.cancel(order_id, BACKGROUND, t)
        placed: list[str] = []
        self._book_orders[cid] = placed
        for side, levels in (("BUY", step.bids or ()), ("SELL", step.asks or ())):
            for price, size in levels:
                order_id = self._submit_background(w, w.spec.up_token, side, price, size, "GTC", t)
                if order_id is None:
                    raise ValueError(f"the exchange refused a {side} of {size} at {price} (tick {w.spec.tick_size})")
                placed.append(order_id)

    def take(self, condition_id: str, side: str, price: Decimal, size: Decimal, t: float) -> bool:
        """A background taker: a fill-and-kill `side` of `size` Up shares with limit `price`, now."""
        w = self._by_condition.get(condition_id)
        if w is None:
            raise ValueError(f"no such window: {condition_id}")
        return self._submit_background(w, w.spec.up_token, side, price, size, "FAK", t) is not None

    # ---- background takers -----------------------------------------------------------------------
    def _background_taker(self, live_start: int, t: float) -> None:
        # Always draw the same numbers per step, traded or not, so the generator's position depends
        # on the grid only.
        rng = self._taker_rng
        arrives = rng.random() < self.taker_rate_per_s * self.step_s and self.script is None
        buys_up_space = rng.random() < 0.5
        via_down = rng.random() < 0.5
        lo, hi = self.taker_size
        size = Decimal(int(lo + (hi - lo) * rng.random()))
        through_ticks = 1 + int(rng.random() * 2)
        w = self._windows.get(live_start)
        if not arrives or w is None or not w.spec.accepting_orders or w.open_price is None:
            return
        if self.script_of(w) is not None:
            return  # a scripted market trades only when the script (or the test) says so
        tick = w.spec.tick_size
        bids, asks = self.engine.book(w.spec.up_token)
        if buys_up_space:
            if not asks:
                return
            limit = min(asks[0][0] + through_ticks * tick, ONE - tick)
        else:
            if not bids:
                return
            limit = max(bids[0][0] - through_ticks * tick, tick)
        # Up-space buy = BUY Up or SELL Down; Up-space sell = SELL Up or BUY Down (mint with Up bids).
        if via_down:
            token, price = w.spec.down_token, ONE - limit
            side = "SELL" if buys_up_space else "BUY"
        else:
            token, price = w.spec.up_token, limit
            side = "BUY" if buys_up_space else "SELL"
        self._submit_background(w, token, side, price, size, "FAK", t)
