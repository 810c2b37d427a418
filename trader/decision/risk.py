"""Risk rules and the window lifecycle, both strategies (strategies.md, "Risk and window lifecycle"). Pure.

- `window_phase`: before the window, open, closing (`risk.cancel_before_end_s` before the end: every order of
  the window cancelled, nothing placed after that), ended.
- `exposure`: the one computation of exposure: (shares held + shares on open buys) x best bid per leg and
  strategy, plus what positions of earlier windows awaiting resolution tie up (`unresolved_usd`, valued by the
  caller at cost: those markets have no book any more).
- `feed_problem`: a dead or frozen feed (MarketView.fresh false: the engine judges it from the feed's heartbeat and
  its market socket's liveness, `risk.stale_feed_ms` / `risk.quiet_feed_ms`) or a crossed book. A quiet book is fine.
- `gate`: what of the strategies' wants may stand: on a bad feed no entry (the planner then cancels resting
  entries); new buys trimmed or dropped so the total stays within `risk.max_exposure_usd` and, when the
  wallet's pUSD is known, within that cash after what working buys commit (winnings awaiting redemption are
  not cash). An order a want merely keeps is never trimmed (no churn); it counts against the cap.
- `flatten_wants`: sell every sellable position like a stop-loss (fill-and-kill at the owning strategy's
  sl_order_price, every exit_retry_s), nothing else.
- `gate_actions`: what may actually be sent now: nothing while the exchange or the market refuses new orders,
  no taker order while the exchange is post-only, nothing on a blocked leg, no slot placed again within its
  back-off (below), and at most `risk.max_orders_per_min` new entries and take-profits per rolling minute
  (take-profits before entries). Cancels are never held back.

Back-off per slot. A slot is (strategy, leg, side, role). After a place for a slot, that slot is not placed
again for `<strategy>.requote_wait_s` (entries) or `<strategy>.exit_retry_s` (take-profits, stop-losses,
flattens) unless one of these holds: an order of that slot is still working (then the planner, not the back-off,
decides), or the strategy's position on that leg moved the way the order would move it since it was placed
(it filled: it did its job rather than vanish). What remains is the case the back-off exists for: the order was
rejected (e.g. post-only "crosses book" after the book moved) or vanished, and the strategies, deciding again
milliseconds later, want the very same order again. Without the back-off each decision re-sent it (live: 120
rejected orders in a second, then the throttle starved everything, stop-losses included). The wait is never
below MIN_SLOT_RETRY_S whatever the config says: a protective order is exempt from the throttle, so this floor
is what bounds its rate when the exchange keeps rejecting it. For stops it equals their own cadence
(strategies.md: retried every exit_retry_s), measured from the same instant, so it never slows them further.

Throttle exemption. Stop-loss and flatten places are exempt from `risk.max_orders_per_min` (they still count
towards it): they only reduce risk (a fill-and-kill SELL of shares held, which cannot rest or add exposure), and
a throttle filled by entries or rejections must never keep a position from being sold. Their rate is bounded
anyway: one per slot per exit_retry_s (and MIN_SLOT_RETRY_S), and only while a sellable position exists.
Paused is handled by the caller (decide.py): no wants at all, so every order is cancelled; positions are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as replace_want

import msgspec
from msgspec.structs import replace
from typing import Mapping, Sequence

from polymm.trader.config import Config
from polymm.trader.model import Leg, MarketView, OrderType, OrderView, PositionView, Role, Side, Want
from polymm.trader.decision.planner import Cancel, Place, kept_orders
from polymm.trader.decision.wallet import WalletLimits
from polymm.trader.decision.strategy.common import EPS, entry_size, finite, mark_price, repeated_sell, sellable

THROTTLE_WINDOW_S = 60.0
_PRIORITY = {Role.STOP_LOSS: 0, Role.FLATTEN: 0, Role.TAKE_PROFIT: 1, Role.ENTRY: 2}
PROTECTIVE_ROLES = (Role.STOP_LOSS, Role.FLATTEN)  # exempt from risk.max_orders_per_min (module docstring)
MIN_SLOT_RETRY_S = 0.25  # a slot is never placed more often than this, whatever requote_wait_s/exit_retry_s say
ROLE_WORDS = {Role.ENTRY: "entry", Role.TAKE_PROFIT: "take-profit", Role.STOP_LOSS: "stop-loss", Role.FLATTEN: "flatten"}


class Placement(msgspec.Struct, frozen=True):
    """The last place of one slot (strategy, leg, side, role)."""

    at: float  # unix s of the decision that placed it
    shares: float  # the strategy's position on that leg just before: a fill since then moves it


class RiskState(msgspec.Struct, frozen=True):
    place_times: tuple[float, ...] = ()  # when each order of the last minute was placed (throttle)
    last_flatten_at: dict = msgspec.field(default_factory=dict)  # (strategy, leg) -> unix s
    placed: dict = msgspec.field(default_factory=dict)  # (strategy, leg, side, role) -> Placement (back-off)


def slot_of(want: Want) -> tuple[str, Leg, Side, Role]:
    return (want.strategy, want.leg, want.side, want.role)


def slot_wait(config: Config, strategy: str, role: Role) -> tuple[float, str]:
    """(seconds, the config key it comes from) a slot waits after a place before placing again."""
    params = {"s1": config.s1, "s2": config.s2}.get(strategy)
    key = "requote_wait_s" if role is Role.ENTRY else "exit_retry_s"
    value = float(getattr(params, key, 0.0)) if params is not None else 0.0
    return max(MIN_SLOT_RETRY_S, value), f"{strategy}.{key}"


def backoff_left(
    want: Want,
    state: RiskState,
    config: Config,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    now: float,
) -> float:
    """Seconds the want's slot must still wait before it may be placed again (0: it may go now)."""
    last = state.placed.get(slot_of(want))
    if last is None:
        return 0.0
    if any(
        o.state.working and o.strategy == want.strategy and o.leg is want.leg and o.side is want.side and o.role is want.role
        for o in orders
    ):
        return 0.0
    held = positions.get((want.strategy, want.leg))
    shares = held.shares if held is not None else 0.0
    if (want.side is Side.BUY and shares > last.shares + EPS) or (want.side is Side.SELL and shares < last.shares - EPS):
        return 0.0  # it (or a sibling) filled since: not a rejected or vanished order
    wait, _key = slot_wait(config, want.strategy, want.role)
    # Same comparison as the strategies' own clocks (now - last + EPS >= wait), so a stop the strategy asks for
    # exactly exit_retry_s after the last one is not held back by a hair.
    left = last.at + wait - now
    return left if left > EPS else 0.0


def window_phase(market: MarketView, config: Config, now: float) -> tuple[str, str]:
    """("before" | "open" | "closing" | "ended", words)."""
    if now < market.market.window_start:
        return "before", f"window starts in {market.market.window_start - now:.1f} s: no orders yet"
    if now >= market.market.window_end:
        return "ended", "window ended: no orders; positions held to resolution"
    if market.market.window_end - now <= config.risk.cancel_before_end_s + EPS:
        return "closing", (
            f"window ends in {market.market.window_end - now:.1f} s: all orders cancelled, nothing placed "
            f"(risk.cancel_before_end_s {config.risk.cancel_before_end_s:g})"
        )
    return "open", ""


def feed_problem(market: MarketView, config: Config) -> str | None:
    """Dead or frozen feed (MarketView.fresh, judged from the feed's liveness, never from a quiet book) or crossed."""
    if not market.fresh:
        why = market.stale_reason or f"{market.age_ms / 1000:.1f} s old"
        return f"feed stale ({why}): resting entries cancelled, no new entries"
    if market.crossed:
        return "book crossed: resting entries cancelled, no new entries"
    return None


@dataclass(frozen=True)
class Exposure:
    total_usd: float  # everything below plus unresolved_usd
    by_leg: Mapping[tuple[str, Leg], float]  # (strategy, leg) -> (held + open buys) x best bid
    unresolved_usd: float = 0.0


def exposure(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    unresolved_usd: float = 0.0,
) -> Exposure:
    by_leg: dict[tuple[str, Leg], float] = {}
    for (strategy, leg), pos in positions.items():
        if pos.shares > EPS:
            by_leg[(strategy, leg)] = by_leg.get((strategy, leg), 0.0) + pos.shares * mark_price(market, leg, pos.avg_price)
    for o in orders:
        if o.state.working and o.side is Side.BUY and o.remaining > EPS:
            key = (o.strategy, o.leg)
            by_leg[key] = by_leg.get(key, 0.0) + o.remaining * mark_price(market, o.leg, o.price)
    return Exposure(total_usd=sum(by_leg.values()) + unresolved_usd, by_leg=by_leg, unresolved_usd=unresolved_usd)


def gate(
    wants: Sequence[Want],
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    config: Config,
    unresolved_usd: float = 0.0,
    committed_usd: float | None = None,
    cash_usd: float | None = None,
    wallet: WalletLimits | None = None,
) -> tuple[list[Want], list[str]]:
    """The wants that may stand (see the module docstring), and notes in words. `committed_usd`: the exposure
    of `orders` and `positions` when the caller has it already (else computed here). `cash_usd`: the wallet's
    pUSD when known; new buys then also stay within what it can pay after the working buys (winnings awaiting
    redemption are not cash: the exchange would refuse the order). `wallet`: the limits over every series on the
    wallet (trader/wallet/): new buys stay within the room the other series leave under the wallet cap, and no
    entry at all while a daily loss limit is reached."""
    notes: list[str] = []
    problem = feed_problem(market, config)
    if problem is None and wallet is not None and wallet.halt:
        problem = wallet.halt
    if problem is not None:
        if any(w.role is Role.ENTRY for w in wants) or any(o.role is Role.ENTRY and o.state.working for o in orders):
            notes.append(problem)
        wants = [w for w in wants if w.role is not Role.ENTRY]
    kept = kept_orders(wants, orders, market.market.tick_size)
    committed = exposure(market, orders, positions, unresolved_usd).total_usd if committed_usd is None else committed_usd
    room = config.risk.max_exposure_usd - committed
    cap_words = f"risk.max_exposure_usd {config.risk.max_exposure_usd:g}"
    wallet_room = wallet.room(committed) if wallet is not None else None
    if wallet_room is not None and wallet_room < room:
        room, cap_words = wallet_room, wallet.words()
    if cash_usd is not None:
        spendable = cash_usd - sum(o.remaining * o.price for o in orders if o.state.working and o.side is Side.BUY)
        if spendable < room:
            room, cap_words = spendable, f"cash ${cash_usd:.2f}"
    kept_ids = {o.client_id for o in kept.values()}
    out: list[Want] = []
    for i, w in enumerate(wants):
        if w.side is not Side.BUY or i in kept:
            out.append(w)
            continue
        # A requote: the planner places this buy only once the working buys of its (strategy, leg) it replaces
        # are gone, so their exposure is room for it. Never for other wants: those may go while it is cancelling.
        released = sum(
            o.remaining * mark_price(market, o.leg, o.price)
            for o in orders
            if o.state.working and o.side is Side.BUY and o.strategy == w.strategy and o.leg is w.leg and o.client_id not in kept_ids
        )
        mark = mark_price(market, w.leg, w.price)
        value = w.size * mark
        if value <= room + released + EPS:
            room -= max(0.0, value - released)
            out.append(w)
            continue
        size = entry_size(room + released, mark)
        min_size = market.market.min_order_size
        if w.strategy == "s1":
            min_size = max(min_size, config.s1.min_order_size)
        if size + EPS >= min_size:
            room -= max(0.0, size * mark - released)
            out.append(replace_want(w, size=size, reason=f"{w.reason}; trimmed to {cap_words}"))
            notes.append(f"{w.strategy} {w.leg.value}: entry trimmed {w.size:g} -> {size:g} shares by {cap_words.split(' ')[0]}")
        elif cap_words.startswith("cash"):
            notes.append(f"{w.strategy} {w.leg.value}: no entry, the wallet's {cap_words} pUSD is spent or committed")
        elif cap_words.startswith("wallet"):
            notes.append(f"{w.strategy} {w.leg.value}: no entry, this series' ${committed:.2f} and the other series' "
                         f"${wallet.others_usd:.2f} are at {cap_words.split(' (')[0]}")
        else:
            notes.append(
                f"{w.strategy} {w.leg.value}: no entry, total exposure ${committed:.2f} is at risk.max_exposure_usd "
                f"{config.risk.max_exposure_usd:g}"
            )
    return out, notes


def flatten_wants(
    market: MarketView,
    orders: Sequence[OrderView],
    positions: Mapping[tuple[str, Leg], PositionView],
    config: Config,
    state: RiskState,
    now: float,
) -> tuple[list[Want], RiskState, bool]:
    """Sell every sellable position like a stop-loss. Returns (wants, state, done) where done means nothing
    sellable is left (dust stays, held to resolution)."""
    wants: list[Want] = []
    last = dict(state.last_flatten_at)
    done = True
    for (strategy, leg), pos in sorted(positions.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        if not sellable(pos.shares, market):
            continue
        done = False
        params = config.s2 if strategy == "s2" else config.s1
        sells = [o for o in orders if o.strategy == strategy and o.leg is leg and o.side is Side.SELL and o.state.working]
        leg_wants, last_at = repeated_sell(
            strategy, leg, Role.FLATTEN, pos.shares, sells, last.get((strategy, leg), float("-inf")), params.exit_retry_s,
            params.sl_order_price, market.market.tick_size, now, "flatten by operator",
        )
        wants += leg_wants
        if last_at != float("-inf"):
            last[(strategy, leg)] = last_at
    return wants, replace(state, last_flatten_at=last), done


def gate_actions(
    actions: Sequence[Place | Cancel],
    market: MarketView,
    config: Config,
    state: RiskState,
    now: float,
    *,
    blocked_legs: Mapping[Leg, str] | None = None,
    halt_reason: str = "",
    post_only_only: bool = False,
    orders: Sequence[OrderView] = (),
    positions: Mapping[tuple[str, Leg], PositionView] | None = None,
) -> tuple[list[Place | Cancel], RiskState, list[str], list[tuple[Place, str]]]:
    """Hold back places the exchange would refuse, the slot back-off or the throttle forbids; cancels always
    pass. `orders`/`positions`: our working orders and positions in this market (for the back-off).
    Returns (actions to send, new state, notes in words, [(held place, why in words)])."""
    notes: list[str] = []
    held: list[tuple[Place, str]] = []
    positions = positions or {}
    cancels = [a for a in actions if isinstance(a, Cancel)]
    places = sorted((a for a in actions if isinstance(a, Place)), key=lambda p: _PRIORITY.get(p.want.role, 3))
    recent = tuple(t for t in state.place_times if now - t < THROTTLE_WINDOW_S)
    placed = dict(state.placed)
    allowed: list[Place | Cancel] = []
    # Callers may key legs by Leg or by its value ("up"); Leg's hash is not the string's, so normalise.
    blocked_legs = {Leg(k): v for k, v in (blocked_legs or {}).items()}
    for p in places:
        w = p.want
        why = ""
        if halt_reason:
            why = halt_reason
        elif not market.accepting_orders:
            why = "market not accepting orders"
        elif w.leg in blocked_legs:
            why = f"{w.leg.value} blocked: {blocked_legs[w.leg]}"
        elif post_only_only and (not w.post_only or w.order_type in (OrderType.FAK, OrderType.FOK)):
            why = "exchange accepts post-only orders only"
        elif (left := backoff_left(w, state, config, orders, positions, now)) > 0:
            wait, key = slot_wait(config, w.strategy, w.role)
            words = f"retry in {left:.1f} s after a rejected/vanished order ({key} {wait:g} s)"
            notes.append(f"{w.strategy} {w.leg.value} {ROLE_WORDS.get(w.role, w.role.value)}: {words}")
            held.append((p, words))
            continue
        elif w.role not in PROTECTIVE_ROLES and len(recent) >= config.risk.max_orders_per_min:
            why = f"throttled: {len(recent)} orders in the last minute (risk.max_orders_per_min {config.risk.max_orders_per_min})"
        if why:
            notes.append(f"not placing {w.strategy} {w.leg.value} {w.side.value} {w.size:g} @ {w.price:g} ({w.role.value}): {why}")
            held.append((p, why))
            continue
        recent = recent + (now,)
        pos = positions.get((w.strategy, w.leg))
        placed[slot_of(w)] = Placement(at=now, shares=pos.shares if pos is not None else 0.0)
        allowed.append(p)
    return cancels + allowed, replace(state, place_times=recent, placed=placed), notes, held


def unresolved_value(positions: Sequence[PositionView]) -> float:
    """What positions of ended windows awaiting resolution tie up, at cost (their books are gone)."""
    return sum(p.shares * p.avg_price for p in positions if p.shares > EPS and finite(p.avg_price))


__all__ = [
    "Exposure",
    "MIN_SLOT_RETRY_S",
    "PROTECTIVE_ROLES",
    "Placement",
    "RiskState",
    "backoff_left",
    "exposure",
    "feed_problem",
    "flatten_wants",
    "gate",
    "gate_actions",
    "slot_of",
    "slot_wait",
    "unresolved_value",
    "window_phase",
]
