"""Strategy S1: bid-threshold entry with take-profit and stop-loss, per leg (strategies.md, "S1").

`decide_s1` is a pure function of (market, S1's own working orders, S1's positions, params, per-window state,
clock value, exposure room) returning the orders S1 wants working now and its new state. The planner turns
wants into place/cancel actions; returning the same want again does not churn.

Rules, per leg, within one window (numbers are the strategies.md rules):
1. Entry: eligible leg (enabled, bid >= entry_threshold, allowed by leg_mode, not stopped, not late) below the
   cap of the current time -> post-only BUY at the best bid of floor((cap - exposure) / bid) shares, if that is
   at least max(s1.min_order_size, market minimum).
2. Requote: an unfilled entry is replaced at the new bid when the bid moved >= requote_min_improve and
   requote_wait_s passed since it was placed; cancelled when the leg stops being eligible.
3. Take-profit: exit_delay_s after the first fill, a post-only SELL of the whole position at
   tp = min(avg + tp_increment, max_tp_price) rounded up to the tick. Repriced (at most every exit_retry_s) when
   the position size or tp changes, or the best ask is exit_drift away (to max(tp, ask): never below tp). When
   the bid nets >= tp after the taker fee, sell into the bid instead (fill-and-kill at the bid).
   A reprice is one cancel/replace: the old take-profit is cancelled and the replacement, at the price the rule
   chose and the size of the position then, is placed at the first decision after the cancel is confirmed (the
   exchange locks the shares of a resting sell until then), with no exit_retry_s wait in between.
   Drift hold (issue 24, `s1.tp_reprice_hold_s`): an ask drift reprices only once it has held, in the same
   direction, for tp_reprice_hold_s, and then to the held target: the least-moved target seen over that time
   (drift up: the lowest ask seen; drift down: the highest), a price the ask stayed at or beyond throughout. An ask
   that merely oscillates around the take-profit breaks the drift before it has held, so the order keeps its queue
   place; a sustained move reprices once. A size change or a tp that moved above the order reprices at once.
4. Stop-loss: bid < max(avg - sl_offset, sl_floor) -> every order of the leg cancelled, fill-and-kill SELL of the
   whole position at sl_order_price, repeated every exit_retry_s while a sellable position remains. No new
   entry on the leg for the rest of the window except a late re-entry.
5. Late window (time to end <= late_window_s): no normal entries (a resting normal entry is cancelled). A leg
   holding a position with bid >= late_hold_threshold switches to hold: take-profit cancelled, held to
   resolution, stop trigger late_sl_trigger.
6. Late re-entry: after a stop-out in the late window left the leg flat, if late_reentry and fewer than
   max_late_reentries re-entries happened on this leg in this window, enter again (as 1, with the cap of the
   current time) while bid >= late_hold_threshold; that position is in hold mode from the start. A re-entry is
   counted at its first fill (an order that never fills uses no re-entry).
7. Dust: a position below the market's minimum order size gets no exit orders; it is held and reported. For
   re-entry and leg selection such a leg counts as flat.
8. Fair-value guard (issue 16, off by default: `s1.fair_guard`): a leg is eligible for an entry or a late re-entry
   only while its fair value (P(that leg wins) from the BTC reference price, MarketView.fair) is known and
   >= bid - fair_margin. Unknown (stale reference price, opening price unknown) -> not eligible. Exits unaffected.

Decisions taken here where strategies.md is silent (documented in the README too):
- Exits are sequenced: a new sell (stop, take into the bid, repriced take-profit) is only placed once no other
  S1 sell on that leg is working, because the exchange locks the shares of a resting sell (the planner enforces
  this; the strategy simply asks again at the next decision).
- A resting take-profit never crosses the book: if the bid is at or above tp but selling into it does not net tp
  after the fee, the sell rests one tick above the bid (post-only would be rejected otherwise).
- A stop triggered while the bid is unknown (empty bid side) cannot be decided; no stop fires on an empty bid.
- `highest_bid`: a leg with a sellable S1 position or a working S1 entry keeps the turn; otherwise the eligible
  leg with the higher bid (Up on a tie).
"""
from __future__ import annotations

import msgspec
from msgspec.structs import replace
from typing import Mapping, Sequence

from polymm.trader.config import S1Params, cap_at
from polymm.trader.decision.fees import market_fee, net_sell_price
from polymm.trader.model import Leg, MarketView, OrderState, OrderType, OrderView, PositionView, Role, Side, Want
from polymm.trader.decision.strategy.common import (
    EPS,
    LEGS,
    NEVER,
    EntryRule,
    entry_decision,
    entry_size,
    fair_guard,
    finite,
    mirror,
    new_buy_usd,
    repeated_sell,
    sellable,
    working,
    working_role,
)
from polymm.trader.decision.ticks import floor_size, round_price

STRATEGY = "s1"


class S1LegState(msgspec.Struct, frozen=True):
    stopped: bool = False  # stopped out in this window: no normal entries any more
    stop_late: bool = False  # the last stop-out happened in the late window (re-entry possible)
    stopping: bool = False  # stop in progress: FAK sells until no sellable position remains
    hold: bool = False  # late hold: no take-profit, stop trigger = late_sl_trigger
    in_reentry: bool = False  # the current position came from a late re-entry
    reentries: int = 0
    last_exit_at: float = NEVER  # last exit action (TP placed/repriced, stop or take sent)
    prev_shares: float = 0.0  # position at the previous decision (detects the first fill of a re-entry)
    # A take-profit reprice in flight: the price its replacement goes at, placed at the first decision after the
    # old one's cancel is confirmed (0: none). Kept until the replacement is seen working.
    tp_reprice: float = 0.0
    # The resting take-profit's ask drift (s1.tp_reprice_hold_s): its direction (+1 the ask is above the order, -1
    # below, 0 none), since when it has held, and the held target (the least-moved target seen since then).
    drift_dir: int = 0
    drift_since: float = NEVER
    drift_held: float = 0.0
    note: str = ""  # what S1 does with the leg's position now, in words (status, cancel reasons of exits)
    entry_note: str = ""  # why the leg's entry is (not) working now, in words (cancel reasons of entries)


class S1State(msgspec.Struct, frozen=True):
    """S1's memory within one window; a new window starts from `S1State(window_start=...)`."""

    window_start: int = 0
    legs: Mapping[Leg, S1LegState] = msgspec.field(default_factory=lambda: {Leg.UP: S1LegState(), Leg.DOWN: S1LegState()})
    notes: tuple[str, ...] = ()  # dust and other facts worth showing, in words


def new_s1_state(window_start: int) -> S1State:
    return S1State(window_start=window_start)


def stop_trigger(params: S1Params, avg_price: float, hold: bool) -> float:
    """Where the stop fires: max(avg - sl_offset, sl_floor), or late_sl_trigger for a held position.
    Rounded to 9 dp so 0.85 - 0.20 is 0.65, not 0.6499999999999999."""
    if hold:
        return params.late_sl_trigger
    return round(max(avg_price - params.sl_offset, params.sl_floor), 9)


def take_profit_price(params: S1Params, avg_price: float, tick: float) -> float:
    """tp = min(avg_entry + tp_increment, max_tp_price), rounded up to the tick."""
    # Rounded to 9 dp first: an average of 0.62 that is 0.6200000000001 in binary must give 0.63, not 0.64.
    return round_price(round(min(avg_price + params.tp_increment, params.max_tp_price), 9), tick, "up")


def decide_s1(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[Leg, PositionView],
    params: S1Params,
    state: S1State,
    now: float,
    exposure_room_usd: float = float("inf"),
) -> tuple[list[Want], S1State]:
    """S1's wants for this decision and its new state. `orders`/`positions` may contain other strategies'
    entries; only S1's are used. `exposure_room_usd`: what the total risk cap still allows for new S1 buys."""
    if state.window_start != market.market.window_start:
        state = new_s1_state(market.market.window_start)
    orders = [o for o in orders if o.strategy == STRATEGY and o.state.working]
    late = market.market.window_end - now <= params.late_window_s + EPS
    cap = cap_at(params.cap_schedule, now - market.market.window_start)
    min_size = max(params.min_order_size, market.market.min_order_size)
    rule = EntryRule(STRATEGY, params.requote_wait_s, params.requote_min_improve, min_size)

    legs = dict(state.legs)
    wants: list[Want] = []
    notes: list[str] = []
    # Pass 1: exits and per-leg state transitions; collect which legs could take an entry.
    candidates: dict[Leg, str] = {}  # leg -> entry kind ("normal" | "reentry")
    for leg in LEGS:
        pos = positions.get(leg)
        shares = pos.shares if pos is not None else 0.0
        ls = _advance(leg, replace(legs[leg], note="", entry_note=""), shares, market, params, late)
        leg_wants, ls = _exits(leg, ls, pos, shares, market, params, orders, now)
        wants += leg_wants
        if shares > EPS and not sellable(shares, market):
            notes.append(f"s1 {leg.value}: dust {shares:.2f} shares (< market minimum {market.market.min_order_size:g}) held to resolution")
        kind = _entry_kind(ls, shares, market, params, late, leg)
        if kind:
            candidates[leg] = kind
        legs[leg] = ls

    # Pass 2: entries on the legs leg_mode allows.
    allowed = _allowed_legs(params, market, orders, positions, candidates)
    room_left = exposure_room_usd
    for leg in LEGS:
        existing = working_role(orders, STRATEGY, leg, Role.ENTRY)
        ls = legs[leg]
        if leg not in allowed or ls.stopping:
            why = ls.note if ls.stopping else _why_no_entry(ls, market, params, late, leg, candidates)
            legs[leg] = replace(ls, entry_note=why if existing is not None else "")
            continue
        pos = positions.get(leg)
        shares = pos.shares if pos is not None else 0.0
        bid = market.bid(leg)
        # A replacement is sized without the order it replaces (the planner cancels that one first).
        room_usd = min(cap - shares * bid, room_left + (existing.remaining * bid if existing is not None else 0.0))
        size = entry_size(room_usd, bid)
        kind = candidates[leg]
        threshold = params.late_hold_threshold if kind == "reentry" else params.entry_threshold
        reason = f"{'late re-entry' if kind == 'reentry' else 'entry'} bid {bid:g}>={threshold:g} cap ${cap:g}"
        leg_wants, what = entry_decision(rule, market, leg, existing, size, now, reason)
        if not leg_wants and size + EPS < min_size <= entry_size(cap - shares * bid, bid) + EPS:
            what = f"no entry: total exposure is at risk.max_exposure_usd (room ${max(room_left, 0):.2f})"
            notes.append(f"s1 {leg.value}: {what}")
        wants += leg_wants
        room_left -= new_buy_usd(leg_wants, existing, bid)
        legs[leg] = replace(ls, entry_note=what)
    return wants, S1State(window_start=state.window_start, legs=legs, notes=tuple(notes))


def _advance(leg: Leg, ls: S1LegState, shares: float, market: MarketView, params: S1Params, late: bool) -> S1LegState:
    """State transitions from what happened since the last decision: fills, stop completion, late hold."""
    bid = market.bid(leg)
    has_position = sellable(shares, market)
    # First fill of a late re-entry: count it; the position is held from the start.
    if ls.stopped and ls.stop_late and not ls.stopping and not ls.in_reentry and shares > ls.prev_shares + EPS:
        ls = replace(ls, in_reentry=True, hold=True, reentries=ls.reentries + 1)
    # A stop is done once nothing sellable remains.
    if ls.stopping and not has_position:
        ls = replace(ls, stopping=False, hold=False, in_reentry=False)
    if not has_position and not ls.stopping and ls.hold and not ls.in_reentry:
        ls = replace(ls, hold=False)
    # Late hold: a position whose bid is at or above late_hold_threshold is held to resolution.
    if late and has_position and not ls.stopping and not ls.hold and finite(bid) and bid + EPS >= params.late_hold_threshold:
        ls = replace(ls, hold=True)
    return replace(ls, prev_shares=shares)


def _exits(
    leg: Leg,
    ls: S1LegState,
    pos: PositionView | None,
    shares: float,
    market: MarketView,
    params: S1Params,
    orders: Sequence[OrderView],
    now: float,
) -> tuple[list[Want], S1LegState]:
    """Stop-loss, take-profit and hold for one leg."""
    # A reprice in flight survives only on the take-profit path; a stop, hold or a gone position ends it. So does
    # an ask drift being timed: it is about the one resting take-profit and only that path keeps it.
    reprice, drift = ls.tp_reprice, _Drift(ls.drift_dir, ls.drift_since, ls.drift_held)
    ls = replace(ls, tp_reprice=0.0, drift_dir=0, drift_since=NEVER, drift_held=0.0)
    if pos is None or not sellable(shares, market):
        # Dust gets no new exit order, but a take-profit that partly filled down to it is still a valid order on
        # the exchange (the minimum size applies when placing) and may sell the rest at tp: keep it, not cancel it.
        resting_tp = [o for o in working_tps(orders, leg) if shares > EPS and abs(o.remaining - shares) <= 0.005]
        if resting_tp:
            return [mirror(resting_tp[0])], replace(ls, note=f"dust {shares:g}: the resting take-profit may still sell it")
        return [], ls
    bid = market.bid(leg)
    tick = market.market.tick_size
    sells = working(orders, STRATEGY, leg, Side.SELL)
    trigger = stop_trigger(params, pos.avg_price, ls.hold)
    late = market.market.window_end - now <= params.late_window_s + EPS
    if not ls.stopping and finite(bid) and bid < trigger - EPS:
        ls = replace(ls, stopping=True, stopped=True, stop_late=late, in_reentry=False, last_exit_at=NEVER)
    if ls.stopping:
        note = f"stop: bid {bid:g} < trigger {trigger:g}" if finite(bid) else "stop in progress"
        wants, last_at = repeated_sell(
            STRATEGY, leg, Role.STOP_LOSS, shares, sells, ls.last_exit_at, params.exit_retry_s, params.sl_order_price, tick, now, note
        )
        return wants, replace(ls, last_exit_at=last_at, note=note)
    if ls.hold:
        return [], replace(ls, note=f"late hold to resolution (stop at bid < {trigger:g})")
    if not pos.avg_price > 0:
        # A position whose entry price is unknown (should not happen: reconciliation rebuilds it from fills)
        # must not get a take-profit computed from 0; only the stop at sl_floor protects it.
        return [], replace(ls, note="average entry price unknown: no take-profit")
    first_fill = pos.first_fill_at
    # No first-fill time (a position rebuilt at a restart): the exit delay has long passed.
    if first_fill is not None and now - first_fill + EPS < params.exit_delay_s:
        return [], replace(ls, note="waiting exit_delay_s before the take-profit")
    return _take_profit(leg, ls, pos, shares, market, params, sells, now, reprice, drift)


def _take_profit(
    leg: Leg,
    ls: S1LegState,
    pos: PositionView,
    shares: float,
    market: MarketView,
    params: S1Params,
    sells: list[OrderView],
    now: float,
    reprice: float = 0.0,
    drift: _Drift | None = None,
) -> tuple[list[Want], S1LegState]:
    bid, ask, tick = market.bid(leg), market.ask(leg), market.market.tick_size
    tp = take_profit_price(params, pos.avg_price, tick)
    size = floor_size(shares)
    can_act = now - ls.last_exit_at + EPS >= params.exit_retry_s
    # Taking: the bid nets at least tp after the taker fee.
    if finite(bid) and net_sell_price(bid, market_fee(market)) + EPS >= tp:
        note = f"take-profit into bid {bid:g} (nets {net_sell_price(bid, market_fee(market)):.4f} >= tp {tp:g})"
        taking = [o for o in sells if o.order_type in (OrderType.FAK, OrderType.FOK)]
        if taking:
            return [mirror(taking[0])], replace(ls, note=note)
        if not can_act:
            return [], replace(ls, note=note)
        want = Want(STRATEGY, leg, Side.SELL, round_price(round(bid, 9), tick, "down"), size, Role.TAKE_PROFIT, OrderType.FAK, False, note)
        if not sells:
            ls = replace(ls, last_exit_at=now)
        return [want], replace(ls, note=note)
    existing = next(iter(working_tps(sells, leg)), None)
    floor_price = tp
    # Whether a resting sell crosses is the exchange's call on the book it displays, our own bids included (an
    # S2 bid on this leg): the higher of the two bids.
    shown = market.raw(leg).bid
    cross_bid = shown if finite(shown) and not (finite(bid) and bid > shown) else bid
    if finite(cross_bid) and cross_bid + EPS >= tp:
        # Resting at tp would cross the bid (post-only rejection); rest just above it, still never below tp.
        floor_price = round_price(round(cross_bid + tick, 9), tick, "up")
    if reprice > 0:
        replacing = _replace_tp(leg, ls, pos, size, floor_price, sells, existing, reprice, now)
        if replacing is not None:
            return replacing
    if existing is None:
        if any(o.state.working for o in sells) or not can_act:
            return [], replace(ls, note="take-profit waiting")
        want = _tp_want(leg, floor_price, size, f"tp avg {pos.avg_price:g}+{params.tp_increment:g}")
        return [want], replace(ls, last_exit_at=now, note=f"take-profit at {floor_price:g}")
    target = existing.price
    size_changed = abs(existing.remaining - size) > 0.005
    held = ""
    if existing.price < floor_price - EPS:
        target = floor_price  # tp moved up (new average) or the bid came up to it: at once, never below tp
    elif finite(ask) and abs(ask - existing.price) + EPS >= params.exit_drift:
        follow = max(floor_price, round_price(round(ask, 9), tick, "up"))  # follow the ask, never below tp
        # A hold of 0 follows the ask at once, as before the hold existed (nothing carried between decisions).
        drift = _timed_drift(drift if drift is not None and params.tp_reprice_hold_s > 0 else _Drift(),
                             existing.price, follow, now)
        if drift.direction and now - drift.since + EPS >= params.tp_reprice_hold_s:
            target = drift.held
            held = f" (ask drift held {now - drift.since:.1f}s)"
        elif drift.direction:
            ls = replace(ls, drift_dir=drift.direction, drift_since=drift.since, drift_held=drift.held)
    if (size_changed or abs(target - existing.price) > EPS) and can_act and existing.state is not OrderState.PENDING_CANCEL:
        # The planner cancels `existing` now and places this once the cancel is confirmed (one sell per slot);
        # `tp_reprice` carries the chosen price until then (_replace_tp). A drift being timed ends with it.
        want = _tp_want(leg, target, size, f"tp reprice {existing.price:g}->{target:g} size {size:g}{held}")
        ls = replace(ls, drift_dir=0, drift_since=NEVER, drift_held=0.0)
        return [want], replace(ls, last_exit_at=now, tp_reprice=target, note=f"take-profit repriced to {target:g}")
    if held:  # held, but exit_retry_s has not passed since the last exit action: keep timing, reprice then
        ls = replace(ls, drift_dir=drift.direction, drift_since=drift.since, drift_held=drift.held)
    if ls.drift_dir:
        return [mirror(existing)], replace(ls, note=f"take-profit resting at {existing.price:g} (ask drift to "
                                                    f"{ls.drift_held:g} for {now - ls.drift_since:.1f}s, not held yet)")
    return [mirror(existing)], replace(ls, note=f"take-profit resting at {existing.price:g}")


class _Drift(msgspec.Struct, frozen=True):
    """An ask drift away from the resting take-profit being timed (see S1LegState.drift_*)."""

    direction: int = 0
    since: float = NEVER
    held: float = 0.0


def _timed_drift(drift: _Drift, resting: float, follow: float, now: float) -> _Drift:
    """The drift after this decision: `follow` is where the ask rule would put the take-profit now. The same
    direction as before continues the drift (its held target is the least-moved one seen); a new direction starts
    one now; a target equal to the resting price (the ask is below tp, which is the floor) is no drift."""
    if abs(follow - resting) <= EPS:
        return _Drift()
    direction = 1 if follow > resting else -1
    if direction != drift.direction:
        return _Drift(direction, now, follow)
    held = min(drift.held, follow) if direction > 0 else max(drift.held, follow)
    return _Drift(direction, drift.since, held)


def _replace_tp(
    leg: Leg,
    ls: S1LegState,
    pos: PositionView,
    size: float,
    floor_price: float,
    sells: list[OrderView],
    existing: OrderView | None,
    reprice: float,
    now: float,
) -> tuple[list[Want], S1LegState] | None:
    """A reprice in flight (cancel sent, replacement not yet working). None once the replacement is working:
    the normal rules take over from there."""
    if existing is not None and existing.state is not OrderState.PENDING_CANCEL:
        return None  # the replacement (or, if the cancel failed, the old order) rests: nothing in flight any more
    target = max(reprice, floor_price)  # never below tp, never crossing the bid (they may have moved meanwhile)
    want = _tp_want(leg, target, size, f"tp reprice to {target:g} size {size:g}")
    if existing is not None or any(o.state.working for o in sells):
        # The old take-profit (or another sell) still locks the shares: the planner holds the replacement back.
        return [want], replace(ls, tp_reprice=target, note=f"take-profit reprice to {target:g}: cancelling the old one")
    # The cancel is confirmed: the replacement goes now, not exit_retry_s later.
    return [want], replace(ls, tp_reprice=target, last_exit_at=now, note=f"take-profit repriced to {target:g}")


def working_tps(orders: Sequence[OrderView], leg: Leg) -> list[OrderView]:
    """S1's resting (maker) take-profits on the leg."""
    return [o for o in working(orders, STRATEGY, leg, Side.SELL) if o.role is Role.TAKE_PROFIT and o.order_type not in (OrderType.FAK, OrderType.FOK)]


def _tp_want(leg: Leg, price: float, size: float, reason: str) -> Want:
    return Want(STRATEGY, leg, Side.SELL, price, size, Role.TAKE_PROFIT, OrderType.GTC, True, reason)


def _entry_kind(ls: S1LegState, shares: float, market: MarketView, params: S1Params, late: bool, leg: Leg) -> str:
    """'normal', 'reentry' or '' (not eligible for an entry now)."""
    if not params.enabled or ls.stopping or not _leg_mode_allows(params.leg_mode, leg):
        return ""
    bid = market.bid(leg)
    if not finite(bid):
        return ""
    if params.fair_guard and _fair_blocks(market, params, leg):
        return ""
    if not ls.stopped:
        if late:
            return ""
        return "normal" if bid + EPS >= params.entry_threshold else ""
    # Stopped out: only a late re-entry, after a late stop-out left the leg flat (or adding to the re-entry).
    flat = not sellable(shares, market)
    if not (late and ls.stop_late and params.late_reentry):
        return ""
    if ls.in_reentry or (flat and ls.reentries < params.max_late_reentries):
        return "reentry" if bid + EPS >= params.late_hold_threshold else ""
    return ""


def _leg_mode_allows(mode: str, leg: Leg) -> bool:
    return mode in ("highest_bid", "both") or (mode == "up_only" and leg is Leg.UP) or (mode == "down_only" and leg is Leg.DOWN)


def _allowed_legs(
    params: S1Params, market: MarketView, orders: Sequence[OrderView], positions: Mapping[Leg, PositionView], candidates: dict[Leg, str]
) -> set[Leg]:
    if params.leg_mode != "highest_bid":
        return set(candidates)
    # One leg at a time: a leg already in play keeps the turn.
    in_play = [
        leg
        for leg in LEGS
        if working_role(orders, STRATEGY, leg, Role.ENTRY) is not None
        or sellable(positions[leg].shares if leg in positions else 0.0, market)
    ]
    if in_play:
        best = max(in_play, key=lambda leg: (_bid_or_zero(market, leg), leg is Leg.UP))
        return {best} & set(candidates)
    if not candidates:
        return set()
    return {max(candidates, key=lambda leg: (_bid_or_zero(market, leg), leg is Leg.UP))}


def _bid_or_zero(market: MarketView, leg: Leg) -> float:
    bid = market.bid(leg)
    return bid if finite(bid) else 0.0


def _why_no_entry(ls: S1LegState, market: MarketView, params: S1Params, late: bool, leg: Leg, candidates: dict[Leg, str]) -> str:
    bid = market.bid(leg)
    if not params.enabled:
        return "s1 disabled"
    if ls.stopped and not late:
        return "stopped out this window"
    if late and not ls.stopped:
        return "late window: no new entries"
    if leg in candidates:
        return "other leg has the turn (leg_mode highest_bid)"
    if not finite(bid):
        if not market.known(leg, Side.BUY):
            return "no bid without us: the published depth shows only our own bids"
        return "no bid"
    if params.fair_guard and _fair_blocks(market, params, leg):
        return _fair_blocks(market, params, leg)
    return f"bid {bid:g} below entry threshold"


def _fair_blocks(market: MarketView, params: S1Params, leg: Leg) -> str:
    """s1.fair_guard: an entry at the bid needs the leg's fair value >= bid - s1.fair_margin."""
    bid = market.bid(leg)
    return fair_guard(market, leg, bid - params.fair_margin, f"bid {bid:g} - margin {params.fair_margin:g}")
