"""polymm-feed: discovers the current window's market, streams its book into shared memory, rotates at
every window boundary, and tells systemd how it is doing.

Threads: this module's main loop owns the clock-driven work (window rotation, heartbeat, watchdog,
STATUS=, readiness); each market's WebSocket thread (stream.py) applies and publishes book updates; the
discovery thread (discovery.py) talks to Gamma; the RTDS thread (rtds/stream.py) keeps the BTC reference
prices and publishes them into the segment's REF block; the optional recorder thread follows the ring.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time

from polymm import env, logs, memory
from polymm import metrics as prom
from polymm import series as series_mod
from polymm.feed import book as bk
from polymm.feed import discovery as disc
from polymm.feed import shm
from polymm.feed.liveness import NOT_CONNECTED
from polymm.feed.metrics import FeedCounters, RingLatency
from polymm.feed.metrics import families as metric_families
from polymm.feed.record import Recorder
from polymm.feed.rtds import wire as rtds_wire
from polymm.feed.rtds.reference import CAPTURED, RECOVERED, ReferenceBook, cross_check
from polymm.feed.rtds.stream import RtdsStream
from polymm.feed.stream import MarketStream
from polymm.ws import Backoff
from polymm.notify import Notifier
from polymm.signals import Signals

log = logging.getLogger("polymm.feed")

LOOP_S = 0.2  # heartbeat / watchdog / rotation check period
METRICS_SOURCE = f"--metrics ({env.FEED_METRICS})"


def _env_int(name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"polymm-feed: {name}={raw!r} is not an integer") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="polymm-feed",
        description="Polymarket Up/Down market data of one series -> shared memory (top of book of both legs).",
    )
    p.add_argument("--series", default=env.get(env.SERIES, series_mod.DEFAULT_SERIES),
                   help=f"market series ASSET-WINDOW: {', '.join(series_mod.ALL_NAMES)} (env {env.SERIES}; default "
                        f"{series_mod.DEFAULT_SERIES}); sets the window, the segment's default name and the asset's "
                        "reference prices")
    p.add_argument("--gamma-url", default=env.get(env.GAMMA_URL, env.PROD_GAMMA_URL), help=f"Gamma API ({env.GAMMA_URL})")
    p.add_argument(
        "--ws-market-url",
        default=env.get(env.WS_MARKET_URL, env.PROD_WS_MARKET_URL),
        help=f"market-channel WebSocket ({env.WS_MARKET_URL})",
    )
    p.add_argument(
        "--rtds-url",
        default=env.get(env.RTDS_URL, env.PROD_RTDS_URL),
        help=f"Real-Time Data Socket for the asset's Chainlink/Binance prices ({env.RTDS_URL}); 'off' to run without",
    )
    p.add_argument("--shm", default=env.get(env.SHM),
                   help=f"shared-memory segment name ({env.SHM}; default {env.DEFAULT_SHM} for "
                        f"{series_mod.DEFAULT_SERIES}, {env.DEFAULT_SHM}_<series> for the others)")
    p.add_argument(
        "--window-s",
        type=int,
        default=_env_int(env.WINDOW_S, None),
        help=f"market window length in seconds ({env.WINDOW_S}; default the series' own: 300, 900 or 3600; shorter "
             "on the sim)",
    )
    p.add_argument(
        "--stale-after-s",
        type=float,
        default=15.0,
        help="reconnect when an asset has had no data for this long (the socket can freeze with PONGs going on)",
    )
    p.add_argument(
        "--preconnect-s",
        type=float,
        default=None,
        help="connect to the next window's market this long before its start (default min(30, window/4))",
    )
    p.add_argument("--ring-capacity", type=int, default=shm.DEFAULT_RING_CAPACITY, help="updates kept in the ring")
    p.add_argument("--depth", type=int, default=shm.DEFAULT_DEPTH,
                   help=f"levels per side of each leg published in shared memory and recorded (0: top of book only; "
                        f"at most {shm.MAX_DEPTH})")
    p.add_argument("--record", metavar="FILE", default=None, help="append every published top of book to FILE (JSON lines)")
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT|off",
        default=None,
        help=f"Prometheus endpoint (default {prom.DEFAULT_FEED_LISTEN}, loopback only; off to disable; env "
             f"{env.FEED_METRICS}: for a series other than {series_mod.DEFAULT_SERIES} its host with the series' own "
             "port, see README Monitoring)",
    )
    level, level_var = env.log_level_from_env(env.FEED_LOG_LEVEL, env.LOG_LEVEL)
    p.add_argument("--log-level", default=level, type=str.upper,
                   help=f"{', '.join(env.LOG_LEVELS)} (env {env.FEED_LOG_LEVEL}, else {env.LOG_LEVEL}; default INFO)")
    args = p.parse_args(argv)
    args.window_s = series_mod.resolve_args(p, args, env.DEFAULT_SHM).window_s
    if args.metrics is None:
        args.metrics = series_mod.metrics_listen(args.series, "feed", env.get(env.FEED_METRICS, prom.DEFAULT_FEED_LISTEN),
                                                 int(prom.DEFAULT_FEED_LISTEN.rsplit(":", 1)[1]))
    if args.log_level not in env.LOG_LEVELS:
        # argparse does not check a default against choices: say where a bad level came from.
        source = f"{level_var}={args.log_level}" if args.log_level == level and level_var else f"--log-level {args.log_level}"
        p.error(f"{source} is not a log level; use one of {', '.join(env.LOG_LEVELS)}")
    try:
        prom.parse_listen(args.metrics, source=METRICS_SOURCE)
    except prom.MetricsError as e:
        p.error(str(e))
    if args.stale_after_s <= 0:
        p.error(f"--stale-after-s must be positive, got {args.stale_after_s}")
    if args.ring_capacity < 16:
        p.error(f"--ring-capacity must be at least 16, got {args.ring_capacity}")
    if not 0 <= args.depth <= shm.MAX_DEPTH:
        p.error(f"--depth must be between 0 and {shm.MAX_DEPTH}, got {args.depth}")
    if args.preconnect_s is None:
        args.preconnect_s = min(30.0, args.window_s / 4)
    if not 0 <= args.preconnect_s < args.window_s:
        p.error(f"--preconnect-s must be in [0, window_s), got {args.preconnect_s}")
    return args


class FeedService:
    """The main loop's state. `step(now)` is one iteration; `run()` loops until a stop signal."""

    def __init__(self, args: argparse.Namespace, writer: shm.Writer, discoverer: disc.Discoverer, notifier: Notifier,
                 gamma_fetch=None) -> None:
        self.args = args
        self.window_s = args.window_s
        # metrics counted on the hot path, shared by every stream (feed/metrics.py); the event types are the
        # book's own dispatch table, so a new event type is counted as soon as the book handles it
        self.counters = FeedCounters(bk.MarketBook("up", "down").dispatch)
        self.writer = writer
        self.discoverer = discoverer
        self.notifier = notifier
        self.active: MarketStream | None = None
        self.shadow: MarketStream | None = None  # the next window's stream, connected ahead of its start
        self.retired_updates = 0
        self.retired_disagreements = 0
        self.retired_reconnects = 0
        self.ready_sent = False
        self._rate_t = time.monotonic()
        self._rate_n = 0
        self.updates_per_s = 0.0
        self.rtds: RtdsStream | None = None
        self.series = args.series
        self.reference = ReferenceBook(self.window_s, open_source=self.series.resolution_source)
        # Gamma states the price to beat once the window runs (eventMetadata.priceToBeat): asked once per window,
        # a while after the start, off this thread; a disagreement with our capture is logged.
        self._gamma_fetch = gamma_fetch
        self._cross_checked: int = 0
        prev = writer.previous_reference
        if prev is not None and prev.open_status in (CAPTURED, RECOVERED) and self.reference.restore(
            prev.open_window_start, prev.open_price, prev.open_ts
        ):
            # A restart mid-window: the previous process's opening price is still in the segment.
            log.info("window %d: opening price %.2f recovered from the segment (%s by the previous feed process)",
                     prev.open_window_start, prev.open_price, prev.open_status)

    # -- BTC reference prices (RTDS) ----------------------------------------------------------------------

    def start_rtds(self) -> None:
        if self.args.rtds_url == "off":
            log.warning("RTDS is off (--rtds-url off): no %s reference price; fair-value guards will not enter",
                        self.series.asset.code.upper())
            return
        self.rtds = self._new_rtds()

    def _new_rtds(self) -> RtdsStream:
        asset = self.series.asset
        return RtdsStream(self.args.rtds_url, self.reference, self._on_reference, stale_after_s=self.args.stale_after_s,
                          symbols=rtds_wire.symbols(asset.chainlink, asset.binance)).start()

    def _on_reference(self, bits: int) -> None:
        """RTDS thread: a price or an opening changed."""
        publish_reference(self.writer, self.rtds, disc.window_start_for(time.time(), self.window_s))

    def _check_rtds(self, now: float) -> None:
        rtds = self.rtds
        if rtds is None:
            return
        if not rtds.is_alive():
            log.error("rtds ws thread died (%s); starting a new one", rtds.last_error or "no error recorded")
            self.rtds = self._new_rtds()
        # Also from here: the connection flag and the new window's (still pending) opening change without a price.
        w = disc.window_start_for(now, self.window_s)
        publish_reference(self.writer, self.rtds, w)
        if self._gamma_fetch is not None and self._cross_checked != w and now >= w + min(30.0, self.window_s / 4):
            self._cross_checked = w
            threading.Thread(target=self._cross_check, args=(w,), name="price-to-beat", daemon=True).start()

    def _cross_check(self, window_start: int) -> None:
        try:
            stated = self._gamma_fetch(window_start).price_to_beat
        except Exception as e:  # noqa: BLE001 - a cross-check only: say why and move on
            log.info("window %d: could not ask Gamma for the price to beat (%s)", window_start, e)
            return
        with self.rtds.lock:
            opening = self.reference.opening(window_start)
        level, text = cross_check(opening, stated)
        (log.warning if level == "warning" else log.info)("%s", text)

    # -- streams ------------------------------------------------------------------------------------------

    def _new_stream(self, info: disc.MarketInfo) -> MarketStream:
        return MarketStream(
            self.args.ws_market_url,
            info,
            self.writer,
            stale_after_s=self.args.stale_after_s,
            backoff=Backoff(),
            counters=self.counters,
        ).start()

    def _retire(self, stream: MarketStream | None) -> None:
        if stream is None:
            return
        stream.live = False
        self.retired_updates += stream.book.applied
        self.retired_disagreements += stream.book.disagreements
        self.retired_reconnects += stream.reconnects
        stream.stop(timeout_s=1.0)

    def _publish_identity(self, info: disc.MarketInfo, tick_size: float, status: str) -> None:
        """Write the market identity (both legs cleared until that market's first book)."""
        self.writer.set_market(
            window_start=info.window_start,
            window_end=info.window_end,
            condition_id=info.condition_id,
            up_token=info.up_token,
            down_token=info.down_token,
            tick_size=tick_size,
            min_order_size=info.min_order_size,
            fee_rate=info.fee_rate,
            status=status,
        )

    def _switch_to(self, info: disc.MarketInfo) -> None:
        old = self.active
        stream = self.shadow if self.shadow is not None and self.shadow.window_start == info.window_start else None
        if stream is None:
            if self.shadow is not None:
                self._retire(self.shadow)
            stream = self._new_stream(info)
        self.shadow = None
        rotating = old is not None or self.ready_sent
        self._publish_identity(info, info.tick_size, "rotating" if rotating else "starting")
        if rotating:
            self.counters.rotations += 1
        if old is not None:
            old.live = False
        stream.updates_base = self.retired_updates + (old.book.applied if old else 0)
        stream.disagreements_base = self.retired_disagreements + (old.book.disagreements if old else 0)
        stream.activate()
        self.active = stream
        log.info(
            "window %d-%d: market %s (condition %s); book %s",
            info.window_start, info.window_end, info.slug, info.condition_id,
            "published" if stream.first_publish.is_set() else "awaiting its snapshot",
        )
        self._retire(old)

    def _end_window_without_successor(self, now: float) -> None:
        """The active window is over and Gamma has not given us the next one: stop publishing the old book
        (status rotating, legs cleared) and keep looking."""
        old = self.active
        self.active = None
        info = old.market
        self._publish_identity(info, old.book.tick_size, "rotating")
        self._retire(old)
        log.warning("window %d-%d ended; the next market is not known yet (%s)", info.window_start, info.window_end,
                    self.discoverer.describe(disc.window_start_for(now, self.window_s)))

    # -- one iteration ------------------------------------------------------------------------------------

    def step(self, now: float) -> None:
        w = disc.window_start_for(now, self.window_s)
        nxt = w + self.window_s
        self.discoverer.want(w)
        self.discoverer.want(nxt)
        self.discoverer.forget_before(w)

        if self.active is None or self.active.window_start != w:
            info = self.discoverer.get(w)
            if info is not None:
                self._switch_to(info)
            elif self.active is not None and self.active.window_start < w:
                self._end_window_without_successor(now)
        if self.shadow is None and now >= nxt - self.args.preconnect_s:
            info = self.discoverer.get(nxt)
            if info is not None:
                log.info("connecting to the next window's market %s ahead of its start", info.slug)
                self.shadow = self._new_stream(info)

        self._check_active_stream(now)
        for stream in (self.active, self.shadow):
            if stream is not None and not stream.is_alive():
                # Its thread catches everything it expects; if it died anyway, replace it rather than sit on
                # a dead book (the heartbeat alone would look healthy).
                log.error("market ws thread for %s died (%s); starting a new one", stream.market.slug,
                          stream.last_error or "no error recorded")
                self._retire(stream)
                fresh = self._new_stream(stream.market)
                fresh.updates_base, fresh.disagreements_base = self.retired_updates, self.retired_disagreements
                if stream is self.active:
                    self.active = fresh
                    self.writer.set_status("stale", fresh.window_start)
                    fresh.activate()
                else:
                    self.shadow = fresh
        if not self.ready_sent and self.active is not None and self.active.first_publish.is_set():
            self.ready_sent = True
            self.notifier.ready(self.status_line(now))
            log.info("ready: first book published for %s", self.active.market.slug)

        self._check_rtds(now)
        self._update_rate()
        # The current window's socket liveness with the heartbeat: readers tell a dead feed from a quiet market.
        link = self.active.link.facts() if self.active is not None and self.active.window_start == w else NOT_CONNECTED
        self.writer.heartbeat(now, updates_per_s=self.updates_per_s, reconnects=self.reconnects, link=link)
        self.notifier.watchdog()
        self.notifier.status(self.status_line(now))

    def _check_active_stream(self, now: float) -> None:
        """The stream thread judges its own data age; if it has not acted long after it should have, the
        thread is stuck (not the market quiet): say so in the segment and start a fresh one."""
        s = self.active
        if s is None or not s.live or not s.connected:
            return
        age = s.data_age_s(now)
        if age > 2 * self.args.stale_after_s + 1.0:
            log.error("market ws thread for %s is not responding (no data for %.1fs, stale after %gs); replacing it",
                      s.market.slug, age, self.args.stale_after_s)
            self.writer.set_status("stale", s.window_start)
            self._retire(s)
            fresh = self._new_stream(s.market)
            fresh.updates_base, fresh.disagreements_base = self.retired_updates, self.retired_disagreements
            self.active = fresh
            fresh.activate()

    @property
    def reconnects(self) -> int:
        return self.retired_reconnects + (self.active.reconnects if self.active else 0)

    def updates_total(self) -> int:
        return self.retired_updates + (self.active.book.applied if self.active else 0) + (
            self.shadow.book.applied if self.shadow else 0
        )

    def _update_rate(self) -> None:
        t = time.monotonic()
        if t - self._rate_t >= 1.0:
            n = self.updates_total()
            rate = (n - self._rate_n) / (t - self._rate_t)
            self.updates_per_s = rate if self.updates_per_s == 0 else 0.5 * self.updates_per_s + 0.5 * rate
            self._rate_t, self._rate_n = t, n

    def status_line(self, now: float) -> str:
        w = disc.window_start_for(now, self.window_s)
        if self.active is None or self.active.window_start != w:
            return (f"waiting for market {self.series.slug(w)}: {self.discoverer.describe(w)}, "
                    f"{self._reference_status(now, w)}")
        s = self.active
        age = s.data_age_s(now)
        up, down = s.book.up, s.book.down
        state = self.writer.status()
        parts = [
            f"{s.market.slug} {state}",
            f"age {age:.1f}s" if math.isfinite(age) else "no data yet",
            f"{self.updates_per_s:.1f} upd/s",
            f"up {up.bids.best:g}/{up.asks.best:g} down {down.bids.best:g}/{down.asks.best:g}",
            f"reconnects {self.reconnects}",
        ]
        if s.last_error and state != "connected":
            parts.append(s.last_error)
        parts.append(self._reference_status(now, w))
        next_state = self.discoverer.describe(w + self.window_s)
        if next_state not in ("found", "not requested"):
            parts.append(f"next window: {next_state}")
        return ", ".join(parts)

    def _reference_status(self, now: float, window_start: int) -> str:
        code = self.series.asset.code
        if self.rtds is None:
            return f"{code} off"
        cl = self.reference.sources[self.reference.open_source]
        if cl.price != cl.price:
            return f"{code} none yet ({self.rtds.last_error})" if self.rtds.last_error else f"{code} none yet"
        opening = self.reference.opening(window_start)
        shown = f"open {opening.price:,.2f}" if opening.known else f"open {opening.how}"
        return f"{code} {cl.price:,.2f} age {cl.age_s(now):.1f}s {shown}"

    def sleep_s(self, now: float) -> float:
        """Until the next loop tick, but wake exactly at the window boundary (no gap at rotation)."""
        to_boundary = disc.window_start_for(now, self.window_s) + self.window_s - now
        return max(0.001, min(LOOP_S, to_boundary + 0.0005))

    def shutdown(self) -> None:
        if self.rtds is not None:
            self.rtds.stop(timeout_s=2.0)
        for stream in (self.shadow, self.active):
            if stream is not None:
                stream.live = False
                stream.stop(timeout_s=2.0)


def publish_reference(writer: shm.Writer, rtds: RtdsStream | None, window_start: int) -> None:
    """The reference book into the segment's REF block: latest prices, `window_start`'s opening, RTDS health."""
    if rtds is None:
        return
    book = rtds.book
    with rtds.lock:
        cl, bn = book.chainlink, book.binance
        opening = book.openings.get(window_start)
        values = (
            (cl.price, cl.source_ts, cl.recv_ts),
            (bn.price, bn.source_ts, bn.recv_ts),
            # No point of this window yet: pending (status ""), not "unknown".
            (window_start, opening.price, opening.source_ts, opening.how) if opening else (window_start, math.nan, math.nan, ""),
            cl.updates + bn.updates,
        )
    writer.set_reference(values[0], values[1], values[2], rtds.connected, rtds.reconnects, values[3])


class _OwnSegment:
    """The feed's own segment read as every reader sees it (for the metrics: one health verdict with mmctl,
    latency from the ring's timestamps). Attached at the first scrape; a snapshot is None while it cannot be
    read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reader: shm.Reader | None = None
        self._lock = threading.Lock()  # scrapes may come in on several exporter threads at once

    def snapshot(self):
        with self._lock:
            try:
                if self.reader is None:
                    self.reader = shm.Reader(self.name, populate=True)  # follows the ring (latency)
                return self.reader.snapshot()
            except (shm.ShmMissing, shm.LayoutError, OSError, ValueError):
                return None

    def updates_since(self, seq: int) -> list:
        with self._lock:
            return self.reader.updates_since(seq) if self.reader is not None else []

    def seq(self) -> int:
        with self._lock:
            return self.reader.seq() if self.reader is not None else 0

    def close(self) -> None:
        with self._lock:
            if self.reader is not None:
                self.reader.close()
                self.reader = None


def _stop_metrics(exporter: prom.Exporter | None, segment: _OwnSegment) -> None:
    if exporter is not None:
        exporter.stop()
    segment.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    memory.limit_arenas()  # before any thread: a flat native heap over weeks (polymm/memory.py)
    logs.setup("polymm.feed", args.log_level)
    signals = Signals()
    notifier = Notifier()
    holder: dict[str, FeedService] = {}
    own_segment = _OwnSegment(args.shm)
    latency = RingLatency()
    try:
        # Before the segment is taken over: a refused address leaves a running feed's segment alone.
        exporter = prom.serve(args.metrics, source=METRICS_SOURCE, collectors=[prom.CallbackCollector(
            "feed", lambda: metric_families(holder["service"].counters, own_segment, latency)
            if "service" in holder else [], labels={"series": args.series.name})])
    except prom.MetricsError as e:
        log.error("%s", e)
        return 2
    try:
        writer = shm.Writer(args.shm, ring_capacity=args.ring_capacity, depth=args.depth)
    except shm.WriterConflict as e:
        log.error("%s", e)
        _stop_metrics(exporter, own_segment)
        return 2
    except (OSError, ValueError) as e:
        log.error("cannot open shared memory %r: %s", args.shm, e)
        _stop_metrics(exporter, own_segment)
        return 2
    log.info(
        "polymm-feed started: series %s, shm %s, window %ds, gamma %s, market ws %s, rtds %s, stale after %gs",
        args.series, args.shm, args.window_s, args.gamma_url, args.ws_market_url, args.rtds_url, args.stale_after_s,
    )
    client = disc.GammaClient(args.gamma_url, args.series)
    # The next window is looked up a whole window ahead: patient retries are fine until it starts.
    discoverer = disc.Discoverer(client.fetch, slug_of=args.series.slug,
                                 backoff_max_s=min(10.0, args.window_s / 4)).start()
    recorder = None
    service = holder["service"] = FeedService(args, writer, discoverer, notifier, gamma_fetch=client.fetch)
    code = 0
    try:
        if args.record:
            try:
                recorder = Recorder(args.record, args.shm, series=args.series.name).start()
            except OSError as e:
                log.error("cannot record to %s: %s", args.record, e)
                return 2
            log.info("recording top of book to %s", args.record)
        service.start_rtds()
        trimmed = time.monotonic()
        while not signals.stop.is_set():
            now = time.time()
            service.step(now)
            if time.monotonic() - trimmed >= memory.TRIM_EVERY_S:
                trimmed = time.monotonic()
                memory.trim()  # free heap pages back to the kernel, from this loop (never the stream's thread)
            signals.stop.wait(service.sleep_s(time.time()))
        log.info("%s received: stopping", signals.received or "stop")
    except Exception:  # noqa: BLE001 - log it in one line and exit non-zero; systemd restarts us
        log.exception("polymm-feed failed")
        code = 1
    finally:
        notifier.stopping()
        service.shutdown()
        discoverer.stop()
        if recorder is not None:
            recorder.stop()
        writer.close()  # status "stopped"; the segment stays (readers never see it vanish)
        _stop_metrics(exporter, own_segment)
        log.info("polymm-feed stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
