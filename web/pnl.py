"""P&L from the trader's ledger (read-only, through the trader's own query: polymm.trader.ledger, as `mmctl
history` and `polymm-report` read it): today's windows and the whole ledger, as totals and as cumulative curves
for the page's plots.

Reading a large ledger takes a moment, so a result is kept until the ledger's files change (and at most
`MIN_REFRESH_S` between reads while the trader writes).
"""
from __future__ import annotations

import calendar
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from polymm.trader.ledger import LedgerReadError, load_history

MIN_REFRESH_S = 5.0
MAX_POINTS = 2000  # a year of 15-minute windows is 35,000: the curve keeps its shape with far fewer points


@dataclass
class Curve:
    """Cumulative net P&L after each window: x = the window's start (unix seconds), y = pUSD."""

    points: list[tuple[float, float]] = field(default_factory=list)
    totals: dict = field(default_factory=dict)  # the history's totals (net, realised, payout, fees, trades, ...)

    def as_dict(self) -> dict:
        return {"points": [[t, y] for t, y in self.points], "totals": self.totals}


@dataclass
class Pnl:
    today: Curve
    all: Curve
    ledger: str
    day_start: float  # UTC midnight the "today" curve starts from
    problem: str | None = None  # the ledger could not be read: why, in words

    def as_dict(self) -> dict:
        return {"today": self.today.as_dict(), "all": self.all.as_dict(), "ledger": self.ledger,
                "day_start": self.day_start, "problem": self.problem}


def utc_midnight(now: float) -> float:
    return float(calendar.timegm(time.gmtime(now)[:3] + (0, 0, 0)))


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points of a curve, keeping the first, the last and every n-th between (a cumulative curve
    drawn through them keeps its shape; every point of a short ledger is kept)."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def curve(history) -> Curve:
    total, points = 0.0, []
    for row in history.windows:
        total += row.net
        points.append((float(row.start), round(total, 6)))
    totals = {k: getattr(history.totals, k) for k in ("windows", "trades", "volume", "fees", "realised", "payout",
                                                      "net", "unresolved", "max_drawdown")}
    return Curve(thin(points), totals)


class PnlReader:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._cached: Pnl | None = None
        self._key: tuple | None = None
        self._read_at = float("-inf")

    def _files_key(self, day_start: float) -> tuple:
        key: list = [day_start]
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.path}{suffix}")
                key += [st.st_mtime_ns, st.st_size]
            except OSError:
                key += [None, None]
        return tuple(key)

    def read(self, now: float | None = None) -> Pnl:
        """Today's and all of the ledger's P&L. Never raises: a ledger that cannot be read gives empty curves and
        the reason in `problem`."""
        now = time.time() if now is None else now
        day_start = utc_midnight(now)
        key = self._files_key(day_start)
        fresh = time.monotonic() - self._read_at < MIN_REFRESH_S
        if self._cached is not None and (key == self._key or fresh):
            return self._cached
        try:
            everything = load_history(self.path, "window")
            today = load_history(self.path, "window", since=day_start)
            result = Pnl(curve(today), curve(everything), str(self.path), day_start)
        except LedgerReadError as exc:
            result = Pnl(Curve(), Curve(), str(self.path), day_start, problem=str(exc))
        self._cached, self._key, self._read_at = result, key, time.monotonic()
        return result
