"""msgspec's validation errors as the operator's sentences: the key, what its value must be (from the schema)
and what it got ("s1.entry_threshold must be a number between 0 and 1 (got 1.5)")."""
from typing import Any

import msgspec

from polymm.trader.config.keys import _rule, rule_of, schema, suggest_key
from polymm.trader.config.schema import SECTIONS, CapWindow, ConfigError
from polymm.trader.config.values import _fmt


_MISSING = object()


def _at(raw: Any, path: str) -> Any:
    """The value at a msgspec error path ("s1.cap_schedule[0].cap_usd") in the raw input, or _MISSING."""
    node = raw
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return _MISSING
    return node


def _got(value: Any, typed_source: bool) -> str:
    """The offending value as the operator wrote it. From a TOML file (typed), a string where a number or
    true/false belongs is shown quoted with the fix; from `mmctl set` every value is text and shown as typed."""
    if value is _MISSING:
        return ""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, float):
        shown = _fmt(value)
    elif isinstance(value, str):
        shown = f'"{value}"' if typed_source else value
        if typed_source:
            shown += ", text in quotes: write it without the quotes" if _looks_plain(value) else ", text in quotes"
    elif isinstance(value, (dict, list)):
        shown = "a table" if isinstance(value, dict) else "a list"
    else:
        shown = str(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f" (got {shown})"


def _looks_plain(text: str) -> bool:
    if text.strip().lower() in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _error_from_msgspec(err: msgspec.ValidationError, source: str, raw: Any = None,
                        typed_source: bool = False) -> ConfigError:
    """msgspec's error as the operator's sentence: the key, what its value must be (from the schema) and what
    it got. `raw` is the input the error is about; `typed_source` when it came from a TOML file."""
    text = str(err)
    path = ""
    if " - at `$" in text:
        path = text.rsplit(" - at `$", 1)[1].rstrip("`").lstrip(".")
    key = path.split("[", 1)[0]
    if text.startswith("Object contains unknown field `"):
        field = text.split("`", 2)[1]
        key = f"{key}.{field}" if key else field
        hint = suggest_key(key)
        return ConfigError(key, f"unknown key{f' (did you mean {hint}?)' if hint else ''}", source)
    if key in SECTIONS:
        return ConfigError(key, f"must be a table of settings ([{key}] in TOML){_got(_at(raw, path), typed_source)}",
                           source)
    rule = rule_of(key)
    if not rule:
        return ConfigError(key, text + _hint(key, text), source)
    if "[" in path and key == "s1.cap_schedule":
        # One window of a list-of-tables schedule: say which window and which of its fields.
        index = path.split("[", 1)[1].split("]", 1)[0]
        field_name = path.rsplit(".", 1)[1] if "]." in path else ""
        window = f"window {int(index) + 1}" if index.isdigit() else "a window"
        got = _got(_at(raw, path), typed_source)
        if field_name:
            field_rule = next((_rule(f.type) for f in msgspec.inspect.type_info(CapWindow).fields
                               if f.name == field_name), "")
            return ConfigError(key, f"{window}: {field_name} must be {field_rule}{got}", source)
        return ConfigError(key, f"{window} must be a table with start_s, end_s and cap_usd{got}", source)
    return ConfigError(key, f"must be {rule}{_got(_at(raw, path), typed_source)}", source)


def _hint(key: str, text: str) -> str:
    """msgspec's words plus what the operator may write instead (for errors `rule_of` has no words for)."""
    if text.startswith("Expected `bool`"):
        return " (write true or false)"
    if text.startswith("Invalid enum value"):
        info = next((k for k in schema() if k.key == key), None)
        if info is not None:
            return f" (one of {info.type_text.replace('`', '')})"
    return ""
