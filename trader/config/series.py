"""One config file for every series: `[series.<name>.<section>]` tables and how a series' effective config is
built from the base sections (README "Several series"; strategies.md "Window lengths").

    [s1]                      # the base: every series trades with these, btc-15m exactly as written
    entry_threshold = 0.60
    [series.eth-5m.s1]        # eth-5m only, in its own seconds
    entry_threshold = 0.65
    cap_schedule = "0-100:2,100-200:3,200-300:4"

The effective config of series X (`effective_raw`), later steps winning:
1. the base sections of the file (defaults where the file is silent);
2. X's window length (`market.window_s`): the series' own (300, 900 or 3600); the default series keeps the base
   section's `market.window_s`, as before series existed; an override (POLYMM_WINDOW_S, --window-s) compresses
   it (the sim, tests);
3. the keys that are a time *within* the window (schema `scales`: s1.cap_schedule, s1.late_window_s,
   s2.window_s) are stretched by X's window over the base window (`market.window_s` of the base section, 900 by
   default): the 15-minute schedule 0-300:$3, 300-600:$4, 600-900:$5 becomes 0-100, 100-200, 200-300 on a
   5-minute window and 0-1200, 1200-2400, 2400-3600 on an hourly one; the last 120 s of 15 minutes are the last
   40 s of 5. The default series is never stretched (its window is the base window). Reaction times
   (requote_wait_s, exit_delay_s, exit_retry_s, tp_reprice_hold_s, risk.cancel_before_end_s, staleness limits) are about the
   exchange and the book, not the window, and stay as written;
4. X's own section, literally (in X's seconds);
5. overrides (`mmctl set` on X's trader, options), literally.

Why stretched rather than one schedule per series by default: every window-phase rule expresses a share of the
window (the cap grows as the outcome gets clearer; "late" is the final convergence), so the same share on
another window length keeps the strategy's shape without the operator writing eight schedules; it is what the
demo's 60-second windows always did by hand. A backtest that says otherwise goes into the series' own section.

Validation: a series name must be in the catalogue (polymm/series.py: "series.etc-5m: ... did you mean eth-5m?"),
a series table may set only SERIES_SECTIONS (the wallet's, the exchange's and the window's keys are the same for
every series), and every key is checked against the schema with the base's messages, named `series.X.s1.key`.
"""
from __future__ import annotations

import copy
from typing import Any

import msgspec

from polymm import env
from polymm import series as series_mod
from polymm.listen import DEFAULT_TRADER_LISTEN
from polymm.trader.config.keys import _unknown_key_error, schema
from polymm.trader.config.messages import _error_from_msgspec
from polymm.trader.config.schema import SERIES_SECTIONS, TOP_KEYS, Config, ConfigError

TABLE = "series"
_WHY_NOT = {
    "market": f"the window length is the series' own ({env.WINDOW_S} compresses every series on the sim)",
    "endpoints": "the exchange's endpoints are the same for every series",
    "wallet": "the wallet's limits hold over every series together: set them in [wallet]",
    "redeem": "one redeemer serves the whole wallet: set it in [redeem]",
}


def scaled_keys() -> tuple[str, ...]:
    return tuple(k.key for k in schema() if k.scales)


def split_tables(raw: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Take the `[series.*]` tables out of a file's raw dict (in place): {series name: {section: {key: value}}},
    each checked for shape, names and known keys (values are checked with the series' config)."""
    tables = raw.pop(TABLE, None)
    if tables is None:
        return {}
    if not isinstance(tables, dict):
        raise ConfigError(TABLE, "must be tables like [series.eth-5m.s1]", source)
    out: dict[str, dict[str, Any]] = {}
    for name, sections in tables.items():
        try:
            parsed = series_mod.parse(str(name))
        except series_mod.SeriesError as exc:
            raise ConfigError(f"{TABLE}.{name}", str(exc), source) from None
        if parsed.name in out:
            raise ConfigError(f"{TABLE}.{name}", f"series {parsed.name} has two tables", source)
        if not isinstance(sections, dict):
            raise ConfigError(f"{TABLE}.{name}", "must hold sections like [series.eth-5m.s1]", source)
        for section, keys in sections.items():
            where = f"{TABLE}.{name}.{section}"
            if section in TOP_KEYS:
                raise ConfigError(where, f"{section} applies to every series: set it at the top of the file", source)
            if section in _WHY_NOT:
                raise ConfigError(where, f"cannot be set per series: {_WHY_NOT[section]}", source)
            if section not in SERIES_SECTIONS:
                raise ConfigError(where, f"unknown section (a series may set {', '.join(SERIES_SECTIONS)})", source)
            if not isinstance(keys, dict):
                raise ConfigError(where, "must be a table of keys", source)
            fields = getattr(Config(), section).__struct_fields__
            for key in keys:
                if key not in fields:
                    err = _unknown_key_error(f"{section}.{key}", source)
                    raise ConfigError(f"{TABLE}.{name}.{section}.{key}", err.reason, source) from None
        out[parsed.name] = sections
    return out


def check_tables(base: dict[str, Any], tables: dict[str, dict[str, Any]], source: str) -> None:
    """Every series table's values typed as the file must be (strict: "0.6" is not a number in TOML)."""
    for name, sections in tables.items():
        merged = copy.deepcopy(base)
        for section, keys in sections.items():
            merged.setdefault(section, {}).update(keys)
        try:
            msgspec.convert(merged, Config, strict=True)
        except msgspec.ValidationError as e:
            err = _error_from_msgspec(e, source, merged, typed_source=True)
            raise ConfigError(f"{TABLE}.{name}.{err.key}" if err.key else f"{TABLE}.{name}", err.reason, source) from None


def effective_raw(base: dict[str, Any], tables: dict[str, dict[str, Any]], series: series_mod.Series,
                  overrides: dict[str, Any], set_raw) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """The raw config of `series` (module docstring, steps 1-5). `set_raw(raw, key, value)` applies one override.
    Returns (raw, keys its own table sets, keys stretched from the base)."""
    raw = copy.deepcopy(base)
    own = tables.get(series.name, {})
    own_keys = frozenset(f"{section}.{key}" for section, keys in own.items() for key in keys)
    base_window = int(raw.get("market", {}).get("window_s", env.DEFAULT_WINDOW_S))
    if "market.window_s" in overrides:
        window = int(str(overrides["market.window_s"]).strip())
    elif series.is_default:
        window = base_window
    else:
        window = series.nominal_s
    stretched: set[str] = set()
    if not series.is_default and window != base_window:
        factor = window / base_window
        defaults = Config()
        for key in scaled_keys():
            if key in own_keys or key in overrides:
                continue
            section, _, name = key.partition(".")
            value = raw.get(section, {}).get(name, msgspec.to_builtins(getattr(getattr(defaults, section), name)))
            raw.setdefault(section, {})[name] = _stretch(value, factor)
            stretched.add(key)
    for section, keys in own.items():
        raw.setdefault(section, {}).update(copy.deepcopy(keys))
    raw.setdefault("market", {})["window_s"] = window
    if not series.is_default and "metrics.listen" not in own_keys and "metrics.listen" not in overrides:
        # Several traders on one host cannot share a port: the base's host, the series' own port (README).
        listen = raw.get("metrics", {}).get("listen", DEFAULT_TRADER_LISTEN)
        raw.setdefault("metrics", {})["listen"] = series_mod.metrics_listen(
            series, "trader", listen, int(DEFAULT_TRADER_LISTEN.rsplit(":", 1)[1]))
    for key, value in overrides.items():
        if key != "market.window_s":
            set_raw(raw, key, value)
    return raw, own_keys, frozenset(stretched)


def _stretch(value: Any, factor: float) -> Any:
    """A window-phase value on another window length: seconds times `factor` (to the millisecond); a cap schedule
    window by window, its dollars unchanged."""
    if isinstance(value, (list, tuple)):
        return [{**w, "start_s": _seconds(w["start_s"] * factor), "end_s": _seconds(w["end_s"] * factor)}
                for w in value]
    return _seconds(float(value) * factor)


def _seconds(x: float) -> float:
    return round(x, 3)
