"""The segment's layout: the numpy dtypes that define every byte, the records a reader returns, and the
`struct` packers derived from the dtypes (one definition of where each byte lives). See the package docstring."""
from __future__ import annotations

import math
import os
import struct
import time
from dataclasses import dataclass

import numpy as np

from polymm import env
from polymm.feed.market import MarketIdentity

MAGIC = int.from_bytes(b"POLYMMTB", "little")  # "POLYMM top of book"
# 2: the DEPTH block and `depth_levels`; 3: the reference-price block (REF) after TOP; 4: the market socket's
# liveness (LINK) after REF. 1: top of book only
VERSION = 4
VERSION_ADDED = {2: "depth", 3: "the BTC reference prices", 4: "the market socket's liveness"}
SUPPORTED_VERSIONS = (VERSION,)
DEFAULT_NAME = env.DEFAULT_SHM
DEFAULT_RING_CAPACITY = 4096  # ~ 7 minutes at 10 updates/s; 4096 * 840 B = 3.4 MiB with 10 levels
DEFAULT_DEPTH = 10  # levels per side published in the DEPTH block (polymm-feed --depth)
MAX_DEPTH = 100

# Status codes stored in the segment (0 = never written).
STATUSES = ("", "starting", "connected", "stale", "rotating", "stopped")
STATUS_CODE = {name: code for code, name in enumerate(STATUSES) if name}

_STR_LEN = 80  # condition id is 66 chars ("0x" + 64 hex); token ids are uint256 decimals (<= 78 digits)

LEG = np.dtype(
    [
        ("bid", "<f8"),  # best bid price of this outcome token; NaN when there are no bids
        ("bid_size", "<f8"),  # shares at the best bid (the level total); NaN when no bids
        ("ask", "<f8"),  # best ask price; NaN when there are no asks
        ("ask_size", "<f8"),  # shares at the best ask; NaN when no asks
        ("last_trade", "<f8"),  # price of the last trade seen in this window (last_trade_price); NaN until one
        ("exchange_ts", "<f8"),  # exchange timestamp of the message that last changed this leg, unix seconds
        ("recv_ts", "<f8"),  # local time.time() when that message was received
        ("publish_ts", "<f8"),  # local time.time() when this leg was written here
        ("seq", "<u8"),  # global sequence number of the publish that last changed this leg
    ]
)

# The part of the state that changes with every publish. The header holds one (the latest) and every
# ring entry holds one, byte for byte the same, so a publish builds it once and copies it twice.
TOP = np.dtype(
    [
        ("seq", "<u8"),  # global sequence: +1 on every publish (book, market or status change)
        ("window_start", "<i8"),  # the window (market) these legs belong to, unix seconds
        ("status", "<u4"),  # STATUSES index: starting / connected / stale / rotating / stopped
        ("crossed", "<u4"),  # 1 when the feed sees a crossed book for this market
        ("tick_size", "<f8"),  # current price tick (changes with tick_size_change)
        ("updates_total", "<u8"),  # market-data messages applied since the writer started
        ("disagreements", "<u8"),  # our best bid/ask differed from the exchange's best_bid/best_ask
        ("up", LEG),  # top of book of the "Up" token
        ("down", LEG),  # top of book of the "Down" token
    ]
)

# ---- issue 16: the BTC reference prices (feed/rtds). A block of its own after TOP, seqlocked with the rest of the
# header but outside TOP and the ring: a reference update takes no sequence number and wakes nobody (it comes
# ~2x a second; the trader reads it at its next decision), so the book path and the ring are unchanged.
# Staleness is the reader's judgement, from each price's own timestamp.
OPEN_STATUSES = ("", "captured", "recovered", "unknown")  # how the window's opening price was obtained
OPEN_STATUS_CODE = {name: code for code, name in enumerate(OPEN_STATUSES) if name}

REF = np.dtype(
    [
        ("chainlink", "<f8"),  # latest Chainlink BTC/USD (what the market resolves on); NaN until one
        ("chainlink_ts", "<f8"),  # its source timestamp, unix seconds
        ("chainlink_recv_ts", "<f8"),  # when the feed received it, local time.time()
        ("binance", "<f8"),  # latest Binance BTC/USDT; NaN until one
        ("binance_ts", "<f8"),
        ("binance_recv_ts", "<f8"),
        ("open_window_start", "<i8"),  # the window the opening price belongs to (0: none)
        ("open_price", "<f8"),  # that window's opening (Chainlink) price; NaN when unknown
        ("open_ts", "<f8"),  # source timestamp of the point taken as the open
        ("open_status", "<u4"),  # OPEN_STATUSES index: captured / recovered / unknown
        ("rtds_connected", "<u4"),  # 1 while the RTDS socket is up
        ("rtds_reconnects", "<u8"),  # RTDS reconnections since the writer started
        ("ref_updates", "<u8"),  # reference prices applied since the writer started
    ]
)

# ---- issue 27: the market WebSocket's liveness (feed/liveness.py), so readers tell a dead feed from a quiet market.
# Written by the feed's loop with every heartbeat (5 times a second), for the stream that publishes the current
# window; seqlocked with the header, no sequence number, no wake-up. Times are the feed's local time.time().
# Readers judge with `Link` below: dead = not connected, or no frame at all (not even a PONG) for longer than
# ping_interval_s + pong_timeout_s; frozen = connected and PONGs coming, but no market data for stale_after_s.
LINK = np.dtype(
    [
        ("connected", "<u4"),  # 1 while the current window's market socket is connected and subscribed
        ("_pad1", "<u4"),
        ("serving_since", "<f8"),  # since when it serves this window: its connection, or the window's start for a
        #                            socket opened ahead of the window (ages below count from here); NaN: none
        ("last_frame", "<f8"),  # the last frame of any kind received on it (market data or PONG); NaN: none yet
        ("last_data", "<f8"),  # the last market-data frame, whether or not it moved the book; NaN: none yet
        ("last_pong", "<f8"),  # the last PONG; NaN: none yet
        ("last_ping", "<f8"),  # the last PING the feed sent
        ("ping_interval_s", "<f8"),  # the feed PINGs this often: a quiet but live socket shows a frame this often
        ("pong_timeout_s", "<f8"),  # a PING unanswered this long and the feed gives the socket up (reconnects)
        ("stale_after_s", "<f8"),  # no market data this long on a live socket: frozen (the feed reconnects)
        ("frames", "<u8"),  # frames received on that socket since the stream started
    ]
)

HEADER = np.dtype(
    [
        # ---- constants, written before `magic` on creation and never changed afterwards
        ("magic", "<u8"),  # MAGIC; 0 while the segment is being initialised
        ("version", "<u4"),  # layout version (VERSION); readers refuse one they do not know
        ("header_size", "<u4"),  # HEADER.itemsize
        ("ring_offset", "<u4"),  # byte offset of the ring
        ("ring_capacity", "<u4"),  # number of ring entries
        ("ring_entry_size", "<u4"),  # RING_ENTRY.itemsize
        ("features", "<u4"),  # FEATURE_* bits of the writer that owns the segment (rewritten at take-over)
        ("depth_levels", "<u4"),  # N: levels per side in the DEPTH block (0: top of book only)
        ("_pad0", "<u4"),
        # ---- the seqlock word: odd while the writer is writing the fields below
        ("lock", "<u8"),
        # ---- seqlocked from here on. The writer:
        ("writer_pid", "<i8"),  # pid of the feed process that owns the segment
        ("writer_start", "<f8"),  # when that process took the segment, unix seconds
        # ---- liveness, refreshed by the feed's own loop even when the market is quiet
        ("heartbeat", "<f8"),  # unix seconds of the writer's last sign of life
        ("updates_per_s", "<f8"),  # market-data messages applied per second, recent average
        ("reconnects", "<u8"),  # market WebSocket reconnections since the writer started
        # ---- the rest of the current market's identity (window_start and tick_size are in `top`)
        ("window_end", "<i8"),  # unix seconds
        ("min_order_size", "<f8"),  # shares
        ("fee_rate", "<f8"),  # taker fee rate of the market's fee schedule (makers pay none)
        ("condition_id", f"S{_STR_LEN}"),  # ASCII, NUL-padded
        ("up_token", f"S{_STR_LEN}"),  # token id of outcome "Up", ASCII decimal, NUL-padded
        ("down_token", f"S{_STR_LEN}"),  # token id of outcome "Down"
        # ---- the latest published state
        ("top", TOP),
        # ---- the BTC reference prices (issue 16)
        ("ref", REF),
        # ---- the market socket's liveness (issue 27)
        ("link", LINK),
    ]
)

# ---- the DEPTH block (issue 11): the top N levels of each side of both legs, kept apart from HEADER and
# TOP so that fields added to those do not move it by hand. It follows HEADER directly (inside the
# seqlocked region, written in the same critical section as TOP) and follows TOP in every ring entry.
# Each side is N prices then N sizes, best first (bids descending, asks ascending); levels past the
# last one the book has are NaN. A leg whose top is NaN (no snapshot yet, awaiting re-verification
# after a tick change, market switch) has an all-NaN depth.


def depth_side_dtype(n: int) -> np.dtype:
    return np.dtype([("price", "<f8", (n,)), ("size", "<f8", (n,))])


def depth_dtype(n: int) -> np.dtype:
    """The DEPTH block for N = `n` levels (64 * n bytes)."""
    leg = np.dtype([("bids", depth_side_dtype(n)), ("asks", depth_side_dtype(n))])
    return np.dtype([("up", leg), ("down", leg)])


def ring_entry_dtype(n: int) -> np.dtype:
    return np.dtype(
        [
            ("top", TOP),  # top.seq is written first (alone), then the whole TOP and DEPTH ...
            ("depth", depth_dtype(n)),
            ("seq_end", "<u8"),  # ... then the same sequence number here, last
        ]
    )


RING_ENTRY = ring_entry_dtype(DEFAULT_DEPTH)
DEPTH = depth_dtype(DEFAULT_DEPTH)

_N_LEG = len(LEG.names)

class LayoutError(Exception):
    """The segment's magic number or layout version is not one this code knows."""

class ShmMissing(Exception):
    """The segment does not exist (yet), or exists but was never initialised."""

class WriterConflict(Exception):
    """Another live feed process already writes this segment."""

@dataclass(frozen=True)
class Leg:
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    last_trade: float
    exchange_ts: float
    recv_ts: float
    publish_ts: float
    seq: int
    # The DEPTH block for this leg: (price, size) pairs, best first, at most the segment's `depth_levels`
    # of them (fewer when the book has fewer levels; empty for a depth-0 segment or a leg with no book).
    # bids[0] / asks[0] are the top of book above, when there is one.
    bids: tuple[tuple[float, float], ...] = ()
    asks: tuple[tuple[float, float], ...] = ()

@dataclass(frozen=True)
class Reference:
    """The REF block: the BTC reference prices as the feed last wrote them."""

    chainlink: float
    chainlink_ts: float
    chainlink_recv_ts: float
    binance: float
    binance_ts: float
    binance_recv_ts: float
    open_window_start: int
    open_price: float
    open_ts: float
    open_status: str
    rtds_connected: bool
    rtds_reconnects: int
    ref_updates: int

    def chainlink_age_s(self, now: float) -> float:
        """Age of the Chainlink price by its own timestamp; inf when none yet."""
        return now - self.chainlink_ts if self.chainlink_ts == self.chainlink_ts else math.inf

    def opening_for(self, window_start: int) -> float:
        """The opening price of `window_start`; NaN when it is another window's or unknown."""
        if self.open_window_start != window_start or self.open_status not in ("captured", "recovered"):
            return math.nan
        return self.open_price


def _age(now: float, *times: float) -> float:
    """Seconds since the latest of `times` (NaN ones ignored); inf when none is known."""
    known = [t for t in times if t == t]
    return now - max(known) if known else math.inf


@dataclass(frozen=True)
class Link:
    """The LINK block: the current window's market socket as the feed last saw it (see LINK)."""

    connected: bool
    serving_since: float
    last_frame: float
    last_data: float
    last_pong: float
    last_ping: float
    ping_interval_s: float
    pong_timeout_s: float
    stale_after_s: float
    frames: int

    def frame_age_s(self, now: float) -> float:
        """Since the last frame of any kind, counting the start of service (connection, window start) as one."""
        return _age(now, self.last_frame, self.serving_since)

    def data_age_s(self, now: float) -> float:
        """Since the last market data, counting the start of service as one (a socket opened ahead of a window that
        was quiet before it opened, or a new connection whose snapshot is due, is not frozen at once)."""
        return _age(now, self.last_data, self.serving_since)

    @property
    def silent_limit_s(self) -> float:
        """A live socket shows a frame at least this often (PING interval + PONG timeout)."""
        return self.ping_interval_s + self.pong_timeout_s

    def dead_reason(self, now: float) -> str:
        """Why the socket is dead, in words; "" while it is alive (a quiet market is alive)."""
        if not self.connected:
            return "the feed's market socket is not connected"
        age = self.frame_age_s(now)
        if age > self.silent_limit_s:
            return (f"the feed's market socket is silent: no frame for {age:.1f} s, not even a PONG (a live one "
                    f"answers the feed's PING every {self.ping_interval_s:g} s)")
        return ""

    def frozen_reason(self, now: float, limit_s: float | None = None) -> str:
        """Why the live socket looks frozen (PONGs, but no market data for `limit_s`, default the feed's own
        stale_after_s); "" otherwise."""
        limit = self.stale_after_s if limit_s is None else limit_s
        if not self.connected:
            return ""
        age = self.data_age_s(now)
        if age > limit:
            return f"no market data for {age:.1f} s on a live socket (frozen? limit {limit:g} s)"
        return ""


def _link_of(v) -> Link:
    return Link(bool(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9])


def _reference_of(v) -> Reference:
    return Reference(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                     OPEN_STATUSES[v[9]] if 0 <= v[9] < len(OPEN_STATUSES) else "", bool(v[10]), v[11], v[12])


@dataclass(frozen=True)
class Snapshot:
    magic: int
    version: int
    writer_pid: int
    writer_start: float
    heartbeat: float
    status: str
    # The market the segment publishes (one definition: feed/market.py): condition id, tokens, window, and its
    # trading rules as published now (the tick follows `tick_size_change`). Empty strings and zeros before the
    # feed has published one.
    market: MarketIdentity
    crossed: bool
    seq: int
    updates_total: int
    updates_per_s: float
    reconnects: int
    disagreements: int
    up: Leg
    down: Leg
    ref: Reference | None = None  # the BTC reference prices (issue 16)
    link: Link | None = None  # the market socket's liveness (issue 27)
    depth_levels: int = 0  # N of the DEPTH block: up.bids etc. hold at most N levels (0: top of book only)

    def heartbeat_age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.heartbeat

    def data_age_s(self, now: float | None = None) -> float:
        """Seconds since the newer of the two legs' receive times; inf when no data in this window yet."""
        newest = max(self.up.recv_ts, self.down.recv_ts)
        if not newest > 0:
            return math.inf
        return (time.time() if now is None else now) - newest

@dataclass(frozen=True)
class Update:
    """One ring entry: the state of both legs right after publish number `seq`."""

    seq: int
    window_start: int
    status: str
    crossed: bool
    tick_size: float
    up: Leg
    down: Leg


# ---------------------------------------------------------------------------------------------------
# struct packers derived from the dtypes


def _flat_fields(dtype: np.dtype, base: int = 0, prefix: str = "") -> list[tuple[str, int, np.dtype]]:
    out: list[tuple[str, int, np.dtype]] = []
    for name in dtype.names:
        sub, off = dtype.fields[name][:2]
        if sub.names:
            out.extend(_flat_fields(sub, base + off, f"{prefix}{name}."))
        else:
            out.append((prefix + name, base + off, sub))
    return out


_CODE = {"<f8": "d", "<u8": "Q", "<i8": "q", "<u4": "I", "<i4": "i"}


def _packer(dtype: np.dtype, first: str, last: str) -> tuple[struct.Struct, int, list[str]]:
    """A struct.Struct covering the fields `first`..`last` (flattened names) of `dtype`.

    Returns (struct, byte offset of `first`, field names in pack order). Padding fields (`_pad*`) become
    pad bytes so callers never pass them.
    """
    flat = _flat_fields(dtype)
    names = [n for n, _, _ in flat]
    i, j = names.index(first), names.index(last)
    start = flat[i][1]
    fmt, pos, order = "<", start, []
    for name, off, sub in flat[i : j + 1]:
        if off != pos:
            raise AssertionError(f"layout gap before {name}")  # dtypes above are packed by hand
        if name.rsplit(".", 1)[-1].startswith("_pad"):
            fmt += f"{sub.itemsize}x"
        elif sub.kind == "S":
            fmt += f"{sub.itemsize}s"
            order.append(name)
        else:
            fmt += _CODE[sub.str]
            order.append(name)
        pos = off + sub.itemsize
    packer = struct.Struct(fmt)
    assert packer.size == pos - start
    return packer, start, order


_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HDR_CONST, _HDR_CONST_OFF, _ = _packer(HEADER, "magic", "_pad0")  # magic..depth_levels
_FEATURES_OFF = HEADER.fields["features"][1]
_LOCK_OFF = HEADER.fields["lock"][1]
_STATE, _STATE_OFF, _STATE_NAMES = _packer(HEADER, "writer_pid", "top.down.seq")  # seqlocked, up to TOP's end
_STATE_END = _STATE_OFF + _STATE.size
_TOP_OFF = HEADER.fields["top"][1]
_REF, _REF_OFF, _ = _packer(HEADER, "ref.chainlink", "ref.ref_updates")
_LINK, _LINK_OFF, _ = _packer(HEADER, "link.connected", "link.frames")
_SEQLOCKED_END = _LINK_OFF + _LINK.size  # what a reader copies under the seqlock: _STATE, _REF, _LINK
_SEQ_OFF = _TOP_OFF + TOP.fields["seq"][1]
_STATUS_OFF = _TOP_OFF + TOP.fields["status"][1]
_TOP, _, _ = _packer(TOP, "seq", "down.seq")  # TOP in one pack (25 values)
_UP_OFF = TOP.fields["up"][1]
_DOWN_OFF = TOP.fields["down"][1]
_LIVE, _LIVE_OFF, _ = _packer(HEADER, "heartbeat", "reconnects")
_MARKET, _MARKET_OFF, _ = _packer(HEADER, "window_end", "down_token")
_OWNER, _OWNER_OFF, _ = _packer(HEADER, "writer_pid", "writer_start")
_ENTRY_TOP = _TOP  # a ring entry starts with TOP, byte for byte as in the header
_DEPTH_OFF = HEADER.itemsize  # the DEPTH block follows HEADER

assert _TOP_OFF + TOP.itemsize == _STATE_END == _REF_OFF  # TOP, then REF
assert _REF_OFF + _REF.size == _LINK_OFF and _SEQLOCKED_END == HEADER.itemsize  # then LINK, the header's end
assert HEADER.itemsize % 8 == 0  # DEPTH follows HEADER, 8-byte aligned
assert _TOP.size == TOP.itemsize and _DOWN_OFF == _UP_OFF + LEG.itemsize

_NAN_LEG = (math.nan,) * 8 + (0,)
_NAN_PRICES = (math.nan,) * 6  # the REF block's six price fields, before any price
_LINK_NONE = (0,) + (math.nan,) * 8 + (0,)  # the LINK block with no stream (starting, no market)

FEATURE_FUTEX_WAKE = 1  # `features` bit: the writer FUTEX_WAKEs the seq word after every new sequence number


_NAN_TOP = (math.nan,) * 7  # a leg as publish() takes it


class Geometry:
    """Where things are in a segment whose DEPTH block has `depth` levels per side (writer and reader)."""

    __slots__ = ("depth", "depth_size", "leg_depth_size", "state_end", "ring_offset", "entry_size",
                 "seq_end_off", "side", "block", "nan_leg_depth", "nan_depth")

    def __init__(self, depth: int) -> None:
        if not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 0 and {MAX_DEPTH} levels, got {depth}")
        self.depth = depth
        self.depth_size = 64 * depth
        self.leg_depth_size = 32 * depth
        self.state_end = _DEPTH_OFF + self.depth_size  # the seqlocked region ends with DEPTH
        self.ring_offset = (self.state_end + 63) // 64 * 64  # cache-line aligned
        self.entry_size = TOP.itemsize + self.depth_size + 8
        self.seq_end_off = TOP.itemsize + self.depth_size
        self.side = struct.Struct(f"<{2 * depth}d")  # one side: N prices, N sizes
        self.block = struct.Struct(f"<{8 * depth}d")  # the whole DEPTH block
        self.nan_leg_depth = struct.pack(f"<{4 * depth}d", *([math.nan] * 4 * depth))
        self.nan_depth = self.nan_leg_depth * 2
        assert self.entry_size == ring_entry_dtype(depth).itemsize

    def pack_side(self, levels) -> bytes:
        """One side of the DEPTH block from (price, size) pairs, best first (more than N: the rest is cut)."""
        levels = list(levels)[: self.depth]
        pad = [math.nan] * (self.depth - len(levels))
        return self.side.pack(*(p for p, _ in levels), *pad, *(s for _, s in levels), *pad)

    def pack_leg(self, bids, asks) -> bytes:
        """One leg's DEPTH (bids then asks), from (price, size) pairs best first, as Writer.publish takes it."""
        return self.pack_side(bids) + self.pack_side(asks)

    def unpack(self, raw, offset: int = 0) -> tuple[tuple, tuple, tuple, tuple]:
        """(up bids, up asks, down bids, down asks) from the DEPTH block at `offset` of `raw`: each a tuple of
        (price, size) pairs, best first, NaN padding dropped."""
        n = self.depth
        if not n:
            return (), (), (), ()
        v = self.block.unpack_from(raw, offset)
        out = []
        for base in range(0, 8 * n, 2 * n):
            prices = v[base : base + n]
            k = 0
            while k < n and prices[k] == prices[k]:
                k += 1
            out.append(tuple(zip(prices[:k], v[base + n : base + n + k])))
        return out[0], out[1], out[2], out[3]


_GEOMETRIES: dict[int, Geometry] = {}


def geometry(depth: int) -> Geometry:
    g = _GEOMETRIES.get(depth)
    if g is None:
        g = _GEOMETRIES[depth] = Geometry(depth)
    return g


def _ring_offset(depth: int = DEFAULT_DEPTH) -> int:
    return geometry(depth).ring_offset


def segment_size(ring_capacity: int, depth: int = DEFAULT_DEPTH) -> int:
    g = geometry(depth)
    return g.ring_offset + ring_capacity * g.entry_size


def _shm_path(name: str) -> str:
    return f"/dev/shm/{name.lstrip('/')}"


def _ascii(value: str, field: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > _STR_LEN:
        raise ValueError(f"{field} is {len(raw)} characters; the layout holds at most {_STR_LEN}")
    return raw


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
