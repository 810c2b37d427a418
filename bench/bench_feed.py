"""Feed hot path, per message: decode -> book update -> shared-memory publish, in microseconds.

Inputs are the recorded market-channel messages under tests/fixtures/polymarket-recorded:
  book            nautilus-python/ws_messages/book.json (real, 76 bids / 86 asks, best level last), alternating
                  with a copy whose best bid's size differs, so that every message changes the book (a `book` the
                  feed already holds is no publish since issue 26: measured apart, "book, same as held")
  price_change    nautilus-python/ws_messages/price_change_v2.json (current schema, 3 entries, one token)
  price_change 2-leg  the same message with its first two entries put on the Up and Down tokens (one
                  change per leg, the shape production sends when an order moves both mirrored books)
  price_change old    nautilus-python/ws_messages/price_change.json (pre-2025-09 single-level schema)
Each is measured through `MarketStream.on_frame` (exactly the code the WebSocket thread runs) twice, with
the shared-memory DEPTH block at N = 10 levels per side (the default) and at N = 0 (top of book only, the
publish before depth existed), next to a naive baseline in the same run: json.loads, dict walking with float() per field, best price by max/min
over the side, and the same fields written into a segment through numpy structured-array item writes
under the same seqlock. Then the same path with the Prometheus counter on (messages by type; the
decode->publish histogram is read from the ring at scrape time, off this path: feed/metrics.py) next to off,
alternating rounds in the same run.
Prints figures; asserts nothing about time.

websocket-client's own receive of a frame, before on_frame (issue 26): the library alone against polymm/ws.py's
ReadAhead (one socket read per chunk instead of three per frame), with the options every channel uses
(skip_utf8_validation; no multithread lock where the socket has one reader), alternating rounds in the same run,
frames arriving one at a time and as a burst. (wsaccel is not used: it only speeds up masking, which server frames
do not have, and UTF-8 validation, which we skip; websocket-client itself calls it unmaintained.)

RTDS (issue 16): the per-message cost of a Chainlink update through `RtdsStream.on_frame` (decode, reference
book, publish into the segment's reference block), and the two-leg book figure again while a thread feeds RTDS
updates at `--rtds-rate` per second alongside (production sends ~2/s), next to the same run's figure without.

Run: .venv/bin/python bench/bench_feed.py [--n 20000] [--rtds-rate 200]
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from polymm.feed import shm
from polymm.feed.discovery import MarketInfo
from polymm.feed.rtds.reference import ReferenceBook
from polymm.feed.rtds.stream import RtdsStream
from polymm.feed.service import publish_reference as service_publish_reference
from polymm.feed.metrics import FeedCounters
from polymm.feed.stream import MarketStream

ROOT = Path(__file__).resolve().parent.parent
WS = ROOT / "tests/fixtures/polymarket-recorded/nautilus-python/ws_messages"
WINDOW = 1_800_000_000


def load(name: str) -> dict:
    return json.loads((WS / name).read_text())


def inputs() -> tuple[str, str, dict[str, bytes]]:
    book = load("book.json")
    pc = load("price_change_v2.json")
    old = load("price_change.json")
    up = pc["price_changes"][0]["asset_id"]
    down = book["asset_id"]  # a second real token id
    book_up = dict(book, asset_id=up)
    two = copy.deepcopy(pc)
    two["price_changes"] = [dict(pc["price_changes"][0]), dict(pc["price_changes"][1], asset_id=down)]
    two["price_changes"][1].update(side="SELL", price="0.7", best_bid="", best_ask="0.7")
    old_up = dict(old, asset_id=up)
    def wire(doc: dict) -> bytes:  # compact, key order kept, as the venue (and the sim) send them
        return json.dumps(doc, separators=(",", ":")).encode()

    frames = {
        "book (162 levels)": wire(book_up),
        "price_change 1-leg x3": wire(pc),
        "price_change 2-leg": wire(two),
        "price_change old schema": wire(old_up),
    }
    return up, down, frames


BOOK = "book (162 levels)"


def changed_book(frame: bytes) -> bytes:
    """`frame`, a `book`, with its best bid's size one share more: a different book."""
    doc = json.loads(frame)
    best = max(range(len(doc["bids"])), key=lambda i: float(doc["bids"][i]["price"]))
    doc["bids"][best] = dict(doc["bids"][best], size=str(float(doc["bids"][best]["size"]) + 1))
    return json.dumps(doc, separators=(",", ":")).encode()


def alternate(fn, a: bytes, b: bytes):
    """`fn(frame, t)` fed `a` and `b` in turn, whatever frame it is given: each message is a change."""
    frames = [a, b]
    turn = [0]

    def fed(_frame: bytes, t: float):
        turn[0] ^= 1
        return fn(frames[turn[0]], t)

    return fed


# ----------------------------------------------------------------------------------------------------
# the real path


def make_stream(up: str, down: str, writer: shm.Writer, frames: dict[str, bytes], counters=None) -> MarketStream:
    info = MarketInfo(slug="bench", condition_id="0x01", up_token=up, down_token=down, window_start=WINDOW,
                      window_end=WINDOW + 900, tick_size=0.001, min_order_size=5, fee_rate=0.07)
    stream = MarketStream("ws://unused", info, writer, counters=counters)
    stream.connected = True
    stream.live = True
    # both legs need a snapshot before anything is published
    book = json.loads(frames[BOOK])
    stream.on_frame(json.dumps(book).encode(), time.time())
    stream.on_frame(json.dumps(dict(book, asset_id=down)).encode(), time.time())
    return stream


# ----------------------------------------------------------------------------------------------------
# the naive baseline: what one would write first


class NaiveFeed:
    def __init__(self, up: str, down: str, name: str) -> None:
        self.writer = shm.Writer(name, ring_capacity=64)  # owns the segment; we write it the naive way
        self.writer.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x01", up_token=up,
                               down_token=down, tick_size=0.001, min_order_size=5, fee_rate=0.07)
        self.arr = np.ndarray((1,), dtype=shm.HEADER, buffer=self.writer._shm.buf)  # noqa: SLF001
        self.books = {up: ({}, {}), down: ({}, {})}
        self.leg_of = {up: "up", down: "down"}
        self.seq = 0

    def on_frame(self, data: bytes, recv_ts: float) -> None:
        doc = json.loads(data)
        events = doc if isinstance(doc, list) else [doc]
        touched = set()
        for ev in events:
            kind = ev.get("event_type")
            if kind == "book":
                bids, asks = self.books[ev["asset_id"]]
                bids.clear()
                asks.clear()
                for lv in ev["bids"]:
                    bids[float(lv["price"])] = float(lv["size"])
                for lv in ev["asks"]:
                    asks[float(lv["price"])] = float(lv["size"])
                touched.add(ev["asset_id"])
            elif kind == "price_change":
                changes = ev.get("price_changes") or [ev]
                for ch in changes:
                    bids, asks = self.books[ch["asset_id"]]
                    side = bids if ch["side"] == "BUY" else asks
                    price, size = float(ch["price"]), float(ch["size"])
                    if size == 0:
                        side.pop(price, None)
                    else:
                        side[price] = size
                    touched.add(ch["asset_id"])
        ts = float(events[0].get("timestamp", 0)) / 1000
        now = time.time()
        rec = self.arr[0]
        self.seq += 1
        rec["lock"] += 1
        for token in touched:
            bids, asks = self.books[token]
            leg = rec["top"][self.leg_of[token]]
            bb = max(bids) if bids else math.nan
            ba = min(asks) if asks else math.nan
            leg["bid"] = bb
            leg["bid_size"] = bids[bb] if bids else math.nan
            leg["ask"] = ba
            leg["ask_size"] = asks[ba] if asks else math.nan
            leg["exchange_ts"] = ts
            leg["recv_ts"] = recv_ts
            leg["publish_ts"] = now
            leg["seq"] = self.seq
        rec["top"]["seq"] = self.seq
        rec["lock"] += 1

    def close(self) -> None:
        del self.arr
        self.writer.close()
        self.writer.unlink()


# ----------------------------------------------------------------------------------------------------


def websocket_receive_us(payload: bytes, n: int, read_ahead: bool = False, spaced: bool = False) -> list[float]:
    """What websocket-client costs per text frame before our code runs, through polymm/ws.py's receive
    (`read_ahead`: ReadAhead on the frame reader, as every channel connects now) or the library alone, with the
    options our channels use (skip_utf8_validation, no multithread lock). `spaced`: each frame is sent only once the
    previous one was received, one per read, like a market channel's frames arriving apart; otherwise all are
    buffered at once (a burst). Over a socketpair, so no network wait is counted. Per-frame samples, us."""
    import socket
    import struct
    import threading

    import websocket

    from polymm.ws import ReadAhead

    size = len(payload)
    header = bytes([0x81]) + (bytes([size]) if size < 126 else bytes([126]) + struct.pack(">H", size))
    frame = header + payload
    server, client = socket.socketpair()
    ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=False)
    ws.sock = client
    ws.connected = True
    if read_ahead:
        assert ReadAhead.attach(ws)
    samples = [0.0] * n
    clock = time.perf_counter_ns
    if spaced:
        for i in range(n):
            server.sendall(frame)
            t0 = clock()
            ws.recv_data()
            samples[i] = (clock() - t0) / 1e3
    else:
        sender = threading.Thread(target=server.sendall, args=(frame * n,), daemon=True)
        sender.start()
        for i in range(n):
            t0 = clock()
            ws.recv_data()
            samples[i] = (clock() - t0) / 1e3
        sender.join()
    server.close()
    client.close()
    return samples


def receive_figures(frames: dict[str, bytes], n: int) -> None:
    """websocket-client's receive of a two-leg frame (and of a book), the library alone vs with polymm/ws.py's
    read-ahead, alternating rounds in the same run; frames one at a time (as they arrive) and as a burst."""
    print("websocket-client's own receive per frame, before on_frame (median / p99 us; alternating rounds):")
    print(f"{'':34}{'library alone':>18}{'with read-ahead':>18}{'ratio':>8}")
    for name in ("price_change 2-leg", "book (162 levels)"):
        for spaced in (True, False):
            plain, ahead = [], []
            for _ in range(4):
                plain += websocket_receive_us(frames[name], n // 4, False, spaced)
                ahead += websocket_receive_us(frames[name], n // 4, True, spaced)
            p, a = stats(plain), stats(ahead)
            label = f"{name}, {'one at a time' if spaced else 'a burst'}"
            print(f"  {label:32}{p[0]:>9.2f} /{p[1]:>6.2f}{a[0]:>9.2f} /{a[1]:>6.2f}{a[0] / p[0]:>7.2f}x")


def measure(fn, frame: bytes, n: int) -> list[float]:
    for _ in range(min(2000, n)):
        fn(frame, 1.0)
    samples = [0.0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(frame, 1.0)
        samples[i] = (clock() - t0) / 1000.0
    return samples


def stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]


def chainlink_frames(n: int, start_ts: float = WINDOW - 60.0) -> list[bytes]:
    """n Chainlink updates one second apart (the documented shape), so each is new to the reference book."""
    out = []
    for i in range(n):
        ts = int((start_ts + i) * 1000)
        out.append(json.dumps({"topic": "crypto_prices_chainlink", "type": "update", "timestamp": ts + 40,
                               "payload": {"symbol": "btc/usd", "timestamp": ts, "value": 97_000.0 + (i % 50) * 0.37}},
                              separators=(",", ":")).encode())
    return out


def make_rtds(writer: shm.Writer) -> RtdsStream:
    rtds = RtdsStream("ws://unused", ReferenceBook(900))
    rtds.on_update = lambda bits: publish_reference(writer, rtds)
    return rtds


def publish_reference(writer: shm.Writer, rtds: RtdsStream) -> None:
    """What the feed service does on an RTDS update (feed/service.py)."""
    service_publish_reference(writer, rtds, WINDOW)


def measure_paced(fn, frame: bytes, n: int, gap_s: float = 200e-6) -> list[float]:
    """`measure`, with a sleep between messages so the run lasts long enough for the RTDS thread to interleave
    with it as it would live: the WebSocket thread waits for the next frame in a blocking receive (GIL released),
    book messages arrive spaced out, not back to back. (A busy-wait gap would hold the GIL and starve the other
    thread, which then forces GIL hand-offs: a bench artefact, not the feed.)"""
    for _ in range(min(2000, n)):
        fn(frame, 1.0)
    samples = [0.0] * n
    clock = time.perf_counter_ns
    sleep = time.sleep
    for i in range(n):
        t0 = clock()
        fn(frame, 1.0)
        samples[i] = (clock() - t0) / 1000.0
        sleep(gap_s)
    return samples


def rtds_figures(stream: MarketStream, writer: shm.Writer, frames: dict[str, bytes], n: int, rate: float) -> None:
    import threading

    rtds = make_rtds(writer)
    updates = chainlink_frames(n + 2000)
    it = iter(updates)
    for _ in range(2000):
        rtds.on_frame(next(it), 1.0)
    samples = [0.0] * n
    clock = time.perf_counter_ns
    for i in range(n):
        frame = next(it)
        t0 = clock()
        rtds.on_frame(frame, 1.0)
        samples[i] = (clock() - t0) / 1000.0
    med, p99 = stats(samples)
    print(f"RTDS Chainlink update (decode -> reference book -> shm reference block): {med:.2f} us median, {p99:.2f} p99")

    frame = frames["price_change 2-leg"]
    alone = stats(measure_paced(stream.on_frame, frame, n))
    rtds2 = make_rtds(writer)
    background = chainlink_frames(int(rate * 600) + 10, start_ts=WINDOW + 1000.0)
    stop = threading.Event()
    sent = [0]

    def feed_rtds() -> None:
        period = 1.0 / rate
        next_at = time.perf_counter()
        for data in background:
            if stop.is_set():
                break
            rtds2.on_frame(data, time.time())
            sent[0] += 1
            next_at += period
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    thread = threading.Thread(target=feed_rtds, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    alongside = stats(measure_paced(stream.on_frame, frame, n))
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    after = stats(measure_paced(stream.on_frame, frame, n))  # again without: the machine's load drifts
    print(f"two-leg price_change, 200 us sleep between messages, with RTDS alongside ({sent[0]} updates in {elapsed:.1f}s = "
          f"{sent[0] / elapsed:.0f}/s in a thread): {alongside[0]:.2f} us median, {alongside[1]:.2f} p99; "
          f"same run without RTDS, before/after: {alone[0]:.2f}/{after[0]:.2f} us median, {alone[1]:.2f}/{after[1]:.2f} p99")
def metrics_on_vs_off(off: MarketStream, on: MarketStream, frames: dict[str, bytes], n: int, rounds: int = 5) -> None:
    """The same frames through a stream without metrics and one with them, alternating rounds (so drift on a
    shared machine hits both alike)."""
    print(f"metrics on vs off, same run ({rounds} alternating rounds of {n // rounds}):")
    print(f"{'message':26} {'off median':>11} {'on median':>11} {'on/off':>8}")
    for name, frame in frames.items():
        offs: list[float] = []
        ons: list[float] = []
        off_fn, on_fn = off.on_frame, on.on_frame
        if name == BOOK:
            off_fn, on_fn = (alternate(f, frame, changed_book(frame)) for f in (off_fn, on_fn))
        for _ in range(rounds):
            offs += measure(off_fn, frame, n // rounds)
            ons += measure(on_fn, frame, n // rounds)
        a, b = stats(offs)[0], stats(ons)[0]
        print(f"{name:26} {a:8.2f} us {b:8.2f} us {100 * (b / a - 1):+7.1f}%")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000, help="messages per measurement")
    p.add_argument("--rtds-rate", type=float, default=200.0, help="RTDS updates per second fed alongside the book path")
    args = p.parse_args()
    up, down, frames = inputs()
    tag = f"polymm_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    writer = shm.Writer(tag + "_fast", ring_capacity=4096, depth=shm.DEFAULT_DEPTH)
    writer.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x01", up_token=up,
                      down_token=down, tick_size=0.001, min_order_size=5, fee_rate=0.07)
    stream = make_stream(up, down, writer, frames)
    writer0 = shm.Writer(tag + "_tob", ring_capacity=4096, depth=0)
    writer0.set_market(window_start=WINDOW, window_end=WINDOW + 900, condition_id="0x01", up_token=up,
                       down_token=down, tick_size=0.001, min_order_size=5, fee_rate=0.07)
    stream0 = make_stream(up, down, writer0, frames)
    naive = NaiveFeed(up, down, tag + "_naive")
    naive.on_frame(json.dumps(dict(json.loads(frames["book (162 levels)"]), asset_id=down)).encode(), 1.0)
    try:
        print(f"feed hot path per message (decode -> book -> shm publish), n={args.n}, "
              f"python {sys.version.split()[0]}, gc {'on' if gc.isenabled() else 'off'}")
        print(f"{'message':26} {'N=10 median':>12} {'p99':>8} {'N=0 median':>11} {'p99':>8} {'N=10/N=0':>9} "
              f"{'naive median':>13} {'p99':>8} {'speed-up':>9}")
        rows = [(name, frame, name == BOOK) for name, frame in frames.items()]
        rows.append(("book, same as held", frames[BOOK], False))  # no publish (issue 26); naive: as ever
        for name, frame, changing in rows:
            fns = (stream.on_frame, stream0.on_frame, naive.on_frame)
            if changing:
                other = changed_book(frame)
                fns = tuple(alternate(f, frame, other) for f in fns)
            # interleaved in rounds so that a burst of load on the machine hits both alike
            deep_s, top_s, slow_s = [], [], []
            for _ in range(4):
                deep_s += measure(fns[0], frame, args.n // 4)
                top_s += measure(fns[1], frame, args.n // 4)
                slow_s += measure(fns[2], frame, args.n // 4)
            deep, top, slow = stats(deep_s), stats(top_s), stats(slow_s)
            print(f"{name:26} {deep[0]:9.2f} us {deep[1]:8.2f} {top[0]:8.2f} us {top[1]:8.2f} "
                  f"{deep[0] / top[0]:8.2f}x {slow[0]:10.2f} us {slow[1]:8.2f} {slow[0] / deep[0]:8.1f}x")
        metrics_on_vs_off(stream, make_stream(up, down, writer, frames, FeedCounters(stream.book.dispatch)),
                          frames, args.n)
        # where the time goes for the two-leg change
        frame = frames["price_change 2-leg"]
        decoder = stream.decoder
        events = decoder.decode(frame)
        book = stream.book
        dec = stats(measure(lambda f, t: decoder.fast(f), frame, args.n))
        app = stats(measure(lambda f, t: [book.apply(e, t) for e in events], frame, args.n))
        up_top, down_top = book.up.top(), book.down.top()
        up_depth, down_depth = book.up.depth(), book.down.depth()
        pub = stats(measure(lambda f, t: writer.publish(WINDOW, up_top, down_top, False, 1, 0, None, None,
                                                        up_depth, down_depth), frame, args.n))
        tops = stats(measure(lambda f, t: (book.up.top(), book.down.top(), book.crossed()), frame, args.n))

        def repack(f, t):  # both sides of both legs changed: the worst case of the depth packing
            for side in (book.up.bids, book.up.asks, book.down.bids, book.down.asks):
                side.stale = True
            return book.up.depth(), book.down.depth()

        packs = stats(measure(repack, frame, args.n))
        print("two-leg price_change breakdown, N=10 (median / p99 us): "
              f"decode {dec[0]:.2f}/{dec[1]:.2f}, book apply {app[0]:.2f}/{app[1]:.2f}, "
              f"tops+crossed {tops[0]:.2f}/{tops[1]:.2f}, depth pack of all 4 sides {packs[0]:.2f}/{packs[1]:.2f}, "
              f"shm publish {pub[0]:.2f}/{pub[1]:.2f}")
        receive_figures(frames, args.n)
        rtds_figures(stream, writer, frames, args.n, args.rtds_rate)
    finally:
        naive.close()
        writer.close()
        writer.unlink()
        writer0.close()
        writer0.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
