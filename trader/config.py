"""The trader's configuration: one schema for the file, `mmctl set`, the README and the example config.

Every key lives in a msgspec Struct below with its default, type, bounds and meaning (`Meta.description`).
What may change while the trader runs is *derived* from the schema: a field whose `Meta.extra` says
`live: False` (with the reason in `why`) is not live; every other key is. Nothing lists live keys by hand.

Sources, in order (later wins): defaults here, the TOML file, overrides (flat `"s1.entry_threshold"` keys,
e.g. persisted `mmctl set` values or `polymm-backtest --set`). The result is validated as a whole: types and
bounds by msgspec, its errors said in the operator's words from the same schema ("s1.entry_threshold must be a
number between 0 and 1 (got 1.5)", `rule_of`), then the cross-field checks of strategies.md. Invalid -> `ConfigError` naming the key and the reason.
Legal but probably unintended -> accepted, with `warnings(cfg)` saying why in words.

`s1.cap_schedule` is a list of windows `{start_s, end_s, cap_usd}` by seconds since the window start. It can be
written in TOML as a list of tables or as the same compact string `mmctl set` takes and `flatten` shows:
`"0-300:3,300-600:4,600-900:5"` (start-end seconds : USD cap, comma separated).

    python -m polymm.trader.config --markdown-reference   # the key table for the README
    python -m polymm.trader.config --example-toml         # a commented config file with every key
    python -m polymm.trader.config --check FILE           # validate a file: errors and warnings in words
"""
import argparse
import difflib
import math
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from polymm import env
from polymm.listen import DEFAULT_TRADER_LISTEN, MetricsError, parse_listen

# The 15-minute markets trade on a 0.01 tick; it only gets finer (0.001) near 0 and 1. A configured price
# bound must be valid at every moment of the window, so config checks use the coarse tick.
CONFIG_TICK = 0.01

_SOURCE_NOTE = "changes only with a restart"


def _m(meaning: str, *, live: bool = True, why: str = "", legacy: str = "", type_text: str = "", **bounds: Any) -> Meta:
    """Meta for one key: bounds for msgspec, meaning/liveness/legacy name (and, where the type alone does not
    say it, how the value is written) for the reference."""
    extra: dict[str, Any] = {"live": live}
    if why:
        extra["why"] = why
    if legacy:
        extra["legacy"] = legacy
    if type_text:
        extra["type_text"] = type_text
    return Meta(description=meaning, extra=extra, **bounds)


Price = float  # documentation alias: a probability price in (0, 1)


class CapWindow(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """S1's USD exposure cap per leg while `start_s <= seconds since window start < end_s`."""

    start_s: Annotated[float, Meta(ge=0)]
    end_s: Annotated[float, Meta(gt=0)]
    cap_usd: Annotated[float, Meta(gt=0, le=1_000_000)]


DEFAULT_CAP_SCHEDULE = (
    CapWindow(0, 300, 3.0),
    CapWindow(300, 600, 4.0),
    CapWindow(600, 900, 5.0),
)


class MarketConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    window_s: Annotated[
        int,
        _m(
            "market window length in seconds (900 for the 15-minute markets; shorter on the sim)",
            live=False,
            why="decides which market the feed and the trader follow; both must agree, so it " + _SOURCE_NOTE,
            ge=10,
            le=86_400,
        ),
    ] = env.DEFAULT_WINDOW_S


_ENDPOINT_WHY = "connections are opened at start; a new endpoint " + _SOURCE_NOTE
_URL = r"^(https?|wss?)://\S+$"


class EndpointsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    gamma_url: Annotated[str, _m("Gamma API (market discovery)", live=False, why=_ENDPOINT_WHY, pattern=r"^https?://\S+$")] = (
        env.PROD_GAMMA_URL
    )
    clob_url: Annotated[str, _m("CLOB REST API (orders, cancels, heartbeats)", live=False, why=_ENDPOINT_WHY, pattern=r"^https?://\S+$")] = (
        env.PROD_CLOB_URL
    )
    ws_market_url: Annotated[str, _m("market-channel WebSocket", live=False, why=_ENDPOINT_WHY, pattern=r"^wss?://\S+$")] = (
        env.PROD_WS_MARKET_URL
    )
    ws_user_url: Annotated[str, _m("user-channel WebSocket (our orders and fills)", live=False, why=_ENDPOINT_WHY, pattern=r"^wss?://\S+$")] = (
        env.PROD_WS_USER_URL
    )


_P = {"gt": 0.0, "lt": 1.0}  # a price: strictly inside (0, 1)
_SECONDS = {"ge": 0.0, "le": 86_400.0}

LegMode = Literal["highest_bid", "both", "up_only", "down_only"]


class S1Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: Annotated[bool, _m("run strategy S1", legacy="ENABLED")] = True
    entry_threshold: Annotated[Price, _m("enter a leg only while its best bid >= this", legacy="ENTRY_BID_THRESHOLD", **_P)] = 0.60
    leg_mode: Annotated[
        LegMode,
        _m(
            "highest_bid: one leg at a time, the eligible leg with the higher bid (Up on a tie); both; up_only; down_only",
            legacy="LEG_SELECTION_MODE",
        ),
    ] = "highest_bid"
    cap_schedule: Annotated[
        tuple[CapWindow, ...],
        _m(
            "USD exposure cap per leg by seconds since window start, `start-end:usd,...`; windows must start at 0, "
            "touch without overlap and cover the market window",
            legacy="CAP_SCHEDULE",
            min_length=1,
            max_length=100,
        ),
    ] = DEFAULT_CAP_SCHEDULE
    min_order_size: Annotated[
        float, _m("smallest entry in shares; the market's own minimum applies if larger", legacy="MIN_TRADE_SIZE", gt=0, le=1_000_000)
    ] = 5.0
    tp_increment: Annotated[float, _m("take-profit distance above the average entry price", legacy="MIN_TP_INCREMENT", **_P)] = 0.01
    max_tp_price: Annotated[Price, _m("highest take-profit price (at most 1 - 0.01)", legacy="MAX_TP_PRICE", **_P)] = 0.99
    sl_offset: Annotated[float, _m("stop trigger distance below the average entry price", legacy="SL_OFFSET", ge=0, lt=1)] = 0.20
    sl_floor: Annotated[Price, _m("stop trigger = max(avg_entry - sl_offset, sl_floor)", legacy="SL_FLOOR", **_P)] = 0.50
    sl_order_price: Annotated[
        Price, _m("limit price of the fill-and-kill stop-loss sell", legacy="SL_ORDER_PRICE", **_P)
    ] = 0.01
    exit_delay_s: Annotated[float, _m("wait after the first fill before placing the take-profit", legacy="EXIT_DELAY_SEC", **_SECONDS)] = 1.0
    exit_retry_s: Annotated[
        float, _m("minimum time between exit actions (take-profit reprices, stop-loss retries)", legacy="EXIT_RETRY_DELAY_SEC", gt=0, le=3600)
    ] = 1.0
    exit_drift: Annotated[
        float, _m("reprice the take-profit when the best ask is this far from it", legacy="EXIT_PRICE_DRIFT_THRESHOLD", **_P)
    ] = 0.02
    tp_reprice_hold_s: Annotated[
        float,
        _m(
            "an ask drift (s1.exit_drift) reprices the take-profit only after it has held this long in one "
            "direction, and then to the least-moved ask of that time (0: at once). Default 5 s: these books' asks "
            "swing 1-3 ticks back and forth about every second, and each reprice loses the order's queue place and "
            "spends rate limit; a real move costs at most 5 s at the old price. A size change reprices at once",
            ge=0,
            le=3600,
        ),
    ] = 5.0
    requote_wait_s: Annotated[float, _m("minimum time between entry requotes", legacy="ENTRY_REQUOTE_WAIT_SEC", **_SECONDS)] = 2.0
    requote_min_improve: Annotated[
        float, _m("requote an unfilled entry only when the bid moved at least this far", legacy="ENTRY_REQUOTE_MIN_IMPROVE", **_P)
    ] = 0.03
    late_window_s: Annotated[
        float, _m("the last seconds of the window are late: no normal entries, hold/late stop rules", legacy="LATE_WINDOW_SEC", **_SECONDS)
    ] = 120.0
    late_hold_threshold: Annotated[
        Price,
        _m("late: a position whose bid >= this is held to resolution; late re-entry needs the bid back >= this", legacy="LATE_REENTRY_ENTRY_THRESHOLD", **_P),
    ] = 0.90
    late_sl_trigger: Annotated[Price, _m("stop trigger of a held (late) position", legacy="LATE_SL_TRIGGER", **_P)] = 0.70
    late_reentry: Annotated[bool, _m("re-enter a leg after a late stop-out left it flat", legacy="ENABLE_LATE_REENTRY")] = True
    max_late_reentries: Annotated[int, _m("late re-entries per leg per window", legacy="MAX_LATE_REENTRIES", ge=0, le=100)] = 1
    fair_guard: Annotated[
        bool,
        _m("enter (or re-enter) a leg only when its fair value from the BTC reference price >= the entry price - "
           "s1.fair_margin; no entry while that price is stale (risk.stale_ref_ms) or the window's opening price "
           "is unknown; exits are unaffected"),
    ] = False
    fair_margin: Annotated[float, _m("how far below the entry price the fair value may be under s1.fair_guard", ge=0, lt=1)] = 0.05


class S2Params(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: Annotated[bool, _m("run strategy S2", legacy="ENABLED")] = False
    window_s: Annotated[float, _m("S2 may enter only in the last window_s seconds of the window", legacy="TIME_TO_EXPIRY_SEC", **_SECONDS)] = 420.0
    entry_ask_threshold: Annotated[Price, _m("enter a leg while its best ask >= this", legacy="ASK_ENTRY_THRESHOLD", **_P)] = 0.90
    target_usd: Annotated[float, _m("exposure target per leg (held + open buys, at the best bid)", legacy="TARGET_POSITION_USD", gt=0, le=1_000_000)] = 100.0
    order_size: Annotated[float, _m("shares per entry order (at least the market minimum)", legacy="MIN_TRADE_SIZE", gt=0, le=1_000_000)] = 10.0
    sl_price: Annotated[Price, _m("stop when the best bid <= this", legacy="SL_PRICE", **_P)] = 0.70
    sl_order_price: Annotated[Price, _m("limit price of the fill-and-kill stop-loss sell", legacy="SL_ORDER_PRICE", **_P)] = 0.01
    exit_retry_s: Annotated[float, _m("minimum time between stop-loss retries", legacy="EXIT_RETRY_DELAY_SEC", gt=0, le=3600)] = 1.0
    requote_wait_s: Annotated[float, _m("minimum time between entry requotes (as s1.requote_wait_s)", **_SECONDS)] = 2.0
    requote_min_improve: Annotated[float, _m("requote an unfilled entry only when the bid moved this far (as s1.requote_min_improve)", **_P)] = 0.03
    min_fair: Annotated[
        float,
        _m("enter a leg only when its fair value from the BTC reference price >= this (0 = off); no entry while "
           "that price is stale (risk.stale_ref_ms) or the window's opening price is unknown; stops are unaffected",
           ge=0, lt=1),
    ] = 0.0


class RiskParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_exposure_usd: Annotated[
        float, _m("total exposure across legs and strategies (incl. positions awaiting resolution); no entry beyond it", ge=0, le=10_000_000)
    ] = 50.0
    stale_feed_ms: Annotated[
        float, _m("feed older than this: cancel resting entries, place no new entries until fresh", gt=0, le=600_000)
    ] = 2000.0
    cancel_before_end_s: Annotated[
        float, _m("cancel every open order of the window this long before it ends; place nothing after", **_SECONDS)
    ] = 5.0
    max_orders_per_min: Annotated[int, _m("hard throttle on new entries and take-profits per rolling minute; stop-losses and flattens are exempt (they only sell what is held), cancels are never throttled", ge=1, le=100_000)] = 120
    heartbeat: Annotated[
        bool,
        _m(
            "keep the exchange's dead-man switch armed (orders are cancelled if the trader stops)",
            live=False,
            why="the execution core arms the dead-man switch when it starts; turning it off under resting orders "
            "would leave them unprotected, so it " + _SOURCE_NOTE,
        ),
    ] = True
    stale_ref_ms: Annotated[
        float, _m("BTC reference price (Chainlink, by its own timestamp) older than this is stale: fair-value-guarded "
                  "entries stop (s1.fair_guard, s2.min_fair)", gt=0, le=600_000)
    ] = 5000.0


_REDEEM_WHY = "the redeemer's thread reads it when the trader starts; it " + _SOURCE_NOTE


class RedeemParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Automatic redemption of resolved positions (README, Redemption; docs/redemption.md)."""

    enabled: Annotated[bool, _m(
        "redeem resolved positions through Polymarket's gasless relayer when the builder credentials are set "
        "(signature types 1-3); false: only report what is redeemable", live=False, why=_REDEEM_WHY)] = True
    delay_s: Annotated[float, _m("wait this long after the Data API first reports a position redeemable",
                                 live=False, why=_REDEEM_WHY, **_SECONDS)] = 30.0
    batch: Annotated[int, _m("markets redeemed or merged per relayed transaction", live=False, why=_REDEEM_WHY,
                             ge=1, le=50)] = 10
    merge: Annotated[bool, _m("also merge the Up+Down pairs of ended, not yet resolved windows (1 pUSD back per "
                              "pair at once)", live=False, why=_REDEEM_WHY)] = False
    poll_s: Annotated[float, _m("how often the Data API is asked for the wallet's positions", live=False,
                                why=_REDEEM_WHY, ge=1, le=3600)] = 15.0


# The place round trip measured on the sim (bench/bench_roundtrip.py, core place() -> LIVE median, 2.3 ms on the
# 2-core dev machine): the default time between a decision and its order reaching the exchange.
DEFAULT_LATENCY_MS = 2.5


class FillModelParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    latency_ms: Annotated[
        float,
        _m("backtest and paper: an order or cancel reaches the (simulated) exchange this long after the decision",
           live=False, why="the paper exchange is built with it at start, so it " + _SOURCE_NOTE, ge=0, le=60_000),
    ] = DEFAULT_LATENCY_MS


class PaperParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    balance_usd: Annotated[
        float,
        _m("paper mode: the paper wallet's starting pUSD; orders it cannot cover are refused as the exchange would",
           live=False, why="the paper wallet is funded at start, so it " + _SOURCE_NOTE, gt=0, le=100_000_000),
    ] = 1000.0


Mode = Literal["live", "paper"]
MODE_WHY = "the mode is read once at start: switching between paper and live needs a restart"


# HOST:PORT, [IPv6]:PORT or off (the port's range and the words for a bad one: polymm/listen.py, checked with the
# cross-field rules).
LISTEN_PATTERN = r"^(off|OFF|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}|[^\s:\[\]]+:[0-9]{1,5})$"


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The trader's Prometheus endpoint (polymm/metrics.py, trader/metrics.py; README "Monitoring")."""

    listen: Annotated[
        str,
        _m(
            "Prometheus endpoint: HOST:PORT ([::1]:PORT for IPv6) or off; loopback by default (it shows positions "
            "and P&L); env POLYMM_TRADER_METRICS overrides it",
            live=False,
            why="the endpoint is bound at start; a new address " + _SOURCE_NOTE,
            type_text="`HOST:PORT` | `off`",
            pattern=LISTEN_PATTERN,
        ),
    ] = DEFAULT_TRADER_LISTEN
    drawdown_alert_usd: Annotated[
        float,
        _m("exported as polymm_trader_pnl_drawdown_alert_usd: the PolymmPnLDrawdown alert fires when net P&L falls "
           "this far below its high of the last hour", gt=0, le=10_000_000),
    ] = 25.0


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # The one top-level key: `mode = "paper"` is a one-line change of the config file (before any [section]).
    mode: Annotated[Mode, _m("live trades real money on the exchange; paper fills orders locally against the "
                             "live book (no keys, nothing sent)", live=False, why=MODE_WHY)] = "live"
    market: MarketConfig = msgspec.field(default_factory=MarketConfig)
    endpoints: EndpointsConfig = msgspec.field(default_factory=EndpointsConfig)
    s1: S1Params = msgspec.field(default_factory=S1Params)
    s2: S2Params = msgspec.field(default_factory=S2Params)
    risk: RiskParams = msgspec.field(default_factory=RiskParams)
    redeem: RedeemParams = msgspec.field(default_factory=RedeemParams)
    fill_model: FillModelParams = msgspec.field(default_factory=FillModelParams)
    paper: PaperParams = msgspec.field(default_factory=PaperParams)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)


SECTIONS = ("market", "endpoints", "s1", "s2", "risk", "redeem", "fill_model", "paper", "metrics")
TOP_KEYS = ("mode",)  # keys outside any section


class ConfigError(Exception):
    """Invalid configuration. `key` is the dotted key ("s1.entry_threshold") or "" when the whole file is bad."""

    def __init__(self, key: str, reason: str, source: str = ""):
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        # "s1.entry_threshold must be ..." reads as a sentence; other reasons follow the key after a colon.
        sep = " " if reason.startswith("must ") else ": "
        super().__init__(f"{where}{key}{sep}{reason}" if key else f"{where}{reason}")


# ---------------------------------------------------------------------------------------------------------
# Schema introspection: the one place that walks the Structs.


class KeyInfo(msgspec.Struct, frozen=True):
    key: str
    default: Any
    type_text: str
    live: bool
    why_not_live: str
    legacy: str
    meaning: str
    rule: str = ""  # what a value must be, in words: "a number between 0 and 1" (error messages)


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


# ---------------------------------------------------------------------------------------------------------
# Cap schedule: the compact string form.


def _fmt(x: float) -> str:
    """Numbers as an operator writes them: 3 not 3.0, 0.6 not 0.6000000000000001."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isfinite(x) and float(x).is_integer():
        return str(int(x))
    return repr(round(x, 10))


def format_cap_schedule(windows: tuple[CapWindow, ...]) -> str:
    return ",".join(f"{_fmt(w.start_s)}-{_fmt(w.end_s)}:{_fmt(w.cap_usd)}" for w in windows)


def parse_cap_schedule(text: str) -> list[dict[str, float]]:
    """`"0-300:3,300-600:4"` -> list of {start_s, end_s, cap_usd}; ValueError with words on bad syntax."""
    out = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip():
        raise ValueError("empty cap schedule; expected `start-end:usd,...` e.g. `0-300:3,300-600:4,600-900:5`")
    for part in parts:
        try:
            span, cap = part.split(":")
            start, end = span.split("-")
            out.append({"start_s": float(start), "end_s": float(end), "cap_usd": float(cap)})
        except ValueError:
            raise ValueError(
                f"cannot read cap window {part!r}; expected `start-end:usd` e.g. `0-300:3` "
                "(seconds since window start, USD cap)"
            ) from None
    return out


def cap_at(schedule: tuple[CapWindow, ...], elapsed_s: float) -> float:
    """The cap in force `elapsed_s` seconds into the window (before the first window: the first; after the
    last: the last)."""
    for w in schedule:
        if w.start_s <= elapsed_s < w.end_s:
            return w.cap_usd
    return schedule[0].cap_usd if elapsed_s < schedule[0].start_s else schedule[-1].cap_usd


# ---------------------------------------------------------------------------------------------------------
# Reading values.


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


# ---------------------------------------------------------------------------------------------------------
# Building and validating.


def rule_of(key: str) -> str:
    """What a value of `key` must be, in words ("a whole number from 1 to 100000"); "" for an unknown key."""
    return next((k.rule for k in schema() if k.key == key), "")


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


def _normalise_raw(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Accept cap_schedule as its string form anywhere a dict is built."""
    s1 = raw.get("s1")
    if isinstance(s1, dict) and isinstance(s1.get("cap_schedule"), str):
        try:
            s1["cap_schedule"] = parse_cap_schedule(s1["cap_schedule"])
        except ValueError as e:
            raise ConfigError("s1.cap_schedule", str(e), source) from None
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


def _check_cross_fields(cfg: Config, source: str) -> None:
    """Combinations strategies.md calls invalid."""
    s1, risk, window = cfg.s1, cfg.risk, cfg.market.window_s
    ceiling = round(1 - CONFIG_TICK, 10)
    if s1.max_tp_price > ceiling:
        raise ConfigError(
            "s1.max_tp_price",
            f"{_fmt(s1.max_tp_price)} is above 1 - tick ({_fmt(ceiling)}); the exchange rejects such prices",
            source,
        )
    expected_start = 0.0
    for i, w in enumerate(s1.cap_schedule):
        label = f"window {i + 1} ({_fmt(w.start_s)}-{_fmt(w.end_s)})"
        if w.end_s <= w.start_s:
            raise ConfigError("s1.cap_schedule", f"{label} ends before it starts", source)
        if w.start_s < expected_start:
            raise ConfigError("s1.cap_schedule", f"{label} overlaps the previous window, which ends at {_fmt(expected_start)} s", source)
        if w.start_s > expected_start:
            raise ConfigError(
                "s1.cap_schedule",
                f"{label} leaves a gap: no cap between {_fmt(expected_start)} s and {_fmt(w.start_s)} s",
                source,
            )
        expected_start = w.end_s
    if expected_start < window:
        raise ConfigError(
            "s1.cap_schedule",
            f"leaves a gap: no cap between {_fmt(expected_start)} s and the window end at {window} s (market.window_s)",
            source,
        )
    if s1.late_window_s > window:
        raise ConfigError(
            "s1.late_window_s",
            f"{_fmt(s1.late_window_s)} s is longer than the market window ({window} s, market.window_s)",
            source,
        )
    if risk.cancel_before_end_s >= window:
        raise ConfigError(
            "risk.cancel_before_end_s",
            f"{_fmt(risk.cancel_before_end_s)} s is not shorter than the market window ({window} s): nothing could ever trade",
            source,
        )
    try:
        parse_listen(cfg.metrics.listen, source="metrics.listen")
    except MetricsError as e:
        # the message names the key and the value already: "metrics.listen='x': expected HOST:PORT ..."
        raise ConfigError("metrics.listen", str(e).removeprefix("metrics.listen="), source) from None


def warnings(cfg: Config) -> list[str]:
    """Legal but probably unintended settings, in words (shown by `mmctl set` and `mmctl status`)."""
    out: list[str] = []
    s1, s2, risk, window = cfg.s1, cfg.s2, cfg.risk, cfg.market.window_s
    if not s1.enabled and not s2.enabled:
        out.append("s1.enabled and s2.enabled are both false: the trader places no orders")
    if s1.enabled:
        if s1.entry_threshold <= s1.sl_floor:
            out.append(
                f"s1.entry_threshold {_fmt(s1.entry_threshold)} is at or below s1.sl_floor {_fmt(s1.sl_floor)}: "
                "every entry would stop out at once"
            )
        if s1.late_hold_threshold <= s1.late_sl_trigger:
            out.append(
                f"s1.late_hold_threshold {_fmt(s1.late_hold_threshold)} is at or below s1.late_sl_trigger "
                f"{_fmt(s1.late_sl_trigger)}: a held position could stop out as soon as it is held"
            )
        if s1.sl_order_price >= s1.sl_floor:
            out.append(
                f"s1.sl_order_price {_fmt(s1.sl_order_price)} is at or above s1.sl_floor {_fmt(s1.sl_floor)}: "
                "a stop-loss sell may not fill when the bid has fallen below the trigger"
            )
        for w in s1.cap_schedule:
            if w.start_s < window and w.cap_usd / s1.entry_threshold < s1.min_order_size:
                out.append(
                    f"s1.cap_schedule {_fmt(w.start_s)}-{_fmt(w.end_s)} s: ${_fmt(w.cap_usd)} buys fewer than "
                    f"s1.min_order_size ({_fmt(s1.min_order_size)}) shares at s1.entry_threshold "
                    f"{_fmt(s1.entry_threshold)} or above: S1 never enters then"
                )
        if s1.cap_schedule[-1].end_s > window:
            out.append(
                f"s1.cap_schedule runs to {_fmt(s1.cap_schedule[-1].end_s)} s but market.window_s is {window}: "
                "the windows after that never apply"
            )
        if 0 < s1.late_window_s <= risk.cancel_before_end_s:
            out.append(
                f"s1.late_window_s {_fmt(s1.late_window_s)} is not longer than risk.cancel_before_end_s "
                f"{_fmt(risk.cancel_before_end_s)}: the late rules never act"
            )
    if s2.enabled:
        if s2.entry_ask_threshold <= s2.sl_price:
            out.append(
                f"s2.entry_ask_threshold {_fmt(s2.entry_ask_threshold)} is at or below s2.sl_price "
                f"{_fmt(s2.sl_price)}: entries could stop out at once"
            )
        if s2.order_size * s2.entry_ask_threshold > s2.target_usd:
            out.append(
                f"s2.order_size {_fmt(s2.order_size)} at s2.entry_ask_threshold {_fmt(s2.entry_ask_threshold)} "
                f"exceeds s2.target_usd {_fmt(s2.target_usd)}: S2 will rarely or never enter"
            )
        if s2.window_s > window:
            out.append(f"s2.window_s {_fmt(s2.window_s)} is longer than market.window_s {window}: S2 may enter all window long")
        if s2.window_s <= risk.cancel_before_end_s:
            out.append(
                f"s2.window_s {_fmt(s2.window_s)} is not longer than risk.cancel_before_end_s "
                f"{_fmt(risk.cancel_before_end_s)}: S2 never enters"
            )
    if risk.max_exposure_usd == 0:
        out.append("risk.max_exposure_usd is 0: no entries at all")
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- TOML file (if a path is given) <- overrides (flat dotted keys; strings are parsed).

    Raises ConfigError naming the key and reason (file missing/unreadable, TOML syntax, unknown key, bad value,
    cross-field check)."""
    raw: dict[str, Any] = {}
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
        raw = _normalise_raw(raw, source)
        # The file alone must be valid in types (strict: "0.6" is not a number in TOML); cross-field checks wait
        # for the overrides, which may fix a combination.
        try:
            msgspec.convert(raw, Config, strict=True)
        except msgspec.ValidationError as e:
            raise _error_from_msgspec(e, source, raw, typed_source=True) from None
    if overrides:
        for key, value in overrides.items():
            _set_raw(raw, key, value, "override")
    return _convert(raw, strict=False, source=source)


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


# ---------------------------------------------------------------------------------------------------------
# Documentation generated from the schema.


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _fmt(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def markdown_reference() -> str:
    lines = [
        "| key | default | type | live | original bot | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for k in schema():
        live = "yes" if k.live else f"no: {k.why_not_live}"
        legacy = f"`{k.legacy}`" if k.legacy else ""
        default = f"`{_toml_value(k.default)}`"
        meaning = k.meaning.replace("|", "\\|")
        type_text = k.type_text.replace("|", "\\|")
        lines.append(f"| `{k.key}` | {default} | {type_text} | {live} | {legacy} | {meaning} |")
    return "\n".join(lines) + "\n"


def example_toml() -> str:
    out = [
        "# polymm trader configuration (/etc/polymm/config.toml). Every key with its default.",
        "# Secrets (PK, BROWSER_ADDRESS, SIGNATURE_TYPE, POLY_API_*) never go here: they come from the environment.",
        "# Keys marked [live] can be changed while running with `mmctl set KEY=VALUE`; the others need a restart.",
        "# Generated by `python -m polymm.trader.config --example-toml`.",
    ]
    current = ""
    for k in schema():
        section = k.key.split(".", 1)[0] if "." in k.key else ""
        if section != current:
            out += ["", f"[{section}]"]
            current = section
        tags = "[live]" if k.live else "[restart]"
        legacy = f" (original bot: {k.legacy})" if k.legacy else ""
        out.append(f"# {tags} {k.meaning}; {k.type_text}{legacy}")
        if k.key == "s1.cap_schedule":
            out.append("# Also writable as a list of tables: cap_schedule = [{start_s = 0, end_s = 300, cap_usd = 3}, ...]")
        out.append(f"{k.key.split('.', 1)[-1]} = {_toml_value(k.default)}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polymm.trader.config", description="polymm trader configuration schema")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown-reference", action="store_true", help="print the key reference as a markdown table")
    group.add_argument("--example-toml", action="store_true", help="print a commented config file with every key")
    group.add_argument("--check", metavar="FILE", help="validate a config file; exit 1 on errors")
    args = parser.parse_args(argv)
    if args.markdown_reference:
        sys.stdout.write(markdown_reference())
    elif args.example_toml:
        sys.stdout.write(example_toml())
    else:
        try:
            cfg = load_config(args.check)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for w in warnings(cfg):
            print(f"warning: {w}")
        print(f"{args.check}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
