"""Our fills: one store keyed by trade id (and our order id), fed by user-channel `trade` events and by
REST `/data/trades` after any gap. Pure: no I/O, no clock.

Exchange quirks handled here:
- The same trade id is re-sent on every status change (MATCHED -> MINED -> CONFIRMED, or RETRYING ->
  FAILED), possibly duplicated and out of order. Statuses only move forward by rank, so a replayed
  MATCHED after CONFIRMED, or any duplicate, changes nothing.
- FAILED reverses the fill: it stays in the store (so a late MATCHED cannot resurrect it) but counts zero.
- The top-level `size`/`price`/`side` of a trade describe the *taker*. As a maker our fill is the entry
  in `maker_orders` whose `order_id` is ours; one trade can hold several of our maker orders, and a
  maker entry can be on the *other* token (our BUY Down rests opposite a BUY Up taker: the exchange
  mints a pair), so the leg comes from the maker entry's own `asset_id`, never from the trade's.
- Older maker entries carry no `side`; then our own order says which side it was. When we do not know the
  order either (after a restart without its journal entry, e.g. the recorded `user_trade1`), the fill is
  kept *pending* - never dropped - until the order's side is learnt: the caller looks the order up
  (resolve_side) and, if the exchange no longer has it, falls back to the matching rule (infer_side): a
  maker on the taker's own token took the other side; a maker on the other token (a mint or merge) the
  same side.
- Taker fees: trader/decision/fees.py's taker_fee with the market's schedule (makers pay none): its rate and
  exponent (`fd.r`, `fd.e` of the market info). A trade's `fee_rate_bps` is NOT the rate: under order versions 2
  and 3 no fee is signed in the order, py-clob-client-v2 computes every fee from the market info
  (`adjust_buy_amount_for_fees`) and reads `fee_rate_bps` only as the V1 order field GET /fee-rate gives (a base
  fee the order had to sign, e.g. 1000), never from a trade; takers have no rebate tier (the rebates go to makers,
  docs "Maker Rebates Program"). docs/venue.md, "Fees", has the sources.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable

from polymm.trader.decision.fees import FeeSchedule, taker_fee
from polymm.trader.model import FillView, Leg, Side

STATUS_RANK = {"MATCHED": 0, "RETRYING": 1, "MINED": 2, "CONFIRMED": 3, "FAILED": 4}


def normalise_trade_status(raw: str) -> str:
    """`TRADE_STATUS_CONFIRMED` (REST) / `confirmed` / `MATCHED_NOT_BROADCASTED` -> the bare upper-case status."""
    s = (raw or "").strip().upper()
    if s.startswith("TRADE_STATUS_"):
        s = s[len("TRADE_STATUS_"):]
    if s.startswith("MATCHED"):
        return "MATCHED"
    return s


@dataclass(frozen=True)
class MakerLeg:
    order_id: str
    owner: str
    maker_address: str
    asset_id: str
    price: float
    matched_amount: float
    side: str | None  # BUY/SELL, absent in older messages


@dataclass(frozen=True)
class TradeReport:
    """One trade as the exchange reports it (WS or REST), already decoded and normalised."""

    trade_id: str
    status: str  # normalised
    market: str
    asset_id: str  # the taker's token
    side: str  # the taker's side
    size: float  # the taker's size
    price: float  # the taker's price
    fee_rate_bps: float
    match_time: float  # unix seconds
    taker_order_id: str
    trader_side: str  # MAKER | TAKER (our role, as the exchange says)
    owner: str  # api key of the trade's owner
    maker_address: str
    maker_orders: tuple[MakerLeg, ...] = ()


@dataclass(frozen=True)
class OrderInfo:
    """What we know of one of our orders (from the order book or the journal)."""

    client_id: str | None
    strategy: str
    leg: Leg
    side: Side


@dataclass(frozen=True)
class TokenInfo:
    condition_id: str
    leg: Leg
    fee: FeeSchedule  # the market's taker fee schedule


EXTERNAL = "external"  # strategy name for fills of our account whose order we never placed


@dataclass
class _Fill:
    view: FillView
    condition_id: str
    rank: int
    seq: int = 0  # the order we learnt our fills in: within one match second, the causal order


def _causal(fill: _Fill) -> tuple:
    """Fills in the order they happened: by match time, and within one (the exchange stamps whole seconds: a BUY
    and the SELL closing it often share one) by the order we learnt them, never by trade id."""
    return (fill.view.ts, fill.seq)


class FillStore:
    """All our fills. `lookup_order(order_id) -> OrderInfo | None`, `lookup_token(token_id) -> TokenInfo | None`,
    `our_owner` is our API key and `our_address` our funder (to recognise fills of orders we do not know)."""

    def __init__(self, lookup_order: Callable[[str], OrderInfo | None],
                 lookup_token: Callable[[str], TokenInfo | None], our_owner: str = "", our_address: str = "") -> None:
        self._lookup_order = lookup_order
        self._lookup_token = lookup_token
        self._owner = our_owner
        self._address = our_address.lower()
        self._fills: dict[tuple[str, str], _Fill] = {}
        # order id -> its fills: positions() runs on every decision and asks this per order, so it must
        # not scan every fill of the day
        self._by_order: dict[str, list[_Fill]] = {}
        # market -> its fills: every write publishes the current market's positions (and pending_resolution folds
        # the older ones), which must not scan or sort every fill kept for a day (issue 26)
        self._by_market: dict[str, list[_Fill]] = {}
        # trades we could not attribute, in words (for logs/tests); the last few only, never growing
        self.ignored: deque[str] = deque(maxlen=100)
        # maker legs of ours whose side nobody has told us yet: order id -> trade id -> latest report
        self._pending: dict[str, dict[str, TradeReport]] = {}
        self._sides: dict[str, Side] = {}  # sides learnt for such orders (lookup or matching rule)
        self._seq = 0  # fills learnt so far (their causal order within one match second)

    def set_identity(self, our_owner: str, our_address: str) -> None:
        self._owner = our_owner
        self._address = our_address.lower()

    # ---- input ------------------------------------------------------------------------------------
    def apply(self, trade: TradeReport) -> list[tuple[FillView, str | None]]:
        """Add or advance our fills of one trade report. Returns [(fill, previous_status)] for each
        fill that is new (previous None) or whose status moved; duplicates and stale reports return []."""
        rank = STATUS_RANK.get(trade.status)
        if rank is None:
            self.ignored.append(f"trade {trade.trade_id}: unknown status {trade.status!r}")
            return []
        changes = []
        for order_id, info, token, side, price, size, role in self._our_parts(trade):
            key = (trade.trade_id, order_id)
            current = self._fills.get(key)
            if current is None:
                fee = 0.0
                if role == "taker":
                    fee = taker_fee(size, price, token.fee)  # the market's schedule, whatever fee_rate_bps says
                view = FillView(
                    trade_id=trade.trade_id, order_id=order_id, client_id=info.client_id if info else None,
                    strategy=info.strategy if info else EXTERNAL, leg=token.leg, side=side, price=price,
                    size=size, fee=fee, role=role, status=trade.status, ts=trade.match_time,
                )
                self._seq += 1
                fill = _Fill(view, token.condition_id, rank, self._seq)
                self._fills[key] = fill
                self._by_order.setdefault(order_id, []).append(fill)
                self._by_market.setdefault(token.condition_id, []).append(fill)
                changes.append((view, None))
            elif rank > current.rank:
                previous = current.view.status
                current.view = replace(current.view, status=trade.status)
                current.rank = rank
                changes.append((current.view, previous))
        return changes

    def attribute(self, order_id: str, info: OrderInfo) -> list[FillView]:
        """An order we did not know when its fills arrived turned out to be ours (journal / reconcile)."""
        out = []
        for fill in self._by_order.get(order_id, ()):
            if fill.view.strategy == EXTERNAL:
                fill.view = replace(fill.view, client_id=info.client_id, strategy=info.strategy)
                out.append(fill.view)
        return out

    # ---- maker legs without a side ---------------------------------------------------------------
    def pending_orders(self) -> list[str]:
        """Order ids of ours with fills waiting for their side (look each up, then resolve_side)."""
        return list(self._pending)

    def resolve_side(self, order_id: str, side: Side) -> list[tuple[FillView, str | None]]:
        """The side of a pending order is known: its fills are added (and returned, as apply() returns)."""
        reports = self._pending.pop(order_id, None)
        self._sides[order_id] = Side(side)
        if len(self._sides) > 10_000:  # only orders that ever lacked a side: rare; never growing without bound
            self._sides.pop(next(iter(self._sides)))
            self._sides[order_id] = Side(side)
        changes = []
        for report in (reports or {}).values():
            changes.extend(c for c in self.apply(report) if c[0].order_id == order_id)
        return changes

    def infer_side(self, order_id: str) -> Side | None:
        """The side the matching rule implies for a pending maker order (None when nothing is pending): a
        maker on the taker's token took the opposite side; on the other token (mint/merge) the same side."""
        for report in self._pending.get(order_id, {}).values():
            for leg in report.maker_orders:
                if leg.order_id == order_id and report.side in ("BUY", "SELL"):
                    taker = Side(report.side)
                    if leg.asset_id == report.asset_id:
                        return Side.SELL if taker is Side.BUY else Side.BUY
                    return taker
        return None

    def _keep_pending(self, order_id: str, trade: TradeReport) -> None:
        reports = self._pending.setdefault(order_id, {})
        held = reports.get(trade.trade_id)
        if held is None or STATUS_RANK[trade.status] > STATUS_RANK.get(held.status, -1):
            reports[trade.trade_id] = trade
        if len(self._pending) > 1000:  # a flood of unknown orders must not grow memory: oldest go, loudly
            dropped = next(iter(self._pending))
            del self._pending[dropped]
            self.ignored.append(f"order {dropped}: pending maker fills dropped (over 1000 orders pending)")

    def _our_parts(self, trade: TradeReport):
        seen: set[str] = set()
        if trade.taker_order_id:
            info = self._lookup_order(trade.taker_order_id)
            if info is not None or (trade.trader_side == "TAKER" and self._is_ours(trade.owner, trade.maker_address)):
                token = self._lookup_token(trade.asset_id)
                if token is None:
                    self.ignored.append(f"trade {trade.trade_id}: token {trade.asset_id} of no market we trade")
                else:
                    seen.add(trade.taker_order_id)
                    side = info.side if info else Side(trade.side.upper())
                    yield trade.taker_order_id, info, token, side, trade.price, trade.size, "taker"
        for leg in trade.maker_orders:
            if leg.order_id in seen:
                continue
            info = self._lookup_order(leg.order_id)
            if info is None and not self._is_ours(leg.owner, leg.maker_address):
                continue
            token = self._lookup_token(leg.asset_id)
            if token is None:
                self.ignored.append(f"trade {trade.trade_id}: maker token {leg.asset_id} of no market we trade")
                continue
            seen.add(leg.order_id)
            if info is not None:
                side = info.side
            elif leg.side:
                side = Side(leg.side.upper())
            elif leg.order_id in self._sides:
                side = self._sides[leg.order_id]
            else:
                # Ours (owner/address) but neither the message nor our book says BUY or SELL: keep it until
                # the caller has looked the order up. Never dropped: this is money.
                self._keep_pending(leg.order_id, trade)
                continue
            yield leg.order_id, info, token, side, leg.price, leg.matched_amount, "maker"

    def _is_ours(self, owner: str, address: str) -> bool:
        return bool(self._owner and owner == self._owner) or bool(self._address and address.lower() == self._address)

    # ---- output -----------------------------------------------------------------------------------
    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]:
        """Our fills in causal order (`_causal`)."""
        kept = [f for f in self._of(condition_id) if since is None or f.view.ts >= since]
        kept.sort(key=_causal)
        return [f.view for f in kept]

    def fills_with_market(self, condition_id: str | None = None) -> list[tuple[str, FillView]]:
        kept = sorted(self._of(condition_id), key=_causal)
        return [(f.condition_id, f.view) for f in kept]

    def _of(self, condition_id: str | None):
        if condition_id is None:
            return self._fills.values()
        return self._by_market.get(condition_id, ())

    def matched_shares(self, order_id: str) -> float:
        """Shares of one of our orders matched in trades that have not failed."""
        return round(sum(f.view.size for f in self._by_order.get(order_id, ()) if f.view.status != "FAILED"), 6)

    def covered_shares(self, order_id: str) -> float:
        """Shares of one of our orders that some trade report covers, whatever its status (FAILED
        included): what an order's exchange-reported matched size may exceed only until its trade arrives."""
        return round(sum(f.view.size for f in self._by_order.get(order_id, ())), 6)

    def markets(self) -> set[str]:
        return set(self._by_market)

    def forget_market(self, condition_id: str) -> int:
        """Drop every fill of one settled market (its P&L was folded by the caller). Returns how many.
        A late report of a forgotten trade would be added again, so only markets long over are forgotten."""
        keys = [k for k, f in self._fills.items() if f.condition_id == condition_id]
        for key in keys:
            del self._fills[key]
            order_id = key[1]
            left = [f for f in self._by_order.get(order_id, ()) if f.condition_id != condition_id]
            if left:
                self._by_order[order_id] = left
            else:
                self._by_order.pop(order_id, None)
        self._by_market.pop(condition_id, None)
        return len(keys)

    def condition_of(self, trade_id: str, order_id: str) -> str | None:
        """The market of one of our fills (the ledger files each fill under its window)."""
        fill = self._fills.get((trade_id, order_id))
        return fill.condition_id if fill is not None else None

    def latest_match_time(self) -> float | None:
        return max((f.view.ts for f in self._fills.values()), default=None)

    def __len__(self) -> int:
        return len(self._fills)
