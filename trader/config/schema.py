"""The configuration schema: every key in a msgspec Struct with its default, type, bounds, meaning
(`Meta.description`), whether it may change while the trader runs (`live`, with the reason in `why` when not) and
the original bot's name for it (`legacy`, read by polymm-migrate and shown in the README); `ConfigError`.

The package docstring (trader/config/__init__.py) tells how the rest is derived from this one schema.
"""
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from polymm import env
from polymm.listen import DEFAULT_TRADER_LISTEN

# The 15-minute markets trade on a 0.01 tick; it only gets finer (0.001) near 0 and 1. A configured price
# bound must be valid at every moment of the window, so config checks use the coarse tick.
CONFIG_TICK = 0.01

_SOURCE_NOTE = "changes only with a restart"


def _m(meaning: str, *, live: bool = True, why: str = "", legacy: str = "", type_text: str = "", scales: bool = False,
       **bounds: Any) -> Meta:
    """Meta for one key: bounds for msgspec, meaning/liveness/legacy name (and, where the type alone does not
    say it, how the value is written) for the reference. `scales`: a time within the window (a phase of it), which
    a series of another window length gets scaled from the base section (trader/config/series.py)."""
    extra: dict[str, Any] = {"live": live}
    if scales:
        extra["scales"] = True
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
            scales=True,
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
            "swing 1-3 ticks back and forth every second or few, and each reprice loses the order's queue place and "
            "spends rate limit; the hold must outlast the time the ask stays on one side (3 s still churns against "
            "an ask moving every 4 s), and a real move costs 5 s at the old price. A size change reprices at once",
            ge=0,
            le=3600,
        ),
    ] = 5.0
    requote_wait_s: Annotated[float, _m("minimum time between entry requotes", legacy="ENTRY_REQUOTE_WAIT_SEC", **_SECONDS)] = 2.0
    requote_min_improve: Annotated[
        float, _m("requote an unfilled entry only when the bid moved at least this far", legacy="ENTRY_REQUOTE_MIN_IMPROVE", **_P)
    ] = 0.03
    late_window_s: Annotated[
        float, _m("the last seconds of the window are late: no normal entries, hold/late stop rules", legacy="LATE_WINDOW_SEC",
                  scales=True, **_SECONDS)
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
    window_s: Annotated[float, _m("S2 may enter only in the last window_s seconds of the window", legacy="TIME_TO_EXPIRY_SEC",
                                  scales=True, **_SECONDS)] = 420.0
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
        float, _m("feed dead for this long (its heartbeat this old, or status not connected): cancel resting entries, "
                  "place no new entries until it is back; a quiet book on a live market socket is not dead "
                  "(risk.quiet_feed_ms)", gt=0, le=600_000)
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
    max_daily_loss_usd: Annotated[
        float, _m("this series' loss today (UTC day: realised, resolution payouts and open positions at the bid, from "
                  "the ledger and the live book) at which it places no new entries until the next day; exits go on; "
                  "0 = no limit", ge=0, le=10_000_000)
    ] = 0.0
    quiet_feed_ms: Annotated[
        float, _m("no market data at all for this long while the feed's market socket still answers its PINGs: "
                  "taken for a frozen socket, treated as a dead feed (resting entries cancelled, no new entries); "
                  "below it a book that does not change keeps its resting orders (the feed itself reconnects a "
                  "frozen socket after its --stale-after-s, 15 s)", gt=0, le=600_000)
    ] = 15000.0


class WalletParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Limits over every series trading one wallet on this host (trader/wallet/; README "Several series on one
    wallet"). Every series' trader enforces them against the others' published exposure and P&L."""

    max_exposure_usd: Annotated[
        float, _m("total exposure of every series on the wallet together (each series' as risk.max_exposure_usd "
                  "counts it); no series enters beyond it; 0 = no wallet-wide cap (each series' own cap only)",
                  ge=0, le=10_000_000)
    ] = 0.0
    max_daily_loss_usd: Annotated[
        float, _m("loss today (UTC) of every series on the wallet together at which no series places new entries "
                  "until the next day; exits go on; 0 = no limit", ge=0, le=10_000_000)
    ] = 0.0


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
    rpc_url: Annotated[str, _m(
        "a Polygon JSON-RPC endpoint, empty for none: approvals the exchange does not report are read through it "
        "(trader start, polymm-preflight), and a signature type 0 wallet redeems through it, paying gas in POL "
        f"(docs/redemption.md). A provider's URL holds its key: prefer {env.RPC_URL} in the secrets file, which "
        "overrides this; shown redacted", live=False, why=_REDEEM_WHY, pattern=r"^(https?://\S+)?$",
        type_text="URL or empty")] = ""


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
            f"and P&L); env {env.TRADER_METRICS} overrides it",
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
    wallet: WalletParams = msgspec.field(default_factory=WalletParams)
    redeem: RedeemParams = msgspec.field(default_factory=RedeemParams)
    fill_model: FillModelParams = msgspec.field(default_factory=FillModelParams)
    paper: PaperParams = msgspec.field(default_factory=PaperParams)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)


SECTIONS = ("market", "endpoints", "s1", "s2", "risk", "wallet", "redeem", "fill_model", "paper", "metrics")
# Sections a `[series.<name>.<section>]` table may set for one series (trader/config/series.py); the others are
# the same for every series: the exchange (endpoints), the wallet's (wallet, redeem) and the window (market).
SERIES_SECTIONS = ("s1", "s2", "risk", "fill_model", "paper", "metrics")
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
