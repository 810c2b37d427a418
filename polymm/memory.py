"""Keeping a long-running service's native heap flat (glibc malloc, not Python's objects).

Measured in the soak (bench/soak.py, issue 27): with Python's own heap flat (tracemalloc: +6 kB over 16 windows),
the trader's RSS still grew ~70 kB per window, all of it in glibc's per-thread malloc arenas. Every thread that
allocates outside the GIL-held small-object allocator (the user channel, the workers signing and posting, the
heartbeat, the ledger writer, the redeemer, the exporter) gets an arena of its own, up to 8 per core; memory freed in
one arena is not reused by another, and an arena's free pages are not returned to the kernel unless they sit at its
top. Over weeks that is a slow, steady climb that looks like a leak.

Two remedies, both plain glibc calls (no effect elsewhere: on another libc these are no-ops):
- `limit_arenas()` at start, before any thread: at most `MAX_ARENAS` arenas, shared by all threads (the GIL already
  serialises most allocations, so sharing costs nothing measurable);
- `trim()` now and then from a thread off the hot path (once a minute): `malloc_trim(0)` hands every whole free page
  of every arena back to the kernel (glibc >= 2.8 walks all arenas, not only the main heap's top).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("polymm.memory")

M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
MAX_ARENAS = 2
TRIM_EVERY_S = 60.0

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def limit_arenas(arenas: int = MAX_ARENAS) -> bool:
    """At most `arenas` malloc arenas for the process (call before starting threads). True when applied."""
    lib = _glibc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(arenas)))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return ok


def trim() -> bool:
    """Return free heap pages to the kernel (malloc_trim(0)). True when memory was released."""
    lib = _glibc()
    return bool(lib.malloc_trim(ctypes.c_size_t(0))) if lib is not None else False
