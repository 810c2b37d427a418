"""The feed's shared-memory segment: layout.py (dtypes, packers), futex.py (wake-ups), writer.py (the feed only)
and reader.py (trader, mmctl). This docstring is the contract all four implement.

One POSIX shared-memory object (``/dev/shm/<name>``, default ``poly_tob_shm``) holds:

    HEADER   constants (magic, layout version, sizes, ``depth_levels`` N), then a seqlock word, then the
             seqlocked state: writer pid/start, heartbeat, status, market identity, counters and the latest
             top of book of both legs (``LEG`` twice); then ``REF``, the BTC reference prices (see layout.REF);
             then (since version 4) ``LINK``, the current window's market socket's liveness (see below).
    DEPTH    (since version 2; still inside the seqlock; version 3 added REF to the header) the top N levels
             of each side of both legs, N prices then
             N sizes per side, best first, NaN past the book's last level (``depth_dtype(N)``; N is
             ``polymm-feed --depth``, default 10, 0 for top of book only). Readers get them as
             ``Leg.bids`` / ``Leg.asks``: tuples of (price, size), best first.
    RING     ``ring_capacity`` entries of ``ring_entry_dtype(N)`` (TOP + DEPTH + guard): every state a reader
             could have seen, one entry per sequence number (book publishes, market changes, status
             changes), so a reader that fell behind, the recorder or a backtest sees every update and not
             only the last one.

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

Liveness (version 4). Two signs of life, from two places: ``heartbeat`` is the feed process's loop (refreshed
5 times a second even when nothing happens: a stale heartbeat is a hung or dead feed), and ``LINK`` is the
current window's market WebSocket as the feed sees it: connected or not, when the last frame of any kind came
(market data or the PONG to the PING the feed sends every ``ping_interval_s``), the last market data, the last
PONG and PING, and the feed's own limits (``pong_timeout_s``: a PING unanswered this long and the feed gives the
socket up; ``stale_after_s``: no market data this long on a live socket and the feed takes it for frozen and
reconnects). A book that does not change is therefore not a dead feed: readers judge with ``layout.Link``
(``dead_reason``: not connected, or no frame at all for ``ping_interval_s + pong_timeout_s``; ``frozen_reason``:
PONGs but no data beyond a limit) and with the heartbeat, never with the age of the last book change. The feed
writes LINK with each heartbeat (no sequence number, no wake-up), for the stream publishing the current window;
while it has none (starting, between windows without a successor) LINK says not connected.

Readers attach read-only (``O_RDONLY`` + ``PROT_READ``), never unlink, and never touch Python's
``resource_tracker``. ``multiprocessing.shared_memory.SharedMemory`` on Python 3.11 would (a) open the
object read-write, which a member of the service group with read-only access cannot do, and (b) register
it with ``resource_tracker``, which *unlinks* it when the reader process exits -- deleting the feed's
segment from under everyone. The writer does create through ``SharedMemory`` and unregisters from the
tracker immediately for the same reason.
"""
from polymm.feed.shm import futex, layout, reader, writer  # noqa: F401 - the parts, by name for tests and tooling
from polymm.feed.shm.layout import (DEFAULT_DEPTH, DEFAULT_NAME, DEFAULT_RING_CAPACITY, DEPTH, FEATURE_FUTEX_WAKE,
                                    HEADER, LEG, LINK, MAGIC, MAX_DEPTH, OPEN_STATUSES, REF, RING_ENTRY, STATUS_CODE,
                                    STATUSES, SUPPORTED_VERSIONS, TOP, VERSION, Geometry, LayoutError, Leg, Reference,
                                    ShmMissing, Snapshot, Update, WriterConflict, depth_dtype, geometry, Link,
                                    ring_entry_dtype, segment_size)
from polymm.feed.shm.reader import Reader
from polymm.feed.shm.writer import Writer, unlink

__all__ = ["DEFAULT_DEPTH", "DEFAULT_NAME", "DEFAULT_RING_CAPACITY", "DEPTH", "FEATURE_FUTEX_WAKE", "Geometry",
           "HEADER", "LEG", "LINK", "Link", "MAGIC", "MAX_DEPTH", "OPEN_STATUSES", "REF", "RING_ENTRY", "Reference", "depth_dtype",
           "geometry", "ring_entry_dtype",
           "STATUS_CODE", "STATUSES", "SUPPORTED_VERSIONS", "TOP", "VERSION", "LayoutError", "Leg", "Reader",
           "ShmMissing", "Snapshot", "Update", "Writer", "WriterConflict", "segment_size", "unlink"]
