"""`polymm-report [--since ...] (--ledger FILE | BACKTEST.json) [--compare FILE2] --out report.html`

One self-contained HTML file (plots embedded as base64 PNG, no script, opens offline): cumulative net P&L (the
compared run overlaid), net per window, fees over time, entry price against outcome, and the `mmctl history`
summary. Input: a ledger (the trader's ledger.sqlite, a `polymm-backtest --ledger` file) or a
`polymm-backtest --json` result. matplotlib is the optional extra `report` (pip install 'polymm[report]').

The numbers are the trader's (trader/ledger: it owns the schema and the query, as for `mmctl history`); this module
only presents them.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from polymm.ctl.cli import parse_since
from polymm.trader.ledger import History, LedgerReadError, load_entries, load_history
from polymm.trader.ledger.from_backtest import BacktestFileError, read_result, write_result

PRICE_BINS = 10  # entry prices in 0.1-wide buckets for the win-rate-by-price plot


class ReportError(RuntimeError):
    pass


@dataclass
class Run:
    name: str
    history: History
    entries: list[tuple[float, float, bool]]
    by_series: History | None = None  # one row per series (a ledger shared by several series)


def load_run(source: str, since: float | None, mode: str | None, scratch: Path,
             series: list[str] | None = None) -> Run:
    """A ledger file, or a backtest JSON result converted to a ledger in `scratch` first; `series`: only those."""
    path = Path(source)
    if path.suffix.lower() == ".json":
        ledger = scratch / f"{path.stem}-{len(list(scratch.iterdir()))}.sqlite"
        write_result(read_result(path), ledger)
        path = ledger
    return Run(Path(source).name, load_history(path, "window", since=since, mode=mode, series=series),
               load_entries(path, since=since, mode=mode, series=series),
               load_history(path, "series", since=since, mode=mode, series=series))


# ---- plots ---------------------------------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReportError("polymm-report needs matplotlib: pip install 'polymm[report]'") from None
    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    fig.clf()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _times(history: History) -> list:
    from datetime import datetime, timezone
    return [datetime.fromtimestamp(r.start, timezone.utc) for r in history.windows]


DEFAULT_WINDOW_S = 900  # the padding around a single window when the ledger cannot tell the window's length


def _marker_size(n: int) -> float:
    """Every point gets a marker (one window must show as a dot, not an invisible zero-length line); a long
    ledger gets small ones so the curve stays readable."""
    return 6.0 if n <= 30 else 4.0 if n <= 300 else 1.5


def _window_s(runs: list[Run]) -> float:
    gaps = sorted(b.start - a.start for run in runs for a, b in zip(run.history.windows, run.history.windows[1:])
                  if b.start > a.start)
    return gaps[len(gaps) // 2] if gaps else DEFAULT_WINDOW_S


def _fit_time_axis(ax, runs: list[Run]) -> None:
    """x from the first window to the last, padded by half a window (so one window sits in the middle of a span
    about a window wide, not of matplotlib's default four years), with dates or times as the span asks."""
    import matplotlib.dates as mdates
    from datetime import datetime, timedelta, timezone
    starts = [r.start for run in runs for r in run.history.windows]
    if not starts:
        return
    pad = max((max(starts) - min(starts)) * 0.03, _window_s(runs) / 2)
    ax.set_xlim(datetime.fromtimestamp(min(starts), timezone.utc) - timedelta(seconds=pad),
                datetime.fromtimestamp(max(starts), timezone.utc) + timedelta(seconds=pad))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8, tz=timezone.utc)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    ax.set_xlabel("window start (UTC)")


def _fit_values(ax, values: list[float]) -> None:
    """y around the data with zero in view, padded 10% (a flat curve gets a unit-wide band, not a degenerate one)."""
    low, high = min([0.0, *values]), max([0.0, *values])
    span = high - low or 1.0
    ax.set_ylim(low - span * 0.1, high + span * 0.1)


def _cumulative(ax, runs: list[Run], field: str) -> None:
    values = []
    for run in runs:
        cumulative, total = [], 0.0
        for r in run.history.windows:
            total += getattr(r, field)
            cumulative.append(total)
        values += cumulative
        ax.plot(_times(run.history), cumulative, drawstyle="steps-post", marker="o",
                markersize=_marker_size(len(cumulative)), label=run.name)
    _fit_time_axis(ax, runs)
    _fit_values(ax, values)
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="best")


def _net_bars(ax, run: Run) -> None:
    from matplotlib.ticker import MaxNLocator
    main = run.history.windows
    nets = [r.net for r in main]
    colours = ["tab:green" if x >= 0 else "tab:red" for x in nets]
    if len(main) <= 100:
        # Few windows: one bar each, as wide as a bar chart's, labelled with its window when they fit.
        ax.bar(range(len(main)), nets, width=0.6, color=colours)
        if len(main) <= 12:
            one_day = len({r.label[:10] for r in main}) == 1  # "2026-11-23 21:00:00": the time says it all
            ax.set_xticks(range(len(main)), [r.label[11:16] if one_day else r.label[5:16] for r in main],
                          rotation=30 if len(main) > 6 else 0, fontsize=8)
    else:
        # One line collection, not a bar patch per window: a week of 60-second windows is 10,080 bars.
        ax.vlines(range(len(main)), 0, nets, colors=colours, linewidth=max(0.3, min(3.0, 600 / len(main))))
    # At least five bars' room: one window is a bar, not a wall.
    extra = max(0.0, (5 - len(main)) / 2) + len(main) * 0.01
    ax.set_xlim(-0.5 - extra, len(main) - 0.5 + extra)
    if len(main) > 12:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _fit_values(ax, nets)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel(f"window ({run.name}, in start order)")
    ax.set_ylabel("net pUSD")


def plots(runs: list[Run]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot."""
    plt = _pyplot()
    out = []
    fig, ax = plt.subplots(figsize=(9, 3.5))
    _cumulative(ax, runs, "net")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_ylabel("pUSD")
    out.append(("Cumulative net P&L", _png(fig)))

    fig, ax = plt.subplots(figsize=(9, 3))
    _net_bars(ax, runs[0])
    out.append(("Net per window", _png(fig)))

    fig, ax = plt.subplots(figsize=(9, 3))
    _cumulative(ax, runs, "fees")
    ax.set_ylabel("cumulative fees, pUSD")
    out.append(("Fees over time", _png(fig)))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for run in runs:
        rates = _win_rate_by_price(run.entries)
        if rates:
            ax.plot([p for p, _, _ in rates], [w for _, w, _ in rates], marker="o", label=run.name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="break-even (win rate = price)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("entry price (BUY fills, 0.1 buckets)")
    ax.set_ylabel("share of entry shares whose leg won")
    ax.legend(loc="best")
    out.append(("Entry price vs outcome", _png(fig)))
    plt.close("all")
    return out


def _win_rate_by_price(entries: list[tuple[float, float, bool]]) -> list[tuple[float, float, float]]:
    """(bucket mid price, share-weighted win rate, shares) per 0.1 price bucket with any entry."""
    buckets: dict[int, list[float]] = {}
    for price, shares, won in entries:
        b = buckets.setdefault(min(int(price * PRICE_BINS), PRICE_BINS - 1), [0.0, 0.0])
        b[0] += shares
        b[1] += shares if won else 0.0
    return [((k + 0.5) / PRICE_BINS, won / shares, shares) for k, (shares, won) in sorted(buckets.items()) if shares > 0]


# ---- HTML ----------------------------------------------------------------------------------------------------
def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def _summary(run: Run) -> str:
    t = run.history.totals
    share = "-" if t.maker_share is None else f"{t.maker_share * 100:.0f}%"
    win = "-" if t.win_rate is None else f"{t.win_rate * 100:.0f}%"
    best, worst = t.best_window or {}, t.worst_window or {}
    cells = [("windows", t.windows), ("trades", t.trades), ("volume", f"{t.volume:.2f}"), ("maker share", share),
             ("fees", f"{t.fees:.2f}"), ("realised", _money(t.realised)), ("payout", _money(t.payout)),
             ("net", _money(t.net)), ("win rate", win),
             ("best window", f"{_money(best.get('net'))} {best.get('label', '')}"),
             ("worst window", f"{_money(worst.get('net'))} {worst.get('label', '')}"),
             ("max drawdown", f"{t.max_drawdown:.2f}"), ("unresolved windows", t.unresolved),
             ("modes", ", ".join(run.history.modes) or "-")]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in cells)
    return f"<h3>{html.escape(run.name)}</h3><table class=summary>{rows}</table>" + _series_table(run)


def _series_table(run: Run) -> str:
    """Per market series, when the run holds more than one (one ledger serves every series of a host)."""
    rows = run.by_series.rows if run.by_series is not None else []
    if len(rows) < 2:
        return ""
    head = ("series", "windows", "trades", "volume", "fees", "realised", "payout", "net")
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
        r.label, r.windows, r.trades, f"{r.volume:.2f}", f"{r.fees:.2f}", _money(r.realised), _money(r.payout),
        _money(r.net))) + "</tr>" for r in rows)
    return "<p>By series:</p><table><tr>" + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{body}</table>"


def _windows_table(run: Run, limit: int = 500) -> str:
    head = ("window (UTC)", "trades", "volume", "maker", "fees", "realised", "payout", "net")
    rows = []
    for r in run.history.windows[-limit:]:
        share = "-" if r.maker_share is None else f"{r.maker_share * 100:.0f}%"
        cells = (r.label + (" *" if r.unresolved else ""), r.trades, f"{r.volume:.2f}", share, f"{r.fees:.2f}",
                 _money(r.realised), _money(r.payout), _money(r.net))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    note = (f"<p>The last {limit} of {len(run.history.windows)} windows.</p>"
            if len(run.history.windows) > limit else "")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<h2>Windows: {html.escape(run.name)}</h2>{note}<table><tr>{header}</tr>{''.join(rows)}</table>"


def render(runs: list[Run], since: float | None) -> str:
    images = "".join(f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">"
                     for title, data in plots(runs))
    period = "all of the ledger" if since is None else f"windows since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(since))} UTC"
    generated = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>polymm report</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "table.summary th{text-align:left}img{max-width:100%}</style></head><body>"
        f"<h1>polymm report</h1><p>{html.escape(period)}; generated {generated} UTC. Numbers in pUSD; "
        "net = realised (trades, net of fees) + payout (resolution, less the held shares' cost).</p>"
        "<h2>Summary</h2>" + "".join(_summary(run) for run in runs) + images
        + "".join(_windows_table(run) for run in runs) + "</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polymm-report", description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("backtest", nargs="?", help="a polymm-backtest --json result (instead of --ledger)")
    parser.add_argument("--ledger", help="a ledger file (the trader's ledger.sqlite, or polymm-backtest --ledger)")
    parser.add_argument("--compare", help="a second ledger or backtest JSON, overlaid on the curves")
    parser.add_argument("--since", help="only windows that started after this: 24h, 7d, a date or a time (UTC)")
    parser.add_argument("--mode", choices=("live", "paper", "backtest"), help="only fills of this mode")
    parser.add_argument("--series", help="only these market series, comma separated (btc-15m,eth-5m): one ledger "
                                         "holds every series of a host; the summary shows each series otherwise")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    args = parser.parse_args(argv)
    if bool(args.backtest) == bool(args.ledger):
        print("polymm-report: give either --ledger FILE or a BACKTEST.json", file=sys.stderr)
        return 2
    wanted = None
    if args.series:
        from polymm import series as series_mod

        try:
            wanted = [s.name for s in series_mod.parse_list(args.series)]
        except series_mod.SeriesError as exc:
            print(f"polymm-report: --series {exc}", file=sys.stderr)
            return 2
    since = None
    if args.since:
        try:
            since = parse_since(args.since, time.time())
        except ValueError as exc:
            print(f"polymm-report: --since {exc}", file=sys.stderr)
            return 2
    try:
        with tempfile.TemporaryDirectory(prefix="polymm-report-") as scratch:
            runs = [load_run(args.ledger or args.backtest, since, args.mode, Path(scratch), wanted)]
            if args.compare:
                runs.append(load_run(args.compare, since, args.mode, Path(scratch), wanted))
            page = render(runs, since)
        Path(args.out).write_text(page)
    except (LedgerReadError, BacktestFileError, ReportError, OSError) as exc:
        print(f"polymm-report: {exc}", file=sys.stderr)
        return 1
    print(f"polymm-report: wrote {args.out} ({len(page) // 1024} KiB; {runs[0].history.totals.windows} window(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
