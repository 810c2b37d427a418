"""Exactly one trader per wallet: an flock'd lock file keyed by the funder address.

Two traders on one wallet would each see the other's orders as strangers, fight over cancels and
double the exposure. The lock lives under the state directory (`POLYMM_STATE_DIR`, systemd's
StateDirectory) as `wallet-<address>.lock` and holds the owner's pid, so a second instance can say who
holds it. flock is released by the kernel when the holder dies, so a crash never leaves a stale lock.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class WalletLocked(RuntimeError):
    """Another live process trades this wallet."""


class WalletLock:
    def __init__(self, state_dir: str | Path, funder_address: str) -> None:
        self.path = Path(state_dir) / f"wallet-{funder_address.lower()}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WalletLocked(
                f"another trader (pid {holder}) already trades wallet {self.path.name[7:-5]} "
                f"(lock {self.path}); refusing to start a second one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Clear the pid first: a reader must never see our pid on a lock we no longer hold.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "WalletLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
