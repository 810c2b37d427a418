"""`mmctl status` over every series of the host: which series run here, one line per series, the wallet they share,
and every series' warnings; the exit code is the worst series'. `mmctl -m eth-5m status` shows one series' whole
screen (status.py), as `mmctl status` always did for the default series alone.

A series "runs here" when its trader's control socket exists (a trader removes it when it stops; one that died
leaves it, and shows as down), or its feed's segment exists and was not closed by a clean stop (a dead feed shows as
down; a series stopped on purpose is not listed), under the names the series derives (polymm/series.py). The
default series is always shown; on a host that runs only it, `mmctl status` is exactly the single screen it always
was.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from polymm import series as series_mod
from polymm.ctl import protocol as p
from polymm.ctl import render
from polymm.ctl import status as status_view

SHM_DIR = Path("/dev/shm")


def present(socket_base: str, shm_base: str) -> list[str]:
    """The series running on this host (see the module docstring; the default one always), catalogue order."""
    out = []
    for name in series_mod.ALL_NAMES:
        s = series_mod.parse(name)
        if s.is_default or os.path.exists(series_mod.socket_path(s, socket_base)) or _feed_not_stopped(
                series_mod.shm_name(s, shm_base)):
            out.append(name)
    return out


def _feed_not_stopped(shm_name: str) -> bool:
    if not (SHM_DIR / shm_name).exists():
        return False
    try:
        from polymm.feed import shm  # numpy: only once a segment of another series exists

        with shm.Reader(shm_name) as reader:
            return reader.snapshot().status != "stopped"
    except Exception:  # noqa: BLE001 - a segment that cannot be read is a problem status shows in words
        return True


# The health classes from least to most severe: the worst series decides the exit code. Busy (every control slot
# of a running trader taken) says nothing wrong, only that its health could not be asked now: worse than paused, not
# as bad as a warning.
_SEVERITY = {status_view.EXIT_HEALTHY: 0, status_view.EXIT_PAUSED: 1, status_view.EXIT_BUSY: 2,
             status_view.EXIT_UNHEALTHY: 3, status_view.EXIT_FEED_DOWN: 5}


def severity(code: int) -> int:
    """Trader down (3-7) is the worst; a code this mmctl does not know counts as unhealthy."""
    if code in _SEVERITY:
        return _SEVERITY[code]
    return 6 if 3 <= code <= 7 else 4


@dataclass(frozen=True)
class Overview:
    views: dict[str, status_view.StatusView]

    @property
    def worst(self) -> status_view.StatusView:
        return max(self.views.values(), key=lambda v: severity(v.exit_code))

    @property
    def exit_code(self) -> int:
        return self.worst.exit_code

    def wallet(self) -> p.WalletInfo | None:
        """The wallet's series as a running trader last read them (any running trader: they share one record)."""
        replies = [v.trader for v in self.views.values() if v.trader is not None and v.trader.wallet is not None]
        return max(replies, key=lambda t: t.now).wallet if replies else None


def gather(names: list[str], ask: Callable[[str], status_view.StatusView]) -> Overview:
    return Overview({name: ask(name) for name in names})


def overview_json(overview: Overview) -> dict[str, Any]:
    wallet = overview.wallet()
    worst = overview.worst
    return {
        "verdict": worst.verdict, "exit_code": overview.exit_code,
        "healthy": all(v.healthy for v in overview.views.values()),
        "series": {name: status_view.status_json(view) for name, view in overview.views.items()},
        "wallet": p.to_builtins(wallet) if wallet is not None else None,
    }


def render_overview(overview: Overview, now: float) -> str:
    rows = []
    for name, view in overview.views.items():
        t, feed = view.trader, view.feed
        left = (t.window_end - now) if t is not None and t.window_end else None
        total = next((e.usd for e in t.exposure if e.scope == "total"), None) if t is not None else None
        rows.append((
            name, feed.status if feed.available else "down", t.state if t is not None else "down",
            f"{render.number(left, 0)}s" if left is not None and left > 0 else render.EMPTY,
            render.money(total), render.money(t.realised_pnl + t.unrealised_pnl, signed=True) if t else render.EMPTY,
            status_view.VERDICT_WORDS.get(view.verdict, "UNHEALTHY"),
        ))
    blocks = [render.heading("series") + "\n" + render.table(
        ("series", "feed", "trader", "window left", "exposure", "P&L", "verdict"), rows)]
    wallet = overview.wallet()
    if wallet is not None:
        cap = render.money(wallet.cap_usd) if wallet.cap_usd > 0 else "none (wallet.max_exposure_usd = 0)"
        loss = render.money(wallet.loss_limit_usd) if wallet.loss_limit_usd > 0 else "none"
        lines = [render.table(None, [
            ("WALLET", f"exposure {render.money(wallet.exposure_usd)} of cap {cap}",
             f"P&L today {render.money(wallet.pnl_today_usd, signed=True)} (loss limit {loss})"),
            ("leader", f"{wallet.leader_series or render.EMPTY} (pid {wallet.leader_pid or render.EMPTY}): "
                       "heartbeats, redemption, dead series' orders"),
        ])]
        series_rows = [(r.series, "running" if r.running else "not running", render.money(r.exposure_usd),
                        render.money(r.pnl_today_usd, signed=True), r.note or "") for r in wallet.series]
        lines.append(render.table(("series", "trader", "counted", "P&L today", "note"), series_rows))
        if wallet.halt:
            lines.append(f"no entries: {wallet.halt}")
        blocks.append("\n".join(lines))
    worst = overview.worst
    warnings = [f"{name}: {w}" for name, view in overview.views.items() for w in view.warnings]
    verdict = status_view.VERDICT_WORDS.get(worst.verdict, "UNHEALTHY")
    if warnings:
        verdict += f" ({len(warnings)} warning{'s' * (len(warnings) != 1)})\n" + render.bullets(warnings)
    blocks.append(verdict)
    blocks.append(f"one series' whole screen: mmctl -m SERIES status ({', '.join(overview.views)})")
    if any(v.trader is not None and v.trader.mode == "paper" for v in overview.views.values()):
        blocks.insert(0, "PAPER TRADING (some series): orders are filled locally against the live book")
    return "\n\n".join(blocks)
