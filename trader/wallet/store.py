"""The shared wallet record: one small file per wallet in /dev/shm (records.py is its layout).

/dev/shm because every trader of the wallet on this host must find the same file whatever its state directory
(tests and hand-run traders use their own), because it outlives its writers (a killed trader's exposure stays
there), and because a write is a memory store (the decision loop publishes its exposure without a system call).
It does not outlive a reboot: then every trader starts again, reconciles its positions from the exchange and
publishes them before its first decision.

Writers: slot i only by series i's trader (a seqlock per slot, no lock needed); the header by the leader.
`locked()` (flock on the file) serialises claims: read every slot, write one, as one step across processes.
"""
from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import time
from pathlib import Path
from typing import Iterator

from polymm.trader.wallet import records as rec

SHM_DIR = Path("/dev/shm")
PREFIX = "polymm-wallet-"


class StoreError(RuntimeError):
    """The shared record cannot be used (another layout, not a wallet record, no /dev/shm); words for the log."""


def path_for(key: str, directory: Path = SHM_DIR) -> Path:
    if not re.fullmatch(r"[0-9A-Za-z_.-]{1,100}", key):
        raise StoreError(f"wallet key {key!r} is not a file name")
    return directory / f"{PREFIX}{key}"


class WalletStore:
    def __init__(self, key: str, directory: Path = SHM_DIR) -> None:
        self.path = path_for(key, directory)
        try:
            # Group-readable: mmctl (an operator in group polymm) shows the wallet's series from it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
        except OSError as exc:
            raise StoreError(f"cannot open the shared wallet record {self.path}: {exc.strerror or exc}") from None
        self._fd = fd
        try:
            with self.locked():
                if os.fstat(fd).st_size == 0:
                    os.ftruncate(fd, rec.SIZE)
                    os.pwrite(fd, rec.pack_header(), 0)
                elif os.fstat(fd).st_size < rec.SIZE:
                    raise StoreError(f"{self.path} is {os.fstat(fd).st_size} bytes, not a wallet record of layout "
                                     f"{rec.VERSION}; remove it when no trader runs")
            self._map = mmap.mmap(fd, rec.SIZE)
            magic, version, slots = rec.read_header(self._map)
            if magic != rec.MAGIC or version != rec.VERSION or slots != rec.SLOTS:
                raise StoreError(f"{self.path} is not a wallet record this polymm reads (magic {magic!r}, layout "
                                 f"{version}, {slots} slots; this polymm: layout {rec.VERSION}): upgrade every "
                                 "trader of the wallet together")
        except BaseException:
            os.close(fd)
            raise

    # ---- the file lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    # ---- slots ------------------------------------------------------------------------------------
    def write(self, index: int, record: rec.SeriesRecord) -> None:
        """Publish slot `index` (only its own series' trader does): seqlock, never torn for a reader."""
        buf = self._map
        seq = rec.seq_of(buf, index)
        if seq % 2:  # a writer died mid-write: the slot is ours now, start from an even word
            seq += 1
        rec.set_seq(buf, index, seq + 1)
        rec.pack_slot(buf, index, seq + 1, record)
        rec.set_seq(buf, index, seq + 2)

    def read(self, index: int) -> rec.SeriesRecord | None:
        buf = self._map
        for _ in range(1000):
            before = rec.seq_of(buf, index)
            if before % 2:
                time.sleep(0)  # its writer is mid-write: a store of a few words
                continue
            _seq, record = rec.unpack_slot(buf, index)
            if rec.seq_of(buf, index) == before:
                return record if record.state != rec.EMPTY else None
        # A writer that died mid-write leaves the word odd forever: read what is there (its next start fixes it).
        return rec.unpack_slot(buf, index)[1]

    def records(self) -> dict[int, rec.SeriesRecord]:
        return {i: r for i in range(rec.SLOTS) if (r := self.read(i)) is not None}

    # ---- the leader's heartbeat -------------------------------------------------------------------
    def heartbeat(self) -> rec.Heartbeat:
        return rec.unpack_heartbeat(self._map)

    def set_heartbeat(self, hb: rec.Heartbeat) -> None:
        rec.pack_heartbeat(self._map, hb)

    def close(self) -> None:
        try:
            self._map.close()
        finally:
            os.close(self._fd)
