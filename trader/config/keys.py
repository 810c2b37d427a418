"""Schema introspection, the one place that walks the Structs: each key's default, type, bounds in words,
liveness and legacy name (`schema()`), the live keys, the nearest valid key for a bad one, and reading a
key's value as an operator sees it."""
import difflib
from typing import Any

import msgspec

from polymm.trader.config.schema import LISTEN_PATTERN, SECTIONS, TOP_KEYS, Config, ConfigError
from polymm.trader.config.values import _fmt, format_cap_schedule


class KeyInfo(msgspec.Struct, frozen=True):
    key: str
    default: Any
    type_text: str
    live: bool
    why_not_live: str
    legacy: str
    meaning: str
    rule: str = ""  # what a value must be, in words: "a number between 0 and 1" (error messages)
    scales: bool = False  # a time within the window, scaled for a series of another window length (series.py)


def _describe_type(t: Any) -> str:
    it = msgspec.inspect
    if isinstance(t, it.Metadata):
        t = t.type
    if isinstance(t, it.BoolType):
        return "bool"
    if isinstance(t, it.LiteralType):
        return " | ".join(f"`{v}`" for v in t.values)
    if isinstance(t, (it.VarTupleType, it.ListType)):
        return "cap windows"
    if isinstance(t, it.StrType):
        return "URL"
    if isinstance(t, (it.IntType, it.FloatType)):
        name = "int" if isinstance(t, it.IntType) else "float"
        lo = f"> {_fmt(t.gt)}" if t.gt is not None else (f">= {_fmt(t.ge)}" if t.ge is not None else "")
        hi = f"< {_fmt(t.lt)}" if t.lt is not None else (f"<= {_fmt(t.le)}" if t.le is not None else "")
        bounds = ", ".join(b for b in (lo, hi) if b)
        return f"{name} ({bounds})" if bounds else name
    return type(t).__name__


def _bounds_text(t: Any) -> str:
    """msgspec's numeric bounds in words: between (exclusive both), from/to (inclusive both), or mixed."""
    lo, lo_incl = (t.gt, False) if t.gt is not None else (t.ge, True)
    hi, hi_incl = (t.lt, False) if t.lt is not None else (t.le, True)
    if lo is not None and hi is not None:
        if not lo_incl and not hi_incl:
            return f"between {_fmt(lo)} and {_fmt(hi)}"
        if lo_incl and hi_incl:
            return f"from {_fmt(lo)} to {_fmt(hi)}"
        return f"{'at least' if lo_incl else 'above'} {_fmt(lo)} and {'at most' if hi_incl else 'below'} {_fmt(hi)}"
    if lo is not None:
        return f"{'at least' if lo_incl else 'above'} {_fmt(lo)}"
    if hi is not None:
        return f"{'at most' if hi_incl else 'below'} {_fmt(hi)}"
    return ""


def _rule(t: Any) -> str:
    """What a value of this schema type must be, in words, derived from the type and its Meta (no table)."""
    it = msgspec.inspect
    if isinstance(t, it.Metadata):
        t = t.type
    if isinstance(t, it.BoolType):
        return "true or false"
    if isinstance(t, it.LiteralType):
        return "one of " + ", ".join(str(v) for v in t.values)
    if isinstance(t, (it.VarTupleType, it.ListType)):
        return "cap windows `start-end:usd,...` (e.g. `0-300:3,300-600:4,600-900:5`)"
    if isinstance(t, it.StrType):
        if t.pattern == LISTEN_PATTERN:
            return "HOST:PORT (e.g. 127.0.0.1:9892, [::1]:9892) or off"
        if t.pattern and t.pattern.startswith("^wss?"):
            return "a ws:// or wss:// URL"
        if t.pattern and t.pattern.startswith("^https?"):
            return "an http:// or https:// URL"
        return "text"
    if isinstance(t, (it.IntType, it.FloatType)):
        base = "a whole number" if isinstance(t, it.IntType) else "a number"
        bounds = _bounds_text(t)
        return f"{base} {bounds}" if bounds else base
    return _describe_type(t)


def _schema() -> list[KeyInfo]:
    infos: list[KeyInfo] = []
    cfg_default = Config()
    for section_field in msgspec.inspect.type_info(Config).fields:
        section_type = section_field.type
        top = section_field.name in TOP_KEYS
        for f in [section_field] if top else section_type.fields:
            meta_t = f.type
            extra = meta_t.extra if isinstance(meta_t, msgspec.inspect.Metadata) and meta_t.extra else {}
            desc = (
                (meta_t.extra_json_schema or {}).get("description", "")
                if isinstance(meta_t, msgspec.inspect.Metadata)
                else ""
            )
            key = f.name if top else f"{section_field.name}.{f.name}"
            infos.append(
                KeyInfo(
                    key=key,
                    default=get_key(cfg_default, key),
                    type_text=extra.get("type_text") or _describe_type(meta_t),
                    live=bool(extra.get("live", True)),
                    why_not_live=extra.get("why", ""),
                    legacy=extra.get("legacy", ""),
                    meaning=desc,
                    rule=_rule(meta_t),
                    scales=bool(extra.get("scales", False)),
                )
            )
    return infos


_SCHEMA_CACHE: list[KeyInfo] | None = None


def schema() -> list[KeyInfo]:
    global _SCHEMA_CACHE
    if _SCHEMA_CACHE is None:
        _SCHEMA_CACHE = _schema()
    return list(_SCHEMA_CACHE)


def all_keys() -> list[str]:
    return [k.key for k in schema()]


def live_keys() -> frozenset[str]:
    """Keys `mmctl set` may change while the trader runs: every key whose schema does not say live=False."""
    return frozenset(k.key for k in schema() if k.live)


def suggest_key(bad: str) -> str | None:
    """The nearest valid key: a typo, a missing section ("entry_threshold") or the original bot's name
    ("ENTRY_BID_THRESHOLD" -> "s1.entry_threshold")."""
    keys = all_keys()
    if not bad:
        return None
    infos = schema()
    by_legacy = [k.key for k in infos if k.legacy and k.legacy.lower() == bad.lower()]
    if by_legacy:
        return by_legacy[0]
    close = difflib.get_close_matches(bad.lower(), keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    leaf = bad.lower().rsplit(".", 1)[-1]
    leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.7)
    if close:
        section = bad.lower().split(".", 1)[0] if "." in bad else ""
        same_section = [k for k in keys if k.endswith("." + close[0]) and k.startswith(section + ".")]
        return same_section[0] if same_section else leaves[close[0]]
    return None


def _unknown_key_error(key: str, source: str = "") -> ConfigError:
    hint = suggest_key(key)
    reason = f"unknown key{f' (did you mean {hint}?)' if hint else ''}"
    return ConfigError(key, reason, source)


def get_key(cfg: Config, key: str) -> Any:
    """The value of a dotted key as an operator sees it (cap_schedule as its string form)."""
    if key in TOP_KEYS:
        return getattr(cfg, key)
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise _unknown_key_error(key)
    part = getattr(cfg, section)
    if name not in part.__struct_fields__:
        raise _unknown_key_error(key)
    value = getattr(part, name)
    if name == "cap_schedule":
        return format_cap_schedule(value)
    return value


def flatten(cfg: Config) -> dict[str, Any]:
    """Every key -> its value (operator form), in schema order."""
    out: dict[str, Any] = {key: getattr(cfg, key) for key in TOP_KEYS}
    for section in SECTIONS:
        part = getattr(cfg, section)
        for name in part.__struct_fields__:
            out[f"{section}.{name}"] = get_key(cfg, f"{section}.{name}")
    return out


def rule_of(key: str) -> str:
    """What a value of `key` must be, in words ("a whole number from 1 to 100000"); "" for an unknown key."""
    return next((k.rule for k in schema() if k.key == key), "")
