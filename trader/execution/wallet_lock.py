"""Exactly one trader per wallet and series, machine-wide: an abstract UNIX socket named after the funder address
and the series, plus an flock'd lock file in the state directory.

Two traders of one series on one wallet would each see the other's orders as strangers, fight over cancels and
double the exposure. Traders of different series trade different markets and share the wallet through
trader/wallet/ (its package docstring). Without a series (`series=None`) the lock is the whole wallet's, as
before series existed: that name is now the wallet leader's lease (trader/wallet/locks.py), so a trader of an
older polymm, which believes it is alone on the wallet, cannot start beside series traders, and they refuse to
start beside it. Two locks, because each covers what the other cannot:

- The abstract-namespace socket `\\0polymm-wallet-<address>/<series>` is bound (and listened on) by the holder. Its
  name lives in the kernel, not on a file system, so it needs no shared writable directory and holds across
  traders with different state directories (`POLYMM_STATE_DIR`, systemd's StateDirectory, a test's tmp dir).
  The kernel frees the name when the holder dies, so a crash never leaves a stale lock, and a second trader
  learns the holder's pid from SO_PEERCRED by connecting to it. Scope: one network namespace (a unit with
  PrivateNetwork=yes would get its own; the trader needs the network, so it never runs that way).
- The lock file `wallet-<address>.lock` (`wallet-<address>-<series>.lock` for a series other than the default)
  in the state directory holds the owner's pid in plain text, for an
  operator looking at the files (and it keeps guarding a state directory shared across network namespaces).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
import time
from pathlib import Path


class WalletLocked(RuntimeError):
    """Another live process trades this wallet."""


DEFAULT_SERIES = "btc-15m"  # polymm/series.py's default (its lock file keeps the name it always had)


def abstract_name(funder_address: str, series: str | None = None) -> bytes:
    """The abstract socket name for a wallet (leading NUL = abstract namespace; never a file), or for one series of
    it."""
    base = b"\0polymm-wallet-" + funder_address.lower().encode()
    return base if series is None else base + b"/" + series.encode()


def serve_probes(sock: socket.socket) -> None:
    """Accept and drop every probe connection on a held name, in a daemon thread: a queued connection holds a slot
    of the listen backlog until it is accepted (even after its client closed), so a holder that never accepts is
    unreachable - and looks taken by nobody - after a handful of probes (mmctl and refused start-ups read the holder's
    pid this way). Ends when `sock` is closed."""
    def run() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed: the lock was released
            conn.close()
    threading.Thread(target=run, name="polymm-lock-probes", daemon=True).start()


def bind_name(name: bytes) -> socket.socket | None:
    """Bind and listen on abstract socket `name`, serving probes (serve_probes); None when another process holds
    it. Python sockets are close-on-exec: a child process never inherits (and so never holds) the name."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        return None
    # Listening lets others connect and read our pid with SO_PEERCRED (the probe only needs the connection
    # queued); probes are accepted and dropped at once so they never fill the backlog.
    sock.listen(64)
    serve_probes(sock)
    return sock


def holder_pid(name: bytes, timeout_s: float = 1.0) -> int | None:
    """The pid of the process listening on abstract socket `name` (SO_PEERCRED), or None when nobody does. A full
    listen queue (the holder's probe thread has not drained it yet: EAGAIN) is waited out up to `timeout_s`; a
    holder that never drains it is reported as unknown (None)."""
    deadline = time.monotonic() + timeout_s
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(timeout_s)
        try:
            probe.connect(name)
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, _uid, _gid = struct.unpack("3i", creds)
            return pid or None
        except (BlockingIOError, TimeoutError) as exc:
            if isinstance(exc, BlockingIOError) and time.monotonic() < deadline:
                time.sleep(0.001)  # the queue is full for a moment: let its holder accept
                continue
            return None
        except OSError:
            return None
        finally:
            probe.close()


class WalletLock:
    def __init__(self, state_dir: str | Path, funder_address: str, series: str | None = None,
                 series_names: tuple[str, ...] = ()) -> None:
        self.address = funder_address.lower()
        self.series = series
        # Every series a peer may trade: a process holding the wallet-wide name and one of these is a peer (the
        # leader), not an older polymm.
        self.series_names = series_names or ((series,) if series else ())
        tail = "" if series in (None, DEFAULT_SERIES) else f"-{series}"
        self.path = Path(state_dir) / f"wallet-{self.address}{tail}.lock"
        self.name = abstract_name(self.address, series)
        self._fd: int | None = None
        self._sock: socket.socket | None = None

    def _what(self) -> str:
        return f"wallet {self.address}" if self.series is None else f"series {self.series} of wallet {self.address}"

    def acquire(self) -> None:
        if self.series is not None:
            self._refuse_older_trader()
        self._bind_machine_wide()
        try:
            self._lock_file()
        except BaseException:
            self._unbind()
            raise

    def _bind_machine_wide(self) -> None:
        sock = bind_name(self.name)
        if sock is None:
            pid = holder_pid(self.name)
            who = f"pid {pid}" if pid else "a process whose pid could not be read"
            raise WalletLocked(
                f"another trader ({who}) already trades {self._what()} on this machine "
                f"(abstract socket @{self.name[1:].decode()}); refusing to start a second one"
            ) from None
        self._sock = sock

    def _refuse_older_trader(self) -> None:
        """The wallet-wide name held by a process that holds no series name is a trader of an older polymm: it
        cancels every order of the wallet (cancel-all) and counts nothing of ours, so no series may trade beside it."""
        wallet_wide = abstract_name(self.address)
        pid = holder_pid(wallet_wide)
        if pid is None:
            return
        if any(holder_pid(abstract_name(self.address, s)) == pid for s in self.series_names):
            return  # the wallet's leader: a series trader like us
        raise WalletLocked(
            f"a trader that trades wallet {self.address} as if alone (pid {pid}, an older polymm or one without "
            f"series) holds @{wallet_wide[1:].decode()}: it cancels every order of the wallet; stop or upgrade it "
            "before starting series on this wallet")

    def _lock_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WalletLocked(
                f"another trader (pid {holder}) already trades {self._what()} "
                f"(lock {self.path}); refusing to start a second one"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _unbind(self) -> None:
        if self._sock is not None:
            # shutdown() wakes the probe thread blocked in accept(); close() alone may not.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def release(self) -> None:
        if self._fd is not None:
            # Clear the pid first: a reader must never see our pid on a lock we no longer hold.
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._unbind()

    @property
    def held(self) -> bool:
        return self._fd is not None and self._sock is not None

    def __enter__(self) -> "WalletLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
