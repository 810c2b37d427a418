"""`polymm-feed --record FILE`: every published top of book, with its depth when the feed publishes depth, as
one JSON line (contract 2 of contracts.md; read by trader/backtest/ticks_file.py), the input of
`polymm-backtest`.

BTC reference price (issue 16): each line also carries `btc` (Chainlink BTC/USD), `btc_ts` (its source timestamp)
and `btc_open` (the window's opening price, null when unknown) as the feed knew them when the line was published.
The REF block is not in the ring: the recorder samples it whenever it drains (at least every 0.25 s; RTDS sends
about one price a second) and gives each line the newest sample *received* by then, never a later one.

The recorder reads the segment's ring from its own thread, so the hot path never touches the file: a slow
disk delays the recording, never the publish. If the recorder falls more than a ring's length behind, the
lost updates are counted and logged (the file says nothing wrong: it just has a gap).
"""
from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque

from polymm.feed import shm

log = logging.getLogger("polymm.feed.record")


def _num(x: float):
    return None if x != x or math.isinf(x) else x


def tick_line(update: shm.Update, snap: shm.Snapshot | None, ref: shm.Reference | None = None,
              series: str | None = None) -> dict | None:
    """One contract-2 record for a ring entry, or None when the entry has no book to record (market
    switching, feed starting or stale)."""
    if update.status != "connected" or not update.window_start:
        return None
    up, down = update.up, update.down
    ts = max(x for x in (up.publish_ts, down.publish_ts, 0.0) if x == x)
    line = {
        "ts": ts,
        "window_start": update.window_start,
        "up_bid": _num(up.bid),
        "up_ask": _num(up.ask),
        "down_bid": _num(down.bid),
        "down_ask": _num(down.ask),
        "up_bid_size": _num(up.bid_size),
        "up_ask_size": _num(up.ask_size),
        "down_bid_size": _num(down.bid_size),
        "down_ask_size": _num(down.ask_size),
        "tick_size": _num(update.tick_size),
    }
    if series is not None:
        line["series"] = series  # the market series (polymm/series.py): a backtest takes its config from it
    # Depth (shm layout 2, `polymm-feed --depth N`): per leg, bids and asks as [[price, size], ...] best
    # first, only when the segment carries depth and the leg has a book; a reader of older files sees none.
    for name, leg in (("up", up), ("down", down)):
        if leg.bids or leg.asks:
            line[f"{name}_bids"] = [[p, q] for p, q in leg.bids]
            line[f"{name}_asks"] = [[p, q] for p, q in leg.asks]
    if snap is not None and snap.market.window_start == update.window_start:
        line["window_end"] = snap.market.window_end
        line["min_order_size"] = snap.market.min_order_size
        line["fee_rate"] = snap.market.fee_rate
    if ref is not None and ref.chainlink == ref.chainlink:
        line["btc"] = ref.chainlink
        line["btc_ts"] = ref.chainlink_ts
        line["btc_open"] = _num(ref.opening_for(update.window_start))
    return line


def reference_at(refs, ts: float) -> shm.Reference | None:
    """The newest sampled reference whose Chainlink price was received at or before `ts`."""
    for ref in reversed(refs):
        if ref.chainlink_recv_ts <= ts:
            return ref
    return None


class Recorder:
    """Follows the segment `shm_name` and appends contract-2 lines to `path`."""

    def __init__(self, path: str, shm_name: str, series: str | None = None) -> None:
        self.path = path
        self.shm_name = shm_name
        self.series = series
        self.lines = 0
        self.lost = 0
        self.error = ""
        self._stop = threading.Event()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._reader = shm.Reader(shm_name, populate=True)  # it follows the whole ring
        self._last = self._reader.seq()
        self._refs: deque[shm.Reference] = deque(maxlen=16)  # REF samples, oldest first
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def start(self) -> "Recorder":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._reader.wait_update(self._last, 0.25)
                self.drain()
            self.drain()
        except OSError as e:
            self.error = f"recording to {self.path} stopped: {e}"
            log.error("%s", self.error)

    # Ring entries read at once: a recorder far behind (a slow disk) reads the ring in slices, so the objects of a
    # whole ring (4096 entries with depth, ~10 MB) are never built at once (the heap would keep that for good).
    SLICE = 256

    def drain(self) -> None:
        self._sample_reference()
        while self._drain_slice():
            pass

    def _drain_slice(self) -> bool:
        """One slice of what is new; False when nothing was."""
        updates = self._reader.updates_since(self._last, self.SLICE)
        if not updates:
            return False
        if updates[0].seq > self._last + 1:
            missed = updates[0].seq - self._last - 1
            self.lost += missed
            log.warning("recorder fell behind: %d update(s) lost (ring overwritten)", missed)
        snap = self._reader.snapshot()
        out = []
        for update in updates:
            ts = max(x for x in (update.up.publish_ts, update.down.publish_ts, 0.0) if x == x)
            line = tick_line(update, snap, reference_at(self._refs, ts), self.series)
            if line is not None:
                out.append(json.dumps(line, separators=(",", ":")))
        if out:
            self._file.write("\n".join(out) + "\n")
            self._file.flush()
            self.lines += len(out)
        self._last = updates[-1].seq
        return len(updates) >= self.SLICE

    def _sample_reference(self) -> None:
        ref = self._reader.snapshot().ref
        if ref is None or ref.chainlink != ref.chainlink:
            return
        last = self._refs[-1] if self._refs else None
        if last is None or (last.chainlink_ts, last.open_status) != (ref.chainlink_ts, ref.open_status):
            self._refs.append(ref)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        try:
            self._file.close()
        finally:
            self._reader.close()
