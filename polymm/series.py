"""Market series: which Up/Down market a feed and a trader follow. A series is an asset and a window length,
written `ASSET-WINDOW` (`btc-15m`, `eth-5m`, `sol-1h`); `btc-15m` is the default, the market polymm traded before
it knew other series. One definition of the names every part agrees on (feed, trader, mmctl, the sim): the
catalogue, parsing with errors in words, each window's event slug and the asset's reference-price symbols.

How Polymarket names the markets (sources in docs/venue.md, "Series and discovery"):
- 5- and 15-minute windows: one event per window, slug `{asset}-updown-{5m|15m}-{T}`, T = the window start in unix
  seconds (a multiple of the window length), e.g. `btc-updown-15m-1767960000`, `eth-updown-5m-1766972400`.
- hourly windows: named by the hour's start in US Eastern time, `{name}-up-or-down-{month}-{day}-{year}-{h}{am|pm}-et`
  (e.g. `ethereum-up-or-down-april-5-2026-4am-et`); until mid-March 2026 the same without the year
  (`ethereum-up-or-down-march-13-4am-et`). Discovery tries the current form first, then the older one. The hours
  are whole UTC hours too (every Eastern offset is a whole number of hours), so T is a multiple of 3600.
- Resolution: 5- and 15-minute windows on Chainlink's `{asset}/usd` stream; hourly windows on Binance's
  `{ASSET}/USDT` 1-hour candle (open vs close). The feed's reference prices follow the asset (RTDS symbols below),
  and a window's opening price is taken from the series' resolution source.

Compressed windows (the sim, the demo, tests: `--window-s 60`) keep the series' name but not its length; their
slugs are always the `{asset}-updown-{window}-{T}` form (an hour's name cannot tell 60 one-minute windows apart).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime, timezone

DEFAULT_SERIES = "btc-15m"


class SeriesError(ValueError):
    """A series name that is not in the catalogue; the message says why and what would be valid."""


@dataclass(frozen=True)
class Asset:
    code: str  # btc: the series prefix and the 5/15-minute slugs' prefix
    title: str  # Bitcoin: as Polymarket's titles write it ("Bitcoin Up or Down - ...")
    hourly_name: str  # bitcoin: the hourly slugs' prefix
    chainlink: str  # RTDS crypto_prices_chainlink symbol
    binance: str  # RTDS crypto_prices symbol


ASSETS: dict[str, Asset] = {
    a.code: a
    for a in (
        Asset("btc", "Bitcoin", "bitcoin", "btc/usd", "btcusdt"),
        Asset("eth", "Ethereum", "ethereum", "eth/usd", "ethusdt"),
        Asset("sol", "Solana", "solana", "sol/usd", "solusdt"),
        Asset("xrp", "XRP", "xrp", "xrp/usd", "xrpusdt"),
    )
}
WINDOWS: dict[str, int] = {"5m": 300, "15m": 900, "1h": 3600}
_WINDOW_WORDS = {"5m": "5 minute", "15m": "15 minute", "1h": "hourly"}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")

try:
    from zoneinfo import ZoneInfo

    EASTERN = ZoneInfo("America/New_York")
except Exception:  # noqa: BLE001 - no tz database: only hourly slugs need it, and they say so (eastern())
    EASTERN = None


def eastern():
    """US Eastern time (the hourly slugs' clock); a SeriesError in words when the tz database is missing."""
    if EASTERN is None:
        raise SeriesError("hourly series need the time-zone database for US Eastern time (America/New_York): "
                          "install the tzdata package (pip install tzdata) or the system's tzdata")
    return EASTERN


@dataclass(frozen=True)
class Series:
    asset: Asset
    window: str  # "5m" | "15m" | "1h"
    window_s: int  # this run's window length: WINDOWS[window], or a compressed one (sim, tests)

    @property
    def name(self) -> str:
        return f"{self.asset.code}-{self.window}"

    @property
    def nominal_s(self) -> int:
        return WINDOWS[self.window]

    @property
    def compressed(self) -> bool:
        return self.window_s != self.nominal_s

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_SERIES

    @property
    def index(self) -> int:
        """Position in the catalogue (ALL): the default is 0. Derived ports and names use it."""
        return ALL_NAMES.index(self.name)

    @property
    def resolution_source(self) -> str:
        """'chainlink' (5/15-minute windows) or 'binance' (hourly windows: the 1-hour candle)."""
        return "binance" if self.window == "1h" else "chainlink"

    @property
    def title(self) -> str:
        """'Bitcoin Up or Down - 15 minute' (status lines, logs)."""
        return f"{self.asset.title} Up or Down - {_WINDOW_WORDS[self.window]}"

    def __str__(self) -> str:
        return self.name

    def window_start(self, now: float) -> int:
        return int(now // self.window_s) * self.window_s

    def slugs(self, window_start: int) -> tuple[str, ...]:
        """The Gamma event slugs of the window starting at `window_start`, most likely first."""
        t = int(window_start)
        if self.window != "1h" or self.compressed:
            return (f"{self.asset.code}-updown-{self.window}-{t}",)
        moment = datetime.fromtimestamp(t, timezone.utc).astimezone(eastern())
        hour = moment.hour % 12 or 12
        tail = f"{hour}{'am' if moment.hour < 12 else 'pm'}-et"
        head = f"{self.asset.hourly_name}-up-or-down-{_MONTHS[moment.month - 1]}-{moment.day}"
        return (f"{head}-{moment.year}-{tail}", f"{head}-{tail}")

    def slug(self, window_start: int) -> str:
        return self.slugs(window_start)[0]

    def window_of_slug(self, slug: str, near: float | None = None) -> int | None:
        """The window start a slug of this series names, or None for a slug of anything else. The older hourly
        form has no year: it is read as the year of `near` (default now) or the one before/after, whichever is
        closest."""
        if self.window != "1h" or self.compressed:
            prefix = f"{self.asset.code}-updown-{self.window}-"
            tail = slug[len(prefix):] if slug.startswith(prefix) else ""
            if not tail.isdigit() or len(tail) > 12 or int(tail) % self.window_s:
                return None
            return int(tail)
        m = _HOURLY.fullmatch(slug)
        if m is None or m["name"] != self.asset.hourly_name or m["month"] not in _MONTHS:
            return None
        hour12 = int(m["hour"])
        if not 1 <= hour12 <= 12:
            return None
        hour = hour12 % 12 + (12 if m["ampm"] == "pm" else 0)
        month = _MONTHS.index(m["month"]) + 1
        if m["year"]:
            years = [int(m["year"])]
        else:
            base = datetime.fromtimestamp(near if near is not None else _now(), timezone.utc).year
            years = [base - 1, base, base + 1]
        found = []
        for year in years:
            try:
                local = datetime(year, month, int(m["day"]), hour, tzinfo=eastern())
            except ValueError:
                continue
            start = int(local.timestamp())
            if start % 3600 == 0 and self.slugs(start)[0 if m["year"] else 1] == slug:
                found.append(start)
        if not found:
            return None
        ref = near if near is not None else _now()
        return min(found, key=lambda s: abs(s - ref))


_HOURLY = re.compile(r"(?P<name>[a-z]+)-up-or-down-(?P<month>[a-z]+)-(?P<day>\d{1,2})(?:-(?P<year>\d{4}))?-"
                     r"(?P<hour>\d{1,2})(?P<ampm>am|pm)-et")


def _now() -> float:
    import time

    return time.time()


ALL_NAMES: tuple[str, ...] = (DEFAULT_SERIES,) + tuple(
    f"{a}-{w}" for a in ASSETS for w in WINDOWS if f"{a}-{w}" != DEFAULT_SERIES
)


def parse(text: str, window_s: int | None = None) -> Series:
    """'eth-5m' -> Series. `window_s` compresses the windows (sim, tests); None = the series' own length.
    Raises SeriesError naming what is wrong and what is valid."""
    raw = text
    text = (text or "").strip().lower()
    if not text:
        raise SeriesError(f"no series given: write ASSET-WINDOW, e.g. {DEFAULT_SERIES} (assets {', '.join(ASSETS)}; "
                          f"windows {', '.join(WINDOWS)})")
    asset_code, sep, window = text.partition("-")
    if not sep or not window:
        raise SeriesError(f"{raw!r} is not a series: write ASSET-WINDOW, e.g. eth-5m{_did_you_mean(text)}")
    problems = []
    if asset_code not in ASSETS:
        problems.append(f"unknown asset {asset_code!r} (known: {', '.join(ASSETS)})")
    if window not in WINDOWS:
        problems.append(f"unknown window {window!r} (known: {', '.join(WINDOWS)})")
    if problems:
        raise SeriesError(f"series {raw!r}: {'; '.join(problems)}{_did_you_mean(text)}")
    if window_s is not None and (not isinstance(window_s, int) or window_s <= 0):
        raise SeriesError(f"series {raw!r}: window length must be a positive whole number of seconds, got {window_s!r}")
    return Series(ASSETS[asset_code], window, window_s or WINDOWS[window])


def parse_list(text: str, window_s: int | None = None) -> tuple[Series, ...]:
    """'btc-15m,eth-5m' -> (Series, Series): comma or space separated, no duplicates."""
    names = [n for n in re.split(r"[\s,]+", text or "") if n]
    if not names:
        raise SeriesError(f"no series given: e.g. {DEFAULT_SERIES},eth-5m")
    out = [parse(n, window_s) for n in names]
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise SeriesError(f"series {s.name} is listed twice")
        seen.add(s.name)
    return tuple(out)


def default(window_s: int | None = None) -> Series:
    return parse(DEFAULT_SERIES, window_s)


def resolve_args(parser, args, shm_base: str) -> Series:
    """A service's `--series`, `--window-s` and `--shm` (argparse): `args.series` becomes the Series, `args.shm` its
    segment's name unless given. A bad value is `parser.error` (exit code 2: the units do not restart on it)."""
    if args.window_s is not None and args.window_s <= 0:
        parser.error(f"--window-s must be positive, got {args.window_s}")
    try:
        args.series = parse(args.series, window_s=args.window_s)
    except SeriesError as exc:
        parser.error(str(exc))
    args.shm = args.shm or shm_name(args.series, shm_base)
    return args.series


# ---- what each series' processes are called on a host: the default keeps the names it always had, so nothing
# changes for an installation that trades BTC 15-minute only.
_FIRST_PORT = 9900  # series i > 0 of the catalogue: feed 9900 + 2i, trader 9901 + 2i (9902 .. 9923)


def shm_name(s: Series, base: str) -> str:
    """The feed's segment: `base` (poly_tob_shm) for the default series, `base_<series>` for the others."""
    return base if s.is_default else f"{base}_{s.name}"


def socket_path(s: Series, base: str) -> str:
    """The trader's control socket: `base` (/run/polymm/trader.sock) for the default, `.../trader-<series>.sock`."""
    if s.is_default:
        return base
    head, dot, ext = base.rpartition(".")
    return f"{head}-{s.name}.{ext}" if dot and "/" not in ext else f"{base}-{s.name}"


def metrics_port(s: Series, role: str, default_port: int) -> int:
    """The Prometheus port of a series' feed (`role` "feed") or trader: `default_port` for the default series."""
    if s.is_default:
        return default_port
    return _FIRST_PORT + 2 * s.index + (1 if role == "trader" else 0)


def metrics_listen(s: Series, role: str, listen: str, default_port: int) -> str:
    """A configured listen address (`HOST:PORT` or off) as series `s` uses it: the default series as written; any
    other series on the same host with its own port (several feeds/traders cannot share one)."""
    value = (listen or "").strip()
    if s.is_default or value.lower() == "off":
        return value
    host = value[: value.rfind(":")] if ":" in value else "127.0.0.1"
    return f"{host}:{metrics_port(s, role, default_port)}"


def _did_you_mean(text: str) -> str:
    close = difflib.get_close_matches(text, ALL_NAMES, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
