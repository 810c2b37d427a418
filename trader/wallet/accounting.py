"""What the wallet-wide limits count, from every series' published record. Pure: records, liveness and the
clock in, numbers and words out (coordinator.py does the I/O; tests drive this directly).

- A running trader's exposure counts as it published it (at most a decision old).
- A trader that is gone (crashed, killed, stopped) still has positions: its last exposure keeps counting, less
  the open buys that are no longer there (cancelled at its clean stop, or by the leader's reaper after a crash),
  until its window ended DEAD_GRACE_S ago (by then its positions have resolved: they tie up nothing a decision
  could add to). When the same series starts again it overwrites its own slot: never counted twice.
- Today's P&L (UTC day) counts for every series that traded today, running or not: a loss does not go away
  because its trader stopped. A record of another day counts nothing.
- The caps in force are the smallest any running series has (the file is read by each trader separately: while
  an operator reloads them one by one, the strictest wins).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from polymm.trader.decision.wallet import WalletLimits
from polymm.trader.wallet.records import RUNNING, SeriesRecord

DEAD_GRACE_S = 900.0
EPS = 1e-9


def utc_day(ts: float) -> int:
    t = time.gmtime(ts)
    return t.tm_year * 10000 + t.tm_mon * 100 + t.tm_mday


@dataclass(frozen=True)
class Counted:
    """One series as the wallet's limits count it now (also a row of `mmctl status`'s wallet table)."""

    series: str
    pid: int
    running: bool
    exposure_usd: float  # counted against the wallet cap
    pnl_today_usd: float  # counted against the daily loss limit
    note: str = ""  # why it counts differently from what it published, in words


def count(record: SeriesRecord, alive: bool, now: float) -> Counted:
    running = alive and record.state == RUNNING
    pnl = record.pnl_today_usd if record.day == utc_day(now) else 0.0
    if running:
        return Counted(record.series, record.pid, True, max(0.0, record.exposure_usd), pnl)
    gone = "stopped" if record.state != RUNNING else f"trader (pid {record.pid}) not running"
    if now > record.window_end + DEAD_GRACE_S:
        return Counted(record.series, record.pid, False, 0.0, pnl,
                       f"{gone}; its window ended {int((now - record.window_end) // 60)} min ago: exposure not counted")
    # A clean stop cancelled its buys (and published 0 of them); after a crash they count until the reaper ran.
    buys_gone = record.state != RUNNING or record.reaped_at > 0
    exposure = record.exposure_usd - (record.open_buys_usd if buys_gone else 0.0)
    return Counted(record.series, record.pid, False, max(0.0, exposure), pnl,
                   f"{gone}; its last exposure counts until its window has ended")


@dataclass(frozen=True)
class WalletState:
    others_usd: float  # the other series' counted exposure
    cap_usd: float  # wallet.max_exposure_usd in force (0 = none)
    loss_limit_usd: float  # wallet.max_daily_loss_usd in force (0 = none)
    pnl_today_usd: float  # every series' P&L today, this one's included
    halt: str  # why no entry now ("" = none)
    rows: tuple[Counted, ...]  # every series' row, this one's first

    def limits(self) -> WalletLimits:
        return WalletLimits(others_usd=self.others_usd, cap_usd=self.cap_usd, halt=self.halt)


def _strictest(values) -> float:
    positive = [v for v in values if v > EPS]
    return min(positive) if positive else 0.0


def wallet_state(own: SeriesRecord, others: list[tuple[SeriesRecord, bool]], now: float) -> WalletState:
    """`own`: this series' record as it would publish it now; `others`: (record, its trader alive) of the rest."""
    mine = count(own, True, now)
    rows = [count(r, alive, now) for r, alive in others]
    running = [own] + [r for (r, alive), c in zip(others, rows) if c.running]
    cap = _strictest(r.cap_usd for r in running)
    loss_limit = _strictest(r.loss_limit_usd for r in running)
    pnl_total = mine.pnl_today_usd + sum(c.pnl_today_usd for c in rows)
    halt = ""
    if loss_limit > 0 and pnl_total <= -loss_limit + EPS:
        halt = (f"wallet loss today ${-pnl_total:.2f} reached wallet.max_daily_loss_usd {loss_limit:g}: "
                "no new entries until 00:00 UTC (exits go on)")
    elif own.own_loss_limit_usd > 0 and mine.pnl_today_usd <= -own.own_loss_limit_usd + EPS:
        halt = (f"{own.series} loss today ${-mine.pnl_today_usd:.2f} reached risk.max_daily_loss_usd "
                f"{own.own_loss_limit_usd:g}: no new entries until 00:00 UTC (exits go on)")
    return WalletState(others_usd=sum(c.exposure_usd for c in rows), cap_usd=cap, loss_limit_usd=loss_limit,
                       pnl_today_usd=pnl_total, halt=halt, rows=(mine, *rows))


def claim_fits(own_after_usd: float, others_usd: float, cap_usd: float) -> bool:
    """Whether this series may publish `own_after_usd` (its exposure with the buys it is about to send)."""
    return cap_usd <= 0 or own_after_usd + others_usd <= cap_usd + 1e-6
