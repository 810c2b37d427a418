"""Strategy S2: late high-confidence entry, held to expiry (strategies.md, "S2").

`decide_s2` is pure, with the same shape as S1's. Per leg, within one window:
- Entry: only in the last `s2.window_s` seconds; while the leg's best ask >= entry_ask_threshold and S2's
  exposure of the leg plus the next order stays within target_usd, rest a post-only BUY of order_size at the best
  bid. One working entry per leg, requoted like S1's (s2.requote_wait_s, s2.requote_min_improve). An entry is
  cancelled when the ask falls below the threshold.
- No take-profit: positions are held to resolution.
- Stop exactly like S1's, triggered when the best bid <= sl_price: every S2 order of the leg cancelled, a
  fill-and-kill SELL of the whole position at sl_order_price, repeated every exit_retry_s while a sellable
  position remains; no new S2 entry on that leg for the rest of the window.
- Dust (position below the market minimum) gets no exit orders.
- Fair-value guard (issue 16, off by default: `s2.min_fair` 0): with min_fair > 0 a leg is eligible for an entry
  only while its fair value (from the BTC reference price, MarketView.fair) is known and >= min_fair; a resting
  entry is cancelled when it is not. Stops are unaffected.
Where strategies.md is silent: an order_size below the market's minimum order size is not placed (a note says
so); the order size is never silently raised.
"""
from __future__ import annotations

import msgspec
from msgspec.structs import replace
from typing import Mapping, Sequence

from polymm.trader.config import S2Params
from polymm.trader.model import Leg, MarketView, OrderView, PositionView, Role, Side, Want
from polymm.trader.decision.strategy.common import (
    EPS,
    LEGS,
    NEVER,
    EntryRule,
    entry_decision,
    fair_guard,
    finite,
    new_buy_usd,
    repeated_sell,
    sellable,
    working,
    working_role,
)
from polymm.trader.decision.ticks import floor_size

STRATEGY = "s2"


class S2LegState(msgspec.Struct, frozen=True):
    stopped: bool = False
    stopping: bool = False
    last_exit_at: float = NEVER
    note: str = ""  # the stop, in words
    entry_note: str = ""  # why the leg's entry is (not) working, in words


class S2State(msgspec.Struct, frozen=True):
    window_start: int = 0
    legs: Mapping[Leg, S2LegState] = msgspec.field(default_factory=lambda: {Leg.UP: S2LegState(), Leg.DOWN: S2LegState()})
    notes: tuple[str, ...] = ()


def new_s2_state(window_start: int) -> S2State:
    return S2State(window_start=window_start)


def decide_s2(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[Leg, PositionView],
    params: S2Params,
    state: S2State,
    now: float,
    exposure_room_usd: float = float("inf"),
) -> tuple[list[Want], S2State]:
    if state.window_start != market.market.window_start:
        state = new_s2_state(market.market.window_start)
    orders = [o for o in orders if o.strategy == STRATEGY and o.state.working]
    in_window = market.market.window_start <= now and market.market.window_end - now <= params.window_s + EPS
    size = floor_size(params.order_size)
    rule = EntryRule(STRATEGY, params.requote_wait_s, params.requote_min_improve, market.market.min_order_size)
    legs = dict(state.legs)
    wants: list[Want] = []
    notes: list[str] = []
    room_left = exposure_room_usd
    for leg in LEGS:
        pos = positions.get(leg)
        shares = pos.shares if pos is not None else 0.0
        ls = replace(legs[leg], note="", entry_note="")
        bid, ask = market.bid(leg), market.ask(leg)
        if ls.stopping and not sellable(shares, market):
            ls = replace(ls, stopping=False)
        if shares > EPS and not sellable(shares, market):
            notes.append(f"s2 {leg.value}: dust {shares:.2f} shares (< market minimum {market.market.min_order_size:g}) held to resolution")
        # Stop-loss.
        if sellable(shares, market) and not ls.stopping and finite(bid) and bid <= params.sl_price + EPS:
            ls = replace(ls, stopping=True, stopped=True, last_exit_at=NEVER)
        if ls.stopping:
            leg_wants, ls = _stop(leg, ls, shares, market, params, orders, now)
            wants += leg_wants
            legs[leg] = replace(ls, entry_note=ls.note)
            continue
        # Entry.
        existing = working_role(orders, STRATEGY, leg, Role.ENTRY)
        eligible = (
            params.enabled and in_window and not ls.stopped and finite(ask) and finite(bid) and bid > 0
            and ask + EPS >= params.entry_ask_threshold
        )
        # s2.min_fair (issue 16, 0 = off): the leg's fair value from the BTC reference price must be known and >= it.
        guard = fair_guard(market, leg, params.min_fair, f"s2.min_fair {params.min_fair:g}") if params.min_fair > 0 else ""
        if not eligible or guard:
            legs[leg] = replace(ls, entry_note=(guard if eligible else _why_not(params, ls, in_window, ask, bid)) if existing else "")
            continue
        if size + EPS < market.market.min_order_size:
            notes.append(f"s2: order_size {size:g} is below the market minimum {market.market.min_order_size:g}; no entry")
            continue
        exposure_held = shares * bid
        fits = exposure_held + size * bid <= params.target_usd + EPS and size * bid <= room_left + (
            existing.remaining * bid if existing is not None else 0.0
        ) + EPS
        if existing is None and not fits:
            if exposure_held + size * bid <= params.target_usd + EPS:
                what = f"no entry: total exposure is at risk.max_exposure_usd (room ${max(room_left, 0):.2f})"
                notes.append(f"s2 {leg.value}: {what}")
            else:
                what = f"at target: ${exposure_held:.2f} held of ${params.target_usd:g}"
            legs[leg] = replace(ls, entry_note=what)
            continue
        new_size = size if fits else 0.0
        reason = f"s2 entry ask {ask:g}>={params.entry_ask_threshold:g}"
        leg_wants, what = entry_decision(rule, market, leg, existing, new_size, now, reason)
        wants += leg_wants
        room_left -= new_buy_usd(leg_wants, existing, bid)
        legs[leg] = replace(ls, entry_note=what)
    return wants, S2State(window_start=state.window_start, legs=legs, notes=tuple(notes))


def _stop(
    leg: Leg, ls: S2LegState, shares: float, market: MarketView, params: S2Params, orders: Sequence[OrderView], now: float
) -> tuple[list[Want], S2LegState]:
    bid = market.bid(leg)
    note = f"stop: bid {bid:g} <= {params.sl_price:g}" if finite(bid) else "stop in progress"
    sells = working(orders, STRATEGY, leg, Side.SELL)
    wants, last_at = repeated_sell(
        STRATEGY, leg, Role.STOP_LOSS, shares, sells, ls.last_exit_at, params.exit_retry_s, params.sl_order_price,
        market.market.tick_size, now, note,
    )
    return wants, replace(ls, last_exit_at=last_at, note=note)


def _why_not(params: S2Params, ls: S2LegState, in_window: bool, ask: float, bid: float = 1.0) -> str:
    if not params.enabled:
        return "s2 disabled"
    if ls.stopped:
        return "stopped out this window"
    if not in_window:
        return "outside the S2 window"
    if finite(ask) and ask + EPS < params.entry_ask_threshold:
        return f"ask {ask:g} below s2.entry_ask_threshold"
    if not (finite(bid) and bid > 0):
        return "no bid to join (without our own orders)"
    return "no ask"
