"""Building a Config: defaults <- the TOML file <- overrides (`load_config`), `mmctl set` on a running config
(`apply_settings`), and which keys a file sets (`keys_in_file`). Every result is validated whole: types and
bounds by msgspec (messages.py), then the cross-field rules (checks.py)."""
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from polymm.trader.config.checks import _check_cross_fields, warnings
from polymm.trader.config.keys import _unknown_key_error, all_keys, live_keys, schema
from polymm.trader.config.messages import _error_from_msgspec
from polymm.trader.config.schema import SECTIONS, TOP_KEYS, Config, ConfigError
from polymm.trader.config.values import parse_cap_schedule
from polymm import series as series_mod
from polymm.trader.config import series as series_cfg


def _normalise_raw(raw: dict[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    """Accept cap_schedule as its string form anywhere a dict is built (a series table's too)."""
    s1 = raw.get("s1")
    if isinstance(s1, dict) and isinstance(s1.get("cap_schedule"), str):
        try:
            s1["cap_schedule"] = parse_cap_schedule(s1["cap_schedule"])
        except ValueError as e:
            raise ConfigError(f"{prefix}s1.cap_schedule", str(e), source) from None
    return raw


def _to_raw(cfg: Config) -> dict[str, Any]:
    return msgspec.to_builtins(cfg)


def _set_raw(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    if key in TOP_KEYS:
        raw[key] = value.strip() if isinstance(value, str) else value
        return
    section, _, name = key.partition(".")
    fields = getattr(Config(), section).__struct_fields__ if section in SECTIONS else ()
    if not name or name not in fields:
        raise _unknown_key_error(key, source)
    if name == "cap_schedule" and isinstance(value, str):
        try:
            value = parse_cap_schedule(value)
        except ValueError as e:
            raise ConfigError(key, str(e), source) from None
    if isinstance(value, str):
        value = value.strip()
    raw.setdefault(section, {})[name] = value


def _convert(raw: dict[str, Any], *, strict: bool, source: str) -> Config:
    try:
        cfg = msgspec.convert(raw, Config, strict=strict)
    except msgspec.ValidationError as e:
        raise _error_from_msgspec(e, source, raw, typed_source=strict) from None
    _check_cross_fields(cfg, source)
    return cfg


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None, series=None) -> Config:
    """Defaults <- TOML file (if a path is given) <- overrides (flat dotted keys; strings are parsed).

    `series` (polymm/series.py; None: the default series): whose config to build from the base sections and its
    `[series.<name>.*]` table (trader/config/series.py). Every series table of the file is checked whichever
    series is built, so a bad one is found by the first trader that reads the file.

    Raises ConfigError naming the key and reason (file missing/unreadable, TOML syntax, unknown key, bad value,
    cross-field check)."""
    return _load(path, overrides, series)[0]


def _load(path, overrides, series) -> tuple[Config, frozenset[str], frozenset[str]]:
    """load_config, plus the keys the series' own table sets and those stretched from the base."""
    raw: dict[str, Any] = {}
    tables: dict[str, Any] = {}
    source = str(path) if path is not None else ""
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError("", "config file not found", source) from None
        except OSError as e:
            raise ConfigError("", f"cannot read config file: {e.strerror}", source) from None
        try:
            raw = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError("", f"not UTF-8 text ({e.reason} at byte {e.start})", source) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("", f"TOML syntax error: {e}", source) from None
        tables = series_cfg.split_tables(raw, source)
        raw = _normalise_raw(raw, source)
        for name, sections in tables.items():
            _normalise_raw(sections, source, prefix=f"series.{name}.")
        # The file alone must be valid in types (strict: "0.6" is not a number in TOML); cross-field checks wait
        # for the overrides, which may fix a combination.
        try:
            msgspec.convert(raw, Config, strict=True)
        except msgspec.ValidationError as e:
            raise _error_from_msgspec(e, source, raw, typed_source=True) from None
        series_cfg.check_tables(raw, tables, source)
    if series is None:
        if overrides:
            for key, value in overrides.items():
                _set_raw(raw, key, value, "override")
        return _convert(raw, strict=False, source=source), frozenset(), frozenset()
    # Every other series' table whole, with the cross-field rules (its window, its schedule): a bad one is found by
    # whichever trader reads the file first, not only when that series starts.
    window = {k: v for k, v in (overrides or {}).items() if k == "market.window_s"}
    for name in sorted(set(tables) - {series.name}):
        _for_series(raw, tables, series_mod.parse(name), window, source)
    return _for_series(raw, tables, series, dict(overrides or {}), source)


def _for_series(base: dict[str, Any], tables: dict[str, Any], series, overrides: dict[str, Any], source: str
                ) -> tuple[Config, frozenset[str], frozenset[str]]:
    raw, own, stretched = series_cfg.effective_raw(base, tables, series, overrides,
                                                   lambda r, k, v: _set_raw(r, k, v, "override"))
    try:
        return _convert(raw, strict=False, source=source), own, stretched
    except ConfigError as exc:
        if exc.key in own:  # name the table the bad value came from
            raise ConfigError(f"series.{series.name}.{exc.key}", exc.reason, exc.source) from None
        if exc.key in stretched:
            raise ConfigError(exc.key, f"{exc.reason} (stretched to {series.name}'s {raw['market']['window_s']} s "
                              f"window; set it in [series.{series.name}.{exc.key.split('.')[0]}])", exc.source) from None
        raise


def series_sources(path: str | Path | None, series, overrides: dict[str, Any] | None = None
                   ) -> tuple[frozenset[str], frozenset[str]]:
    """(keys `series`' own table sets, keys stretched from the base) for `mmctl config`'s source column; empty when
    the file cannot be read (load_config reports a bad file)."""
    if series is None:
        return frozenset(), frozenset()
    try:
        _, own, stretched = _load(path, overrides, series)
    except ConfigError:
        return frozenset(), frozenset()
    return own, stretched


def keys_in_file(path: str | Path | None) -> frozenset[str]:
    """The dotted keys a config file sets (whatever their values), for `mmctl config`'s source column. Empty
    when there is no file or it cannot be read: load_config is the one that reports a bad file."""
    if path is None:
        return frozenset()
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return frozenset()
    known = set(all_keys())
    return frozenset(f"{section}.{name}" for section, table in raw.items() if isinstance(table, dict)
                     for name in table if f"{section}.{name}" in known)


def apply_settings(cfg: Config, settings: dict[str, str]) -> tuple[Config, list[str]]:
    """`mmctl set`: change live keys (values as text), validate the whole result, return (new config, warnings).

    All or nothing: any unknown, non-live or bad key raises ConfigError and `cfg` stays in force."""
    if not settings:
        raise ConfigError("", "nothing to set")
    live = live_keys()
    raw = _to_raw(cfg)
    for key, value in settings.items():
        if key not in set(all_keys()):
            raise _unknown_key_error(key)
        if key not in live:
            info = next(k for k in schema() if k.key == key)
            raise ConfigError(key, f"cannot change while running: {info.why_not_live}")
        _set_raw(raw, key, value, "")
    new = _convert(raw, strict=False, source="")
    return new, warnings(new)
