"""ExecutionCore: makes the exchange agree with what the strategies want, and knows at every moment
what is open, what filled and what we hold.

The pipeline, one module each: this module is the core itself (life cycle, threads, the non-blocking intents
place/cancel/cancel_all); workers.py does the I/O to the exchange (sign + POST, DELETE, balance); sync.py keeps
the state in step with the exchange (user channel, heartbeat trips, reconciliation, lookups, maintenance);
views.py is the read side and what each change tells others (events, ledger, journal, log, metrics). The order
and fill state is an object of its own, state.ExecutionState (`exec_state`): its only writer, with the small
interface those parts use (orders.OrderBook by order id, fills.FillStore by trade id, reconcile.py's diff of the
exchange's view against ours live inside it); limits.py holds the timings. What the core itself keeps is the
machinery: threads, the exchange's state (exchange_state.py), timings of lookups and re-sends, the journal file.

Threads (the decision loop never blocks on the network):
- callers (decision loop, control thread): place/cancel/cancel_all only record intent under the lock
  and hand the I/O to a worker pool; orders/positions/fills/pnl/state return copies under the lock.
- workers (`polymm-exec-*`): sign + POST orders, DELETE cancels, balance refreshes.
- `polymm-user-ws`: user channel events -> order book + fill store.
- `polymm-heartbeat`: the dead-man switch, every 5 s.
- `polymm-exec-maint`: every 0.25 s - exchange-state expiry, lookups of orders whose submit outcome is
  unknown (GET /data/order; never assumed rejected, never resent), cancels to re-send, reconciliation
  (after a user-socket reconnect, after heartbeats recover, and every `reconcile_every_s`).

Answers to the integrator (H), as promised:
1. Scope: orders() and positions() cover the CURRENT market (set by start/set_market) unless a
   `condition_id` is given; fills() covers all markets unless one is given. Older markets whose
   positions await resolution: pending_resolution(). pnl() covers every market, payouts included.
   Resolution: call resolve_market(condition_id, winning_leg) when the feed sees `market_resolved`;
   orders the exchange cancels at resolution end `canceled`. Tick changes: call on_tick_size(token, tick).
   Orders found on our wallet in our markets that this trader did not place (journal lost) are tracked
   with strategy "external": cancel_all()/stop() cancel them too (an unmanaged resting order is risk).
2. Every public method is thread-safe (one RLock, the state's; views are frozen copies).
3. restart(reason): cancel our orders, reconnect user WS + heartbeats, reconcile - keeps fills/positions.
   stop() + start() on the same instance is also supported. When the exchange cannot be reached, restart()
   raises ExchangeError AND keeps retrying start() every RESTART_RETRY_S in the background (status warns),
   so the core is never left silently stopped.
4. on_submit_sent(client_id, unix_s) is called in the worker right before the POST is written.
5. start() raises wallet_lock.WalletLocked (message names the holder pid) when another trader holds the
   wallet on this machine, whatever its state directory (only when a state_dir is given - the service passes
   polymm.env.state_dir()),
   and exchange_state.ExchangeError when the exchange cannot be reached or the first reconciliation
   fails (never trades on an unchecked state; start() may be called again).
6. Gateway.from_env(clob_url=...) raises gateway.ConfigError (a ValueError; never contains a secret).
7. place() never raises for exchange reasons: refused orders end `rejected` with the reason logged
   (exchange state, blocked leg, min size, core not running during a restart). It raises RuntimeError only
   before the first start(). The core may lower a size to what the exchange's amount precision accepts
   (logged as `order resize`), and rounds an off-tick price to the current tick (BUY down, SELL up).
8. (21:24 race report) orders() + positions() never under-count: shares the exchange reports matched on
   an order (order UPDATE / POST answer) before the trade report arrives count as a provisional position
   at the order's price (see _holdings); the trade replaces it, a FAILED trade still reverses it.

9. Memory stays bounded over weeks: done orders are kept an hour; a market over for a day with nothing left
   to settle (resolved or flat, no working order) is folded into pnl() and its fills, orders and journal
   attributions are dropped (prune(), every minute); the journal file is compacted every 6 h. positions()
   folds only the current market's fills. After a restart, unresolved markets with journaled orders have
   their trades read once however long ago they ended (a held position is never lost).

Every order action is logged as one line:
`order <action> id=<order_id|client_id> strategy=s1 leg=up side=BUY price=0.61 size=6.55 type=GTC post_only=1 reason=<words>`
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from polymm import realtime
from polymm.trader.execution.cash import CashBook, PollToken
from polymm.trader.execution.exchange_state import ExchangeError, ExchangeState
from polymm.trader.execution.limits import DEAD_MAN_SWITCH_OFF, RESTART_RETRY_S
from polymm.trader.execution.order_journal import OrderJournal
from polymm.trader.execution.orders import Transition
from polymm.trader.execution.state import ExecutionState, _fmt
from polymm.trader.execution.sync import ExchangeSync
from polymm.trader.execution.views import StateViews
from polymm.trader.execution.wallet_lock import WalletLock
from polymm.trader.execution.workers import SubmitWorkers
from polymm.trader.priority import DecisionGate
from polymm.trader.model import ExchangeStatus, Leg, MarketIdentity, MarketResolvedEvent, OrderView, Role, Want
from polymm.trader.venue.gateway import Gateway
from polymm.trader.venue.heartbeat import Heartbeater
from polymm.trader.venue.user_stream import UserStream
from polymm.series import ALL_NAMES as SERIES_NAMES

__all__ = ["ExecutionCore", "MarketIdentity"]  # MarketIdentity lives in model; re-exported for callers

log = logging.getLogger("polymm.trader.execution")




class ExecutionCore(StateViews, SubmitWorkers, ExchangeSync):
    def __init__(self, gateway: Gateway, *, clock: Callable[[], float] = time.time, ws_user_url: str | None = None,
                 state_dir: str | Path | None = None, workers: int = 3, reconcile_every_s: float = 30.0,
                 heartbeat_interval_s: float = 5.0, heartbeat_max_failures: int = 2,
                 unknown_lookup_every_s: float = 1.0, unknown_max_lookups: int = 5,
                 on_submit_sent: Callable[[str, float], None] | None = None,
                 ws_connect_wait_s: float = 5.0, ws_backoff_s: float = 0.5, ws_ping_every_s: float = 10.0,
                 post_only_after_restart_s: float = 120.0, heartbeat: bool = True, ledger=None,
                 user_stream: type = UserStream, series: str | None = None, wallet=None) -> None:
        self.gateway = gateway
        # The series this trader trades (polymm/series.py name; None: the whole wallet, as before series existed):
        # its lock is per (wallet, series) and its order journal is its own. `wallet` (trader/wallet/
        # WalletCoordinator): the traders of the other series on this wallet; heartbeats go through it.
        self.series = series
        self.wallet = wallet
        # trader/ledger.LedgerWriter (or None): every order action, fill, window and resolution is queued to it
        # (never blocking). While it cannot write, new entries are refused (we never open a position without a
        # record); exits and stops still go out.
        self.ledger = ledger
        # The user channel's class: the WebSocket live, the paper exchange's in-process channel in paper mode
        # (trader/paper/), which also stands in for the gateway; the core cannot tell them apart.
        self._user_stream_cls = user_stream
        # risk.heartbeat (start-time config): False = never arm the exchange's dead-man switch. Said in status
        # for as long as it holds, because a trader that dies then leaves its orders resting.
        self.heartbeat_enabled = heartbeat
        self.clock = clock
        self.ws_user_url = ws_user_url
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.reconcile_every_s = reconcile_every_s
        self.unknown_lookup_every_s = unknown_lookup_every_s
        self.unknown_max_lookups = unknown_max_lookups
        self.on_submit_sent = on_submit_sent
        self.ws_connect_wait_s = ws_connect_wait_s
        self._workers = workers
        self._heartbeat_interval_s = heartbeat_interval_s
        self._heartbeat_max_failures = heartbeat_max_failures

        self.wake = threading.Event()
        # The decision loop's gate (trader/priority.py; the service gives the engine's): the user channel and the
        # workers give way to a decision at their safe points, where they hold no lock.
        self.gate = DecisionGate.NONE
        # Our orders, fills, markets and positions (state.py): the core and its parts change them only through
        # its methods. Its lock is the core's: a few compound steps (place: the exchange's refusal, then the
        # record) hold it across the exchange state too.
        self.exec_state = ExecutionState()
        self._lock = self.exec_state.lock
        self._reconcile_lock = threading.Lock()
        self._events: list[object] = []
        # The wallet's cash: the exchange's last balance + our fills since (cash.py); the balance watcher polls
        self._cash = CashBook()
        self._xstate = ExchangeState(post_only_after_restart_s=post_only_after_restart_s)
        self._ws_backoff_s = ws_backoff_s
        self._ws_ping_every_s = ws_ping_every_s
        self._last_status: ExchangeStatus | None = None
        self._journal: OrderJournal | None = None
        self._wallet_lock: WalletLock | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stream: UserStream | None = None
        self._heart: Heartbeater | None = None
        self._maint: threading.Thread | None = None
        self._stop = threading.Event()
        self._ws_connected = threading.Event()
        self._reconcile_wanted: str | None = None
        self._trades_checked_for: dict[str, bool] = {}  # unknown orders whose lookup came back empty once
        self._last_reconcile_mono = 0.0
        self._last_lookup: dict[str, float] = {}
        self._last_cancel_sent: dict[str, float] = {}  # client id -> monotonic time of the last re-send
        self._last_prune_mono = time.monotonic()
        self._last_compact_mono = time.monotonic()
        self._needs_lookup: set[str] = set()  # orders whose cancel was refused: ask the exchange
        # Each market's taker fee schedule is read from the exchange (GET /clob-markets) once per market; a market
        # whose schedule could not be read is charged DEFAULT_SCHEDULE (and status says so) until a retry works.
        self._fee_attempt: dict[str, float] = {}  # condition id -> monotonic time of the last failed read
        self._side_lookup: dict[str, float] = {}  # pending sideless maker orders -> last lookup (monotonic)
        self._last_version_probe = 0.0
        self._last_reconcile_error: ExchangeError | None = None
        self._running = False
        self._retrier: threading.Thread | None = None  # retries start() after a failed restart()
        self._retry_stop = threading.Event()
        self._foreign_events = 0  # user-channel events of markets we do not trade (another series'): dropped
        # A window rotation's records still to write (set_market(settle_later=True)): (market, previous, new, ts)
        self._unsettled: tuple[MarketIdentity, MarketIdentity | None, bool, float] | None = None
        self._settle_lock = threading.Lock()  # held while a market is settled: settle_market() returns once it is

    # ================================================================================================
    # cash (cash.py): our fills move it at once, the balance watcher's polls put it right
    # ================================================================================================
    def cash_usd(self) -> float | None:
        """The wallet's pUSD: the exchange's last balance plus our fills since it was asked (None before a poll).
        Without the lock: every decision reads it (risk spends no more), and the cash book keeps it as one float
        replaced whole by each change under the lock; waiting for a writer here cost decisions 0.2-0.7 ms (issue 26)."""
        return self._cash.now_usd

    def cash_warning(self) -> str | None:
        with self._lock:
            return self._cash.warning

    def cash_moves(self) -> int:
        """Cash moves counted so far: what the wallet's other series compare their polls against (cash.py). One int
        read whole, without the lock: every decision's wallet publish reads it (issue 26)."""
        return self._cash.moves

    def cash_poll_asked(self, others: object = None) -> PollToken:
        with self._lock:
            return self._cash.poll_asked(self.clock(), others)

    def cash_poll_answered(self, token: PollToken, balance_usd: float, others: object = None) -> None:
        with self._lock:
            before = self._cash.warning
            self._cash.poll_answered(token, balance_usd, self.clock(), others)
            after = self._cash.warning
        if after and after != before:
            log.warning("%s", after)
        elif before and not after:
            log.info("cash agrees with the exchange again")

    def cash_external(self, usd: float) -> None:
        """pUSD moved outside our fills (a confirmed redemption or merge): cash counts it at once."""
        with self._lock:
            self._cash.on_external(usd, self.clock())

    def cash_poll_failed(self) -> None:
        with self._lock:
            self._cash.poll_failed()

    def cash_repoll_due(self) -> float | None:
        """When the balance should be asked again sooner than usual (a fill in doubt), or None."""
        with self._lock:
            return self._cash.repoll_due

    # ================================================================================================
    # life cycle
    # ================================================================================================
    def start(self, market: MarketIdentity) -> None:
        """Lock the wallet, get API credentials, connect the user channel, reconcile with the exchange
        BEFORE any new order, then start heartbeats. Raises WalletLocked / ExchangeError."""
        if self._running:
            raise RuntimeError("ExecutionCore already started")
        now = self.clock()
        if self.state_dir is not None and self._wallet_lock is None:
            lock = WalletLock(self.state_dir, self.gateway.funder, series=self.series, series_names=SERIES_NAMES)
            lock.acquire()
            self._wallet_lock = lock
        try:
            self.gateway.connect()
            with self._lock:
                self._xstate.order_version_problem = self.gateway.version_problem
            self.exec_state.set_identity(self.gateway.api_key, self.gateway.funder)
            if self.state_dir is not None and self._journal is None:
                tail = "" if self.series in (None, SERIES_NAMES[0]) else f"-{self.series}"
                self._journal = OrderJournal(self.state_dir / f"orders-{self.gateway.funder.lower()}{tail}.jsonl")
                self._load_journal(self._journal, now)
            self._register_market(market, now)
            self.exec_state.set_current(market)
            self._load_fee_schedule(market.condition_id)  # before any order: the strategies' net-of-fee rule
            for cond in [c for c in self.exec_state.backfill_markets() if c != market.condition_id]:
                # Unresolved markets from the journal: the first reconciliation books their missed taker fills.
                self._load_fee_schedule(cond, warn=False)
            try:
                self._xstate.set_closed_only(self.gateway.closed_only())
            except ExchangeError as err:
                log.warning("could not read closed-only status: %s", err)
            self._stop.clear()
            # Workers are started as orders come, often by the decision loop (its hand-offs): not on its CPU.
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="polymm-exec",
                                            initializer=realtime.ordinary_thread)
            if self.ws_user_url:
                self._ws_connected.clear()
                self._stream = self._user_stream_cls(self.ws_user_url, self.gateway.ws_auth, self._tracked_markets,
                                          self._on_ws_events, self._on_ws_connected, self._on_ws_disconnected,
                                          backoff_initial_s=self._ws_backoff_s, ping_every_s=self._ws_ping_every_s)
                self._stream.start()
                if not self._ws_connected.wait(self.ws_connect_wait_s):
                    log.warning("user channel not connected after %.0f s; reconciling from REST and retrying",
                                self.ws_connect_wait_s)
            # Arm the dead-man switch before anything can rest on the book (unless risk.heartbeat = false).
            if self.heartbeat_enabled:
                send, interval = (lambda heartbeat_id: self.gateway.heartbeat(heartbeat_id)), self._heartbeat_interval_s
                if self.wallet is not None and self.wallet.lead:
                    # One heartbeat chain per API key, shared by every series of the wallet: the leader sends it
                    # every interval, the others confirm it each second (trader/wallet/). (Paper: each paper
                    # exchange is its own, with nothing to share.)
                    send = self.wallet.heartbeat_send(send)
                    interval = min(1.0, interval)
                self._heart = Heartbeater(send, self._on_heartbeat_tripped, self._on_heartbeat_recovered,
                                          clock=self.clock, interval_s=interval,
                                          max_failures=self._heartbeat_max_failures)
                self._heart.beat_once()
            else:
                with self._lock:
                    self._xstate.extra_warnings["dead_man_switch"] = DEAD_MAN_SWITCH_OFF
                log.warning("%s", DEAD_MAN_SWITCH_OFF)
            if not self.reconcile("start"):
                # Never trade on a state we could not check against the exchange.
                raise self._last_reconcile_error
            if self._heart is not None:
                self._heart.start()
            self._maint = threading.Thread(target=self._maintenance, name="polymm-exec-maint", daemon=True)
            self._maint.start()
            self._running = True
            with self._lock:
                self._xstate.extra_warnings.pop("core", None)
            self._emit_status()
        except BaseException:
            self._shutdown_threads()
            raise

    def set_market(self, market: MarketIdentity, *, settle_later: bool = False) -> None:
        """Window rotation: trade `market` from now on; older markets stay tracked (fills, positions)
        until resolved.

        `settle_later` (the decision loop, at the window's first tick): only what the next decision reads happens
        now: the market is tracked and current, in one publish. Its records (the order journal's and the ledger's
        lines), the user channel's subscription, the log line and the status wait for settle_market(), which the
        loop hands to a worker once that decision is done (settle_market_soon). Together they were ~0.4-0.6 ms of
        the decision thread at every window start (issue 26). An order's worker settles first when the order comes
        before that, so the journal names a market before any order in it, and the subscription goes out before
        the order does (as without it)."""
        now = self.clock()
        with self._lock:
            with self.exec_state.writing():  # register and switch: the decision reads are published once
                new = self.exec_state.register_market(market)
                previous = self.exec_state.set_current(market)
            # A new window is a new chance for a leg blocked on balance (the cache is refreshed first).
            self._xstate.clear_blocks()
            unsettled, self._unsettled = self._unsettled, (market, previous, new, now)
        if unsettled is not None:
            # Two rotations with no settle between (a loop whose decisions all fail): the skipped market's records.
            with self._settle_lock:
                self._settle(*unsettled)
        if not settle_later:
            self.settle_market()

    def settle_market(self) -> None:
        """The rest of a set_market(settle_later=True): records, subscription, log line, status. Idempotent, from
        any thread: it returns once the market is settled, by this caller or by another one already at it (so a
        window's first order, whose worker settles first, is journaled after its market and posted after the
        subscription)."""
        with self._settle_lock:
            with self._lock:
                unsettled, self._unsettled = self._unsettled, None
            if unsettled is not None:
                self._settle(*unsettled)

    def settle_market_soon(self) -> None:
        """settle_market() on a worker once the decision in progress is done (trader/priority.py): the decision
        loop's bookkeeping after a window's first decision hands it over instead of doing it (~0.5 ms of journal
        and ledger lines, the user channel's subscribe and the status, which no decision waits for). At once, here,
        without a running pool."""
        if self._unsettled is None:
            return
        pool = self._pool
        if pool is None or not self._running:
            self.settle_market()
            return
        self._hand_to_worker(pool, self._settle_on_worker, closed=self.settle_market)  # (stop() settles too)

    def _settle_on_worker(self) -> None:
        try:
            self.settle_market()
        except Exception:  # noqa: BLE001 - a pool would swallow it: say it (stop() and the next order retry it)
            log.exception("settling the new market (journal, ledger, user channel subscription) failed")

    def _settle(self, market: MarketIdentity, previous: MarketIdentity | None, new: bool, now: float) -> None:
        if new:
            if self._journal is not None:
                self._journal.market(market, now)
            if self.ledger is not None:
                self.ledger.window(market, ts=now)
        if self._stream is not None and (previous is None or previous.condition_id != market.condition_id):
            self._stream.subscribe([market.condition_id])
        log.info("market set: %s window %d-%d tick %s", market.condition_id, market.window_start,
                 market.window_end, _fmt(market.tick_size))
        self._emit_status()

    def stop(self, cancel_orders: bool = True) -> None:
        """SIGTERM path: cancel our open orders (waiting briefly for unanswered submits), stop threads."""
        self.settle_market()  # a window rotation's records are written, even this close to it
        self._retry_stop.set()
        retrier = self._retrier
        if retrier is not None and retrier is not threading.current_thread():
            retrier.join(timeout=30)
        if cancel_orders and self._pool is not None:
            self._cancel_everything("shutdown", wait_s=5.0)
            left = [o for o in self.exec_state.all_orders() if o.order_id]
            if left:
                # Leave nothing of ours resting unwatched: every order in our markets (never another series').
                self._cancel_markets_on_exchange(f"shutdown with {len(left)} order(s) unconfirmed")
        self._shutdown_threads()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._wallet_lock is not None:
            self._wallet_lock.release()
            self._wallet_lock = None
        log.info("execution core stopped")

    def restart(self, reason: str) -> None:
        """In-process restart (mmctl restart): cancel our orders, reconnect the user channel and
        heartbeats, reconcile. Fills, positions and the journal are kept."""
        log.warning("execution core restart: %s", reason)
        if self.ledger is not None:
            self.ledger.event("core-restart", reason, ts=self.clock())
        market = self.exec_state.current
        if market is None:
            raise RuntimeError("restart before start")
        self._cancel_everything(f"restart: {reason}", wait_s=5.0)
        self._shutdown_threads()
        try:
            self.start(market)
        except ExchangeError as err:
            # Never left silently stopped (every order refused, nobody retrying): keep trying in the
            # background, say so in status, and let the caller report the failure.
            log.error("restart: exchange not reachable (%s); no orders until a retry succeeds (every %.0f s)",
                      err, RESTART_RETRY_S)
            self._retry_start(market)
            raise

    def _retry_start(self, market: MarketIdentity) -> None:
        with self._lock:
            self._xstate.extra_warnings["core"] = "execution core stopped after a failed restart; retrying"
            if self._retrier is not None and self._retrier.is_alive():
                return
            self._retry_stop.clear()
            self._retrier = threading.Thread(target=self._retry_loop, args=(market,), name="polymm-exec-restart",
                                             daemon=True)
            self._retrier.start()
        self._emit_status()

    def _retry_loop(self, market: MarketIdentity) -> None:
        while not self._retry_stop.wait(RESTART_RETRY_S):
            if self._running:
                return
            try:
                self.start(self.exec_state.current or market)
            except ExchangeError as err:
                log.warning("restart retry: exchange still not reachable (%s)", err)
                continue
            except Exception:  # noqa: BLE001 - keep retrying; a dead retrier would leave the core stopped
                log.exception("restart retry failed")
                continue
            log.warning("restart retry: execution core running again")
            return

    def _shutdown_threads(self) -> None:
        self._running = False
        self._stop.set()
        if self._heart is not None:
            self._heart.stop()
            self._heart = None
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
        if self._maint is not None and self._maint is not threading.current_thread():
            self._maint.join(timeout=5)
        self._maint = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None

    # ================================================================================================
    # intents (non-blocking)
    # ================================================================================================
    def batch(self):
        """Several place()/cancel() calls in a row (one decision's actions) under the lock, the decision's reads
        published once at the end instead of after each (each publish folds the market's holdings: ~0.05-0.1 ms).
        The workers they hand submits to start when the batch ends."""
        return self.exec_state.writing()

    def place(self, want: Want) -> str:
        """Record the order and hand the submit to a worker; returns its client id at once. An order the
        core refuses locally (exchange state, blocked leg, off-tick price, below min size) ends `rejected`
        with the reason logged."""
        now = self.clock()
        with self._lock:
            pool = self._pool
            order = self.exec_state.new_order(want, now)  # RuntimeError before start()
            refusal = self._local_refusal(order, now)
            if refusal is None and (pool is None or not self._running):
                refusal = "execution core not running (starting, restarting or stopped)"
            if refusal is not None:
                t = self.exec_state.reject(order.client_id, refusal, now)
                self._log_order("refused", t.after, refusal, logging.WARNING)
                self._order_event(Transition(None, t.after))
                return order.client_id
            self._order_event(Transition(None, order))
        # Handed to a worker once the decision is done: its signing must not take the GIL from the rest of the
        # decision's actions and bookkeeping.
        self._hand_to_worker(pool, self._submit, order.client_id, closed=lambda: self._never_sent(order.client_id))
        return order.client_id

    def _never_sent(self, client_id: str) -> None:
        """stop()/restart() shut the pool between place() and its hand-off: the order ends rejected, never pending."""
        with self._lock:
            why = "execution core stopping: the order was not sent"
            t = self.exec_state.reject(client_id, why, self.clock())
            self._order_event(t)
            self._log_order("refused", t.after, why, logging.WARNING)

    def _hand_to_worker(self, pool: ThreadPoolExecutor, work: Callable, *args, closed: Callable[[], None]) -> None:
        """`work(*args)` on a worker once the decision in progress, if any, is done (trader/priority.py); `closed()`
        instead when the pool has shut down meanwhile."""
        def start() -> None:
            try:
                pool.submit(work, *args)
            except RuntimeError:
                closed()

        self.gate.defer(start)

    def _local_refusal(self, order: OrderView, now: float) -> str | None:
        """What the exchange lets us do now (exchange_state.py), the ledger's health, then the market's rules
        (ExecutionState.refusal)."""
        refusal = self._xstate.refuse_reason(order.leg, order.side, order.post_only, now)
        if refusal is not None:
            return refusal
        if order.role is Role.ENTRY and self.ledger is not None and self.ledger.error:
            return "ledger cannot be written: no new entries until it can (exits and stops still go out)"
        return self.exec_state.refusal(order.client_id, now)

    def cancel(self, client_id: str, reason: str) -> None:
        """Cancel one order (by client id or exchange id). Deferred while its submit is unanswered."""
        now = self.clock()
        with self._lock:
            action, t = self.exec_state.request_cancel(client_id, reason, now)
            if action == "noop" or t is None:
                return
            self._order_event(t)
            order = t.after
            if action == "deferred":
                self._log_order("cancel-deferred", order, f"{reason} (submit unanswered)")
                return
            if action == "held":
                self._log_order("cancel-held", order, f"{reason} (the exchange's minimum order age or taker delay: "
                                f"sent in {order.hold_until - now:.2f} s)")
                return
            self._log_order("cancel", order, reason)
            pool = self._pool
            if pool is None:
                self.exec_state.cancel_unsent([order.client_id])  # the maintenance pass sends it once started
                return
        self._submit_cancels(pool, [order.client_id])

    def cancel_all(self, reason: str) -> None:
        """Cancel every working order of ours (all markets); unanswered submits are cancelled once known."""
        now = self.clock()
        to_send = []
        with self._lock:
            for action, t in self.exec_state.request_cancel_all(reason, now):
                self._order_event(t)
                if action == "send":
                    self._log_order("cancel", t.after, reason)
                    to_send.append(t.after.client_id)
                elif action == "held":
                    self._log_order("cancel-held", t.after, f"{reason} (the exchange's minimum order age or taker "
                                    f"delay: sent in {t.after.hold_until - now:.2f} s)")
                else:
                    self._log_order("cancel-deferred", t.after, f"{reason} (submit unanswered)")
            pool = self._pool
            if pool is None:
                self.exec_state.cancel_unsent(to_send)  # sent by the maintenance pass once started
                return
        if to_send:
            self._submit_cancels(pool, to_send)

    def _submit_cancels(self, pool: ThreadPoolExecutor, client_ids: list[str]) -> None:
        """Hand cancels to a worker; a pool shutting down leaves them to be (re)sent, never dropped."""
        self._hand_to_worker(pool, self._send_cancels, client_ids,
                             closed=lambda: self.exec_state.cancel_unsent(client_ids))

    def on_tick_size(self, token_id: str, tick: float, *, log_change: bool = True) -> float | None:
        """`tick_size_change` from the market channel: new orders on this token use `tick` (the SDK's
        tick cache never expires, which is why the core tracks it). Returns the tick it replaces; the change is
        logged unless `log_change` is False (the decision loop logs it itself, after its decision)."""
        old = self.exec_state.set_tick(token_id, float(tick))
        if old != tick and log_change:
            log.info("tick size of token %s…: %s -> %s", token_id[:12], _fmt(old) if old else "?", _fmt(tick))
        return old

    def _learn_tick(self, token_id: str, tick: float) -> None:
        old = self.exec_state.set_tick(token_id, tick)
        if old != tick:
            log.warning("tick size of token %s… learnt from a rejection: %s -> %s", token_id[:12],
                        _fmt(old) if old else "?", _fmt(tick))

    def resolve_market(self, condition_id: str, winning_leg: Leg) -> None:
        """The market resolved (feed's `market_resolved`): positions still held are realised at 1/0."""
        now = self.clock()
        with self._lock:
            if not self.exec_state.resolve(condition_id, winning_leg):
                return
            self._push(MarketResolvedEvent(condition_id, winning_leg))
        if self._journal is not None:
            self._journal.resolved(condition_id, winning_leg.value, now)
        if self.ledger is not None:
            self.ledger.resolution(condition_id, winning_leg, ts=now)
        log.info("market %s resolved: %s won; pnl %s", condition_id, winning_leg.value,
                 self.pnl()["markets"].get(condition_id))
        self.wake.set()

    def request_reconcile(self, reason: str) -> None:
        """Ask the maintenance thread for a reconciliation (non-blocking)."""
        with self._lock:
            self._reconcile_wanted = reason

