"""The wallet leader's lease and the liveness of series traders.

The lease is the wallet-wide abstract UNIX socket name `\\0polymm-wallet-<address>` (as the series lock in
trader/execution/wallet_lock.py): whoever has it bound is the leader. The kernel frees it when the holder dies, so a
crash never leaves a stale leader, and the next trader that tries binds it. Holding it also keeps a trader of an
older polymm (which binds that same name to trade the wallet alone) from starting beside series traders.

A series trader is alive while it holds an open-file-description write lock on its liveness file beside the
shared record (`<record>.<series>.alive`). Every trader asks about the others every second: F_OFD_GETLK answers
from the kernel alone, so asking wakes nothing in the process asked about (a connection to its socket would make it
accept, taking its interpreter's lock in the middle of its decisions). The kernel drops the lock when its holder
dies; an open-file-description lock is also not dropped by the holder closing another descriptor of the file, as a
classic POSIX lock would be.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
from pathlib import Path

from polymm.trader.execution.wallet_lock import abstract_name, bind_name, holder_pid

# struct flock on Linux (64-bit off_t): l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padding.
_FLOCK = struct.Struct("hhqqi4x")


class LeaderLease:
    def __init__(self, funder_address: str) -> None:
        self.name = abstract_name(funder_address)
        self._sock: socket.socket | None = None

    @property
    def held(self) -> bool:
        return self._sock is not None

    def try_acquire(self) -> bool:
        """Bind the lease if nobody holds it. True when this process is (now or already) the leader."""
        if self._sock is None:
            self._sock = bind_name(self.name)
        return self._sock is not None

    def holder(self) -> int | None:
        """The leader's pid (ours when we hold it), or None when nobody does."""
        return holder_pid(self.name)

    def release(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the probe thread blocked in accept()
            except OSError:
                pass
            self._sock.close()
            self._sock = None


def alive_path(record: Path, series: str) -> Path:
    return record.with_name(f"{record.name}.{series}.alive")


class Liveness:
    """This trader's liveness lock for its series (held from start() to stop(), or until the process dies)."""

    def __init__(self, record: Path, series: str) -> None:
        self.path = alive_path(record, series)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True once held; False when another process holds it (another trader of the series: refused earlier by the
        series lock, so only a race with a stopping one)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # an OFD lock goes with its last descriptor
            self._fd = None


def series_alive(record: Path, series: str) -> bool:
    """Whether some process holds `series`' liveness lock beside the shared record `record` (a trader of it runs)."""
    try:
        fd = os.open(alive_path(record, series), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
    except OSError:
        return True  # cannot tell: never reap on a doubt
    finally:
        os.close(fd)
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK
