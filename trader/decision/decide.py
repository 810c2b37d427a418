"""One decision of the trader, as a pure function: the same code runs live (trader/engine.py) and in the backtest.

    decide(market, orders, positions, config, state, now, *, paused=False, flatten=False, blocked_legs=None,
           halt_reason="", post_only_only=False, unresolved_usd=0.0) -> Decision

    market        MarketView of the window being traded (built from the feed's shared memory)
    orders        our working orders in this market (OrderView, all strategies; terminal ones are ignored)
    positions     {(strategy, leg): PositionView} in this market
    config        Config (trader/config/); read at every decision, so `mmctl set` acts at the next one
    state         DecisionState from the previous decision, or None (new_state(market) is used)
    now           unix seconds (the caller's clock; nothing here reads a clock)
    paused        kill switch: every order cancelled, nothing placed, positions kept
    flatten       cancel everything, sell every sellable position like a stop-loss (FAK at sl_order_price,
                  retried every exit_retry_s); no entries. `Decision.flat` says when nothing sellable is left
    blocked_legs  {Leg: reason}: the exchange refuses orders on these legs now (nothing placed there)
    halt_reason   non-empty: the exchange accepts no new orders now (cancel-only, closed-only, engine restart,
                  rate limited); cancels still go out
    post_only_only  the exchange accepts post-only orders only: stops and flattens rest post-only one tick above
                    the bid until takers are allowed again (post_only_exits.py); other taker orders wait
    unresolved_usd  exposure of earlier windows' positions awaiting resolution (counted against
                  risk.max_exposure_usd; see risk.unresolved_value)

    Decision.actions  [planner.Place(want) | planner.Cancel(client_id, reason)], cancels first: execute in order
    Decision.state    pass back at the next decision (per-window memory of S1, S2 and the throttle)
    Decision.notes    what is going on, in words (status / log), e.g. "feed stale (2.3 s old): ...",
                      "s1 up entry: retry in 1.4 s after a rejected/vanished order (s1.requote_wait_s 2 s)"
    Decision.wants, .exposure_usd, .phase, .flat   for status and tests

Pipeline: window phase -> (paused | flatten | S1 + S2) -> risk.gate (feed guard, total exposure cap) ->
planner.plan (no churn, never two orders per strategy/leg/side) -> risk.gate_actions (exchange state,
blocked legs, per-slot back-off after a place whose order is gone, throttle; stops and flattens exempt from the
throttle).

An exit (stop-loss, take-profit, flatten) the gate holds back was not sent: the strategy's exit clock
(last_exit_at / last_flatten_at), which it set when it asked for the order, is reset so the exit goes out at the
first decision the gate lets it through, instead of exit_retry_s later. Its cadence is still kept: the strategy
only asked because exit_retry_s had passed since the last exit it really sent, and the back-off counts from
that placement.

Call it on every new top of book, every order/fill event, and at least every ~100 ms without either (the
exit delay, retries, requote waits and cancel-before-end are time rules).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import msgspec
from msgspec.structs import replace
from typing import Mapping, Sequence

from polymm.trader.decision import planner, risk
from polymm.trader.config import Config
from polymm.trader.model import Leg, MarketView, OrderView, PositionView, Role, Want
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.post_only_exits import adapt_exits
from polymm.trader.decision.strategy.s1 import S1State, decide_s1, new_s1_state
from polymm.trader.decision.strategy.s2 import S2State, decide_s2, new_s2_state
from polymm.trader.decision.wallet import WalletLimits


class DecisionState(msgspec.Struct, frozen=True):
    window_start: int
    s1: S1State
    s2: S2State
    risk: risk.RiskState = msgspec.field(default_factory=risk.RiskState)


@dataclass(frozen=True)
class Decision:
    actions: list[Place | Cancel]
    state: DecisionState
    notes: list[str]
    wants: list[Want]
    exposure_usd: float
    phase: str  # before | open | closing | ended
    flat: bool  # no sellable position left (meaningful for flatten)
    leg_notes: Mapping[str, str] = field(default_factory=dict)  # "s1 up" -> what S1 does on Up, in words


def new_state(market: MarketView | None = None) -> DecisionState:
    ws = market.market.window_start if market is not None else 0
    return DecisionState(window_start=ws, s1=new_s1_state(ws), s2=new_s2_state(ws))


def decide(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    config: Config,
    state: DecisionState | None,
    now: float,
    *,
    paused: bool = False,
    flatten: bool = False,
    blocked_legs: Mapping[Leg, str] | None = None,
    halt_reason: str = "",
    post_only_only: bool = False,
    unresolved_usd: float = 0.0,
    cash_usd: float | None = None,
    wallet: WalletLimits | None = None,
) -> Decision:
    if state is None or state.window_start != market.market.window_start:
        # Window rotation: nothing carries over but the throttle (it limits orders per minute, not per window);
        # slot back-offs and flatten clocks belong to the old market's orders and positions.
        fresh = new_state(market)
        state = fresh if state is None else replace(fresh, risk=risk.RiskState(place_times=state.risk.place_times))
    orders = [o for o in orders if o.state.working]
    positions = dict(positions)
    notes: list[str] = []
    reasons: dict[tuple, str] = {}  # (strategy, leg) or (strategy, leg, role) -> words
    default_reason = "no longer wanted"
    wants: list[Want] = []
    flat = not any(_sellable(p, market) for p in positions.values())
    expo = risk.exposure(market, orders, positions, unresolved_usd).total_usd  # before this decision's actions

    phase, phase_words = risk.window_phase(market, config, now)
    if phase != "open":
        notes.append(phase_words)
        default_reason = phase_words
    elif flatten:
        wants, risk_state, flat = risk.flatten_wants(market, orders, positions, config, state.risk, now)
        state = replace(state, risk=risk_state)
        default_reason = "flatten by operator"
        notes.append("flattening: selling every sellable position" if not flat else "flatten done: nothing sellable left")
    elif paused:
        notes.append("paused: no orders, positions kept")
        default_reason = "paused by operator"
    else:
        room = config.risk.max_exposure_usd - expo
        wallet_room = wallet.room(expo) if wallet is not None else None
        wants, state = _strategies(market, orders, positions, config, state, now,
                                   room if wallet_room is None else min(room, wallet_room))
        for name, st in (("s1", state.s1), ("s2", state.s2)):
            notes += list(st.notes)
            for leg, ls in st.legs.items():
                if ls.note:
                    reasons[(name, leg)] = ls.note
                if ls.entry_note:
                    reasons[(name, leg, Role.ENTRY)] = ls.entry_note
        wants, gate_notes = risk.gate(wants, market, orders, positions, config, unresolved_usd, committed_usd=expo,
                                      cash_usd=cash_usd, wallet=wallet)
        notes += gate_notes
        problem = risk.feed_problem(market, config) or (wallet.halt if wallet is not None and wallet.halt else None)
        if problem is not None:
            default_reason = problem
            for name in ("s1", "s2"):
                for leg in Leg:
                    reasons[(name, leg, Role.ENTRY)] = problem

    # Stops and flattens in the form the exchange takes now: resting post-only while it refuses takers.
    wants = adapt_exits(wants, market, config, post_only_only)
    actions = planner.plan(wants, orders, market.market.tick_size, reasons=reasons, default_reason=default_reason)
    held: list[tuple[Place, str]] = []
    actions, risk_state, action_notes, gate_held = risk.gate_actions(
        actions, market, config, state.risk, now,
        blocked_legs=blocked_legs, halt_reason=halt_reason, post_only_only=post_only_only,
        orders=orders, positions=positions,
    )
    held += gate_held
    notes += action_notes
    state = _unsend_held_exits(replace(state, risk=risk_state), [p for p, _ in held], now)
    for p, why in held:
        w = p.want
        reasons[(w.strategy, w.leg, w.role)] = f"not placed: {why}"
    leg_notes = {_words(key): why for key, why in reasons.items()}
    return Decision(
        actions=actions, state=state, notes=notes, wants=wants, exposure_usd=expo, phase=phase, flat=flat, leg_notes=leg_notes
    )


@lru_cache(maxsize=256)
def _words(key: tuple) -> str:
    """("s1", Leg.UP, Role.ENTRY) -> "s1 up entry" (a few dozen keys, asked on every decision: remembered)."""
    return " ".join(str(getattr(k, "value", k)) for k in key)


def _unsend_held_exits(state: DecisionState, held: Sequence[Place], now: float) -> DecisionState:
    """Reset the exit clock a strategy (or flatten) set at `now` for an exit the gate did not let out (see the
    module docstring). A clock set earlier is left alone: that exit was sent."""
    never = float("-inf")
    s1_legs, s2_legs, flat_at = dict(state.s1.legs), dict(state.s2.legs), dict(state.risk.last_flatten_at)
    for p in held:
        w = p.want
        if w.role is Role.FLATTEN:
            if flat_at.get((w.strategy, w.leg)) == now:
                del flat_at[(w.strategy, w.leg)]
        elif w.role in (Role.STOP_LOSS, Role.TAKE_PROFIT):
            legs = s1_legs if w.strategy == "s1" else s2_legs if w.strategy == "s2" else {}
            ls = legs.get(w.leg)
            if ls is not None and ls.last_exit_at == now:
                legs[w.leg] = replace(ls, last_exit_at=never)
    return replace(
        state,
        s1=replace(state.s1, legs=s1_legs),
        s2=replace(state.s2, legs=s2_legs),
        risk=replace(state.risk, last_flatten_at=flat_at),
    )


def _strategies(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    config: Config,
    state: DecisionState,
    now: float,
    room: float,
) -> tuple[list[Want], DecisionState]:
    s1_pos = {leg: p for (s, leg), p in positions.items() if s == "s1"}
    s2_pos = {leg: p for (s, leg), p in positions.items() if s == "s2"}
    w1, s1_state = decide_s1(market, orders, s1_pos, config.s1, state.s1, now, room)
    w2, s2_state = decide_s2(market, orders, s2_pos, config.s2, state.s2, now, room)
    return w1 + w2, replace(state, s1=s1_state, s2=s2_state)


def _sellable(p: PositionView, market: MarketView) -> bool:
    return p.shares > 1e-9 and p.shares + 1e-9 >= market.market.min_order_size
