"""What each window (hour, day) earned: `mmctl history` and the report's numbers. Pure: ledger rows in, rows out.

P&L comes from the trader's own fold (trader/positions.py: average cost, taker fees, FAILED fills count zero), so
the history of a run equals the P&L the trader reported, to the cent. Per window:
- trades: fills (not FAILED); volume: sum of price x shares (pUSD); maker share: maker volume / volume
- fees: taker fees paid (pUSD)
- realised: P&L of shares bought and sold within the window, net of fees
- payout: what resolution paid for the shares still held, less what they cost ((1 or 0 - avg) x shares);
  `payout_pusd` (JSON/CSV) is the gross pUSD paid
- net: realised + payout - the whole P&L of the window once it resolved; while unresolved, held shares count
  nothing yet (`open_shares` says how many)
Hours and days group windows by their start, so a window's P&L (resolution included) lands in one row; `series`
groups them by market series (btc-15m, eth-5m, ...), and `series=` keeps only some.
Totals: the same sums, the win rate (windows with net > 0 among windows that traded), the best and worst window
and the maximum drawdown of cumulative net over windows in start order.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

from ..model import FillView, Leg, Side
from ..decision.positions import fold

BY = ("window", "hour", "day", "series")
DEFAULT_SERIES = "btc-15m"  # the series of a window a ledger of before series recorded


@dataclass(frozen=True)
class WindowInfo:
    condition_id: str
    window_start: float
    window_end: float | None
    resolved_leg: str | None  # "up" | "down" | None
    series: str = DEFAULT_SERIES


@dataclass
class Row:
    label: str  # window start (and condition id prefix), hour or day, UTC
    start: float  # unix seconds of the first window in the row
    windows: int = 0
    trades: int = 0
    volume: float = 0.0
    maker_volume: float = 0.0
    fees: float = 0.0
    realised: float = 0.0
    payout: float = 0.0
    payout_pusd: float = 0.0
    net: float = 0.0
    open_shares: float = 0.0
    unresolved: int = 0  # windows in the row with shares held and no resolution yet
    condition_id: str | None = None  # --by window only
    series: str | None = None  # the window's series (--by window), the group's (--by series)

    @property
    def maker_share(self) -> float | None:
        return round(self.maker_volume / self.volume, 4) if self.volume > 0 else None

    def add(self, other: "Row") -> None:
        for name in ("windows", "trades", "volume", "maker_volume", "fees", "realised", "payout", "payout_pusd",
                     "net", "open_shares", "unresolved"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def rounded(self) -> "Row":
        for name in ("volume", "maker_volume", "fees", "realised", "payout", "payout_pusd", "net", "open_shares"):
            setattr(self, name, round(float(getattr(self, name)), 6))
        return self

    def as_dict(self) -> dict:
        out = asdict(self)
        out["maker_share"] = self.maker_share
        return out


@dataclass
class Totals:
    rows: int = 0
    windows: int = 0
    trades: int = 0
    volume: float = 0.0
    maker_share: float | None = None
    fees: float = 0.0
    realised: float = 0.0
    payout: float = 0.0
    payout_pusd: float = 0.0
    net: float = 0.0
    open_shares: float = 0.0
    unresolved: int = 0
    win_rate: float | None = None  # windows with net > 0 / windows that traded
    best_window: dict | None = None  # {"label", "condition_id", "net"}
    worst_window: dict | None = None
    max_drawdown: float = 0.0  # largest fall of cumulative net from a previous peak (pUSD, >= 0)


@dataclass
class History:
    by: str
    since: float | None
    until: float | None
    rows: list[Row] = field(default_factory=list)
    windows: list[Row] = field(default_factory=list)  # always per window (the report plots these)
    totals: Totals = field(default_factory=Totals)
    modes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"by": self.by, "since": self.since, "until": self.until, "modes": self.modes,
                "rows": [r.as_dict() for r in self.rows], "totals": asdict(self.totals)}


def window_row(info: WindowInfo, fills: list[FillView]) -> Row:
    """One window's numbers from its fills (any order; folded in match order)."""
    live = sorted((f for f in fills if f.status != "FAILED"), key=lambda f: (f.ts, f.trade_id, f.order_id))
    row = Row(label=_label(info.window_start, "window"), start=info.window_start, windows=1,
              condition_id=info.condition_id, series=info.series)
    row.trades = len(live)
    row.volume = sum(f.price * f.size for f in live)
    row.maker_volume = sum(f.price * f.size for f in live if f.role == "maker")
    row.fees = sum(f.fee for f in live)
    cond = info.condition_id
    trading = fold(((cond, f) for f in live), {})
    row.realised = sum(p.realised_pnl for p in trading.values())
    winner = Leg(info.resolved_leg) if info.resolved_leg in ("up", "down") else None
    held = sum(p.shares for p in trading.values())
    if winner is None:
        row.open_shares = held
        row.unresolved = int(abs(held) > 1e-9)
        row.net = row.realised
    else:
        resolved = fold(((cond, f) for f in live), {cond: winner})
        row.net = sum(p.realised_pnl for p in resolved.values())
        row.payout = row.net - row.realised
        row.payout_pusd = sum((p.shares for (_, _, leg), p in trading.items() if leg is winner), 0.0)
    return row.rounded()


def build(windows: Iterable[WindowInfo], fills: Iterable[tuple[str, FillView]], by: str = "window",
          since: float | None = None, until: float | None = None, modes: Iterable[str] = (),
          series: Iterable[str] | None = None) -> History:
    """History of the windows that started in [since, until) and traded at least once (of `series` only, when
    given)."""
    if by not in BY:
        raise ValueError(f"--by {by!r}: expected one of {', '.join(BY)}")
    wanted = set(series) if series is not None else None
    info = {w.condition_id: w for w in windows}
    per_window: dict[str, list[FillView]] = {}
    for cond, fill in fills:
        per_window.setdefault(cond, []).append(fill)
    rows = []
    for cond, window_fills in per_window.items():
        w = info.get(cond) or WindowInfo(cond, min(f.ts for f in window_fills), None, None)
        if (since is not None and w.window_start < since) or (until is not None and w.window_start >= until):
            continue
        if wanted is not None and w.series not in wanted:
            continue
        rows.append(window_row(w, window_fills))
    rows.sort(key=lambda r: (r.start, r.condition_id or ""))
    history = History(by=by, since=since, until=until, windows=rows, modes=sorted(set(modes)))
    history.rows = rows if by == "window" else _group(rows, by)
    history.totals = totals(rows)
    return history


def _group(rows: list[Row], by: str) -> list[Row]:
    groups: dict[str, Row] = {}
    for r in rows:
        label = (r.series or DEFAULT_SERIES) if by == "series" else _label(r.start, by)
        group = groups.get(label)
        if group is None:
            group = groups[label] = Row(label=label, start=r.start if by == "series" else _floor(r.start, by),
                                        series=label if by == "series" else None)
        group.add(r)
    out = [g.rounded() for g in groups.values()]
    return sorted(out, key=lambda g: g.label) if by == "series" else out


def totals(windows: list[Row]) -> Totals:
    t = Totals(rows=len(windows))
    maker = 0.0
    peak = cumulative = 0.0
    for r in windows:
        t.windows += r.windows
        t.trades += r.trades
        t.volume += r.volume
        maker += r.maker_volume
        t.fees += r.fees
        t.realised += r.realised
        t.payout += r.payout
        t.payout_pusd += r.payout_pusd
        t.net += r.net
        t.open_shares += r.open_shares
        t.unresolved += r.unresolved
        cumulative += r.net
        peak = max(peak, cumulative)
        t.max_drawdown = max(t.max_drawdown, peak - cumulative)
    if windows:
        t.win_rate = round(sum(1 for r in windows if r.net > 0) / len(windows), 4)
        best = max(windows, key=lambda r: r.net)
        worst = min(windows, key=lambda r: r.net)
        t.best_window = {"label": best.label, "condition_id": best.condition_id, "net": best.net}
        t.worst_window = {"label": worst.label, "condition_id": worst.condition_id, "net": worst.net}
    t.maker_share = round(maker / t.volume, 4) if t.volume > 0 else None
    for name in ("volume", "fees", "realised", "payout", "payout_pusd", "net", "open_shares", "max_drawdown"):
        setattr(t, name, round(getattr(t, name), 6))
    return t


def _floor(ts: float, by: str) -> float:
    step = 3600 if by == "hour" else 86400
    return float(int(ts) // step * step)


def _label(ts: float, by: str) -> str:
    fmt = {"window": "%Y-%m-%d %H:%M:%S", "hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d"}[by]
    return time.strftime(fmt, time.gmtime(ts))


def fill_view(trade_id: str, order_id: str, client_id: str | None, strategy: str, leg: str, side: str, price: float,
              size: float, fee: float, role: str, status: str, ts: float) -> FillView:
    return FillView(trade_id=trade_id, order_id=order_id, client_id=client_id, strategy=strategy or "external",
                    leg=Leg(leg), side=Side(side), price=price, size=size, fee=fee, role=role or "", status=status, ts=ts)
