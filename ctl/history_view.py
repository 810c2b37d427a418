"""`mmctl history` output: the history of the ledger as a table, CSV or JSON (numbers from trader/ledger/history.py).

The table shows pUSD with cents and maker share in percent; CSV and JSON keep full precision for spreadsheets and
scripts. Reading the ledger is the trader's code (it owns the schema); this module only formats.
"""
from __future__ import annotations

import csv
import io

from polymm.ctl import render
from polymm.trader.ledger import History

CSV_FIELDS = ("label", "series", "condition_id", "start", "windows", "trades", "volume", "maker_share", "fees",
              "realised", "payout", "payout_pusd", "net", "open_shares", "unresolved")


def _percent(share: float | None) -> str:
    return render.EMPTY if share is None else f"{share * 100:.0f}%"


def table(history: History) -> str:
    first = {"window": "window (UTC)", "hour": "hour (UTC)", "day": "day (UTC)", "series": "series"}[history.by]
    # A series column where windows of several series are listed one by one (a ledger shared by every series).
    several = history.by == "window" and len({r.series for r in history.rows}) > 1
    headers = [first, *(["series"] if several else []), *(["market"] if history.by == "window" else ["windows"]),
               "trades", "volume", "maker", "fees", "realised", "payout", "net"]
    rows = []
    for r in history.rows:
        label = r.label + (" *" if r.unresolved else "")
        which = render.short_id(r.condition_id) if history.by == "window" else r.windows
        rows.append([label, *([r.series] if several else []), which, r.trades, render.money(r.volume),
                     _percent(r.maker_share), render.money(r.fees), render.money(r.realised, signed=True),
                     render.money(r.payout, signed=True), render.money(r.net, signed=True)])
    t = history.totals
    lines = [render.table(headers, rows, empty="(no trades in this period)")]
    if not history.rows:
        return lines[0]
    lines.append("")
    best, worst = t.best_window or {}, t.worst_window or {}
    lines.append(render.table(None, [
        ["total", f"{t.windows} window(s), {t.trades} trade(s), volume {render.money(t.volume)}, maker "
                  f"{_percent(t.maker_share)}, fees {render.money(t.fees)}"],
        ["net", f"{render.money(t.net, signed=True)} (realised {render.money(t.realised, signed=True)}, payout "
                f"{render.money(t.payout, signed=True)})"],
        ["win rate", f"{_percent(t.win_rate)} of windows with net > 0"],
        ["best", f"{render.money(best.get('net'), signed=True)} {best.get('label', '')}"],
        ["worst", f"{render.money(worst.get('net'), signed=True)} {worst.get('label', '')}"],
        ["max drawdown", render.money(t.max_drawdown)],
    ]))
    if t.unresolved:
        lines.append(f"* {t.unresolved} window(s) not resolved yet: {render.number(t.open_shares)} share(s) held "
                     "count in net once the market resolves")
    if len(history.modes) > 1:
        lines.append(f"note: this ledger mixes modes ({', '.join(history.modes)}); --mode picks one")
    return "\n".join(lines)


def to_csv(history: History) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in history.rows:
        writer.writerow(r.as_dict())
    return out.getvalue()
