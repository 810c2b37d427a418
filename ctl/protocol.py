"""The control protocol between mmctl and polymm-trader: message types and framing.

Transport: a Unix stream socket (`/run/polymm/trader.sock` under systemd). Every frame is a 4-byte
big-endian unsigned length followed by that many bytes of MessagePack (msgspec). A connection carries
any number of request → reply exchanges, strictly in order: the client sends one request and reads one
reply.

Messages are tagged msgspec Structs. Requests are tagged by `op` ("status", "set", ...); replies by
`kind` ("status", "changed", "error", ...). Every message carries `v`, the protocol version. Both ends
read `v` first (`peek_version`) and refuse a version they do not speak with a clear error, before
trying to decode the rest, so an old mmctl against a new trader says "version mismatch" instead of
"malformed frame".

Compatibility rule: `ErrorReply` keeps its shape in every version (kind "error", `code`, `message`),
so any mmctl can print any trader's refusal. Within a version, fields are only ever added with a default
(both ends ignore fields they do not know), so a newer trader's extras never break an older mmctl, and
mmctl renders a missing optional value as "-".

Legs, sides and states travel as plain strings ("up", "BUY", "live") so this module depends on
nothing in the trader (architecture.md: trader → ctl.protocol, never the other way).
"""
from __future__ import annotations

import struct
from typing import Any, Union

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20  # 1 MiB: a full status with hundreds of orders is ~100 KiB; anything bigger is a bug or an attack
HEADER = struct.Struct(">I")  # the length prefix


# ---------------------------------------------------------------------------------------------------------
# Error codes. One word each, so scripts can branch on them; the message says the rest in words.

E_BAD_FRAME = "bad_frame"  # not MessagePack, or not a known request shape
E_TOO_LARGE = "too_large"  # length prefix above MAX_FRAME (the connection is then closed)
E_UNKNOWN_OP = "unknown_op"  # a well-formed message whose op this trader does not know
E_VERSION = "version"  # protocol version mismatch
E_FORBIDDEN = "forbidden"  # the peer's uid/groups are not allowed
E_BUSY = "busy"  # too many clients
E_BAD_REQUEST = "bad_request"  # a field value the handler cannot use (e.g. a bad `since`)
E_UNKNOWN_KEY = "unknown_key"  # config key does not exist (`suggestion` names the nearest one)
E_NOT_LIVE = "not_live"  # config key cannot change while running (the message says why)
E_INVALID = "invalid_value"  # type, bounds or cross-field rule broken; nothing was applied
E_UNAVAILABLE = "unavailable"  # the trader cannot do it now (starting, shutting down, engine restarting)
E_INTERNAL = "internal"  # the handler raised; the trader logged the traceback


# ---------------------------------------------------------------------------------------------------------
# Requests


class Request(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=False):
    v: int = PROTOCOL_VERSION


class StatusRequest(Request, tag="status"):
    pass


class ConfigRequest(Request, tag="config"):
    key: str | None = None  # one key, or the whole effective config


class SetRequest(Request, tag="set"):
    settings: dict[str, str]  # "s1.entry_threshold" -> "0.42": strings, validated by the trader's schema


class UnsetRequest(Request, tag="unset"):
    key: str  # drop this override: the value from the file (or the default) applies again


class ReloadRequest(Request, tag="reload"):
    pass


class PauseRequest(Request, tag="pause"):
    pass


class ResumeRequest(Request, tag="resume"):
    pass


class CancelAllRequest(Request, tag="cancel_all"):
    pass


class FlattenRequest(Request, tag="flatten"):
    pass


class RestartRequest(Request, tag="restart"):
    pass


class OrdersRequest(Request, tag="orders"):
    include_done: bool = False  # also filled / canceled / rejected orders still remembered


class PositionsRequest(Request, tag="positions"):
    pass


class FillsRequest(Request, tag="fills"):
    since: float | None = None  # unix seconds; None = every fill the trader remembers
    limit: int | None = None  # the newest N


AnyRequest = Union[
    StatusRequest,
    ConfigRequest,
    SetRequest,
    UnsetRequest,
    ReloadRequest,
    PauseRequest,
    ResumeRequest,
    CancelAllRequest,
    FlattenRequest,
    RestartRequest,
    OrdersRequest,
    PositionsRequest,
    FillsRequest,
]

# Requests that change the trader. The server runs these one at a time (never two `set`s interleaved)
# and logs who sent them; read-only ones run concurrently.
MUTATING_OPS = frozenset({"set", "unset", "reload", "pause", "resume", "cancel_all", "flatten", "restart"})
READ_ONLY_OPS = frozenset({"status", "config", "orders", "positions", "fills"})
ALL_OPS = MUTATING_OPS | READ_ONLY_OPS
# The kill switch: served whatever the load (the server admits them over its client limit, on their own workers).
KILL_SWITCH_OPS = frozenset({"pause", "flatten", "cancel_all"})


# ---------------------------------------------------------------------------------------------------------
# Pieces of replies


class OrderInfo(msgspec.Struct, kw_only=True):
    client_id: str
    order_id: str | None
    strategy: str  # "s1" | "s2"
    leg: str  # "up" | "down"
    side: str  # "BUY" | "SELL"
    price: float
    size: float  # original, shares
    filled: float  # shares matched so far
    state: str  # trader.model.OrderState value
    role: str  # entry | take_profit | stop_loss | flatten
    order_type: str  # GTC | GTD | FOK | FAK
    post_only: bool
    created_at: float  # unix seconds
    age_s: float | None = None  # now - created_at, on the trader's clock (None: the trader did not say)
    # Distance behind the top of the book on the order's own side, in price units: BUY = best bid - price,
    # SELL = price - best ask, against the book as displayed (our own orders count: an order of ours at the
    # top is 0 behind). 0 = at the top, > 0 = queued behind it, < 0 = better than the book (crossing, or not
    # displayed yet). None when that side of the book is empty.
    distance: float | None = None
    reason: str | None = ""  # why the strategy placed it ("entry bid>=0.60"); None/"" when not recorded


class LegBook(msgspec.Struct, kw_only=True):
    """One leg's top of book at the trader's last decision, as the exchange displays it (our own orders
    included) and without our orders (what the strategies decide on). None: no level on that side."""

    leg: str  # "up" | "down"
    bid: float | None = None
    bid_size: float | None = None
    ask: float | None = None
    ask_size: float | None = None
    net_bid: float | None = None
    net_bid_size: float | None = None
    net_ask: float | None = None
    net_ask_size: float | None = None
    # False: the published depth showed only our orders on that side, so the price without us is unknown
    net_bid_known: bool = True
    net_ask_known: bool = True


class PositionInfo(msgspec.Struct, kw_only=True):
    strategy: str
    leg: str
    shares: float
    avg_price: float
    mark: float | None = None  # price used for unrealised P&L (the leg's best bid); None when no bid
    realised_pnl: float = 0.0  # pUSD, net of fees
    unrealised_pnl: float = 0.0  # shares * (mark - avg_price)
    fees: float = 0.0
    first_fill_at: float | None = None
    last_fill_at: float | None = None
    # The window (unix start) the position was bought in, when the trader says; None from older traders.
    window_start: int | None = None
    # True for a position of an ended window the exchange has not resolved yet (held to resolution): it has no
    # book (mark None) and is paid out at 1 or 0 when the market resolves.
    awaiting_resolution: bool = False


class FillInfo(msgspec.Struct, kw_only=True):
    trade_id: str
    order_id: str
    client_id: str | None
    strategy: str
    leg: str
    side: str
    price: float
    size: float
    fee: float
    role: str  # maker | taker
    status: str  # MATCHED | MINED | CONFIRMED | FAILED
    ts: float


class Exposure(msgspec.Struct, kw_only=True):
    scope: str  # "total", "s1", "s2", or "s1.up"-style
    usd: float  # current exposure (pUSD at risk: positions at cost + working buy orders)
    cap_usd: float | None = None  # the configured cap; None = no cap for this scope


class ConfigEntry(msgspec.Struct, kw_only=True):
    key: str  # dotted: "s1.entry_threshold"
    value: Any  # effective value (secrets are "<redacted>")
    default: Any = None
    override: bool = False  # set with `mmctl set`, persisted in the state directory
    live: bool = True  # may change while trading; False = needs a restart
    pending_restart: bool = False  # changed but not in effect until the trader restarts
    # Where the value comes from: "override" (mmctl set), "env" (an environment variable or option, e.g.
    # POLYMM_CLOB_URL), "file" (the config file sets the key), "series" (the series' own [series.<name>.*]
    # table), "stretched" (a base key stretched to the series' window), "default". "" from a trader that does not say.
    source: str = ""


class Change(msgspec.Struct, kw_only=True):
    key: str
    old: Any
    new: Any


# ---------------------------------------------------------------------------------------------------------
# Replies


class Reply(msgspec.Struct, tag_field="kind", kw_only=True, forbid_unknown_fields=False):
    v: int = PROTOCOL_VERSION


class WalletSeries(msgspec.Struct, kw_only=True):
    """One series of the wallet as its limits count it (trader/wallet/accounting.py)."""

    series: str
    pid: int = 0
    running: bool = True
    exposure_usd: float = 0.0  # counted against wallet.max_exposure_usd
    pnl_today_usd: float = 0.0  # counted against wallet.max_daily_loss_usd (UTC day)
    note: str = ""  # why it counts differently from what it published (a stopped or dead trader)


class WalletInfo(msgspec.Struct, kw_only=True):
    """Every series trading this wallet on the host, from the shared wallet record (trader/wallet/)."""

    leader_series: str = ""  # the trader that sends the wallet's heartbeats, redeems and reaps
    leader_pid: int = 0
    leader: bool = False  # this trader is it
    cap_usd: float = 0.0  # wallet.max_exposure_usd in force (0: none)
    loss_limit_usd: float = 0.0  # wallet.max_daily_loss_usd in force (0: none)
    exposure_usd: float = 0.0  # every series together
    pnl_today_usd: float = 0.0
    halt: str = ""  # why no series enters now, in words
    held_back: int = 0  # buys this trader held back for the wallet cap since it started
    series: list[WalletSeries] = []


class StatusReply(Reply, tag="status"):
    # running | paused | stale_feed | exchange_restarting | cancel_only | post_only | rate_limited |
    # closed_only | starting | restarting | stopping — the single word an operator reads first.
    state: str
    healthy: bool  # the trader's own verdict: trading normally, nothing in `warnings`
    paused: bool = False
    pid: int = 0
    started_at: float = 0.0  # unix seconds the trader process started
    now: float = 0.0  # the trader's clock when it answered
    # The window the trader is trading (from the feed, as the trader last saw it)
    condition_id: str = ""
    window_start: int = 0
    window_end: int = 0
    feed_age_ms: float | None = None  # age of the book at the trader's last decision
    last_decision_at: float | None = None
    heartbeat_ok: bool = True  # the exchange dead-man-switch heartbeats are succeeding
    # cash: the wallet's pUSD (what the trader can spend), when known: the exchange's last balance plus our own fills
    # since it was asked (the exchange wins at every poll)
    balance_usd: float | None = None
    # our positions: the current window's at the best bid, earlier windows' awaiting resolution at cost (our fills)
    open_value_usd: float | None = None
    # The rest of the wallet, from Polymarket's Data API (the redeemer; None while unknown):
    awaiting_redemption_usd: float | None = None  # won, not yet redeemed: shares x 1 pUSD
    redeemed_today_usd: float | None = None  # pUSD back today (UTC) through redemptions
    merged_today_usd: float | None = None  # pUSD back today (UTC) through merged Up+Down pairs
    positions: list[PositionInfo] = []
    orders: list[OrderInfo] = []  # working orders
    exposure: list[Exposure] = []
    realised_pnl: float = 0.0  # total, pUSD, net of fees
    unrealised_pnl: float = 0.0
    blocked_legs: dict[str, str] = {}  # leg -> reason it cannot trade now
    warnings: list[str] = []  # in words: "feed stale for 4.2 s", "heartbeat failing since 21:04:10", ...
    config_warnings: list[str] = []  # from the config schema (questionable but valid values)
    pending_restart: list[str] = []  # config keys changed that take effect only after a restart
    decisions: int | None = None  # decisions made since the trader started (None from older traders)
    fair_up: float | None = None  # P(Up wins) from the BTC reference price at the last decision (None: unknown/stale)
    mode: str = "live"  # live | paper (config `mode`, read once at start); older traders are live
    book: list[LegBook] = []  # per leg, raw and without our orders (empty from older traders / no book yet)
    # Worth saying, not wrong (a window rollover in progress: "new window: first book pending"); never unhealthy.
    notes: list[str] = []
    # Why the config file (+ overrides) does not load now, in words: the running config is the last one that did,
    # and a restart would fail until it is fixed. None while it loads. A warning too (exit 1 in mmctl status).
    config_error: str | None = None
    series: str = "btc-15m"  # the market series this trader trades (polymm/series.py); older traders: the default
    wallet: WalletInfo | None = None  # the wallet's series (None from older traders)


class ConfigReply(Reply, tag="config"):
    entries: list[ConfigEntry]
    source: str | None = None  # the config file path
    overrides_path: str | None = None  # where `mmctl set` persists overrides
    warnings: list[str] = []


class ChangeReply(Reply, tag="changed"):
    """Reply to set, unset and reload: what changed (old → new), all of it applied."""

    changes: list[Change] = []
    warnings: list[str] = []
    pending_restart: list[str] = []  # keys whose new value waits for a restart
    message: str = ""  # e.g. "applied at the next decision; persisted to /var/lib/polymm/overrides.toml"


class DoneReply(Reply, tag="done"):
    """Reply to pause, resume, cancel_all, flatten, restart: what was done, in words."""

    message: str
    count: int | None = None  # orders cancelled / flatten orders sent, when it applies
    warnings: list[str] = []
    # The trader's pause state after the command, when the handler says (None: not reported). flatten
    # leaves the trader paused; mmctl then says how to trade again.
    paused: bool | None = None
    # False when the command was carried out only in part (a restart that could not re-read the config: the
    # `warnings` say what was not done); mmctl then exits 1.
    complete: bool = True


class OrdersReply(Reply, tag="orders"):
    orders: list[OrderInfo]
    now: float = 0.0
    book: list[LegBook] = []  # as in StatusReply


class PositionsReply(Reply, tag="positions"):
    positions: list[PositionInfo]
    realised_pnl: float = 0.0
    unrealised_pnl: float = 0.0
    now: float = 0.0


class FillsReply(Reply, tag="fills"):
    fills: list[FillInfo]
    now: float = 0.0


class KeyProblem(msgspec.Struct, kw_only=True):
    """One refused key of a `set`: which key, why (an E_* code), and the sentence for a human."""

    key: str
    code: str  # E_UNKNOWN_KEY | E_NOT_LIVE | E_INVALID
    message: str
    suggestion: str | None = None  # nearest valid key for E_UNKNOWN_KEY


class ErrorReply(Reply, tag="error"):
    """The one reply shape every version keeps: any mmctl can print any trader's refusal."""

    code: str  # one of the E_* codes
    message: str  # one line, for a human
    key: str | None = None  # the config key concerned, when there is one
    suggestion: str | None = None  # nearest valid key for E_UNKNOWN_KEY
    # E_FORBIDDEN: the group to join. mmctl words the refusal with its own user name: a trader running
    # with PrivateUsers=yes sees every other user as uid 65534 and cannot name the operator.
    group: str | None = None
    # A refused `set`: every key that was refused and why, one each (`message` says all of them in one line;
    # `key` is the first). Empty for every other refusal and from older traders.
    problems: list[KeyProblem] = []


AnyReply = Union[
    StatusReply,
    ConfigReply,
    ChangeReply,
    DoneReply,
    OrdersReply,
    PositionsReply,
    FillsReply,
    ErrorReply,
]


# ---------------------------------------------------------------------------------------------------------
# Errors


class ControlError(Exception):
    """A request refused with a code and a one-line message.

    The trader-side handler raises it to answer with an ErrorReply; the client raises it when the trader
    answered with one. `str(err)` is the line to show.
    """

    def __init__(self, code: str, message: str, *, key: str | None = None, suggestion: str | None = None,
                 group: str | None = None, problems: list[KeyProblem] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.key = key
        self.suggestion = suggestion
        self.group = group
        self.problems = list(problems or [])

    def to_reply(self) -> ErrorReply:
        return ErrorReply(code=self.code, message=one_line(self.message), key=self.key, suggestion=self.suggestion,
                          group=self.group,
                          problems=[msgspec.structs.replace(q, message=one_line(q.message)) for q in self.problems])

    @classmethod
    def from_reply(cls, reply: ErrorReply) -> "ControlError":
        return cls(reply.code, reply.message, key=reply.key, suggestion=reply.suggestion, group=reply.group,
                   problems=reply.problems)


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int = MAX_FRAME) -> None:
        super().__init__(f"frame of {size} bytes is larger than the {limit}-byte limit")
        self.size = size
        self.limit = limit


class VersionMismatch(Exception):
    def __init__(self, theirs: int | None, ours: int = PROTOCOL_VERSION) -> None:
        super().__init__(version_mismatch_message(theirs, ours))
        self.theirs = theirs
        self.ours = ours


def one_line(text: str, limit: int = 500) -> str:
    """Messages cross the socket as one line: a multi-line exception text would break tables and logs."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def version_mismatch_message(theirs: int | None, ours: int = PROTOCOL_VERSION) -> str:
    seen = "no version" if theirs is None else f"version {theirs}"
    return f"control protocol mismatch: got {seen}, this side speaks version {ours}; use the mmctl installed with this polymm-trader"


# ---------------------------------------------------------------------------------------------------------
# Encoding


_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(AnyRequest)
_reply_decoder = msgspec.msgpack.Decoder(AnyReply)


class _Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """Only what every version agrees on: the version, and which message it is."""

    v: int | None = None
    op: str | None = None
    kind: str | None = None


_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameTooLarge(len(payload))
    return HEADER.pack(len(payload)) + payload


def encode(message: Request | Reply) -> bytes:
    """A whole frame (length prefix + MessagePack) for one message."""
    return frame(_encoder.encode(message))


def peek(payload: bytes) -> _Envelope:
    """The version and tag of a payload, without decoding the rest. msgspec.DecodeError if not a map."""
    return _envelope_decoder.decode(payload)


def decode_request(payload: bytes) -> AnyRequest:
    """One request from one frame's payload.

    Raises ControlError with E_VERSION, E_UNKNOWN_OP or E_BAD_FRAME — exactly the reply to send back.
    """
    try:
        envelope = peek(payload)
    except msgspec.DecodeError as exc:
        raise ControlError(E_BAD_FRAME, f"malformed frame: not a MessagePack map ({one_line(str(exc))})") from None
    if envelope.v != PROTOCOL_VERSION:
        raise ControlError(E_VERSION, version_mismatch_message(envelope.v))
    if envelope.op is None:
        raise ControlError(E_BAD_FRAME, "malformed request: no `op` field")
    if envelope.op not in ALL_OPS:
        raise ControlError(E_UNKNOWN_OP, f"unknown request {envelope.op!r}; known: {', '.join(sorted(ALL_OPS))}")
    try:
        return _request_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ControlError(E_BAD_FRAME, f"malformed {envelope.op!r} request: {one_line(str(exc))}") from None


def decode_reply(payload: bytes) -> AnyReply:
    """One reply from one frame's payload. VersionMismatch, or msgspec.DecodeError/ValidationError if garbled.

    An ErrorReply is decoded whatever its version (its shape never changes), so a trader refusing our
    version can say so itself.
    """
    envelope = peek(payload)
    if envelope.kind == "error":
        return msgspec.msgpack.decode(payload, type=ErrorReply)
    if envelope.v != PROTOCOL_VERSION:
        raise VersionMismatch(envelope.v)
    return _reply_decoder.decode(payload)


class FrameReader:
    """Incremental frame splitter for a byte stream (pure: no sockets).

    `feed(data)` returns the complete payloads now available. A length prefix above `max_frame` raises
    FrameTooLarge at once — before the body arrives — so an oversized frame never costs memory.
    `pending` is how many bytes are buffered (a partial frame).
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        payloads: list[bytes] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            payloads.append(bytes(self._buf[HEADER.size : end]))
            del self._buf[:end]
        return payloads


def to_builtins(message: msgspec.Struct) -> Any:
    """A message as plain dicts/lists (for `--json`); NaN becomes None as in JSON."""
    return msgspec.json.decode(msgspec.json.encode(message))


# ---------------------------------------------------------------------------------------------------------
# Secrets. The trader's handler redacts before answering; mmctl redacts again before printing, so a
# handler bug still cannot put a key on an operator's screen or in a script's log.

REDACTED = "<redacted>"
_SECRET_PARTS = frozenset(
    {"pk", "private_key", "privkey", "secret", "api_secret", "passphrase", "api_passphrase", "api_key", "password",
     "poly_api_key", "poly_api_secret", "poly_passphrase", "mnemonic", "seed",
     "rpc_url"}  # a Polygon RPC provider's URL carries its API key in the path
)
_SECRET_SUFFIXES = ("_secret", "_passphrase", "_password", "_private_key", "_api_key")


def is_secret_key(key: str) -> bool:
    """True for config/env keys that hold a secret ("pk", "auth.api_secret", "POLY_PASSPHRASE")."""
    for part in key.lower().split("."):
        if part in _SECRET_PARTS or part.endswith(_SECRET_SUFFIXES):
            return True
    return False


def redact(key: str, value: Any) -> Any:
    return REDACTED if is_secret_key(key) and value not in (None, "") else value
