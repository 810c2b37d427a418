"""What to redeem or merge now, and what the wallet's positions are worth. Pure functions of the Data API
rows, the journal's in-flight set and the time.

* Redeem a condition once any of its rows has been `redeemable` (resolved) for `delay_s` (`first_seen`
  holds when the worker first saw it so): one call clears winners (1 pUSD a share) and losers (0) alike.
* Merge (when enabled) the full Up+Down sets of a condition whose window has ended but which is not yet
  redeemable: the trader no longer trades it, so no working order or position count is disturbed, and
  the pairs' pUSD comes back before resolution.
* Never touch neg-risk rows (these markets are not neg-risk; such a row is someone else's business).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from polymm.trader.redeem.positions import PositionRow

DUST = Decimal("0.000001")  # the tokens' 6 decimals


@dataclass(frozen=True)
class Action:
    kind: str  # "redeem" | "merge"
    condition_id: str
    shares: Decimal  # redeem: winning shares (= the payout in pUSD); merge: full sets merged (= pUSD back)
    slug: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.condition_id}"


@dataclass(frozen=True)
class Worth:
    """The wallet's positions in dollars (Data API prices)."""
    open_value_usd: float = 0.0  # unresolved positions at their current price
    awaiting_usd: float = 0.0  # won, not yet redeemed: shares x 1
    awaiting_count: int = 0  # redeemable positions (winners; losers are worth 0 and not counted)
    unresolved_count: int = 0
    neg_risk_count: int = 0  # rows polymm leaves alone


def end_ts(row: PositionRow) -> float | None:
    try:
        return datetime.fromisoformat(row.end_date.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def worth(rows: list[PositionRow]) -> Worth:
    open_value = awaiting = 0.0
    awaiting_count = unresolved = neg = 0
    for row in rows:
        if row.negative_risk:
            neg += 1
            continue
        if row.size <= 0:
            continue
        if row.redeemable:
            if row.cur_price >= 1:
                awaiting += row.size
                awaiting_count += 1
        else:
            open_value += row.size * row.cur_price
            unresolved += 1
    return Worth(round(open_value, 6), round(awaiting, 6), awaiting_count, unresolved, neg)


def redeemable_conditions(rows: list[PositionRow]) -> set[str]:
    return {r.condition_id.lower() for r in rows if r.redeemable and not r.negative_risk}


def plan(rows: list[PositionRow], busy: set[str], now: float, *, first_seen: dict[str, float], delay_s: float,
         merge: bool, batch: int, limits: dict[str, int] | None = None) -> list[list[Action]]:
    """Batches of what to send now: at most `batch` actions each, and no action in a batch larger than its own
    limit (`limits`: key -> the most it may be sent with, learnt from failed batches: a failing batch is split
    down to single positions). `busy` holds keys not to send now, `first_seen` when each redeemable condition was
    first reported so (missing: now)."""
    by_condition: dict[str, list[PositionRow]] = {}
    for row in rows:
        if not row.negative_risk and Decimal(str(row.size)) >= DUST:
            by_condition.setdefault(row.condition_id.lower(), []).append(row)
    actions: list[Action] = []
    for condition_id, group in sorted(by_condition.items()):
        ends = [t for t in (end_ts(r) for r in group) if t is not None]
        ended_at = max(ends) if ends else None
        slug = group[0].slug
        if any(r.redeemable for r in group):
            if now < first_seen.get(condition_id, now) + delay_s:
                continue
            won = sum((Decimal(str(r.size)) for r in group if r.redeemable and r.cur_price >= 1), Decimal(0))
            action = Action("redeem", condition_id, won, slug)
        elif merge and ended_at is not None and now >= ended_at:
            sizes = {r.outcome_index: Decimal(str(r.size)) for r in group}
            pairs = min(sizes.get(0, Decimal(0)), sizes.get(1, Decimal(0))).quantize(DUST, rounding="ROUND_DOWN")
            if pairs < DUST:
                continue
            action = Action("merge", condition_id, pairs, slug)
        else:
            continue
        if action.key not in busy:
            actions.append(action)
    limits = limits or {}
    size = max(1, batch)
    cap = {a.key: max(1, min(size, limits.get(a.key, size))) for a in actions}
    out: list[list[Action]] = []
    # Grouped by limit, most limited first: what a failure singled out goes alone (or with others split the same
    # way), and the healthy positions stay together in full batches.
    for limit in sorted(set(cap.values())):
        group = sorted((a for a in actions if cap[a.key] == limit), key=lambda a: a.key)
        out += [group[i:i + limit] for i in range(0, len(group), limit)]
    return out
