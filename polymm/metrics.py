"""Prometheus plumbing shared by polymm-feed and polymm-trader: the listen address, the HTTP exporter, and a
histogram cheap enough for a hot path.

What each service exports is defined beside it (feed/metrics.py, trader/metrics.py); this module knows nothing
about markets. Each service has its own CollectorRegistry (its metrics, plus the standard process_* and
python_* ones), served by prometheus_client's own HTTP exporter on a daemon thread.

Listen addresses (polymm/listen.py): `HOST:PORT` or `off`, loopback by default; a public one is logged as a
warning. Port 0 takes any free port (tests); the bound address is logged.

Hot-path measurements (the trader's tick->decision) use `FastHistogram`: prometheus_client's Histogram takes a
lock per observation (~2 us with its bookkeeping); this one is a bisect and three plain updates (~0.15 us) on the
one thread that observes, read at scrape time (a scrape may see a sample in a bucket before its sum; the next
scrape is exact, which is all Prometheus needs).
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import resource
import threading
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from polymm.listen import (  # noqa: F401 - re-exported: the services name them through this module
    DEFAULT_FEED_LISTEN,
    DEFAULT_TRADER_LISTEN,
    OFF,
    MetricsError,
    is_loopback,
    parse_listen,
    show,
)

log = logging.getLogger("polymm.metrics")

# Latency buckets in seconds, 50 us .. 1 s: the feed's decode->publish is tens of microseconds, the trader's
# tick->decision sub-millisecond; the tail buckets catch GC pauses and a starved CPU.
LATENCY_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)


class SelfProcessCollector(Collector):
    """The standard process_* metrics (prometheus_client's names and meanings) from /proc/self alone.

    prometheus_client's ProcessCollector needs the boot time from /proc/stat and exports nothing without it;
    our units run with ProcSubset=pid, which hides /proc/stat. The process's start comes from its own
    /proc/self/stat start tick and CLOCK_BOOTTIME instead."""

    def __init__(self) -> None:
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._start = self._start_time()

    def _start_time(self) -> float | None:
        try:
            with open("/proc/self/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            since_boot = float(fields[19]) / self._ticks  # field 22 (starttime), after pid and (comm)
            return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
        except (OSError, ValueError, IndexError):
            return None

    def collect(self):
        t = os.times()
        out = [CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                                   value=t.user + t.system)]
        try:
            with open("/proc/self/statm", "rb") as f:
                size, resident = (int(x) for x in f.read().split()[:2])
            out.append(GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                         value=size * self._page))
            out.append(GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                                         value=resident * self._page))
            out.append(GaugeMetricFamily("process_open_fds", "Number of open file descriptors.",
                                         value=len(os.listdir("/proc/self/fd"))))
        except (OSError, ValueError):
            pass  # not Linux: CPU time only
        out.append(GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.",
                                     value=resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        if self._start is not None:
            out.append(GaugeMetricFamily("process_start_time_seconds",
                                         "Start time of the process since unix epoch in seconds.", value=self._start))
        return out


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry with the process's standard metrics (process_*, python_*) and the given collectors."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(SelfProcessCollector())
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


class Exporter:
    """The HTTP endpoint (GET /metrics) of one service. `start()` binds or raises MetricsError naming the
    address; `stop()` closes the socket."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.requested = address
        self.registry = registry
        self.address: tuple[str, int] | None = None  # as bound (the real port when 0 was asked for)
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{show(self.address or self.requested)}/metrics"

    def start(self) -> "Exporter":
        host, port = self.requested
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = " (is another polymm service or exporter using it?)" if exc.errno == 98 else ""
            raise MetricsError(f"cannot serve metrics on {show(self.requested)}: {reason}{hint}; choose another "
                               "address or `off`") from None
        bound = self._server.server_address
        self.address = (host, int(bound[1]))
        if is_loopback(host):
            log.info("metrics on %s", self.url)
        else:
            log.warning("metrics on %s: not a loopback address; anyone who can reach it reads positions and P&L "
                        "(restrict it with a firewall or a reverse proxy)", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def serve(listen: str | None, *, source: str, collectors: Iterable[Collector]) -> Exporter | None:
    """Parse `listen`, build the registry and start the exporter; None when off. MetricsError in words."""
    address = parse_listen(listen, source=source)
    if address is None:
        log.info("metrics off (%s)", source)
        return None
    return Exporter(address, new_registry(*collectors)).start()


class FastHistogram:
    """A latency histogram for one observing thread: O(1) per observation (a bisect over a dozen bounds),
    no lock. Exposed at scrape time as a Prometheus histogram by `family()`."""

    __slots__ = ("bounds", "counts", "total", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        if list(bounds) != sorted(bounds) or not bounds:
            raise ValueError("histogram bounds must be a non-empty ascending sequence")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus's `le`).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value

    def family(self, name: str, documentation: str, labels: dict[str, str] | None = None,
               into: HistogramMetricFamily | None = None) -> HistogramMetricFamily:
        """The histogram as a metric family (cumulative buckets), optionally added to `into` with labels."""
        counts = list(self.counts)  # one copy: buckets consistent with each other
        cumulative, running = [], 0
        for bound, n in zip(self.bounds, counts):
            running += n
            cumulative.append((_le(bound), running))
        running += counts[-1]
        cumulative.append(("+Inf", running))
        labels = labels or {}
        family = into or HistogramMetricFamily(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), cumulative, self.sum)
        return family


def _le(bound: float) -> str:
    return repr(float(bound)) if math.isfinite(bound) else "+Inf"


class CallbackCollector(Collector):
    """A collector whose metrics come from one function called at scrape time (a service's state read
    then, never pushed from its hot path). A failing read is logged and yields nothing, never a 500 that
    would hide every other metric."""

    def __init__(self, name: str, collect: Callable[[], Iterable], labels: dict[str, str] | None = None) -> None:
        self.name = name
        self._collect = collect
        # Labels every sample of this collector carries: `series` (btc-15m, eth-5m, ...) - one value per process,
        # so it adds no time series to a target, and the dashboard selects series by it.
        self._labels = dict(labels or {})

    def collect(self):
        try:
            families = list(self._collect())
        except Exception:  # noqa: BLE001 - a scrape must not take the endpoint down
            log.exception("metrics: collecting %s failed", self.name)
            return []
        if self._labels:
            for family in families:
                family.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
        return families

    def describe(self):
        return []  # unchecked: the families depend on the state (labels appear as markets and orders do)
