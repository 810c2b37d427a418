"""Linux futex(2) through libc's syscall(): the writer's wake-up and the reader's wait on the `top.seq` word.

`_futex` is looked up at each call (`futex._futex`), so a test or a platform without it can swap it for None."""
from __future__ import annotations

import ctypes
import platform
import sys

import numpy as np


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
