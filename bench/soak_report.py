"""The soak's arithmetic and verdict (bench/soak.py collects, this module judges). Pure: plain numbers in, numbers and
words out, so tests check every rule without running a soak.

Goals (issue 27), each a line of the verdict:
- memory: after warm-up, each process's RSS grows at most `RSS_SLOPE_GOAL_KB` per window (a least-squares slope
  over the per-window samples; a process restarted by the soak itself, the feed, is fitted per life with one
  common slope, so a restart's fresh heap is not read as a fall);
- fds and threads flat: the fitted line rises by less than `FLAT_RISE` over the whole post-warm-up run;
- 0 shared-memory segments left behind;
- 0 stale verdicts or stale warnings while the feed is healthy (outside the grace after a fault that really
  kills the feed's data: a market WebSocket drop, a feed restart);
- cash: |trader cash - exchange cash| <= 0.01 at every sample taken more than `CASH_SETTLE_S` after our last fill
  (`OTHER_SETTLE_S` after another change of the exchange's cash: a redemption);
- at the end: every exchange fill in the trader's ledger exactly once, positions equal per token, cash to the
  cent, no order of ours left on the exchange.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

RSS_SLOPE_GOAL_KB = 20.0
FLAT_RISE = 2.0  # fds / threads: the fitted line may rise by less than this over the post-warm-up run
CASH_TOLERANCE = 0.01
CASH_SETTLE_S = 1.0  # after a fill
# after a change of the exchange's cash that is not a fill (a redemption): the trader hears of it with the
# redeemer's next look at the relayer (redeem.poll_s, 1 s in the soak), then asks for the balance at once
OTHER_SETTLE_S = 3.0


def pooled_slope(points: list[tuple[object, float, float]]) -> float | None:
    """Least-squares slope of y over x with one intercept per group (a process's pid): (group, x, y) points.
    The within-group estimator: sum of within-group covariances over sum of within-group variances. None when
    no group has two distinct x."""
    groups: dict[object, list[tuple[float, float]]] = {}
    for g, x, y in points:
        groups.setdefault(g, []).append((x, y))
    sxy = sxx = 0.0
    for pts in groups.values():
        if len(pts) < 2:
            continue
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxy += sum((x - mx) * (y - my) for x, y in pts)
        sxx += sum((x - mx) ** 2 for x, _ in pts)
    return sxy / sxx if sxx > 0 else None


@dataclass(frozen=True)
class ProcessSample:
    window: float  # windows since the soak started (fractional: sampled mid-window)
    pid: int
    rss_kb: int
    fds: int
    threads: int
    anon_kb: int = 0  # RssAnon: the process's own heap
    shmem_kb: int = 0  # RssShmem: pages of shared memory it touched (the feed's ring: bounded by the segment)


@dataclass
class Trend:
    """One process's figures after warm-up."""

    role: str
    samples: int
    rss_first_kb: int
    rss_last_kb: int
    rss_slope_kb: float | None  # kB per window (over whole trim cycles when asked)
    rss_raw_slope_kb: float | None  # kB per window, fitted on every sample
    anon_slope_kb: float | None  # of RssAnon: the heap alone
    fds_slope: float | None
    fds_range: tuple[int, int]
    threads_slope: float | None
    threads_range: tuple[int, int]
    lives: int  # distinct pids after warm-up (the feed restarts)
    windows: float  # the span the slope was fitted over

    @property
    def rss_ok(self) -> bool:
        return self.rss_slope_kb is not None and self.rss_slope_kb <= RSS_SLOPE_GOAL_KB

    def _flat(self, slope: float | None) -> bool:
        return slope is not None and slope * self.windows < FLAT_RISE

    @property
    def fds_ok(self) -> bool:
        return self._flat(self.fds_slope)

    @property
    def threads_ok(self) -> bool:
        return self._flat(self.threads_slope)


RESTART_WARMUP_WINDOWS = 3  # a process the soak restarts (the feed) warms up again this long after each restart


def cycle_means(samples: list["ProcessSample"], block: int) -> list[tuple[int, float, float]]:
    """(pid, window, RSS) averaged over whole blocks of `block` consecutive samples of each process life. RSS saws
    with the allocator's trim cycle (polymm/memory.py: freed pages go back once a minute, three 20-s windows), and a
    line fitted through a saw that a short life cuts at any phase leans with it; a whole cycle's mean does not."""
    lives: dict[int, list] = {}
    for s in samples:
        lives.setdefault(s.pid, []).append(s)
    out = []
    for pid, lst in lives.items():
        for i in range(0, len(lst) // block * block, block):
            chunk = lst[i:i + block]
            out.append((pid, sum(x.window for x in chunk) / block, sum(x.rss_kb for x in chunk) / block))
    return out


def trend(role: str, samples: list[ProcessSample], warmup_windows: float,
          restart_warmup: float = RESTART_WARMUP_WINDOWS, cycle: int = 1) -> Trend | None:
    """Slopes after warm-up. A process restarted during the run (the feed) is left out for `restart_warmup` windows
    after each restart too (a fresh interpreter imports and fills its first buffers), and each life is fitted with
    its own intercept and one common slope (`pooled_slope`). `cycle` > 1: the RSS slope is fitted on means over
    whole trim cycles of that many samples (`cycle_means`); `rss_raw_slope_kb` keeps the per-sample fit."""
    first_seen: dict[int, float] = {}
    for s in samples:
        first_seen.setdefault(s.pid, s.window)
    started = min(first_seen.values()) if first_seen else 0.0
    kept = [s for s in samples
            if s.window >= warmup_windows and (first_seen[s.pid] == started or s.window >= first_seen[s.pid] + restart_warmup)]
    if len(kept) < 3:
        return None
    span = kept[-1].window - kept[0].window
    return Trend(
        role=role, samples=len(kept), rss_first_kb=kept[0].rss_kb, rss_last_kb=kept[-1].rss_kb,
        rss_slope_kb=pooled_slope(cycle_means(kept, cycle) if cycle > 1 else [(s.pid, s.window, s.rss_kb) for s in kept]),
        rss_raw_slope_kb=pooled_slope([(s.pid, s.window, s.rss_kb) for s in kept]),
        anon_slope_kb=pooled_slope([(s.pid, s.window, s.anon_kb) for s in kept]),
        fds_slope=pooled_slope([(s.pid, s.window, s.fds) for s in kept]),
        fds_range=(min(s.fds for s in kept), max(s.fds for s in kept)),
        threads_slope=pooled_slope([(s.pid, s.window, s.threads) for s in kept]),
        threads_range=(min(s.threads for s in kept), max(s.threads for s in kept)),
        lives=len({s.pid for s in kept}), windows=span,
    )


@dataclass(frozen=True)
class CashSample:
    t0: float  # when the exchange's figure was asked
    t1: float  # when the trader's figure came back
    exchange: float
    trader: float | None


STAMP_RESOLUTION_S = 1.0  # the exchange stamps match times in whole seconds: a fill stamped m happened in [m, m + 1)


def settled(sample: CashSample, changes: list[float], settle_s: float = CASH_SETTLE_S, resolution_s: float = 0.0) -> bool:
    """No change of the exchange's cash within `settle_s` before or during the sample. `changes`: their times, each
    known to `resolution_s` (a change stamped c happened in [c, c + resolution_s))."""
    return not any(c <= sample.t1 and sample.t0 - settle_s < c + resolution_s for c in changes)


@dataclass
class CashFigures:
    samples: int = 0
    settled: int = 0
    worst: float = 0.0  # the largest |trader - exchange| over settled samples
    bad: list[CashSample] = field(default_factory=list)  # settled samples beyond the tolerance
    unknown: int = 0  # samples where the trader reported no cash

    @property
    def ok(self) -> bool:
        return not self.bad and self.settled > 0


def cash_figures(samples: list[CashSample], fills: list[float], others: list[float] = ()) -> CashFigures:
    """`fills`: when our fills matched, as the exchange stamps them (whole seconds); `others`: when the exchange's
    cash changed otherwise (a redemption or merge executed by the relayer)."""
    out = CashFigures(samples=len(samples))
    fills, others = sorted(fills), sorted(others)
    for s in samples:
        if s.trader is None:
            out.unknown += 1
            continue
        if not settled(s, fills, CASH_SETTLE_S, STAMP_RESOLUTION_S) or not settled(s, others, OTHER_SETTLE_S):
            continue
        out.settled += 1
        gap = abs(s.trader - s.exchange)
        out.worst = max(out.worst, gap)
        if gap > CASH_TOLERANCE + 1e-9:
            out.bad.append(s)
    return out


def fill_keys(trades: list[dict], address: str) -> dict[tuple[str, str], dict]:
    """Our fills in the exchange's /trades rows: (trade id, our order id) -> {side, size, price, status, token}.
    The taker's fill is the row's top level; a maker's is its entry in `maker_orders` (production's shape)."""
    me = address.lower()
    out: dict[tuple[str, str], dict] = {}
    for t in trades:
        if str(t.get("maker_address", "")).lower() == me and t.get("trader_side") == "TAKER":
            out[(t["id"], t["taker_order_id"])] = {"side": t["side"], "size": float(t["size"]), "price": float(t["price"]),
                                                  "status": t["status"], "token": t["asset_id"]}
        for m in t.get("maker_orders", ()):
            if str(m.get("maker_address", "")).lower() == me:
                out[(t["id"], m["order_id"])] = {"side": m["side"], "size": float(m["matched_amount"]),
                                                "price": float(m["price"]), "status": t["status"],
                                                "token": m["asset_id"]}
    return out


@dataclass
class FillCheck:
    exchange: int
    ledger: int
    missing: list  # on the exchange, not in the ledger
    extra: list  # in the ledger, not on the exchange (within the exchange's retention)
    status_differs: list

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and not self.status_differs


def compare_fills(exchange: dict[tuple[str, str], dict], ledger: dict[tuple[str, str], dict],
                  retained_since: float = 0.0) -> FillCheck:
    """Every fill once: the ledger's primary key is (trade id, order id), so a fill counted twice shows as a key
    the exchange does not have. Ledger fills matched before `retained_since` (the exchange forgot them) are not
    held against it."""
    missing = sorted(k for k in exchange if k not in ledger)
    extra = sorted(k for k, v in ledger.items() if k not in exchange and v.get("match_ts", math.inf) >= retained_since)
    status = sorted(k for k in exchange if k in ledger and _final(exchange[k]["status"]) != _final(ledger[k]["status"]))
    return FillCheck(len(exchange), len(ledger), missing, extra, status)


def _final(status: str) -> str:
    """FAILED against everything else: a fill's MATCHED/MINED/CONFIRMED step may differ by a poll."""
    return "FAILED" if status.upper() == "FAILED" else "OK"


def verdict_lines(trends: dict[str, Trend | None], *, shm_leaked: list[str], false_stale: int, cash: CashFigures,
                  fills: FillCheck | None, positions_differ: list[str], final_cash_gap: float | None,
                  orphans: int | None) -> list[tuple[bool, str]]:
    """(ok, words) per goal, in the order the README lists them."""
    out: list[tuple[bool, str]] = []
    for role, t in trends.items():
        if t is None:
            out.append((False, f"{role}: too few samples after warm-up to fit a slope"))
            continue
        if t.rss_slope_kb is None:
            out.append((False, f"{role}: no process lived long enough after warm-up to fit a slope"))
            continue
        out.append((t.rss_ok, f"{role}: RSS slope {t.rss_slope_kb:+.1f} kB/window (goal <= {RSS_SLOPE_GOAL_KB:g}; "
                              f"every sample: {t.rss_raw_slope_kb or 0:+.1f}, heap alone {t.anon_slope_kb or 0:+.1f})"))
        out.append((t.fds_ok and t.threads_ok,
                    f"{role}: fds {t.fds_range[0]}-{t.fds_range[1]} (slope {t.fds_slope or 0:+.3f}/window), threads "
                    f"{t.threads_range[0]}-{t.threads_range[1]} (slope {t.threads_slope or 0:+.3f}/window)"))
    out.append((not shm_leaked, f"shared-memory segments left behind: {len(shm_leaked)}"
                + (f" ({', '.join(shm_leaked)})" if shm_leaked else "")))
    out.append((false_stale == 0, f"stale verdicts/warnings while the feed was healthy: {false_stale}"))
    out.append((cash.ok, f"cash vs exchange: worst gap {cash.worst:.4f} over {cash.settled} settled samples "
                         f"({len(cash.bad)} beyond {CASH_TOLERANCE})"))
    if fills is not None:
        out.append((fills.ok, f"fills: exchange {fills.exchange}, ledger {fills.ledger}; missing {len(fills.missing)}, "
                              f"extra {len(fills.extra)}, status differs {len(fills.status_differs)}"))
    out.append((not positions_differ, f"positions differing from the exchange: {len(positions_differ)}"
                + (f" ({'; '.join(positions_differ[:5])})" if positions_differ else "")))
    if final_cash_gap is not None:
        out.append((final_cash_gap <= CASH_TOLERANCE + 1e-9, f"final cash gap {final_cash_gap:.4f}"))
    if orphans is not None:
        out.append((orphans == 0, f"orders of ours left on the exchange after the trader stopped: {orphans}"))
    return out


def rss_lines(trends: dict[str, Trend | None]) -> list[str]:
    """Each process's RSS from the end of warm-up to the end, for the printed report."""
    return [f"  {role:6s} RSS {t.rss_first_kb / 1024:6.1f} -> {t.rss_last_kb / 1024:6.1f} MB over {t.windows:.0f} "
            f"windows ({t.lives} process{'es' if t.lives > 1 else ''})" for role, t in trends.items() if t is not None]


def verdict_text(lines: list[tuple[bool, str]]) -> list[str]:
    """The verdict and each goal's line, as printed."""
    return (["VERDICT " + ("PASS" if all(ok for ok, _ in lines) else "FAIL")]
            + [f"  {'ok  ' if ok else 'FAIL'} {words}" for ok, words in lines])
