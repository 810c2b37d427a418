"""The trader's configuration: one schema for the file, `mmctl set`, the README and the example config.

Every key lives in a msgspec Struct (schema.py) with its default, type, bounds and meaning (`Meta.description`).
What may change while the trader runs is *derived* from the schema: a field whose `Meta.extra` says
`live: False` (with the reason in `why`) is not live; every other key is. Nothing lists live keys by hand.

Sources, in order (later wins): defaults here, the TOML file, overrides (flat `"s1.entry_threshold"` keys,
e.g. persisted `mmctl set` values or `polymm-backtest --set`). The result is validated as a whole: types and
bounds by msgspec, its errors said in the operator's words from the same schema ("s1.entry_threshold must be a
number between 0 and 1 (got 1.5)", `rule_of`; messages.py), then the cross-field checks of strategies.md
(checks.py). Invalid -> `ConfigError` naming the key and the reason. Legal but probably unintended -> accepted,
with `warnings(cfg)` saying why in words.

`s1.cap_schedule` is a list of windows `{start_s, end_s, cap_usd}` by seconds since the window start. It can be
written in TOML as a list of tables or as the same compact string `mmctl set` takes and `flatten` shows:
`"0-300:3,300-600:4,600-900:5"` (start-end seconds : USD cap, comma separated).

    python -m polymm.trader.config --markdown-reference   # the key table for the README
    python -m polymm.trader.config --example-toml         # a commented config file with every key
    python -m polymm.trader.config --check FILE           # validate a file: errors and warnings in words

The package by concern: schema.py (the Structs, their bounds, meanings, liveness and the original bot's names;
ConfigError), keys.py (introspection: the key list, live keys, rules in words, suggestions, reading a key),
values.py (numbers and the cap schedule as an operator writes them), messages.py (msgspec errors in words),
checks.py (cross-field errors and warnings), load.py (file + overrides, `mmctl set`), docs.py (README reference,
example config), cli.py (`python -m polymm.trader.config`). Everything other modules use is importable from
here (`from polymm.trader.config import load_config`).
"""

from polymm.trader.config.checks import warnings
from polymm.trader.config.cli import main
from polymm.trader.config.docs import _toml_value, example_toml, markdown_reference
from polymm.trader.config.keys import (KeyInfo, all_keys, flatten, get_key, live_keys, rule_of, schema,
                                       suggest_key)
from polymm.trader.config.load import _set_raw, apply_settings, keys_in_file, load_config
from polymm.trader.config.messages import _error_from_msgspec
from polymm.trader.config.schema import (CONFIG_TICK, DEFAULT_CAP_SCHEDULE, DEFAULT_LATENCY_MS, LISTEN_PATTERN,
                                         MODE_WHY, SECTIONS, TOP_KEYS, CapWindow, Config, ConfigError,
                                         EndpointsConfig, FillModelParams, LegMode, MarketConfig, MetricsConfig, Mode,
                                         PaperParams, Price, RedeemParams, RiskParams, S1Params, S2Params)
from polymm.trader.config.values import _fmt, cap_at, format_cap_schedule, parse_cap_schedule

__all__ = [
    "CONFIG_TICK", "DEFAULT_CAP_SCHEDULE", "DEFAULT_LATENCY_MS", "LISTEN_PATTERN", "MODE_WHY", "SECTIONS", "TOP_KEYS",
    "CapWindow", "Config", "ConfigError", "EndpointsConfig", "FillModelParams", "KeyInfo", "LegMode", "MarketConfig",
    "MetricsConfig", "Mode", "PaperParams", "Price", "RedeemParams", "RiskParams", "S1Params", "S2Params",
    "all_keys", "apply_settings", "cap_at", "example_toml", "flatten", "format_cap_schedule", "get_key",
    "keys_in_file", "live_keys", "load_config", "main", "markdown_reference", "parse_cap_schedule", "rule_of",
    "schema", "suggest_key", "warnings",
    # the helpers polymm-migrate (trader/migrate.py) builds on, and the tests read
    "_error_from_msgspec", "_fmt", "_set_raw", "_toml_value",
]
