"""The trader's decision loop: shared-memory book in, orders out.

One thread owns the loop. It wakes as soon as the feed publishes a new top of book (the shm sequence) or the
execution core reports an order/fill event (`ExecutionCore.wake`), and otherwise at least every
`DECIDE_EVERY_S` so time-driven rules (exit delays, cancel-before-end, stale-feed guard) fire without a tick.
Each decision:

1. applies operator commands queued by the control thread (pause, resume, flatten, cancel-all, new config,
   in-process restart) — so a command never races a decision half-way through;
2. reads one consistent shm snapshot and refuses to trade on it when it is not the market the execution core
   trades (wrong window), crossed, or stale; follows the feed to the next window at rotation;
3. runs the pure pipeline of `trader/decision/decide.py` (S1, S2, risk gate, planner) on (market, our orders, our
   positions, config, clock) and executes the resulting Place/Cancel actions through the execution core;
4. pets the systemd watchdog and publishes an immutable `EngineStatus` that the control thread reads.

Everything the loop decides from is passed in explicitly, so tests drive `Engine.step()` with fakes.

While the book is quiet the loop may rehearse its tick path (WARM_EVERY_S) and collects young garbage
(IDLE_GC_YOUNG); its thread runs SCHED_FIFO where the unit allows it (REALTIME_PRIORITY); `probe`
(trader/latency.py) times each stage when the tick-to-decision benchmark switches it on.

Over 600 lines on purpose: one class owned by one thread (the loop, its commands, its status and the waits
between decisions), whose steps share that thread's state; the pure helpers above it are the only parts others call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from polymm import cpu_idle, env, realtime
from polymm.trader.decision.fair_value import FairValue
from polymm.trader.model import FillChanged, MarketView, OrderChanged, StatusChanged
from polymm.trader.decision.net_book import net_view
from polymm.trader.decision.own_book import own_book
from polymm.trader.priority import DecisionGate

log = logging.getLogger("polymm.trader.engine")

# Time-driven rules need a decision even on a quiet book; 50 ms is far below any of their thresholds
# (exit_delay_s, exit_retry_s, cancel_before_end_s are seconds) and costs nothing measurable.
DECIDE_EVERY_S = 0.05
# Waking on the shm sequence: Reader.wait_update blocks in the kernel (FUTEX_WAIT on the sequence word, which
# the feed FUTEX_WAKEs after every publish; see feed/shm/) and returns within tens of microseconds of a publish,
# using no CPU while the book is quiet. Earlier this loop polled the word between 50-150 us sleeps: a new book was
# seen 0.1-0.25 ms late at 10-20 % of a core. No spinning first: on 2 shared cores a spin steals the CPU the
# execution core's threads and the feed need, and the futex wake-up is already fast.
# bench/bench_tick_to_decision.py measures it.
WAKE_SPIN_S = 0.0
# The thread switch interval (Engine.tune_runtime): a thread waiting for the GIL asks the holder to drop it after
# this long (Python's default: 5 ms). The loop sets it around each wait: while it waits for a tick (and rehearses)
# it is SWITCH_INTERVAL_S, so the loop, woken while an order worker reads the exchange's answer or the user channel
# applies a burst, has the GIL back within ~20 us plus the hand-over (at 0.5 ms, bench/bench_tick_to_decision.py
# showed 0.5-1.4 ms wake-ups; at 0.1 ms, pooled over runs, wake-ups p90 144 us / p99 343 us, at 20 us 82 / 264, the
# trader's CPU the same: those threads only ever contend with each other for a moment);
# from the wake-up to the next wait (the decision, its orders, the bookkeeping: ~0.2-0.4 ms) it is
# SWITCH_INTERVAL_DECIDING_S, so those threads take the GIL from a decision half-way no sooner than that (at 0.1 ms
# the slowest decisions were switched out up to 23 times: 1.6 ms of GIL waits). Not longer: the interval is also how
# long the loop waits for the GIL back whenever it blocks (a lock, a write, a seqlock retry's sleep); at 5 ms the
# same bench's p99 was 1.6-1.8 ms.
SWITCH_INTERVAL_S = 0.00002
SWITCH_INTERVAL_DECIDING_S = 0.0005
# Young garbage collections between ticks: the cyclic GC runs when 700 more tracked objects exist than it last saw,
# wherever that happens - inside a decision, 0.1-0.6 ms. The waiting loop collects the young generation itself once
# this many are pending (the middle one too when it is due), so collections fall between ticks.
IDLE_GC_YOUNG = 350
# The decision thread's SCHED_FIFO priority when the service may have one (polymm/realtime.py: the unit's
# LimitRTPRIO=; 0 elsewhere, then it stays ordinary). Woken by the feed it then runs at once instead of waiting for a
# busy CPU; only this thread, and threads it starts are ordinary.
REALTIME_PRIORITY = 10
# How often the waiting loop also looks at order/fill events, operator commands and signals.
EVENT_CHECK_S = 0.002
# Keeping the decision path warm (Engine._rehearse): after a few milliseconds of sleep the CPU's caches have lost what a
# decision touches (the interpreter's code, our objects) to the other processes on the cores, and the same decision
# runs 2-3x slower than back to back (bench/bench_tick_to_decision.py's breakdown: the time is this thread's own CPU).
# While the book is quiet the loop can re-run the tick path on the current book every `warm_every_s` and drop the
# result: about half the tick-to-decision time, for ~0.1 ms of CPU per rehearsal (~12 % of a core at 1 ms). Off
# unless asked (env POLYMM_WARM_EVERY_MS; the systemd unit asks for WARM_EVERY_S), so tests and the demo do not pay it.
WARM_EVERY_S = 0.001
# A decision's bookkeeping (the wallet's publish, core events, unresolved exposure, status: ~0.1-0.2 ms) waits
# for the next decision while the feed has already published a newer book, but never longer than this.
BOOKKEEPING_DEFER_S = 0.005
# The execution core's threads give way to a decision in progress or due (trader/priority.py): at their safe
# points they wait, releasing the GIL, while the loop decides or the kernel wakes it for a published tick.
STEP_ASIDE = True
# Consecutive failed decisions after which the loop gives up (the service exits non-zero, systemd restarts it).
MAX_FAILED_DECISIONS = 100
# A rollover (the old window over, the next one's book not published yet) is logged at info level, and shown as a
# note by mmctl status, for this long; longer, it is a warning (the feed's window overdue check says the same).
ROTATION_GRACE_S = 10.0
# Feed statuses under which the book in shm describes a live market we may trade.
TRADABLE_FEED_STATUS = ("connected",)


# ---- commands from the control thread ---------------------------------------------------------------


@dataclass
class Command:
    """One operator command, applied by the loop at its next decision.

    The control thread enqueues it and waits on `done`; the loop sets `result` (words for the operator) or
    `error` and then `done`.
    """

    kind: str  # pause | resume | flatten | cancel_all | set_config | restart
    payload: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    result: str = ""
    error: str | None = None
    count: int | None = None  # orders cancelled by pause / cancel-all / flatten
    paused: bool | None = None  # the loop's pause state right after the command was applied
    warnings: list[str] = field(default_factory=list)  # what the command could not do (it is then incomplete)

    def wait(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)


# ---- what the loop publishes --------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineStatus:
    """What the loop last saw and decided; replaced as a whole after every decision (readers never see a
    half-updated one)."""

    state: str  # starting | running | paused | flattening | stale feed | wrong window | crossed book | ...
    paused: bool
    flattening: bool
    market: Any  # MarketIdentity being traded, or None before start
    market_view: MarketView | None  # the book of the last decision (None when it could not be built)
    problem: str | None  # why the loop is not trading, in words (None when it is)
    decisions: int
    last_decision_at: float  # unix seconds
    last_actions: int  # Place/Cancel actions of the last decision
    config: Any  # the Config the last decision used
    decision_notes: tuple[str, ...] = ()  # warnings/notes from the pipeline, in words
    restarting: bool = False
    problem_since: float | None = None  # unix seconds the current problem started
    # The window the trader trades has ended and the feed has not published the next one's book yet: a rollover
    # in progress, not a fault (for the first ROTATION_GRACE_S); the unix second the old window ended, else None.
    rotating_since: float | None = None


# ---- pure helpers ----------------------------------------------------------------------------------


def _num(x: float) -> float:
    """shm uses NaN for an empty side; the strategies want NaN too (comparisons with NaN are False)."""
    return float(x) if x is not None else math.nan


def feed_dead(snap, *, now: float, stale_feed_ms: float, quiet_feed_ms: float) -> str | None:
    """Why the feed must not be traded on, in words, or None while it is alive. Judged from liveness, never from
    the age of the last book change (a quiet market is not a dead feed, issue 27): the feed's status, its
    heartbeat (the process, within `stale_feed_ms`), its market socket (shm LINK: connected, and some frame, a PONG
    at least, within its ping interval + PONG timeout) and whether that live socket still carries market data
    (within `quiet_feed_ms`, else it is taken for frozen)."""
    if snap.status not in TRADABLE_FEED_STATUS:
        return f"feed status is {snap.status}"
    hb = snap.heartbeat_age_s(now) * 1000.0
    if hb > stale_feed_ms:
        return f"feed heartbeat {hb / 1000:.1f} s old (stale after {stale_feed_ms / 1000:.1f} s)"
    link = getattr(snap, "link", None)
    if link is None:  # a snapshot without the LINK block (a test's stand-in): the heartbeat is all there is
        return None
    dead = link.dead_reason(now)
    if dead:
        return f"feed dead: {dead}"
    frozen = link.frozen_reason(now, quiet_feed_ms / 1000.0)
    if frozen:
        return f"feed frozen: {frozen} (risk.quiet_feed_ms)"
    return None


def market_view(snap, *, now: float, stale_feed_ms: float, accepting_orders: bool = True,
                fair: FairValue | None = None, stale_ref_ms: float = 5000.0, fee=None,
                quiet_feed_ms: float = 15000.0, reference: str = "chainlink") -> MarketView:
    """The strategies' view of one shm snapshot. `fee`: the market's FeeSchedule as the execution core read it
    from the exchange (rate and exponent); without one, the rate the feed published with exponent 1.

    `fresh` = the feed is alive (`feed_dead`): status connected, heartbeat recent, its market socket answering and
    not frozen. The book's own age is shown (`age_ms`) but a quiet book keeps the resting orders.
    `fair`: the trader's fair value (trader/decision/fair_value.py) from the snapshot's reference price (REF block)
    of the series' resolution source (`reference`: "chainlink" for the 5- and 15-minute series, "binance" for the
    hourly ones, which resolve on Binance's 1-hour candle; the feed takes the window's opening from the same source).
    """
    ref = getattr(snap, "ref", None)
    btc = btc_open = fair_up = math.nan
    btc_age_ms = math.inf
    price, price_ts = ((ref.binance, ref.binance_ts) if reference == "binance" else (ref.chainlink, ref.chainlink_ts)
                       ) if ref is not None else (math.nan, math.nan)
    if price == price:
        btc, btc_open = price, ref.opening_for(int(snap.market.window_start))
        btc_age_ms = (now - price_ts) * 1000.0 if price_ts == price_ts else math.inf
        if fair is not None:
            fair_up = fair.fair_up(btc, price_ts, btc_open, now, float(snap.market.window_end), stale_ref_ms / 1000.0)
    age_ms = snap.data_age_s(now) * 1000.0
    dead = feed_dead(snap, now=now, stale_feed_ms=stale_feed_ms, quiet_feed_ms=quiet_feed_ms)
    market = snap.market
    return MarketView(
        market=market,
        fee_rate=market.fee_rate if fee is None else fee.rate,
        fee_exponent=1.0 if fee is None else fee.exponent,
        up_bid=_num(snap.up.bid),
        up_bid_size=_num(snap.up.bid_size),
        up_ask=_num(snap.up.ask),
        up_ask_size=_num(snap.up.ask_size),
        down_bid=_num(snap.down.bid),
        down_bid_size=_num(snap.down.bid_size),
        down_ask=_num(snap.down.ask),
        down_ask_size=_num(snap.down.ask_size),
        age_ms=age_ms,
        fresh=dead is None,
        stale_reason=dead or "",
        crossed=bool(snap.crossed),
        accepting_orders=accepting_orders and now < market.window_end,
        fair_up=fair_up,
        btc=btc,
        btc_age_ms=btc_age_ms,
        btc_open=btc_open,
    )


def feed_problem(snap, *, now: float, stale_feed_ms: float, quiet_feed_ms: float = 15000.0) -> str | None:
    """Why this snapshot must not be traded on, in words; None when it is fine (a quiet book is fine)."""
    dead = feed_dead(snap, now=now, stale_feed_ms=stale_feed_ms, quiet_feed_ms=quiet_feed_ms)
    if dead is not None:
        return dead
    if snap.crossed:
        return "book crossed"
    return None


def identity_of(snap):
    """The MarketIdentity the execution core trades, from the market the feed publishes."""
    return snap.market


def _problem_kind(problem: str | None) -> str | None:
    """A problem without its numbers: "book data 3.1 s old" and "book data 3.2 s old" are one problem, logged once."""
    return None if problem is None else re.sub(r"[0-9.]+", "#", problem)


def halt_reason(exchange) -> str:
    """Words for "the exchange takes no new orders now" (cancel-only, closed-only, engine restart, rate limit,
    failing heartbeats), or "" when it does."""
    if exchange is None or getattr(exchange, "can_place", True):
        return ""
    warnings = list(getattr(exchange, "warnings", None) or [])
    mode = getattr(exchange, "mode", None)
    if warnings:
        return warnings[0]
    if not getattr(exchange, "heartbeat_ok", True):
        from polymm.trader.execution.exchange_state import HEARTBEATS_FAILING  # one wording everywhere

        return HEARTBEATS_FAILING
    return f"exchange is {str(getattr(mode, 'value', mode)).replace('_', '-')}: no new orders"


def _reference_key(ref) -> tuple | None:
    """What the fair value reads of the feed's REF block (the prices, their times, the window's opening), with an
    unknown (NaN) value as None: a price the feed has not got yet is the same unknown at the next tick, and NaN would
    equal nothing (the reader builds new floats at every snapshot)."""
    if ref is None:
        return None
    return tuple(None if x != x else x for x in (ref.chainlink, ref.chainlink_ts, ref.binance, ref.binance_ts,
                                                 ref.open_window_start, ref.open_price, ref.open_status))


def window_words(window_start: int, window_end: int) -> str:
    fmt = lambda t: time.strftime("%H:%M:%S", time.gmtime(t))  # noqa: E731
    return f"{fmt(window_start)}–{fmt(window_end)} UTC"


# ---- the loop -------------------------------------------------------------------------------------------


class Engine:
    """The decision loop around one execution core and one shm reader.

    Threads: `run()` (or `step()` in tests) on one thread; `submit()` and `status` from any thread. The only
    state shared with other threads is the command queue, `status` (an immutable object swapped as a
    whole) and `config` (likewise immutable and swapped whole, only by the loop).
    """

    def __init__(
        self,
        reader,
        core,
        config,
        *,
        notifier=None,
        clock: Callable[[], float] = time.time,
        reconfigure: Callable[[], Any] | None = None,
        reconnect_reader: Callable[[], Any] | None = None,
        on_decision: Callable[[Any, float, float], None] | None = None,
        pipeline: Callable[..., Any] | None = None,
        new_state: Callable[[MarketView], Any] | None = None,
        config_source: Callable[[], Any] | None = None,
    ) -> None:
        self.reader = reader
        self.core = core
        # Live, the published book contains our resting orders and the decision subtracts them. Paper trading's
        # orders rest only in the paper exchange, never in the published book: nothing to subtract (service.py).
        self.book_shows_our_orders = True
        self.config = config
        # The one place the effective config lives (the service's ConfigStore.current): read at every decision,
        # so `mmctl set`, `mmctl reload` and SIGHUP all reach the next decision through one path, never racing.
        self._config_source = config_source
        self.notifier = notifier
        self.clock = clock
        # restart path: re-read config (returns a new Config or raises) and re-attach shm; given by the service
        self._reconfigure = reconfigure
        self._reconnect_reader = reconnect_reader
        # benchmark hook: (snapshot, decided_at, actions_done_at) for decisions woken by a new top of book
        self._on_decision = on_decision
        # E's pure pipeline (trader/decision/decide.py) unless a test gives another with the same signature
        self._pipeline = pipeline
        self._new_state = new_state
        self.market = None  # MarketIdentity the core trades
        self.paused = False
        self.flattening = False
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._last_seq = -1
        self._last_decision_mono = 0.0
        self._last_rehearsal_mono = 0.0
        self._rehearsal_failed = False
        self.warm_every_s: float | None = None  # seconds between rehearsals while the book is quiet; None: none
        self.realtime_priority = 0  # SCHED_FIFO priority of the loop's thread (0: ordinary), set by run()
        self.loop_cpu: int | None = None  # the CPU run() pins the loop's thread to (POLYMM_LOOP_CPU); None: none
        self.pinned = False  # whether it is
        self.idle_collections = 0  # young collections the loop ran between ticks (IDLE_GC_YOUNG)
        self._decisions = 0
        self._pipeline_state = None  # decide.py's per-window state, reset at rotation
        self._problem: str | None = None
        self._problem_since: float | None = None
        self._cancelled_for_problem = False
        self._rollover_warned = False
        self._notes: tuple[str, ...] = ()
        self._decided_at = 0.0
        self.tick_publish_ts: float | None = None
        self.snapshot_at = 0.0
        self.fair = FairValue()  # the BTC reference path's volatility estimate lives across windows
        self._decide_again = False
        self._switch_intervals: tuple[float, float] | None = None  # tune_runtime: (waiting, deciding) seconds
        self._wallet_after: tuple | None = None  # WalletDecisions.after's arguments from the last decision, unpublished
        self._bookkeeping_due: tuple | None = None  # (view, now, actions) of a decision whose bookkeeping waits
        self._bookkept_mono = 0.0  # monotonic start of the last decision whose bookkeeping ran
        self._tick_size: float | None = None  # last tick handed to the core for the current market
        self._tick_note: tuple | None = None  # (condition id, old tick, new tick): logged by the bookkeeping
        self._failures = 0
        self._unresolved_usd = 0.0
        self._unresolved_due = False  # a rotation's estimate stands in for it until the bookkeeping refolds
        # What the last decision read (Engine._inputs), when it decided on a fresh, uncrossed book of its market; a
        # tick that changes none of it is answered without deciding again (_unchanged_tick). None: decide.
        self._decided_on: tuple | None = None
        self.unchanged_ticks = 0
        # A decision given up for a newer tick published before its pipeline ran (_newer_tick); the next one is not.
        self._merged = False
        self.merged_ticks = 0
        # A window rotation whose log line and core records wait for the first decision's bookkeeping: (old, new)
        self._rotation_unsettled: tuple | None = None
        # The wallet's pUSD as last polled (service: the balance watcher); None: unknown, risk does not use it.
        self.cash: Callable[[], float | None] | None = None
        # The other series on this wallet (trader/wallet/decisions.py DecisionHook, set by the service): the wallet's
        # limits into the pipeline, a claim for the buys it sends, this series' exposure published after.
        self.wallet = None
        self.reference_source = "chainlink"  # the series' resolution source (polymm/series.py); the service sets it
        self._unresolved_at = -1e9
        self._hang = threading.Event()  # test hook (POLYMM_TEST_HOOKS): block the loop so the watchdog fires
        # trader/latency.py Probe, or None (always, but in bench/bench_tick_to_decision.py): where each decision's
        # time goes. Off, each stage costs the loop one `is None` test.
        self.probe = None
        # The other threads give way to a decision at their safe points (trader/priority.py); the service hands it to
        # the execution core. It knows a tick is pending only while run() loops (a loop that is not running has
        # nothing to give way to).
        self.gate = DecisionGate(enabled=STEP_ASIDE)
        self.status = EngineStatus(
            state="starting", paused=False, flattening=False, market=None, market_view=None, problem=None,
            decisions=0, last_decision_at=0.0, last_actions=0, config=config,
        )

    # -- control thread side --------------------------------------------------------------------------

    def submit(self, kind: str, payload: Any = None, *, wait_s: float = 5.0) -> Command:
        """Queue a command for the next decision and wait up to wait_s for it to be applied.

        Returns the command; `cmd.done.is_set()` tells whether it was applied in time (if not, it still will
        be, at the next decision)."""
        cmd = Command(kind, payload)
        self._commands.put(cmd)
        cmd.wait(wait_s)
        return cmd

    def hang_for_test(self) -> None:
        """Make the loop block forever at its next iteration (systemd watchdog test; POLYMM_TEST_HOOKS=1)."""
        self._hang.set()

    # -- startup ------------------------------------------------------------------------------------

    def attach_market(self, wait_s: float, stop: threading.Event | None = None) -> Any:
        """Wait until the feed publishes a live market and return its identity (not yet given to the core)."""
        deadline = time.monotonic() + wait_s
        last_reason = "no snapshot yet"
        while True:
            snap = self.reader.snapshot()
            now = self.clock()
            if snap.status in TRADABLE_FEED_STATUS and snap.market.condition_id and now < snap.market.window_end:
                return identity_of(snap)
            last_reason = f"feed status {snap.status!r}, window ends {snap.market.window_end}"
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                raise TimeoutError(f"the feed did not publish a live market within {wait_s:.0f} s ({last_reason})")
            self.reader.wait_update(snap.seq, 0.2)

    def start(self, market) -> None:
        """Start the execution core on `market`: it reconciles with the exchange before any new order."""
        self.market = market
        self.core.start(market)
        self._pipeline_state = None

    # -- the loop -----------------------------------------------------------------------------------

    def tune_runtime(self) -> None:
        """Process-wide interpreter settings that keep stalls out of the decision path (run() calls it once;
        the loop is why the trader process exists).

        - The start-up heap (modules, the SDK, config, reconciled state: ~60 000 objects) is frozen out of
          the cyclic GC: a full collection walked it in ~15-30 ms on this 2-core VM, a stall that would land
          on a decision from time to time; afterwards it walks only what the running trader allocated.
          (Young collections: the waiting loop runs them between ticks, IDLE_GC_YOUNG.)
        - The GIL is handed over within SWITCH_INTERVAL_S instead of 5 ms while the loop waits, and kept by the
          loop while it decides (SWITCH_INTERVAL_DECIDING_S; set around each wait by _wait_for_work).
        - This thread (the loop's) is scheduled real-time when the service may (REALTIME_PRIORITY), and pinned to
          `loop_cpu` when the service names one (POLYMM_LOOP_CPU): its wake-ups find their caches warm. Whether that
          CPU polls while idle (polymm/cpu_idle.py, set before the start as root) is only read back and told.
        Behaviour is unchanged: nothing here changes what is decided, only when the interpreter pauses."""
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._switch_intervals = (SWITCH_INTERVAL_S, SWITCH_INTERVAL_DECIDING_S)
        gc.collect()
        gc.freeze()
        self.realtime_priority, words = realtime.make_current_thread_realtime(REALTIME_PRIORITY)
        refused = not self.realtime_priority and realtime.allowed_priority(REALTIME_PRIORITY) > 0
        if self.loop_cpu is not None:
            self.pinned, pin_words = realtime.pin_current_thread(self.loop_cpu)
            refused = refused or not self.pinned
            words = f"{words}; {pin_words}"
            if self.pinned:  # held awake or not by polymm-cpu-idle, as root, before we started: read back here
                words = f"{words}; {cpu_idle.describe(self.loop_cpu)}"
        log.log(logging.WARNING if refused else logging.INFO, "decision loop: %s", words)

    def run(self, stop: threading.Event, reload: threading.Event | None = None,
            on_reload: Callable[[], None] | None = None, on_decision: Callable[[], None] | None = None) -> None:
        """Decide until `stop` is set. `reload` (SIGHUP) is handed to `on_reload` from this thread;
        `on_decision` runs after every decision (the service's STATUS= line; must be cheap)."""
        self.tune_runtime()
        # (self.reader, not a bound method kept: a restart re-attaches the shared memory with a new reader)
        self.gate.tick_pending = lambda: self.reader.seq() != self._last_seq
        try:
            self._loop(stop, reload, on_reload, on_decision)
        finally:
            self.gate.detach()

    def _loop(self, stop, reload, on_reload, on_decision) -> None:
        while not stop.is_set():
            if self._hang.is_set():
                log.warning("test hook: decision loop blocked on purpose (%s=1, SIGUSR2)", env.TEST_HOOKS)
                threading.Event().wait()  # forever: the systemd watchdog must notice
            if reload is not None and reload.is_set():
                reload.clear()
                if on_reload is not None:
                    with realtime.unpinned():
                        on_reload()
            if self._wait_for_work():
                self.gate.enter()
                failed = False
                try:
                    self.step()
                    self._failures = 0
                except Exception:
                    # One bad decision (a bug, an unexpected exchange answer) must not stop a trader that holds
                    # positions; a run of them means something is really broken: give up, let systemd restart us
                    # (SIGTERM path cancels our orders).
                    self._failures += 1
                    if self._failures == 1 or self._failures % 20 == 0:
                        log.exception("decision failed (%d in a row)", self._failures)
                    if self._failures >= MAX_FAILED_DECISIONS:
                        raise
                    failed = True
                finally:
                    self.gate.leave()
                if failed:
                    time.sleep(0.01)
                    continue
                if on_decision is not None:
                    on_decision()

    def _wait_for_work(self) -> bool:
        """Wait until a decision is due: a new shm sequence (the reader wakes on the feed's publish), an order/
        fill event or an operator command (checked every EVENT_CHECK_S), or the periodic decision. Returns True
        when one is due; False only to let run() look at its stop/reload flags (at least every EVENT_CHECK_S)."""
        last_seq = self._last_seq
        seq = self.reader.seq
        if seq() != last_seq or self._decide_again:
            return True
        due = self._bookkeeping_due
        if due is not None:  # deferred for a newer tick that never came to a decision (a failed one): do it now
            self._bookkeeping(*due, time.monotonic())
            return False
        if self._rotation_unsettled is not None:  # a rotation whose decision failed: its paperwork all the same
            self._settle_rotation()
        wake = getattr(self.core, "wake", None)
        if (wake is not None and wake.is_set()) or not self._commands.empty():
            return True
        now = time.monotonic()
        if now - self._last_decision_mono >= DECIDE_EVERY_S:
            return True
        until = min(now + EVENT_CHECK_S, self._last_decision_mono + DECIDE_EVERY_S)
        switch = self._switch_intervals  # (waiting, deciding) once tune_runtime ran; None: Python's own
        if switch is not None:
            sys.setswitchinterval(switch[0])  # waiting, or rehearsing: our other threads may have the GIL soon
        warm = self.warm_every_s
        if warm:
            due = max(self._last_decision_mono, self._last_rehearsal_mono) + warm
            if now >= due:
                self._warm()
                if seq() != last_seq:
                    if switch is not None:
                        sys.setswitchinterval(switch[1])
                    return True
                now = time.monotonic()
                due = now + warm
            until = min(until, due)
        self._idle_gc()
        # The hot part: blocked in the kernel until the feed publishes (or the event check is due). The GIL is
        # taken back on return under the waiting interval; then the decision keeps it (SWITCH_INTERVAL_DECIDING_S).
        probe = self.probe
        if probe is not None:
            probe.waiting()
        new_seq = self.reader.wait_update(last_seq, until - now, spin_s=WAKE_SPIN_S)
        if switch is not None:
            sys.setswitchinterval(switch[1])
        if probe is not None:
            probe.woke()
        return new_seq != last_seq

    def _idle_gc(self) -> None:
        young, middle, _old = gc.get_count()
        if young >= IDLE_GC_YOUNG:
            self.idle_collections += 1
            gc.collect(1 if middle + 1 >= gc.get_threshold()[1] else 0)

    def _warm(self) -> None:
        self._last_rehearsal_mono = time.monotonic()
        probe = self.probe
        start = time.time() if probe is not None else 0.0
        try:
            self._rehearse()
        except Exception:  # a rehearsal must never stop the loop; the real decision reports its own failures
            if not self._rehearsal_failed:
                self._rehearsal_failed = True
                log.exception("rehearsal of the decision failed (reported once)")
        if probe is not None:
            probe.activity("rehearsal", start, time.time())

    def step(self) -> int:
        """One decision. Returns the number of Place/Cancel actions executed."""
        probe = self.probe
        if probe is not None:
            probe.begin()
        previous_mono, self._last_decision_mono = self._last_decision_mono, time.monotonic()
        wake = getattr(self.core, "wake", None)
        # Woken by the book alone: no event of ours, no command, no event seen by the last bookkeeping.
        book_only = not self._decide_again and not (wake is not None and wake.is_set()) and self._commands.empty()
        if probe is not None:  # why this decision runs (the probe names what a tick waited for)
            kind = ("tick decision" if self.reader.seq() != self._last_seq else
                    "event decision" if self._decide_again or (wake is not None and wake.is_set()) else
                    "command decision" if not self._commands.empty() else "timer decision")
        if wake is not None:
            wake.clear()  # before reading state: an event arriving during this decision wakes the next one
        self._apply_commands()
        if self._config_source is not None:
            self.config = self._config_source()
        if probe is not None:
            probe.mark("commands")
        snap = self.reader.snapshot()
        if probe is not None:
            probe.book_read()
        self.snapshot_at = self.clock()  # for the tick-to-decision benchmark: when the loop read this book
        new_tick = snap.seq != self._last_seq
        # The feed's publish time when this decision was woken by a new top of book (not by a status-only
        # sequence step, an order event or the clock): what tick-to-decision is measured from.
        self.tick_publish_ts = (max(snap.up.publish_ts, snap.down.publish_ts)
                                if new_tick and max(snap.up.seq, snap.down.seq) == snap.seq else None)
        self._last_seq = snap.seq
        now = self.clock()
        self._follow_rotation(snap, now)
        stale_ms = float(self.config.risk.stale_feed_ms)
        problem = self._market_problem(snap, now, stale_ms)
        view = None
        actions = 0
        if problem is None or problem.startswith(("feed", "book")):
            self._follow_tick_size(snap)
            # stale/crossed books still go through the pipeline: its risk gate cancels entries and refuses new
            # ones on a book that is not fresh (MarketView.fresh / crossed carry the verdict).
            reads = self._reads()
            inputs = self._inputs(snap, reads, now) if problem is None else None
            if probe is not None:
                probe.mark("prep")
            if (book_only and self.tick_publish_ts is not None and inputs is not None and inputs == self._decided_on
                    and self._last_decision_mono - previous_mono < DECIDE_EVERY_S):
                return self._unchanged_tick(snap, now, previous_mono, probe)
            view = self._view(snap, now, stale_ms, reads, probe)
            if probe is not None:
                probe.mark("view")
            self._decided_on = None  # until this decision is done (one that raises is not skipped next time)
            abort = None
            if not self._merged:  # once: the decision after a merge runs whatever comes meanwhile
                seq_now, read_seq = self.reader.seq, snap.seq
                abort = lambda: seq_now() != read_seq  # noqa: E731
            decided = self._decide_and_execute(view, now, snap, reads, abort)
            if decided is None:
                return self._newer_tick(previous_mono, probe, kind if probe is not None else "")
            self._merged = False
            actions, view = decided
            if inputs is not None and view.fresh and not view.crossed:
                self._decided_on = inputs
        else:
            self._decided_on = None
            self._refuse(problem, now)
        if self.tick_publish_ts is not None and view is not None and self._on_decision is not None:
            self._on_decision(snap, self._decided_at, self.clock())
        if probe is not None:
            probe.mark("hook")
        self._set_problem(problem, now)
        self._decisions += 1
        if self.notifier is not None:
            self.notifier.watchdog()
        # Bookkeeping after the orders are out (the hot path is snapshot -> decide -> execute): this series'
        # exposure for the wallet's other series, the core's events, unresolved exposure, the status. When the feed
        # has already published a newer book (a trade's `book` right after its `price_change`, the other leg's
        # frame: often within a decision's time), that tick is decided first and this waits (BOOKKEEPING_DEFER_S at
        # most): each of these only has to be current before a decision with no tick behind it.
        mono = self._last_decision_mono
        overdue = mono - self._bookkept_mono >= BOOKKEEPING_DEFER_S
        if self.reader.seq() == snap.seq or overdue:
            self._bookkeeping(view, now, actions, mono, probe, None if overdue else snap.seq)
        else:
            self._bookkeeping_due = (view, now, actions)
        if probe is not None:
            probe.end(self.tick_publish_ts if view is not None else None, kind)
        return actions

    # -- a tick that changes nothing the decision reads ----------------------------------------------

    def _inputs(self, snap, reads, now: float) -> tuple | None:
        """Everything a decision reads but the clock: the book as published (both legs, top and depth, which the
        market without us is computed from), the market, feed status and reference price, our orders, positions
        and the exchange's status (the core's published reads: the same objects until a writer changes them), the
        config, the operator's pause/flatten, cash, what earlier windows tie up and the wallet's limits. None (always
        decide) from a core that publishes no reads, and for a book with an empty side (NaN: equal to nothing, not
        even itself, so it is not compared at all)."""
        up, down = snap.up, snap.down
        if reads is None or not (up.bid == up.bid and up.ask == up.ask and down.bid == down.bid
                                 and down.ask == down.ask):
            return None
        wallet = self.wallet.decide_args(now) if self.wallet is not None else None
        return (snap.market, snap.status, snap.crossed, _reference_key(snap.ref),
                up.bid, up.bid_size, up.ask, up.ask_size, up.bids, up.asks,
                down.bid, down.bid_size, down.ask, down.ask_size, down.bids, down.asks,
                reads, self.config, self.paused, self.flattening, self._unresolved_usd, self._cash_arg(), wallet)

    def _newer_tick(self, previous_mono: float, probe, kind: str) -> int:
        """The feed published a newer book between this decision's book read and its pipeline (a trade's frames
        come 35-400 us apart): no decision on the older book. The loop comes straight back for the newer one, whose
        decision answers both ticks; deciding on the older first would have made the newer wait for it whole. Once
        in a row (`_merged`): a stream of ticks never starves the loop of decisions."""
        self._merged = True
        self._last_decision_mono = previous_mono  # not a decision: the periodic one's clock is left alone
        self.merged_ticks += 1
        if probe is not None:
            probe.end(None, kind)
        return 0

    def _unchanged_tick(self, snap, now: float, previous_mono: float, probe) -> int:
        """A tick whose book is the one last decided on, with nothing else changed (a trade's `last_trade_price`
        frame right after its `price_change`: the feed publishes it, the strategies do not read it). The decision
        would be the last one again; answered at once instead, it is no decision: the periodic one still comes
        DECIDE_EVERY_S after the last real one (time-driven rules), and the bookkeeping waits as it would."""
        self._last_decision_mono = previous_mono
        self._decided_at = self.clock()
        if probe is not None:
            probe.decided()
        self.unchanged_ticks += 1
        if self._on_decision is not None:
            self._on_decision(snap, self._decided_at, self.clock())
        if probe is not None:
            probe.mark("hook")
        if self.notifier is not None:
            self.notifier.watchdog()
        due = self._bookkeeping_due
        if due is not None and self.reader.seq() == snap.seq:
            self._bookkeeping(*due, self._last_decision_mono, probe, snap.seq)
        if probe is not None:
            probe.end(self.tick_publish_ts, "unchanged tick")
        return 0

    def _bookkeeping(self, view, now: float, actions: int, mono: float, probe=None, seq: int | None = None) -> None:
        """The iteration's work after the decision's orders are out. `seq`: the tick decided on; a newer one published
        meanwhile stops this between two stages, and the rest waits for that tick's decision (each stage reads the
        state of when it runs, so the later bookkeeping does it for both). Without `seq` (overdue: deferred for
        BOOKKEEPING_DEFER_S already), it runs to the end."""
        self._bookkeeping_due = None
        if seq is None:
            newer = None
        else:
            seq_now = self.reader.seq

            def newer() -> bool:
                if seq_now() == seq:
                    return False
                self._bookkeeping_due = (view, now, actions)
                return True
        if self._rotation_unsettled is not None:
            self._settle_rotation()
            if probe is not None:
                probe.mark("rotation")
        note, self._tick_note = self._tick_note, None
        if note is not None:
            log.info("tick size of %s: %g -> %g (both tokens)", note[0][:12], note[1], note[2])
        pending, self._wallet_after = self._wallet_after, None
        if pending is not None:
            self.wallet.after(*pending)
            if probe is not None:
                probe.mark("wallet publish")
            if newer is not None and newer():
                return
        # The core's events only say that something changed (orders()/positions() are the state the decision used),
        # but one that arrived during this decision may not have been seen by it: decide again at once.
        events = self.core.poll_events(wait=False)
        self._decide_again = bool(events)
        if self._older_markets_moved(events):
            self._unresolved_due = True  # kept for the later bookkeeping if this one stops here
        if probe is not None:
            probe.mark("events")
        if newer is not None and newer():
            return
        due, self._unresolved_due = self._unresolved_due, False
        self._refresh_unresolved(mono, due)
        if probe is not None:
            probe.mark("unresolved")
        if newer is not None and newer():
            return
        self._publish(view, now, actions)
        self._bookkept_mono = mono
        if probe is not None:
            probe.mark("status")

    # -- market checks and rotation -------------------------------------------------------------------

    def _follow_rotation(self, snap, now: float) -> bool:
        """At the window boundary the feed publishes the next market: hand it to the core and start afresh.

        Only forward in time, and only once the feed is connected on it: a feed that restarts and briefly
        shows an older window must not drag the trader back."""
        if self.market is None or snap.market.condition_id == self.market.condition_id:
            return False
        if snap.status not in TRADABLE_FEED_STATUS or int(snap.market.window_start) <= int(self.market.window_start):
            return False
        if now >= snap.market.window_end:
            return False
        new_market = identity_of(snap)
        old = self.market
        # The window's first decision waits for none of the rotation's paperwork (issue 26: its log lines, the
        # core's journal and ledger lines and user-channel subscription were ~0.5 ms of the decision thread at every
        # window start): the core switches markets in memory now and settles the rest in this decision's
        # bookkeeping, after its orders are out (place() settles first if an order comes before).
        reads = self._reads()
        settles = getattr(self.core, "settle_market", None) is not None
        if settles:
            self.core.set_market(new_market, settle_later=True)
            self._rotation_unsettled = (old, new_market)
        else:
            self._log_rotation(old, new_market)
            self.core.set_market(new_market)
        self.market = new_market
        self._pipeline_state = None
        self._tick_size = None
        # What earlier windows' positions tie up now includes the old window's: it is the old `unresolved` plus the
        # old window's positions as the last reads showed them (risk.unresolved_value is a sum). The exact refold
        # (every fill of every market, ~0.1-0.3 ms) follows in the bookkeeping.
        if reads is not None and reads[0].condition_id == old.condition_id:
            from polymm.trader.decision import risk

            self._unresolved_usd += risk.unresolved_value(list(reads[0].positions.values()))
            self._unresolved_due = True
        else:
            self._refresh_unresolved(self._last_decision_mono, True)
        return True

    @staticmethod
    def _log_rotation(old, new) -> None:
        log.info(
            "window rotation: %s (%s) -> %s (%s); positions of the old window are kept until it resolves",
            window_words(old.window_start, old.window_end), old.condition_id[:12],
            window_words(new.window_start, new.window_end), new.condition_id[:12],
        )

    def _settle_rotation(self) -> None:
        """A rotation's log line and the core's records for it (set_market(settle_later=True)), once."""
        rotation, self._rotation_unsettled = self._rotation_unsettled, None
        if rotation is not None:
            self._log_rotation(*rotation)
            # On a worker, after this decision, where the core can (its records and subscription: ~0.5 ms of I/O)
            settle = getattr(self.core, "settle_market_soon", None) or self.core.settle_market
            settle()

    def _follow_tick_size(self, snap) -> None:
        """Exchange quirk: the tick changes mid-window (0.01 -> 0.001 near 0 and 1, `tick_size_change`); the feed
        publishes it in shm and the execution core must round to it (the SDK's own tick cache never expires)."""
        tick = float(snap.market.tick_size)
        if tick > 0 and tick != self._tick_size:
            previous, self._tick_size = self._tick_size, tick
            # The core rounds to it from now on; the log line waits for the bookkeeping (three lines here were
            # ~0.2 ms of the decision, near a window's end where the tick changes).
            self.core.on_tick_size(snap.market.up_token, tick, log_change=False)
            self.core.on_tick_size(snap.market.down_token, tick, log_change=False)
            if previous is not None:
                self._tick_note = (snap.market.condition_id, previous, tick)

    def _market_problem(self, snap, now: float, stale_ms: float) -> str | None:
        """Why the shm book cannot be traded on as our market; words starting "feed"/"book" mean the pipeline
        still runs (with fresh=False) so its risk gate can cancel entries."""
        if self.market is None:
            return "not started"
        if snap.market.condition_id != self.market.condition_id or int(snap.market.window_start) != int(self.market.window_start):
            return (
                f"wrong window: feed shows {window_words(snap.market.window_start, snap.market.window_end)} "
                f"({(snap.market.condition_id or '?')[:12]}), trading {window_words(self.market.window_start, self.market.window_end)}"
            )
        if now >= self.market.window_end:
            return f"window {window_words(self.market.window_start, self.market.window_end)} has ended; waiting for the feed to rotate"
        return feed_problem(snap, now=now, stale_feed_ms=stale_ms, quiet_feed_ms=float(self.config.risk.quiet_feed_ms))

    def _refuse(self, problem: str, now: float) -> None:
        """No book for our market: cancel what we have working once, then wait."""
        if not self._cancelled_for_problem:
            self._cancelled_for_problem = True
            working = self.core.orders(working_only=True)
            if working:
                log.warning("not trading (%s): cancelling %d working order(s)", problem, len(working))
                self.core.cancel_all(reason=problem)

    def _set_problem(self, problem: str | None, now: float) -> None:
        # The old window over and the next one's book not out yet is a rollover, said at info level; it becomes a
        # warning only once it outlasts the grace (a slow rotation is worth a look, one per window is not).
        rollover = problem is not None and self.market is not None and now >= self.market.window_end
        if _problem_kind(problem) != _problem_kind(self._problem):
            if problem is None:
                log.info("trading again (was: %s)", self._problem)
            elif rollover:
                log.info("rollover: %s", problem)
            else:
                log.warning("not trading normally: %s", problem)
            self._problem_since = now if problem else None
            self._rollover_warned = False
        elif rollover and not self._rollover_warned and now - self.market.window_end > ROTATION_GRACE_S:
            self._rollover_warned = True
            log.warning("not trading normally: %s (for %.1f s since the window ended)", problem,
                        now - self.market.window_end)
        self._problem = problem
        if problem is None or problem.startswith(("feed", "book")):
            self._cancelled_for_problem = False

    # -- the pipeline -------------------------------------------------------------------------------

    def _view(self, snap, now: float, stale_ms: float, reads, probe=None) -> MarketView:
        """market_view() of `snap` with this loop's settings (a decision and a rehearsal see the same view), and the
        market's fee schedule from the core's published reads when they are of this market, else asked of the core."""
        if reads is not None and reads[0].condition_id == snap.market.condition_id:
            fee = reads[0].fee
        else:
            fee_of = getattr(self.core, "fee_schedule", None)
            fee = fee_of(snap.market.condition_id) if fee_of is not None else None
        if probe is not None:
            probe.mark("fee")
        return market_view(snap, now=now, stale_feed_ms=stale_ms, fair=self.fair,
                           quiet_feed_ms=float(self.config.risk.quiet_feed_ms),
                           stale_ref_ms=float(self.config.risk.stale_ref_ms), fee=fee,
                           reference=self.reference_source)

    def _reads(self):
        """(DecisionReads, ExchangeStatus) from the execution core without its lock (ExecutionCore.decision_reads),
        or None from a core that has none (tests' fakes): then orders(), positions() and state() are asked."""
        reads_of = getattr(self.core, "decision_reads", None)
        return reads_of() if reads_of is not None else None

    def _decide_and_execute(self, view: MarketView, now: float, snap=None, reads=None,
                            abort: Callable[[], bool] | None = None) -> tuple[int, MarketView] | None:
        """Decide on `view` net of our own orders and execute. Returns (actions, the view decided on); None when
        `abort()` said so before the pipeline ran (nothing decided, nothing done). `reads`: what `_reads()` returned,
        when it is of the market traded; otherwise the core is asked."""
        probe = self.probe
        thought = self._think(view, now, snap, reads, probe, abort)
        if thought is None:
            return None
        decision, view, orders, positions = thought
        self._decided_at = self.clock()
        if probe is not None:
            probe.decided()
        self._pipeline_state = decision.state
        self._notes = tuple(decision.notes)
        actions = decision.actions
        if self.wallet is not None:
            actions = self.wallet.admit(actions, decision.exposure_usd, now)
        batch = getattr(self.core, "batch", None)  # the core publishes what the next decision reads once, not per action
        with batch() if batch is not None and len(actions) > 1 else contextlib.nullcontext():
            for action in actions:
                self._execute(action)
        if probe is not None:
            probe.mark("execute")
        if self.wallet is not None:  # published with the bookkeeping (step): after a newer tick's decision if one waits
            self._wallet_after = (decision.exposure_usd, orders, positions, view, self.market, now)
        if self.flattening and getattr(decision, "flat", False):
            log.info("flatten done: no sellable position left; trader stays paused (mmctl resume to trade again)")
            self.flattening = False
        return len(actions), view

    def _think(self, view: MarketView, now: float, snap, reads, probe, abort: Callable[[], bool] | None = None):
        """The pipeline on `view` net of our own orders, acting on nothing and changing nothing of the loop's:
        (the Decision, the view decided on, the working orders and the positions it saw); None when `abort()` says
        so before the pipeline runs (a rehearsal that a new tick interrupts)."""
        if self._pipeline is None:
            from polymm.trader.decision import decide  # S1, S2, risk gate, planner

            self._pipeline = decide.decide
            self._new_state = decide.new_state
        if self._pipeline_state is None:
            self._pipeline_state = self._new_state(view)
        market = self.market.condition_id if self.market is not None else view.market.condition_id
        if reads is not None and reads[0].condition_id == market:
            mine, exchange = reads  # published by the core's writers: nothing to build or lock here
            orders = mine.orders
        else:
            mine = None
            orders = self.core.orders(working_only=True)
        if probe is not None:
            probe.mark("orders")
        if snap is not None and self.book_shows_our_orders:
            # The strategies read the market without us (strategies.md): subtract our resting orders, the same
            # ones the decision sees, from the published depth.
            up, down = snap.up, snap.down
            view = net_view(view, (up.bids, up.asks), (down.bids, down.asks), own_book(orders),
                            getattr(snap, "depth_levels", 0))
        if probe is not None:
            probe.mark("net")
        positions = mine.positions if mine is not None else self.core.positions()
        if probe is not None:
            probe.mark("positions")
        if mine is None:
            exchange = self._exchange_status()
        blocked_legs = dict(getattr(exchange, "blocked_legs", None) or {})
        halted = halt_reason(exchange)
        post_only_only = bool(getattr(exchange, "post_only_required", False))
        cash = self._cash_arg()
        if probe is not None:
            probe.mark("exchange")
        # the other series on this wallet: the limits its own thread computed (trader/wallet/), read here
        wallet = self.wallet.decide_args(now) if self.wallet is not None else {}
        if probe is not None:
            probe.mark("wallet")
        if abort is not None and abort():
            return None
        decision = self._pipeline(
            view, orders, positions, self.config, self._pipeline_state, now,
            paused=self.paused and not self.flattening, flatten=self.flattening,
            blocked_legs=blocked_legs, halt_reason=halted, post_only_only=post_only_only,
            unresolved_usd=self._unresolved_usd, **cash, **wallet,
        )
        return decision, view, orders, positions

    def _rehearse(self) -> None:
        """The tick path on the current book, its decision dropped: keeps the code and data a decision touches in
        the CPU's caches while the book is quiet (WARM_EVERY_S). Changes nothing: the pipeline is pure, its state is
        not kept, nothing is executed, claimed or published (the fair value's estimator ignores a reference point it
        has; the wallet's limits are only read)."""
        if self.market is None or self._pipeline_state is None:
            return
        # A tick published meanwhile ends the rehearsal at the next step: the real decision must not wait for it
        # (a rehearsal runs while other threads may take the GIL, and was seen stretched to 0.6 ms).
        seq, last = self.reader.seq, self._last_seq
        snap = self.reader.snapshot()
        if snap.seq != last:
            return
        now = self.clock()
        stale_ms = float(self.config.risk.stale_feed_ms)
        problem = self._market_problem(snap, now, stale_ms)
        if problem is not None and not problem.startswith(("feed", "book")):
            return
        reads = self._reads()
        self._inputs(snap, reads, now)
        view = self._view(snap, now, stale_ms, reads)
        if seq() != last:
            return
        self._think(view, now, snap, reads, None, abort=lambda: seq() != last)

    def _cash_arg(self) -> dict:
        cash = None
        if self.cash is not None:
            try:
                cash = self.cash()
            except Exception:  # a missing figure must never stop a decision
                cash = None
        return {} if cash is None else {"cash_usd": cash}

    def _exchange_status(self):
        try:
            return self.core.state()
        except Exception:  # the exchange's status must never stop a decision
            log.exception("execution core state() failed")
            return None

    def _older_markets_moved(self, events) -> bool:
        """Whether core events can have moved what earlier windows' positions tie up (`_unresolved_usd`): a fill,
        or an order's fill, in another market than the one traded (or in one not known), a resolution, anything
        else. Not our orders' comings and goings, the exchange's status, or fills in the market traded: most events,
        and folding every fill of every market after each was 0.08-0.17 ms of the loop's time (issue 26)."""
        current = self.market.condition_id if self.market is not None else None
        for event in events:
            if type(event) is StatusChanged:
                continue
            if type(event) is OrderChanged and (event.order.filled <= 0 or event.order.condition_id == current):
                continue
            if type(event) is FillChanged and event.condition_id and event.condition_id == current:
                continue
            return True
        return False

    def _refresh_unresolved(self, now_mono: float, changed: bool) -> None:
        """Exposure of earlier windows' positions awaiting resolution (counts against the total cap).
        Folding every fill is cheap but not free: only after core events, a rotation, or once a second."""
        if not changed and now_mono - self._unresolved_at < 1.0:
            return
        self._unresolved_at = now_mono
        pending = getattr(self.core, "pending_resolution", None)
        if pending is None:
            return
        try:
            held = [p for _market, positions in pending() for p in positions.values()]
        except Exception:
            log.exception("pending_resolution() failed")
            return
        from polymm.trader.decision import risk  # the one rule for what unresolved positions tie up

        self._unresolved_usd = risk.unresolved_value(held)

    def _execute(self, action) -> None:
        """planner.Place (has `.want`) or planner.Cancel (has `.client_id`, `.reason`)."""
        want = getattr(action, "want", None)
        if want is not None:
            self.core.place(want)
        elif getattr(action, "client_id", None) is not None:
            self.core.cancel(action.client_id, action.reason)
        else:  # a new action type the loop does not know must not be dropped silently
            log.error("decision returned an unknown action %r; ignored", action)

    # -- commands -------------------------------------------------------------------------------------

    def _apply_commands(self) -> None:
        if self._commands.empty():  # the usual case: no exception raised and caught below
            return
        with realtime.unpinned():  # a restart starts threads: not on the loop's CPU
            while True:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    return
                try:
                    cmd.result = self._apply(cmd)
                except Exception as exc:  # a failed command is reported to the operator, the loop carries on
                    log.exception("command %s failed", cmd.kind)
                    cmd.error = f"{type(exc).__name__}: {exc}"
                finally:
                    cmd.paused = self.paused
                    cmd.done.set()

    def _apply(self, cmd: Command) -> str:
        kind = cmd.kind
        if kind == "pause":
            was = self.paused
            self.paused = True
            n = cmd.count = len(self.core.orders(working_only=True))
            self.core.cancel_all(reason="paused by operator")
            log.warning("paused by operator: %d working order(s) cancelled, positions kept", n)
            return f"paused{' (already paused)' if was else ''}: {n} working order(s) cancelled, positions kept"
        if kind == "resume":
            was_paused, was_flattening = self.paused, self.flattening
            self.paused = False
            self.flattening = False
            log.warning("resumed by operator")
            if not was_paused and not was_flattening:
                return "running (was not paused)"
            return "running: strategies trade again from the next decision"
        if kind == "cancel_all":
            n = cmd.count = len(self.core.orders(working_only=True))
            self.core.cancel_all(reason="operator cancel-all")
            log.warning("cancel-all by operator: %d working order(s)", n)
            return f"{n} working order(s) cancelled; strategies may quote again at the next decision" + (
                "" if not self.paused else " (paused: they will not)")
        if kind == "flatten":
            self.paused = True
            self.flattening = True
            n = cmd.count = len(self.core.orders(working_only=True))
            self.core.cancel_all(reason="flatten by operator")
            log.warning("flatten by operator: %d working order(s) cancelled, selling every sellable position; paused", n)
            return (f"flattening: {n} working order(s) cancelled, every sellable position sold with fill-and-kill "
                    "orders; the trader stays paused (mmctl resume to trade again)")
        if kind == "set_config":
            self.config = self._config_source() if self._config_source is not None else cmd.payload
            return "applied"
        if kind == "restart":
            return self._restart(cmd)
        raise ValueError(f"unknown command {kind!r}")

    def _restart(self, cmd: Command | None = None) -> str:
        """In-process restart: cancel, reconnect, reconcile, re-read config. Paused/flatten, the strategies'
        window state and the core's fill store survive (a restart never doubles a position)."""
        log.warning("in-process restart: cancelling orders, reconnecting, reconciling, re-reading config")
        self.status = dataclasses.replace(self.status, state="restarting", restarting=True)
        notes = []
        if self._reconfigure is not None:
            try:
                new = self._reconfigure()
                self.config = self._config_source() if self._config_source is not None else new
                notes.append("config re-read")
            except Exception as exc:  # keep the old config: a broken file must not stop trading
                words = f"config NOT re-read, old config kept: {getattr(exc, 'message', None) or exc}"
                notes.append(words)
                if cmd is not None:
                    cmd.warnings.append(words)
                log.error("restart: config re-read failed, old config kept: %s", exc)
        if self._reconnect_reader is not None:
            self.reader = self._reconnect_reader()
            self._last_seq = -1
            notes.append("feed re-attached")
        restart = getattr(self.core, "restart", None)
        if restart is not None:
            restart("operator restart")
        else:
            self.core.cancel_all(reason="operator restart")
            self.core.reconcile("operator restart")
        notes.append("orders cancelled, exchange reconciled")
        return "restarted: " + "; ".join(notes)

    # -- status -------------------------------------------------------------------------------------

    def _publish(self, view: MarketView | None, now: float, actions: int) -> None:
        if self.flattening:
            state = "flattening"
        elif self.paused:
            state = "paused"
        elif self._problem is not None:
            state = "stale_feed" if self._problem.startswith("feed") else (
                "crossed_book" if self._problem.startswith("book crossed") else "waiting_for_feed")
        else:
            state = "running"
        rotating = self._problem is not None and self.market is not None and now >= self.market.window_end
        self.status = EngineStatus(
            state=state, paused=self.paused, flattening=self.flattening, market=self.market, market_view=view,
            problem=self._problem, decisions=self._decisions, last_decision_at=now, last_actions=actions,
            config=self.config, decision_notes=self._notes, problem_since=self._problem_since,
            rotating_since=float(self.market.window_end) if rotating else None,
        )
