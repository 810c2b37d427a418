"""The feed's shared-memory segment: layout, Writer (the feed only) and Reader (trader, mmctl).

One POSIX shared-memory object (``/dev/shm/<name>``, default ``poly_tob_shm``) holds:

    HEADER   constants (magic, layout version, sizes), then a seqlock word, then the seqlocked state:
             writer pid/start, heartbeat, status, market identity, counters and the latest top of book
             of both legs (``LEG`` twice).
    RING     ``ring_capacity`` entries of ``RING_ENTRY``: every state a reader could have seen, one entry
             per sequence number (book publishes, market changes, status changes), so a reader that fell
             behind, the recorder or a backtest sees every update and not only the last one.

The layout is defined by the numpy structured dtypes below, documented field by field; the hot path packs
with ``struct`` formats *derived* from those dtypes (``_packer``), so there is one definition of where
each byte lives. Everything is little-endian and naturally aligned.

Consistency (seqlock). The writer makes ``lock`` odd, writes, makes it even. A reader copies the state
between two reads of ``lock`` and retries unless both reads are the same even value, so it never returns
a torn copy. Ring entries carry their sequence number before and after their body (``seq_begin`` ...
``seq_end``): an entry is used only when both equal the sequence the reader asked for. This relies on
stores becoming visible in program order and loads not passing loads, which x86-64 (TSO) guarantees; the
Python interpreter issues each ``pack_into`` as an opaque C call, so the compiler cannot reorder them.

Ownership. Exactly one writer: it holds ``flock(LOCK_EX)`` on the segment's file for its whole life; the
kernel releases it when the process dies, however it dies, so liveness needs no pid guessing. A second
writer fails with ``WriterConflict`` naming the live pid. On shutdown the writer marks the segment
"stopped" and does NOT unlink it: a reader mid-read never sees it vanish, and a restarted feed resumes
the same segment (sequence numbers keep increasing, so readers need not re-attach).

Wake-up (``features`` bit ``FEATURE_FUTEX_WAKE``). After every new sequence number (book publish, market or
status change; not heartbeats) the writer issues a Linux ``FUTEX_WAKE`` on the low 32 bits of ``top.seq``
(a shared futex: the kernel keys it by the segment's inode and offset, so it works across processes, user
and IPC namespaces, e.g. the two systemd units, and on a reader's read-only mapping). A reader may block in
``FUTEX_WAIT`` on that word with the value it last saw: the kernel compares and sleeps atomically, so a
publish between the reader's look and its sleep is never lost, and a new top of book wakes it within
microseconds without polling. The wake is best effort and never blocks or fails a publish; it costs the
writer one syscall (~1 us) whether or not anyone waits. Readers that do not use it are unaffected (the
layout is unchanged: ``features`` was padding, zero in older segments). ``Reader.wait_update`` uses it
when the owning writer sets the bit and falls back to spin-then-sleep polling otherwise (older writer,
futex unavailable or filtered by seccomp). A writer that cannot issue the wake clears the bit.

Readers attach read-only (``O_RDONLY`` + ``PROT_READ``), never unlink, and never touch Python's
``resource_tracker``. ``multiprocessing.shared_memory.SharedMemory`` on Python 3.11 would (a) open the
object read-write, which a member of the service group with read-only access cannot do, and (b) register
it with ``resource_tracker``, which *unlinks* it when the reader process exits -- deleting the feed's
segment from under everyone. The writer does create through ``SharedMemory`` and unregisters from the
tracker immediately for the same reason.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import math
import mmap
import os
import platform
import struct
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing import shared_memory

import numpy as np

from polymm import env

MAGIC = int.from_bytes(b"POLYMMTB", "little")  # "POLYMM top of book"
VERSION = 1
SUPPORTED_VERSIONS = (VERSION,)
DEFAULT_NAME = env.DEFAULT_SHM
DEFAULT_RING_CAPACITY = 4096  # ~ 7 minutes at 10 updates/s; 4096 * 192 B = 768 KiB

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
    ]
)

RING_ENTRY = np.dtype(
    [
        ("top", TOP),  # top.seq is written first (alone), then the whole TOP ...
        ("seq_end", "<u8"),  # ... then the same sequence number here, last
    ]
)

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


@dataclass(frozen=True)
class Snapshot:
    magic: int
    version: int
    writer_pid: int
    writer_start: float
    heartbeat: float
    status: str
    window_start: int
    window_end: int
    condition_id: str
    up_token: str
    down_token: str
    tick_size: float
    min_order_size: float
    fee_rate: float
    crossed: bool
    seq: int
    updates_total: int
    updates_per_s: float
    reconnects: int
    disagreements: int
    up: Leg
    down: Leg

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
_HDR_CONST, _HDR_CONST_OFF, _ = _packer(HEADER, "magic", "features")  # magic..features
_FEATURES_OFF = HEADER.fields["features"][1]
_LOCK_OFF = HEADER.fields["lock"][1]
_STATE, _STATE_OFF, _STATE_NAMES = _packer(HEADER, "writer_pid", "top.down.seq")  # everything seqlocked
_STATE_END = _STATE_OFF + _STATE.size
_TOP_OFF = HEADER.fields["top"][1]
_SEQ_OFF = _TOP_OFF + TOP.fields["seq"][1]
_STATUS_OFF = _TOP_OFF + TOP.fields["status"][1]
_TOP, _, _ = _packer(TOP, "seq", "down.seq")  # TOP in one pack (25 values)
_UP_OFF = TOP.fields["up"][1]
_DOWN_OFF = TOP.fields["down"][1]
_LIVE, _LIVE_OFF, _ = _packer(HEADER, "heartbeat", "reconnects")
_MARKET, _MARKET_OFF, _ = _packer(HEADER, "window_end", "down_token")
_OWNER, _OWNER_OFF, _ = _packer(HEADER, "writer_pid", "writer_start")
_ENTRY, _, _ENTRY_NAMES = _packer(RING_ENTRY, "top.seq", "seq_end")
_SEQ_END_OFF = RING_ENTRY.fields["seq_end"][1]

assert _TOP_OFF + TOP.itemsize == HEADER.itemsize == _STATE_END  # TOP ends the header
assert _ENTRY.size == RING_ENTRY.itemsize == TOP.itemsize + 8
assert _TOP.size == TOP.itemsize and _DOWN_OFF == _UP_OFF + LEG.itemsize

_NAN_LEG = (math.nan,) * 8 + (0,)

FEATURE_FUTEX_WAKE = 1  # `features` bit: the writer FUTEX_WAKEs the seq word after every new sequence number


# ---------------------------------------------------------------------------------------------------
# futex wake-up (Linux): the raw syscall through libc's syscall(2); Python has no binding of its own.

_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine().lower())
_FUTEX_WAIT = 0  # without FUTEX_PRIVATE_FLAG: the futex is shared between processes
_FUTEX_WAKE = 1
_WAKE_ALL = 0x7FFFFFFF


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _load_futex():
    """libc's syscall() set up for futex(2), or None where there is none (not Linux, unknown arch)."""
    if _SYS_FUTEX is None or not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_long
    # syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3); ctypes releases the GIL for the call.
    fn.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_uint]
    return fn


_futex = _load_futex()


def _address_of(buffer, offset: int) -> int:
    """Address of byte `offset` of a (read-only or writable) buffer. The temporary numpy view is dropped at
    once so it never pins the mapping (mmap.close() refuses while a buffer export is alive); the address is
    used only while the mapping is open."""
    return int(np.frombuffer(buffer, dtype=np.uint8, count=1, offset=offset).ctypes.data)
_NAN_TOP = (math.nan,) * 7  # a leg as publish() takes it


def _ring_offset() -> int:
    return (HEADER.itemsize + 63) // 64 * 64  # cache-line aligned


def segment_size(ring_capacity: int) -> int:
    return _ring_offset() + ring_capacity * RING_ENTRY.itemsize


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


# ---------------------------------------------------------------------------------------------------
# Writer


class Writer:
    """The feed's side of the segment. Thread-safe: every write holds `self.lock`.

    The service's main loop (heartbeat, status, market identity) and the WebSocket thread (book publishes)
    both write; the lock keeps their seqlock sections from interleaving. The writer keeps TOP's values
    in Python: a publish packs them into the header in one call (inside the seqlock), then copies those
    bytes into the next ring slot (between its two sequence guards).
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        create: bool = True,
        ring_capacity: int = DEFAULT_RING_CAPACITY,
        mode: int = 0o640,
        clock=time.time,
    ) -> None:
        if not create:
            raise ValueError("Writer always creates or takes over the segment (create=True)")
        if ring_capacity < 16:
            raise ValueError("ring_capacity must be >= 16")
        self.name = name.lstrip("/")
        self.lock = threading.Lock()
        self._clock = clock
        self._closed = False
        self._shm, self._lock_fd, resumed = self._open(ring_capacity, mode)
        self._buf = self._shm.buf
        self._seq_addr = _address_of(self._buf, _SEQ_OFF)
        # One wake at start-up tells whether the kernel (and a seccomp filter) lets us: if not, the segment
        # says so (features = 0) and readers poll.
        self._wake = _futex is not None and _futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0) >= 0
        self._features = FEATURE_FUTEX_WAKE if self._wake else 0
        self.ring_capacity = ring_capacity
        self._ring_off = _ring_offset()
        self._entry_size = RING_ENTRY.itemsize
        self.pid = os.getpid()
        self.start = clock()
        if resumed:
            # Continue the sequence so readers that stayed attached see it only ever increase.
            self._lockword = _U64.unpack_from(self._buf, _LOCK_OFF)[0]
            self._lockword += self._lockword & 1  # a writer killed mid-write left it odd
            self._seq = _U64.unpack_from(self._buf, _SEQ_OFF)[0]
        else:
            self._lockword = 0
            self._seq = 0
        self._window_start = 0
        self._tick = math.nan
        self._status = STATUS_CODE["starting"]
        self._crossed = 0
        self._updates_total = 0
        self._disagreements = 0
        self._updates_per_s = 0.0
        self._reconnects = 0
        self._clear_legs()
        now = clock()
        with self.lock:
            self._begin()
            _OWNER.pack_into(self._buf, _OWNER_OFF, self.pid, self.start)
            _LIVE.pack_into(self._buf, _LIVE_OFF, now, 0.0, 0)
            _MARKET.pack_into(self._buf, _MARKET_OFF, 0, math.nan, math.nan, b"", b"", b"")
            self._commit_locked()
        if not resumed:
            # magic last: a reader that sees it sees a fully initialised segment
            _HDR_CONST.pack_into(
                self._buf, 0, MAGIC, VERSION, HEADER.itemsize, self._ring_off, ring_capacity, RING_ENTRY.itemsize,
                self._features,
            )
        else:
            _U32.pack_into(self._buf, _FEATURES_OFF, self._features)  # what *this* writer does

    # -- opening / ownership --------------------------------------------------------------------------

    def _open(self, ring_capacity: int, mode: int):
        size = segment_size(ring_capacity)
        try:
            shm = shared_memory.SharedMemory(self.name, create=True, size=size)
            created = True
        except FileExistsError:
            shm = shared_memory.SharedMemory(self.name, create=False)
            created = False
        # Never let the resource tracker unlink the segment when this process exits (stale, not removed).
        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 - the 3.11 workaround
        try:
            lock_fd = self._take_ownership(shm)
        except BaseException:
            shm.close()
            raise
        if created:
            os.fchmod(shm._fd, mode)  # noqa: SLF001 - group-readable so mmctl can attach read-only
            return shm, lock_fd, False
        if self._layout_matches(shm, ring_capacity):
            return shm, lock_fd, True
        # An older layout or another ring size: replace it. Readers still mapping the old object keep
        # their mapping (it reads "stopped" or foreign) and re-attach by name.
        shm.close()
        os.close(lock_fd)
        unlink(self.name)
        return self._open(ring_capacity, mode)

    def _take_ownership(self, shm) -> int:
        fd = os.open(_shm_path(self.name), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = 0
            if shm.size >= HEADER.itemsize:
                pid = struct.unpack_from("<q", shm.buf, HEADER.fields["writer_pid"][1])[0]
            who = f"pid {pid}" if pid and _pid_alive(pid) else "a process still initialising it"
            raise WriterConflict(
                f"shared memory {self.name!r} is already written by a live polymm-feed ({who}); "
                f"refusing to start a second writer"
            ) from None
        return fd

    @staticmethod
    def _layout_matches(shm, ring_capacity: int) -> bool:
        if shm.size < HEADER.itemsize:
            return False
        magic, version, hsize, roff, cap, esize, _features = _HDR_CONST.unpack_from(shm.buf, 0)
        return (
            magic == MAGIC
            and version == VERSION
            and hsize == HEADER.itemsize
            and roff == _ring_offset()
            and cap == ring_capacity
            and esize == RING_ENTRY.itemsize
            and shm.size >= segment_size(ring_capacity)
        )

    # -- seqlock and commit ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._buf is None:
            raise ValueError(f"shm writer {self.name!r} is closed")
        self._lockword += 1
        _U64.pack_into(self._buf, _LOCK_OFF, self._lockword)

    def _clear_legs(self) -> None:
        self._up, self._up_pub, self._up_seq = _NAN_TOP, math.nan, 0
        self._down, self._down_pub, self._down_seq = _NAN_TOP, math.nan, 0

    def _commit_locked(self) -> int:
        """With the seqlock already odd (`_begin`): next sequence number, TOP -> header, seqlock even,
        header TOP -> ring. Caller holds `self.lock`. (publish() inlines the same steps.)"""
        seq = self._seq + 1
        self._seq = seq
        buf = self._buf
        _TOP.pack_into(
            buf, _TOP_OFF, seq, self._window_start, self._status, self._crossed, self._tick,
            self._updates_total, self._disagreements,
            *self._up, self._up_pub, self._up_seq, *self._down, self._down_pub, self._down_seq,
        )
        self._lockword += 1
        _U64.pack_into(buf, _LOCK_OFF, self._lockword)
        off = self._ring_off + (seq % self.ring_capacity) * self._entry_size
        _U64.pack_into(buf, off, seq)  # guard 1: the slot now belongs to `seq` (body may be half-written)
        buf[off : off + _SEQ_END_OFF] = buf[_TOP_OFF:_STATE_END]
        _U64.pack_into(buf, off + _SEQ_END_OFF, seq)  # guard 2: body complete
        if self._wake:
            _futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0)  # best effort
        return seq

    # -- public writes ----------------------------------------------------------------------------------

    @property
    def window_start(self) -> int:
        return self._window_start

    @property
    def seq(self) -> int:
        return self._seq

    def set_market(
        self,
        *,
        window_start: int,
        window_end: int,
        condition_id: str,
        up_token: str,
        down_token: str,
        tick_size: float,
        min_order_size: float,
        fee_rate: float,
        status: str = "rotating",
    ) -> int:
        """Switch the segment to a new market (window). Both legs are cleared (NaN) until the new market's
        first book is published, so no reader can pair the old book with the new identity."""
        identity = (
            int(window_end),
            float(min_order_size),
            float(fee_rate),
            _ascii(condition_id, "condition_id"),
            _ascii(up_token, "up_token"),
            _ascii(down_token, "down_token"),
        )
        code = STATUS_CODE[status]
        with self.lock:
            self._begin()
            self._window_start = int(window_start)
            self._tick = float(tick_size)
            self._status = code
            self._crossed = 0
            self._clear_legs()
            _MARKET.pack_into(self._buf, _MARKET_OFF, *identity)
            return self._commit_locked()

    def set_tick_size(self, window_start: int, tick_size: float) -> int:
        """New tick for the current market (tick_size_change). 0 (nothing written) if `window_start` is not
        the current window."""
        with self.lock:
            if window_start != self._window_start:
                return 0
            self._begin()
            self._tick = float(tick_size)
            return self._commit_locked()

    def set_status(self, status: str, window_start: int | None = None) -> int:
        """Change the status; a new sequence number when it changes, else the current one. With
        `window_start`, only if that window is current (a stream of an old window cannot mark the new one
        stale): 0 otherwise."""
        code = STATUS_CODE[status]
        with self.lock:
            if window_start is not None and window_start != self._window_start:
                return 0
            if code == self._status:
                return self._seq
            self._begin()
            self._status = code
            return self._commit_locked()

    def status(self) -> str:
        return STATUSES[self._status]

    def heartbeat(
        self, now: float | None = None, *, updates_per_s: float | None = None, reconnects: int | None = None
    ) -> None:
        """Refresh the liveness fields. No new sequence number: readers waiting for data are not woken."""
        with self.lock:
            if self._closed:
                return
            if updates_per_s is not None:
                self._updates_per_s = float(updates_per_s)
            if reconnects is not None:
                self._reconnects = int(reconnects)
            self._begin()
            _LIVE.pack_into(
                self._buf,
                _LIVE_OFF,
                self._clock() if now is None else now,
                self._updates_per_s,
                self._reconnects,
            )
            self._lockword += 1
            _U64.pack_into(self._buf, _LOCK_OFF, self._lockword)

    def publish(
        self,
        window_start: int,
        up: tuple | None,
        down: tuple | None,
        crossed: bool = False,
        updates_total: int = 0,
        disagreements: int = 0,
        status: str | None = None,
        tick_size: float | None = None,
    ) -> int:
        """Publish the top of book (the hot path).

        `up`/`down`: (bid, bid_size, ask, ask_size, last_trade, exchange_ts, recv_ts), or None when that leg
        did not change. `tick_size`: a new tick (tick_size_change), published with the book in one step.
        Returns the new sequence number, or 0 (nothing written) when `window_start` is not the segment's
        current window: a book is never published under the wrong window."""
        with self.lock:
            return self.publish_locked(
                window_start, up, down, crossed, updates_total, disagreements, status, tick_size
            )

    def publish_locked(
        self,
        window_start: int,
        up: tuple | None,
        down: tuple | None,
        crossed: bool,
        updates_total: int,
        disagreements: int,
        status: str | None,
        tick_size: float | None = None,
    ) -> int:
        """`publish` for a caller that already holds `self.lock` (the stream, which applies the book
        update under the same lock so that one lock per message suffices)."""
        if window_start != self._window_start:  # (close() sets it to -1: nothing is written after close)
            return 0
        if tick_size is not None:
            self._tick = float(tick_size)
        seq = self._seq + 1
        self._seq = seq
        now = self._clock()
        if up is not None:
            self._up, self._up_pub, self._up_seq = up, now, seq
        if down is not None:
            self._down, self._down_pub, self._down_seq = down, now, seq
        if status is not None:
            self._status = STATUS_CODE[status]
        self._crossed = crossed = 1 if crossed else 0
        self._updates_total = updates_total
        self._disagreements = disagreements
        buf = self._buf
        # the seqlocked header write (the steps of _commit_locked, inlined: this is the hot path)
        lockword = self._lockword + 1
        _U64.pack_into(buf, _LOCK_OFF, lockword)
        _TOP.pack_into(
            buf, _TOP_OFF, seq, window_start, self._status, crossed, self._tick, updates_total, disagreements,
            *self._up, self._up_pub, self._up_seq, *self._down, self._down_pub, self._down_seq,
        )
        lockword += 1
        _U64.pack_into(buf, _LOCK_OFF, lockword)
        self._lockword = lockword
        off = self._ring_off + (seq % self.ring_capacity) * self._entry_size
        _U64.pack_into(buf, off, seq)
        buf[off : off + _SEQ_END_OFF] = buf[_TOP_OFF:_STATE_END]
        _U64.pack_into(buf, off + _SEQ_END_OFF, seq)
        if self._wake:  # readers blocked in wait_update (best effort: a failed wake only costs them latency)
            _futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0)
        return seq

    def close(self) -> None:
        """Mark the segment stopped, release ownership, unmap. Never unlinks (see module docstring)."""
        if self._closed:
            return
        self.set_status("stopped")
        self.heartbeat()
        with self.lock:
            self._closed = True
            self._window_start = -1
            self._buf = None
            self._shm.close()
            os.close(self._lock_fd)

    def unlink(self) -> None:
        """Remove the segment by name. For tests and tooling only; the service never calls it."""
        unlink(self.name)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unlink(name: str) -> None:
    """Remove a segment by name if it exists (tests/tooling)."""
    try:
        os.unlink(_shm_path(name))
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------------------------
# Reader


_LEG_NAMES = tuple(f for f in Leg.__dataclass_fields__)


def _leg_of(values) -> Leg:
    """Leg(*values) without the frozen dataclass's per-field object.__setattr__ (a reader builds two per
    snapshot on the trader's hot path). The result is an ordinary, equal, immutable-by-convention Leg."""
    leg = object.__new__(Leg)
    leg.__dict__.update(zip(_LEG_NAMES, values))
    return leg


def _status_name(code: int) -> str:
    return STATUSES[code] if 0 < code < len(STATUSES) else f"unknown({code})"


class Reader:
    """Read-only view of the segment (trader, mmctl, recorder). Not thread-safe; one per thread."""

    def __init__(self, name: str = DEFAULT_NAME, wait_s: float = 0.0) -> None:
        self.name = name.lstrip("/")
        self._mm: mmap.mmap | None = None
        self._buf: memoryview | None = None
        deadline = time.monotonic() + max(0.0, wait_s)
        delay = 0.005
        while True:
            try:
                self._attach()
                return
            except ShmMissing:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _attach(self) -> None:
        path = _shm_path(self.name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ShmMissing(f"shared memory {self.name!r} does not exist (is polymm-feed running?)") from None
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER.itemsize:
                raise ShmMissing(f"shared memory {self.name!r} exists but is not initialised yet")
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, hsize, roff, cap, esize, _features = _HDR_CONST.unpack_from(mm, 0)
        if magic == 0:
            mm.close()
            raise ShmMissing(f"shared memory {self.name!r} exists but is not initialised yet")
        if magic != MAGIC:
            mm.close()
            raise LayoutError(
                f"shared memory {self.name!r} has magic {magic:#018x}; expected {MAGIC:#018x} "
                f"(a polymm-feed top-of-book segment)"
            )
        if version not in SUPPORTED_VERSIONS or hsize != HEADER.itemsize or esize != RING_ENTRY.itemsize:
            mm.close()
            raise LayoutError(
                f"shared memory {self.name!r} has layout version {version} (header {hsize} B, ring entry "
                f"{esize} B); this code supports version(s) {', '.join(map(str, SUPPORTED_VERSIONS))} "
                f"(header {HEADER.itemsize} B, ring entry {RING_ENTRY.itemsize} B): upgrade the reader or the feed"
            )
        if roff + cap * esize > st.st_size:
            mm.close()
            raise LayoutError(f"shared memory {self.name!r} is {st.st_size} B, smaller than its ring needs")
        self._mm = mm
        self._buf = memoryview(mm)
        self._seq_addr = _address_of(mm, _SEQ_OFF) if _futex is not None else 0
        self._timeout = _Timespec()  # FUTEX_WAIT's relative timeout, reused (a Reader is used by one thread)
        self._ino = (st.st_dev, st.st_ino)
        self.magic, self.version = magic, version
        self._ring_off, self._cap, self._esize = roff, cap, esize

    # -- reads --------------------------------------------------------------------------------------------

    def _state_bytes(self) -> bytes:
        """The seqlocked region, copied consistently."""
        buf = self._buf
        unpack = _U64.unpack_from
        spins = 0
        t_odd = None
        while True:
            l1 = unpack(buf, _LOCK_OFF)[0]
            if not l1 & 1:
                raw = bytes(buf[_STATE_OFF:_STATE_END])
                if unpack(buf, _LOCK_OFF)[0] == l1:
                    return raw
            else:
                # A writer killed inside its critical section leaves the word odd forever.
                now = time.monotonic()
                if t_odd is None:
                    t_odd = now
                elif now - t_odd > 0.2 and not self._writer_alive_locked():
                    return b""
            spins += 1
            if spins > 100:
                time.sleep(0.00005)

    def _writer_alive_locked(self) -> bool:
        pid = struct.unpack_from("<q", self._buf, HEADER.fields["writer_pid"][1])[0]
        return _pid_alive(pid)

    def snapshot(self) -> Snapshot:
        """A consistent copy of the header and both legs (seqlock; retries, never torn)."""
        self._reattach_if_replaced()
        raw = self._state_bytes()
        if not raw:
            return self._dead_writer_snapshot()
        v = _STATE.unpack(raw)
        return self._snapshot_from(v)

    def _snapshot_from(self, v) -> Snapshot:
        # v follows _STATE_NAMES: writer_pid, writer_start, heartbeat, updates_per_s, reconnects, window_end,
        # min_order_size, fee_rate, condition_id, up_token, down_token, then TOP: seq, window_start, status,
        # crossed, tick_size, updates_total, disagreements, up (9), down (9).
        # Built without the frozen dataclass __init__ (22 object.__setattr__ calls, ~5 us): this runs on every
        # trader tick. The result is a normal Snapshot (equality, repr, frozen against assignment).
        snap = object.__new__(Snapshot)
        snap.__dict__.update(
            magic=self.magic,
            version=self.version,
            writer_pid=v[0],
            writer_start=v[1],
            heartbeat=v[2],
            status=_status_name(v[13]),
            window_start=v[12],
            window_end=v[5],
            condition_id=v[8].rstrip(b"\0").decode("ascii"),
            up_token=v[9].rstrip(b"\0").decode("ascii"),
            down_token=v[10].rstrip(b"\0").decode("ascii"),
            tick_size=v[15],
            min_order_size=v[6],
            fee_rate=v[7],
            crossed=bool(v[14]),
            seq=v[11],
            updates_total=v[16],
            updates_per_s=v[3],
            reconnects=v[4],
            disagreements=v[17],
            up=_leg_of(v[18 : 18 + _N_LEG]),
            down=_leg_of(v[18 + _N_LEG : 18 + 2 * _N_LEG]),
        )
        return snap

    def _dead_writer_snapshot(self) -> Snapshot:
        # The writer died inside its critical section: the legs may be torn. Report the identity but no
        # book, and status "stopped", so nobody trades on it.
        v = list(_STATE.unpack(bytes(self._buf[_STATE_OFF:_STATE_END])))
        v[13] = STATUS_CODE["stopped"]
        v[14] = 0
        v[18:] = list(_NAN_LEG) + list(_NAN_LEG)
        return self._snapshot_from(v)

    def seq(self) -> int:
        """The current publish sequence (one aligned 8-byte read, no lock needed)."""
        return _U64.unpack_from(self._buf, _SEQ_OFF)[0]

    def wait_update(self, last_seq: int, timeout_s: float, *, spin_s: float = 50e-6) -> int:
        """Return the current sequence as soon as it differs from `last_seq`, or after `timeout_s`.

        Spins for up to `spin_s` (an update often follows closely), then blocks in FUTEX_WAIT on the sequence
        word when the writer posts wake-ups (module docstring): woken by the kernel within microseconds of
        a publish, no CPU used while the book is quiet. Otherwise (older writer, no futex) it sleeps in short
        steps growing to 1 ms: worst-case added latency ~1 ms at ~1000 cheap wake-ups per second."""
        buf = self._buf
        unpack = _U64.unpack_from
        seq = unpack(buf, _SEQ_OFF)[0]
        if seq != last_seq:
            return seq
        t0 = time.perf_counter()
        deadline = t0 + timeout_s
        spin_until = t0 + min(spin_s, timeout_s)
        while True:
            now = time.perf_counter()
            seq = unpack(buf, _SEQ_OFF)[0]
            if seq != last_seq or now >= deadline:
                return seq
            if now >= spin_until:
                break
        if self._seq_addr and _U32.unpack_from(buf, _FEATURES_OFF)[0] & FEATURE_FUTEX_WAKE:
            seq = self._futex_wait(last_seq, deadline)
            if seq is not None:
                return seq
        delay = 0.0001
        while True:
            time.sleep(min(delay, max(0.0, deadline - time.perf_counter())))
            seq = unpack(buf, _SEQ_OFF)[0]
            if seq != last_seq or time.perf_counter() >= deadline:
                return seq
            delay = min(delay * 2, 0.001)

    def _futex_wait(self, last_seq: int, deadline: float) -> int | None:
        """Block until the sequence moves or `deadline` (perf_counter) passes; the sequence then, or None
        when the futex cannot be used (the caller polls instead)."""
        buf, unpack, ts, addr = self._buf, _U64.unpack_from, self._timeout, self._seq_addr
        expected = last_seq & 0xFFFFFFFF  # the futex word is the low half of the little-endian u64
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return unpack(buf, _SEQ_OFF)[0]
            sec = int(remaining)
            ts.tv_sec, ts.tv_nsec = sec, int((remaining - sec) * 1e9)
            # Returns at once (EAGAIN) if the word is no longer `expected`: no publish is missed between the
            # caller's look and this sleep. Also returns on a wake, the timeout, or a signal (EINTR).
            if _futex(_SYS_FUTEX, addr, _FUTEX_WAIT, expected, ctypes.byref(ts), None, 0) < 0:
                err = ctypes.get_errno()
                if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
                    self._seq_addr = 0  # e.g. EPERM from a seccomp filter, ENOSYS: poll from now on
                    return None
            seq = unpack(buf, _SEQ_OFF)[0]
            if seq != last_seq:
                return seq

    def updates_since(self, seq: int) -> list[Update]:
        """Every ring entry with a sequence number > `seq`, oldest first (what is still in the ring).

        The range is copied three times: guard 2 (`seq_end`) is taken from the first copy, the body from
        the second, guard 1 (`top.seq`) from the third. The writer stores guard 1, body, guard 2 in that
        order, so an entry whose two guards both equal its expected sequence was complete before the body
        was copied and not yet overwritten after it. Entries overwritten by a newer lap are dropped; the
        result is contiguous and ends at the newest complete entry."""
        self._reattach_if_replaced()
        newest = self.seq()
        cap = self._cap
        first = max(seq + 1, newest - cap + 1, 1)
        if first > newest:
            return []
        copy1 = self._ring_range(first, newest)
        copy2 = self._ring_range(first, newest)
        copy3 = self._ring_range(first, newest)
        esize = self._esize
        out: list[Update] = []
        expect = first
        for i, v in enumerate(_ENTRY.iter_unpack(copy2)):
            end_guard = _U64.unpack_from(copy1, i * esize + _SEQ_END_OFF)[0]
            begin_guard = _U64.unpack_from(copy3, i * esize)[0]
            if end_guard != expect or begin_guard != expect:
                out.clear()  # overwritten (or not yet complete): drop it and everything older
            else:
                out.append(
                    Update(
                        seq=expect,
                        window_start=v[1],
                        status=_status_name(v[2]),
                        crossed=bool(v[3]),
                        tick_size=v[4],
                        up=_leg_of(v[7 : 7 + _N_LEG]),
                        down=_leg_of(v[7 + _N_LEG : 7 + 2 * _N_LEG]),
                    )
                )
            expect += 1
        return out

    def _ring_range(self, first: int, last: int) -> bytes:
        cap, esize, roff, buf = self._cap, self._esize, self._ring_off, self._buf
        i0, i1 = first % cap, last % cap
        if i0 <= i1 and last - first < cap:
            return bytes(buf[roff + i0 * esize : roff + (i1 + 1) * esize])
        return bytes(buf[roff + i0 * esize : roff + cap * esize]) + bytes(buf[roff : roff + (i1 + 1) * esize])

    def _reattach_if_replaced(self) -> None:
        """A feed that found an incompatible old segment replaces it; follow it by name. Only checked when
        our mapping says "stopped", so the common path costs one 4-byte read."""
        code = struct.unpack_from("<I", self._buf, _STATUS_OFF)[0]
        if code != STATUS_CODE["stopped"]:
            return
        try:
            st = os.stat(_shm_path(self.name))
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) != self._ino:
            old_mm, old_buf = self._mm, self._buf
            try:
                self._attach()
            except (ShmMissing, LayoutError):
                return
            old_buf.release()
            old_mm.close()

    def close(self) -> None:
        if self._mm is not None:
            buf, self._buf = self._buf, None
            buf.release()
            self._mm.close()
            self._mm = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
