"""Read-only view of the segment (trader, mmctl, recorder): seqlocked copies, the ring, and waiting for the
next update (futex or polling)."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import time

from polymm.feed.shm.layout import (DEFAULT_NAME, FEATURE_FUTEX_WAKE, HEADER, MAX_DEPTH, TOP, LayoutError, Leg, MAGIC,
                                   STATUSES, STATUS_CODE, SUPPORTED_VERSIONS, ShmMissing, Snapshot, Update, _DEPTH_OFF,
                                   _ENTRY_TOP, _FEATURES_OFF, _HDR_CONST, _LOCK_OFF, _NAN_LEG, _N_LEG, _SEQ_OFF, _STATE,
                                   _REF, _REF_OFF, _reference_of, Reference, _LINK, _LINK_OFF, _link_of,
                                   VERSION_ADDED,
                                   _STATE_END, _STATE_OFF, _STATUS_OFF, _U32, _U64, geometry, _pid_alive, _shm_path)
from polymm.feed.market import MarketIdentity
from polymm.feed.shm import futex
from polymm.feed.shm.futex import _FUTEX_WAIT, _SYS_FUTEX, _Timespec, _address_of


# ---------------------------------------------------------------------------------------------------
# Reader


_LEG_NAMES = tuple(f for f in Leg.__dataclass_fields__)[:_N_LEG]  # the top-of-book fields (bids/asks apart)


def _leg_of(values, bids: tuple = (), asks: tuple = ()) -> Leg:
    """Leg(*values, bids, asks) without the frozen dataclass's per-field object.__setattr__ (a reader builds
    two per snapshot on the trader's hot path). The result is an ordinary, equal, immutable-by-convention Leg."""
    leg = object.__new__(Leg)
    d = leg.__dict__
    d.update(zip(_LEG_NAMES, values))
    d["bids"] = bids
    d["asks"] = asks
    return leg


def _status_name(code: int) -> str:
    return STATUSES[code] if 0 < code < len(STATUSES) else f"unknown({code})"


def layout_refusal(name: str, version: int, header_size: int) -> str:
    """Why a reader refuses a segment's layout version, in words: which side is older and what to upgrade."""
    known = ", ".join(map(str, SUPPORTED_VERSIONS))
    text = (f"shared memory {name!r} has layout version {version} (header {header_size} B); this program reads "
            f"version {known} (header {HEADER.itemsize} B)")
    if version > max(SUPPORTED_VERSIONS):
        return text + ": the feed is newer than this program; upgrade polymm here (both services of a host upgrade together)"
    added = [f"{v}: {VERSION_ADDED[v]}" for v in sorted(VERSION_ADDED) if version < v <= max(SUPPORTED_VERSIONS)]
    return (text + ": the running polymm-feed is older than this program; restart it from the upgraded install (it "
            f"replaces the segment){' - versions since added ' + '; '.join(added) if added else ''}")


class Reader:
    """Read-only view of the segment (trader, mmctl, recorder). Not thread-safe; one per thread."""

    def __init__(self, name: str = DEFAULT_NAME, wait_s: float = 0.0, *, populate: bool = False) -> None:
        """`populate`: map every page of the segment at once (MAP_POPULATE), for a reader that follows the ring (the
        recorder, the feed's metrics): its RSS is then flat from the start instead of creeping by one page per ring
        entry during the first lap. Readers of the header alone (trader, mmctl) leave it off."""
        self.name = name.lstrip("/")
        self._populate = mmap.MAP_POPULATE if populate and hasattr(mmap, "MAP_POPULATE") else 0
        self._mm: mmap.mmap | None = None
        self._buf: memoryview | None = None
        self._market_key: tuple | None = None
        self._market: MarketIdentity | None = None
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
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED | self._populate, mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, version, hsize, roff, cap, esize, _features, levels = _HDR_CONST.unpack_from(mm, 0)
        if magic == 0:
            mm.close()
            raise ShmMissing(f"shared memory {self.name!r} exists but is not initialised yet")
        if magic != MAGIC:
            mm.close()
            raise LayoutError(
                f"shared memory {self.name!r} has magic {magic:#018x}; expected {MAGIC:#018x} "
                f"(a polymm-feed top-of-book segment)"
            )
        if version not in SUPPORTED_VERSIONS or hsize != HEADER.itemsize:
            mm.close()
            raise LayoutError(layout_refusal(self.name, version, hsize))
        g = geometry(levels) if levels <= MAX_DEPTH else None
        if g is None or esize != g.entry_size or roff < g.state_end:
            mm.close()
            raise LayoutError(
                f"shared memory {self.name!r} says {levels} depth levels, ring entry {esize} B at offset {roff}: "
                f"inconsistent with layout version {version}"
            )
        if roff + cap * esize > st.st_size:
            mm.close()
            raise LayoutError(f"shared memory {self.name!r} is {st.st_size} B, smaller than its ring needs")
        self._mm = mm
        self._buf = memoryview(mm)
        self._seq_addr = _address_of(mm, _SEQ_OFF) if futex._futex is not None else 0
        self._timeout = _Timespec()  # FUTEX_WAIT's relative timeout, reused (a Reader is used by one thread)
        self._ino = (st.st_dev, st.st_ino)
        self.magic, self.version = magic, version
        self.depth_levels = levels
        self._geometry = g
        self._state_end = g.state_end
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
                raw = bytes(buf[_STATE_OFF : self._state_end])
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
        v = _STATE.unpack_from(raw)
        return self._snapshot_from(v, self._geometry.unpack(raw, _DEPTH_OFF - _STATE_OFF),
                                   _reference_of(_REF.unpack_from(raw, _REF_OFF - _STATE_OFF)),
                                   _link_of(_LINK.unpack_from(raw, _LINK_OFF - _STATE_OFF)))

    def _snapshot_from(self, v, depth=((), (), (), ()), ref: Reference | None = None, link=None) -> Snapshot:
        # v follows _STATE_NAMES: writer_pid, writer_start, heartbeat, updates_per_s, reconnects, window_end,
        # min_order_size, fee_rate, condition_id, up_token, down_token, then TOP: seq, window_start, status,
        # crossed, tick_size, updates_total, disagreements, up (9), down (9).
        # Built without the frozen dataclass __init__ (object.__setattr__ per field, ~5 us): this runs on every
        # trader tick. The result is a normal Snapshot (equality, repr, frozen against assignment).
        snap = object.__new__(Snapshot)
        snap.__dict__.update(
            magic=self.magic,
            version=self.version,
            depth_levels=self.depth_levels,
            writer_pid=v[0],
            writer_start=v[1],
            heartbeat=v[2],
            status=_status_name(v[13]),
            market=self._market_of(v),
            crossed=bool(v[14]),
            seq=v[11],
            updates_total=v[16],
            updates_per_s=v[3],
            reconnects=v[4],
            disagreements=v[17],
            up=_leg_of(v[18 : 18 + _N_LEG], depth[0], depth[1]),
            down=_leg_of(v[18 + _N_LEG : 18 + 2 * _N_LEG], depth[2], depth[3]),
            ref=ref,
            link=link,
        )
        return snap

    def _market_of(self, v) -> MarketIdentity:
        """The market identity of one state read. It changes once a window (or on a tick change), so the last one
        is kept and handed out again while its raw fields are the same: no decoding, no new object per tick."""
        key = (v[8], v[9], v[10], v[12], v[5], v[15], v[6], v[7])
        if key != self._market_key:
            market = object.__new__(MarketIdentity)  # frozen dataclass: built like Snapshot above
            market.__dict__.update(
                condition_id=v[8].rstrip(b"\0").decode("ascii"),
                up_token=v[9].rstrip(b"\0").decode("ascii"),
                down_token=v[10].rstrip(b"\0").decode("ascii"),
                window_start=int(v[12]),
                window_end=int(v[5]),
                tick_size=float(v[15]),
                min_order_size=float(v[6]),
                fee_rate=float(v[7]),
                neg_risk=False,  # not in the segment (the Up/Down markets are not negative-risk)
            )
            self._market_key, self._market = key, market
        return self._market

    def _dead_writer_snapshot(self) -> Snapshot:
        # The writer died inside its critical section: the legs may be torn. Report the identity but no
        # book, and status "stopped", so nobody trades on it.
        v = list(_STATE.unpack_from(bytes(self._buf[_STATE_OFF:_STATE_END])))
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
            if futex._futex(_SYS_FUTEX, addr, _FUTEX_WAIT, expected, ctypes.byref(ts), None, 0) < 0:
                err = ctypes.get_errno()
                if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
                    self._seq_addr = 0  # e.g. EPERM from a seccomp filter, ENOSYS: poll from now on
                    return None
            seq = unpack(buf, _SEQ_OFF)[0]
            if seq != last_seq:
                return seq

    def updates_since(self, seq: int, limit: int | None = None) -> list[Update]:
        """Every ring entry with a sequence number > `seq`, oldest first (what is still in the ring).

        The range is copied three times: guard 2 (`seq_end`) is taken from the first copy, the body from
        the second, guard 1 (`top.seq`) from the third. The writer stores guard 1, body, guard 2 in that
        order, so an entry whose two guards both equal its expected sequence was complete before the body
        was copied and not yet overwritten after it. Entries overwritten by a newer lap are dropped; the
        result is contiguous and ends at the newest complete entry (or after `limit` entries)."""
        self._reattach_if_replaced()
        newest = self.seq()
        cap = self._cap
        first = max(seq + 1, newest - cap + 1, 1)
        if limit is not None:  # the oldest `limit` of them: a caller far behind reads the ring in slices
            newest = min(newest, first + max(1, limit) - 1)
        if first > newest:
            return []
        copy1 = self._ring_range(first, newest)
        copy2 = self._ring_range(first, newest)
        copy3 = self._ring_range(first, newest)
        esize = self._esize
        g = self._geometry
        seq_end_off = g.seq_end_off
        out: list[Update] = []
        expect = first
        for i in range((newest - first) + 1):
            base = i * esize
            end_guard = _U64.unpack_from(copy1, base + seq_end_off)[0]
            begin_guard = _U64.unpack_from(copy3, base)[0]
            if end_guard != expect or begin_guard != expect:
                out.clear()  # overwritten (or not yet complete): drop it and everything older
            else:
                v = _ENTRY_TOP.unpack_from(copy2, base)
                d = g.unpack(copy2, base + TOP.itemsize)
                out.append(
                    Update(
                        seq=expect,
                        window_start=v[1],
                        status=_status_name(v[2]),
                        crossed=bool(v[3]),
                        tick_size=v[4],
                        up=_leg_of(v[7 : 7 + _N_LEG], d[0], d[1]),
                        down=_leg_of(v[7 + _N_LEG : 7 + 2 * _N_LEG], d[2], d[3]),
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
