"""The segment's one writer (the feed): creates or resumes the segment, holds its flock, publishes under the
seqlock and wakes waiting readers."""
from __future__ import annotations

import errno
import fcntl
import math
import os
import struct
import threading
import time
from multiprocessing import resource_tracker
from multiprocessing import shared_memory

from polymm.feed.shm.layout import (DEFAULT_DEPTH, DEFAULT_NAME, DEFAULT_RING_CAPACITY, FEATURE_FUTEX_WAKE, HEADER,
                                   MAGIC, OPEN_STATUS_CODE, STATUSES, STATUS_CODE, VERSION, Reference, WriterConflict,
                                   geometry, segment_size, _NAN_PRICES, _REF, _REF_OFF, _reference_of,
                                   _LINK, _LINK_NONE, _LINK_OFF,
                                   _DEPTH_OFF, _FEATURES_OFF, _HDR_CONST, _LIVE, _LIVE_OFF, _LOCK_OFF, _MARKET,
                                   _MARKET_OFF, _NAN_TOP, _OWNER, _OWNER_OFF, _SEQ_OFF, _TOP, _TOP_OFF, _U32, _U64,
                                   _ascii, _pid_alive, _shm_path)
from polymm.feed.shm import futex
from polymm.feed.shm.layout import TOP
from polymm.feed.shm.futex import _FUTEX_WAKE, _SYS_FUTEX, _WAKE_ALL, _address_of


# ---------------------------------------------------------------------------------------------------
# Writer


_TOP_SIZE = TOP.itemsize
_TOP_END = _TOP_OFF + _TOP_SIZE


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
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        if not create:
            raise ValueError("Writer always creates or takes over the segment (create=True)")
        if ring_capacity < 16:
            raise ValueError("ring_capacity must be >= 16")
        self.geometry = g = geometry(depth)  # ValueError for a depth out of range
        self.depth = depth
        self._state_end = g.state_end
        self._seq_end_off = g.seq_end_off
        self._up_depth_off = _DEPTH_OFF
        self._down_depth_off = _DEPTH_OFF + g.leg_depth_size
        self.name = name.lstrip("/")
        self.lock = threading.Lock()
        self._clock = clock
        self._closed = False
        self._shm, self._lock_fd, resumed = self._open(ring_capacity, mode)
        self._buf = self._shm.buf
        # Touch every page of the segment now: its pages are then the process's from the start, and RSS does not
        # creep up by one page per ring entry during the ring's first lap (minutes), which reads like a leak on a
        # memory graph (issue 27). A read is enough: the kernel maps each page.
        bytes(self._buf)
        self._seq_addr = _address_of(self._buf, _SEQ_OFF)
        # One wake at start-up tells whether the kernel (and a seccomp filter) lets us: if not, the segment
        # says so (features = 0) and readers poll.
        self._wake = futex._futex is not None and futex._futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0) >= 0
        self._features = FEATURE_FUTEX_WAKE if self._wake else 0
        self.ring_capacity = ring_capacity
        self._ring_off = g.ring_offset
        self._entry_size = g.entry_size
        self.pid = os.getpid()
        self.start = clock()
        # The previous writer's opening price (a restart mid-window recovers it from here: feed/rtds).
        self.previous_reference: Reference | None = _reference_of(_REF.unpack_from(self._buf, _REF_OFF)) if resumed else None
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
            prev = self.previous_reference
            keep = prev is not None and prev.open_status in ("captured", "recovered")
            _REF.pack_into(self._buf, _REF_OFF, *_NAN_PRICES,
                           prev.open_window_start if keep else 0, prev.open_price if keep else math.nan,
                           prev.open_ts if keep else math.nan, OPEN_STATUS_CODE[prev.open_status] if keep else 0, 0, 0, 0)
            _LINK.pack_into(self._buf, _LINK_OFF, *_LINK_NONE)
            self._clear_depth_locked()
            self._commit_locked()
        if not resumed:
            # magic last: a reader that sees it sees a fully initialised segment
            _HDR_CONST.pack_into(
                self._buf, 0, MAGIC, VERSION, HEADER.itemsize, self._ring_off, ring_capacity, self._entry_size,
                self._features, depth,
            )
        else:
            _U32.pack_into(self._buf, _FEATURES_OFF, self._features)  # what *this* writer does

    # -- opening / ownership --------------------------------------------------------------------------

    def _open(self, ring_capacity: int, mode: int):
        size = segment_size(ring_capacity, self.depth)
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
        if self._layout_matches(shm, ring_capacity, self.depth):
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
    def _layout_matches(shm, ring_capacity: int, depth: int) -> bool:
        if shm.size < HEADER.itemsize:
            return False
        magic, version, hsize, roff, cap, esize, _features, levels = _HDR_CONST.unpack_from(shm.buf, 0)
        g = geometry(depth)
        return (
            magic == MAGIC
            and version == VERSION
            and hsize == HEADER.itemsize
            and levels == depth
            and roff == g.ring_offset
            and cap == ring_capacity
            and esize == g.entry_size
            and shm.size >= segment_size(ring_capacity, depth)
        )

    # -- seqlock and commit ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._buf is None:
            raise ValueError(f"shm writer {self.name!r} is closed")
        self._lockword += 1
        _U64.pack_into(self._buf, _LOCK_OFF, self._lockword)

    def _clear_depth_locked(self) -> None:
        nan = self.geometry.nan_depth
        self._buf[_DEPTH_OFF : _DEPTH_OFF + len(nan)] = nan

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
        end = self._seq_end_off
        # TOP and DEPTH into the entry (in the header the REF block sits between them; the ring has no REF)
        buf[off : off + _TOP_SIZE] = buf[_TOP_OFF:_TOP_END]
        buf[off + _TOP_SIZE : off + end] = buf[_DEPTH_OFF : self._state_end]
        _U64.pack_into(buf, off + end, seq)  # guard 2: body complete
        if self._wake:
            futex._futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0)  # best effort
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
            self._clear_depth_locked()
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
        self, now: float | None = None, *, updates_per_s: float | None = None, reconnects: int | None = None,
        link: tuple | None = None,
    ) -> None:
        """Refresh the liveness fields, and the market socket's (`link`: the LINK block's values in field order,
        `feed/liveness.py` LinkLiveness.facts(); None keeps them). No new sequence number: readers waiting for data
        are not woken."""
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
            if link is not None:
                _LINK.pack_into(self._buf, _LINK_OFF, *link)
            self._lockword += 1
            _U64.pack_into(self._buf, _LOCK_OFF, self._lockword)

    def set_reference(
        self,
        chainlink: tuple[float, float, float],
        binance: tuple[float, float, float],
        opening: tuple[int, float, float, str],
        rtds_connected: bool,
        rtds_reconnects: int,
        ref_updates: int,
    ) -> None:
        """Write the REF block: (price, source ts, recv ts) per source, (window_start, price, source ts, status)
        of the opening. No sequence number and no wake-up (see REF); readers see it at their next snapshot."""
        with self.lock:
            if self._closed:
                return
            self._begin()
            _REF.pack_into(self._buf, _REF_OFF, *chainlink, *binance, opening[0], opening[1], opening[2],
                           OPEN_STATUS_CODE.get(opening[3], 0), 1 if rtds_connected else 0, rtds_reconnects, ref_updates)
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
        up_depth=None,
        down_depth=None,
    ) -> int:
        """Publish the top of book and depth (the hot path).

        `up`/`down`: (bid, bid_size, ask, ask_size, last_trade, exchange_ts, recv_ts), or None when that leg
        did not change. `up_depth`/`down_depth`: that leg's DEPTH as bytes (`Geometry.pack_leg`) or as a
        (bids, asks) pair of (price, size) lists best first; None keeps what the segment holds (a leg
        whose top changes should pass its depth too). `tick_size`: a new tick (tick_size_change),
        published with the book in one step. Returns the new sequence number, or 0 (nothing written) when
        `window_start` is not the segment's current window: a book is never published under the wrong
        window."""
        up_depth = self._leg_depth(up_depth)
        down_depth = self._leg_depth(down_depth)
        with self.lock:
            return self.publish_locked(
                window_start, up, down, crossed, updates_total, disagreements, status, tick_size,
                up_depth, down_depth,
            )

    def _leg_depth(self, depth) -> bytes | None:
        if depth is None:
            return None
        g = self.geometry
        if not isinstance(depth, (bytes, bytearray)):
            return g.pack_leg(*depth)
        if len(depth) != g.leg_depth_size:
            raise ValueError(f"a leg's depth is {g.leg_depth_size} bytes for {g.depth} levels, got {len(depth)}")
        return depth

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
        up_depth: bytes | None = None,
        down_depth: bytes | None = None,
    ) -> int:
        """`publish` for a caller that already holds `self.lock` (the stream, which applies the book
        update under the same lock so that one lock per message suffices). Depth only as bytes of the
        leg's DEPTH size (`Geometry.pack_leg`, or `LegBook.depth` in the feed)."""
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
        if up_depth is not None:  # a leg's depth persists in the header until that leg publishes again
            off = self._up_depth_off
            buf[off : off + len(up_depth)] = up_depth
        if down_depth is not None:
            off = self._down_depth_off
            buf[off : off + len(down_depth)] = down_depth
        lockword += 1
        _U64.pack_into(buf, _LOCK_OFF, lockword)
        self._lockword = lockword
        off = self._ring_off + (seq % self.ring_capacity) * self._entry_size
        end = self._seq_end_off
        _U64.pack_into(buf, off, seq)
        buf[off : off + _TOP_SIZE] = buf[_TOP_OFF:_TOP_END]
        buf[off + _TOP_SIZE : off + end] = buf[_DEPTH_OFF : self._state_end]
        _U64.pack_into(buf, off + end, seq)
        if self._wake:  # readers blocked in wait_update (best effort: a failed wake only costs them latency)
            futex._futex(_SYS_FUTEX, self._seq_addr, _FUTEX_WAKE, _WAKE_ALL, None, None, 0)
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
