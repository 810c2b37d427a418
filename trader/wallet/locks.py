"""The wallet leader's lease and the liveness of series traders (abstract UNIX sockets, as the series lock in
trader/execution/wallet_lock.py).

The lease is the wallet-wide name `\\0polymm-wallet-<address>`: whoever has it bound is the leader. The kernel
frees it when the holder dies, so a crash never leaves a stale leader, and the next trader that tries binds it.
Holding it also keeps a trader of an older polymm (which binds that same name to trade the wallet alone) from
starting beside series traders. A series trader is alive while the process named in its record still holds its
series lock (SO_PEERCRED on a probe connection: no file, no signal, nothing the holder has to answer).
"""
from __future__ import annotations

import socket

from polymm.trader.execution.wallet_lock import abstract_name, bind_name, holder_pid


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


def series_alive(funder_address: str, series: str, pid: int) -> bool:
    """Whether `pid` still trades `series` of the wallet (holds its series lock)."""
    return pid > 0 and holder_pid(abstract_name(funder_address, series), timeout_s=0.2) == pid
