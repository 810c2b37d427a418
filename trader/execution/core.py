"""ExecutionCore: makes the exchange agree with what the strategies want, and knows at every moment
what is open, what filled and what we hold (contract 5 of /tmp/contracts.md).

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
2. Every public method is thread-safe (one RLock; views are frozen copies).
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
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from polymm.trader.execution import reconcile as reconcile_mod
from polymm.trader.execution.exchange_state import ExchangeError, ExchangeState
from polymm.trader.execution.fills import FillStore, OrderInfo, TokenInfo, taker_fee
from polymm.trader.venue.gateway import Gateway
from polymm.trader.venue.heartbeat import Heartbeater
from polymm.trader.model import (ExchangeStatus, FillChanged, FillView, Leg, MarketIdentity, MarketResolvedEvent, OrderChanged,
                    OrderState, OrderType, OrderView, PositionView, Side, StatusChanged, Want)
from polymm.trader.execution.order_journal import JournalOrder, OrderJournal
from polymm.trader.execution.orders import Order, OrderBook, Transition
from polymm.trader.decision.positions import fold, pnl_summary
from polymm.trader.venue.signing import exchange_safe_size
from polymm.trader.decision.ticks import on_tick, round_price
from polymm.trader.venue.user_stream import UserStream
from polymm.trader.venue.user_wire import WireOrder, WireTrade, decode_rest_order, decode_rest_orders, decode_rest_trades, order_report, trade_report
from polymm.trader.execution.wallet_lock import WalletLock

__all__ = ["ExecutionCore", "MarketIdentity"]  # MarketIdentity lives in model; re-exported for callers

log = logging.getLogger("polymm.trader.execution")

_TICK_RULE = re.compile(r"minimum tick size rule:\s*([0-9]*\.?[0-9]+)")
MAX_QUEUED_EVENTS = 10_000
CANCEL_RESEND_EVERY_S = 1.0
KEEP_DONE_ORDERS_S = 3600.0
TRACK_AFTER_END_S = 3600.0
# A market whose window ended this long ago, with no working order and nothing left to settle (resolved,
# or flat), is folded into a P&L summary and its fills, orders and journal entries are dropped: memory and
# the per-decision positions() cost stay bounded over weeks of 15-minute windows. mmctl fills shows a day.
FORGET_MARKET_AFTER_S = 86400.0
PRUNE_EVERY_S = 60.0
COMPACT_JOURNAL_EVERY_S = 6 * 3600.0
RESTART_RETRY_S = 5.0
DEAD_MAN_SWITCH_OFF = ("dead-man switch disabled (risk.heartbeat=false): if the trader dies its orders stay on "
                       "the exchange")
GTD_MIN_LIFETIME_S = 180  # the exchange refuses GTD expirations closer than 3 minutes...
GTD_EARLY_EXPIRY_S = 60  # ...and expires GTD orders 60 s before their stated expiration,
GTD_CLOCK_MARGIN_S = 5  # so expiration = window_end + 60 dies at the close; GTD impossible in the last ~2 min


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


class ExecutionCore:
    def __init__(self, gateway: Gateway, *, clock: Callable[[], float] = time.time, ws_user_url: str | None = None,
                 state_dir: str | Path | None = None, workers: int = 3, reconcile_every_s: float = 30.0,
                 heartbeat_interval_s: float = 5.0, heartbeat_max_failures: int = 2,
                 unknown_lookup_every_s: float = 1.0, unknown_max_lookups: int = 5,
                 on_submit_sent: Callable[[str, float], None] | None = None,
                 ws_connect_wait_s: float = 5.0, ws_backoff_s: float = 0.5, ws_ping_every_s: float = 10.0,
                 post_only_after_restart_s: float = 120.0, heartbeat: bool = True) -> None:
        self.gateway = gateway
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
        self._lock = threading.RLock()
        self._reconcile_lock = threading.Lock()
        self._events: list[object] = []
        self._book = OrderBook()
        self._markets: dict[str, MarketIdentity] = {}
        self._current: MarketIdentity | None = None
        self._tokens: dict[str, TokenInfo] = {}
        self._ticks: dict[str, float] = {}
        self._resolutions: dict[str, Leg] = {}
        self._journal_orders: dict[str, JournalOrder] = {}
        self._fills = FillStore(self._order_info, self._tokens.get)
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
        # P&L of markets forgotten by prune(): (condition_id, strategy, leg) -> final position (flat)
        self._settled: dict[tuple[str, str, Leg], PositionView] = {}
        # Unresolved markets with journaled orders, found at load: the first reconciliation reads their trades
        # even when their window ended long ago, so a restart never loses a position awaiting resolution.
        self._backfill: set[str] = set()
        self._needs_lookup: set[str] = set()  # orders whose cancel was refused: ask the exchange
        self._last_reconcile_error: ExchangeError | None = None
        self._running = False
        self._retrier: threading.Thread | None = None  # retries start() after a failed restart()
        self._retry_stop = threading.Event()

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
            lock = WalletLock(self.state_dir, self.gateway.funder)
            lock.acquire()
            self._wallet_lock = lock
        try:
            self.gateway.connect()
            self._fills.set_identity(self.gateway.api_key, self.gateway.funder)
            if self.state_dir is not None and self._journal is None:
                self._journal = OrderJournal(self.state_dir / f"orders-{self.gateway.funder.lower()}.jsonl")
                self._load_journal(self._journal, now)
            self._register_market(market, now)
            with self._lock:
                self._current = market
            try:
                self._xstate.set_closed_only(self.gateway.closed_only())
            except ExchangeError as err:
                log.warning("could not read closed-only status: %s", err)
            self._stop.clear()
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="polymm-exec")
            if self.ws_user_url:
                self._ws_connected.clear()
                self._stream = UserStream(self.ws_user_url, self.gateway.ws_auth, self._tracked_markets,
                                          self._on_ws_events, self._on_ws_connected, self._on_ws_disconnected,
                                          backoff_initial_s=self._ws_backoff_s, ping_every_s=self._ws_ping_every_s)
                self._stream.start()
                if not self._ws_connected.wait(self.ws_connect_wait_s):
                    log.warning("user channel not connected after %.0f s; reconciling from REST and retrying",
                                self.ws_connect_wait_s)
            # Arm the dead-man switch before anything can rest on the book (unless risk.heartbeat = false).
            if self.heartbeat_enabled:
                self._heart = Heartbeater(lambda heartbeat_id: self.gateway.heartbeat(heartbeat_id),
                                          self._on_heartbeat_tripped, self._on_heartbeat_recovered, clock=self.clock,
                                          interval_s=self._heartbeat_interval_s,
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

    def set_market(self, market: MarketIdentity) -> None:
        """Window rotation: trade `market` from now on; older markets stay tracked (fills, positions)
        until resolved."""
        now = self.clock()
        self._register_market(market, now)
        with self._lock:
            previous = self._current
            self._current = market
            # A new window is a new chance for a leg blocked on balance (the cache is refreshed first).
            self._xstate.clear_blocks()
        if self._stream is not None and (previous is None or previous.condition_id != market.condition_id):
            self._stream.subscribe([market.condition_id])
        log.info("market set: %s window %d-%d tick %s", market.condition_id, market.window_start,
                 market.window_end, _fmt(market.tick_size))
        self._emit_status()

    def stop(self, cancel_orders: bool = True) -> None:
        """SIGTERM path: cancel our open orders (waiting briefly for unanswered submits), stop threads."""
        self._retry_stop.set()
        retrier = self._retrier
        if retrier is not None and retrier is not threading.current_thread():
            retrier.join(timeout=30)
        if cancel_orders and self._pool is not None:
            self._cancel_everything("shutdown", wait_s=5.0)
            with self._lock:
                left = [o for o in self._book.working() if o.order_id]
            if left:
                # One trader per wallet (the lock): everything on it is ours. Leave nothing resting unwatched.
                self._cancel_all_on_exchange(f"shutdown with {len(left)} order(s) unconfirmed")
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
        market = self._current
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
                self.start(self._current or market)
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
    def place(self, want: Want) -> str:
        """Record the order and hand the submit to a worker; returns its client id at once. An order the
        core refuses locally (exchange state, blocked leg, off-tick price, below min size) ends `rejected`
        with the reason logged."""
        now = self.clock()
        with self._lock:
            market = self._current
            pool = self._pool
            if market is None:
                raise RuntimeError("place() before start()")
            order = self._book.new(want, market.token(want.leg), market.condition_id, now)
            refusal = self._local_refusal(order, market, now)
            if refusal is None and (pool is None or not self._running):
                refusal = "execution core not running (starting, restarting or stopped)"
            if refusal is not None:
                t = self._book.on_submit_rejected(order.client_id, refusal, now)
                self._log_order("refused", order, refusal, logging.WARNING)
                self._order_event(Transition(None, t.after))
                return order.client_id
            self._order_event(Transition(None, order.view()))
        try:
            pool.submit(self._submit, order.client_id)
        except RuntimeError:  # stop()/restart() shut the pool between our check and now: never sent
            with self._lock:
                why = "execution core stopping: the order was not sent"
                self._order_event(self._book.on_submit_rejected(order.client_id, why, self.clock()))
                self._log_order("refused", order, why, logging.WARNING)
        return order.client_id

    def _local_refusal(self, order: Order, market: MarketIdentity, now: float) -> str | None:
        refusal = self._xstate.refuse_reason(order.leg, order.side, order.post_only, now)
        if refusal is not None:
            return refusal
        if order.order_type in (OrderType.FAK, OrderType.FOK) and order.post_only:
            return "post-only is only possible for GTC/GTD orders"
        if not (order.size > 0):
            return f"size {order.size} is not positive"
        if order.order_type in (OrderType.GTC, OrderType.GTD) and order.size < market.min_order_size:
            return f"size {_fmt(order.size)} below the market minimum {_fmt(market.min_order_size)}"
        tick = self._ticks.get(order.token_id, market.tick_size)
        if not (tick <= order.price <= 1 - tick):
            return f"price {_fmt(order.price)} outside [{_fmt(tick)}, {_fmt(1 - tick)}]"
        if now >= market.window_end:
            return "market window has ended"
        return None

    def cancel(self, client_id: str, reason: str) -> None:
        """Cancel one order (by client id or exchange id). Deferred while its submit is unanswered."""
        now = self.clock()
        with self._lock:
            action, t = self._book.request_cancel(client_id, reason, now)
            order = self._book.get(client_id)
            if action == "noop" or order is None:
                return
            self._order_event(t)
            if action == "deferred":
                self._log_order("cancel-deferred", order, f"{reason} (submit unanswered)")
                return
            self._log_order("cancel", order, reason)
            pool = self._pool
            if pool is None:
                order.cancel_sent = False  # not running: the maintenance pass sends it once started
                return
        self._submit_cancels(pool, [order.client_id])

    def cancel_all(self, reason: str) -> None:
        """Cancel every working order of ours (all markets); unanswered submits are cancelled once known."""
        now = self.clock()
        to_send = []
        with self._lock:
            for order in self._book.working():
                action, t = self._book.request_cancel(order.client_id, reason, now)
                if action == "noop":
                    continue
                self._order_event(t)
                if action == "send":
                    self._log_order("cancel", order, reason)
                    to_send.append(order.client_id)
                else:
                    self._log_order("cancel-deferred", order, f"{reason} (submit unanswered)")
            pool = self._pool
            if pool is None:
                for cid in to_send:
                    self._book.by_client[cid].cancel_sent = False  # sent by the maintenance pass once started
                return
        if to_send:
            self._submit_cancels(pool, to_send)

    def _submit_cancels(self, pool: ThreadPoolExecutor, client_ids: list[str]) -> None:
        try:
            pool.submit(self._send_cancels, client_ids)
        except RuntimeError:  # the pool is shutting down: leave the cancels to be (re)sent, never drop them
            with self._lock:
                for cid in client_ids:
                    order = self._book.by_client.get(cid)
                    if order is not None:
                        order.cancel_sent = False

    def on_tick_size(self, token_id: str, tick: float) -> None:
        """`tick_size_change` from the market channel: new orders on this token use `tick` (the SDK's
        tick cache never expires, which is why the core tracks it)."""
        with self._lock:
            old = self._ticks.get(token_id)
            self._ticks[token_id] = float(tick)
        if old != tick:
            log.info("tick size of token %s…: %s -> %s", token_id[:12], _fmt(old) if old else "?", _fmt(tick))

    def _learn_tick(self, token_id: str, tick: float) -> None:
        with self._lock:
            old = self._ticks.get(token_id)
            if old == tick:
                return
            self._ticks[token_id] = tick
        log.warning("tick size of token %s… learnt from a rejection: %s -> %s", token_id[:12],
                    _fmt(old) if old else "?", _fmt(tick))

    def tick_size(self, token_id: str) -> float | None:
        with self._lock:
            return self._ticks.get(token_id)

    def resolve_market(self, condition_id: str, winning_leg: Leg) -> None:
        """The market resolved (feed's `market_resolved`): positions still held are realised at 1/0."""
        now = self.clock()
        with self._lock:
            if self._resolutions.get(condition_id) is winning_leg:
                return
            self._resolutions[condition_id] = winning_leg
            self._push(MarketResolvedEvent(condition_id, winning_leg))
        if self._journal is not None:
            self._journal.resolved(condition_id, winning_leg.value, now)
        log.info("market %s resolved: %s won; pnl %s", condition_id, winning_leg.value,
                 self.pnl()["markets"].get(condition_id))
        self.wake.set()

    def request_reconcile(self, reason: str) -> None:
        """Ask the maintenance thread for a reconciliation (non-blocking)."""
        with self._lock:
            self._reconcile_wanted = reason

    # ================================================================================================
    # views (thread-safe copies)
    # ================================================================================================
    def orders(self, working_only: bool = True, condition_id: str | None = None) -> list[OrderView]:
        with self._lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            return [o.view() for o in self._book.by_client.values()
                    if o.condition_id == cond and (not working_only or not o.state.terminal)]

    def all_orders(self, working_only: bool = True) -> list[OrderView]:
        with self._lock:
            return [o.view() for o in self._book.by_client.values() if not working_only or not o.state.terminal]

    def positions(self, condition_id: str | None = None) -> dict[tuple[str, Leg], PositionView]:
        """Positions of the current market (or `condition_id`), including *provisional* shares: matched
        according to the exchange's order report, with the trade report not in yet (see _holdings)."""
        with self._lock:
            cond = condition_id or (self._current.condition_id if self._current else None)
            if cond is None:
                return {}
            folded = fold(self._holdings(cond), self._resolutions)
        return {(s, leg): p for (c, s, leg), p in folded.items() if c == cond}

    def all_positions(self) -> dict[tuple[str, str, Leg], PositionView]:
        """(condition_id, strategy, leg) -> position, every market we have fills in."""
        with self._lock:
            return fold(self._holdings(), self._resolutions)

    def _holdings(self, condition_id: str | None = None) -> list[tuple[str, FillView]]:
        """The fill store's fills plus a provisional fill per order whose exchange-reported matched size
        exceeds what its trade reports cover.

        Why: the user channel can deliver an order's UPDATE (size_matched) a few ms before the trade. In
        between, the order is no longer working and the fill store has no fill yet; a decision made then
        would see neither and buy again (seen live on the sim). Orders + positions must never under-count
        what we hold. The provisional fill is priced at the order's price (a taker may do better) and
        charged the taker fee unless the order was post-only; the real trade replaces it, and a FAILED
        trade still reverses (it covers the shares too)."""
        out = self._fills.fills_with_market(condition_id)
        for order in self._book.by_client.values():
            if not order.order_id or order.filled <= 0:
                continue
            if condition_id is not None and order.condition_id != condition_id:
                continue
            gap = round(order.filled - self._fills.covered_shares(order.order_id), 6)
            if gap <= 1e-9:
                continue
            token = self._tokens.get(order.token_id)
            fee = 0.0 if order.post_only or token is None else taker_fee(gap, order.price, token.fee_rate)
            out.append((order.condition_id, FillView(
                trade_id=f"pending:{order.order_id}", order_id=order.order_id, client_id=order.client_id,
                strategy=order.strategy, leg=order.leg, side=order.side, price=order.price, size=gap, fee=fee,
                role="pending", status="MATCHED", ts=order.updated_at)))
        return out

    def pending_resolution(self) -> list[tuple[MarketIdentity, dict[tuple[str, Leg], PositionView]]]:
        """Older markets (not the current one) with shares still held and no resolution yet."""
        with self._lock:
            folded = fold(self._holdings(), self._resolutions)
            current = self._current.condition_id if self._current else None
            out: dict[str, dict] = {}
            for (c, s, leg), p in folded.items():
                if c != current and c not in self._resolutions and abs(p.shares) > 1e-9 and c in self._markets:
                    out.setdefault(c, {})[(s, leg)] = p
            return [(self._markets[c], pos) for c, pos in out.items()]

    def fills(self, since: float | None = None, condition_id: str | None = None) -> list[FillView]:
        with self._lock:
            return self._fills.fills(since, condition_id)

    def pnl(self) -> dict:
        with self._lock:
            return pnl_summary({**self._settled, **fold(self._holdings(), self._resolutions)}, self._resolutions)

    def state(self) -> ExchangeStatus:
        with self._lock:
            self._xstate.tick(self.clock())
            return self._xstate.status()

    def poll_events(self) -> list[object]:
        with self._lock:
            self._emit_status_locked()
            events, self._events = self._events, []
            self.wake.clear()
            return events

    @property
    def heartbeat_paused(self) -> bool:
        return self._heart is not None and self._heart._paused.is_set()

    def pause_heartbeats(self, paused: bool = True) -> None:
        """Fault drills and tests: stop (or resume) sending heartbeats; the exchange will cancel our orders."""
        if self._heart is not None:
            self._heart.pause(paused)

    # ================================================================================================
    # workers
    # ================================================================================================
    def _submit(self, client_id: str) -> None:
        try:
            self._submit_inner(client_id)
        except Exception:  # noqa: BLE001 - a bug here must not lose the order: treat as unknown outcome
            log.exception("order submit crashed; the order's outcome is unknown and will be looked up")
            now = self.clock()
            with self._lock:
                order = self._book.by_client.get(client_id)
                if order is not None and order.state is OrderState.PENDING_SUBMIT:
                    if order.order_id is None:
                        self._order_event(self._book.on_submit_rejected(client_id, "internal error before sending", now))
                    else:
                        self._order_event(self._book.on_submit_unknown(client_id, "internal error", now))

    def _submit_inner(self, client_id: str) -> None:
        now = self.clock()
        with self._lock:
            order = self._book.by_client[client_id]
            if order.cancel_reason is not None:
                self._order_event(self._book.on_cancelled_before_send(client_id, now))
                self._log_order("canceled", order, f"{order.cancel_reason} (before it was sent)")
                return
            market = self._markets[order.condition_id]
            tick = self._ticks.get(order.token_id, market.tick_size)
            # The tick may have changed between the decision and now: round towards the safe side.
            if not on_tick(order.price, tick):
                adjusted = round_price(order.price, tick, "down" if order.side is Side.BUY else "up")
                self._log_order("reprice", order, f"price {_fmt(order.price)} not on tick {_fmt(tick)} -> {_fmt(adjusted)}")
                order.price = adjusted
            marketable = order.order_type in (OrderType.FAK, OrderType.FOK)
            safe = exchange_safe_size(order.side, order.price, order.size, tick, marketable)
            if safe != order.size:
                self._log_order("resize", order, f"size {_fmt(order.size)} -> {_fmt(safe)}: the exchange's amount "
                                f"precision at price {_fmt(order.price)}")
                order.size = safe
            if order.size <= 0 or (not marketable and order.size < market.min_order_size):
                t = self._book.on_submit_rejected(client_id, "no size the exchange accepts at this price", now)
                self._log_order("refused", order, "no size the exchange accepts at this price", logging.WARNING)
                self._order_event(t)
                return
            order_type = order.order_type
            expiration = 0
            if order_type is OrderType.GTD:
                expiration = int(market.window_end) + GTD_EARLY_EXPIRY_S
                if expiration - now < GTD_MIN_LIFETIME_S + GTD_CLOCK_MARGIN_S:
                    # Too close to the end for a GTD; a GTC is cancelled explicitly before the close.
                    order_type = OrderType.GTC
                    order.order_type = OrderType.GTC
                    expiration = 0
            side, price, size, token = order.side, order.price, order.size, order.token_id
        try:
            signed = self.gateway.signer.build(token, side, price, size, tick, neg_risk=market.neg_risk,
                                               expiration=expiration)
        except ValueError as err:  # invalid price/tick: refused before anything is sent
            with self._lock:
                self._order_event(self._book.on_submit_rejected(client_id, str(err), self.clock()))
                self._log_order("refused", order, str(err), logging.WARNING)
            return
        with self._lock:
            if order.cancel_reason is not None:
                # Cancelled while we were signing: still unsent, so it is never sent.
                self._order_event(self._book.on_cancelled_before_send(client_id, self.clock()))
                self._log_order("canceled", order, f"{order.cancel_reason} (before it was sent)")
                return
            self._book.signed(client_id, signed.order_hash)
            self._journal_order(order)
            self._log_order("submit", order, order.reason)
        if self.on_submit_sent is not None:
            self.on_submit_sent(client_id, time.time())
        try:
            result = self.gateway.post_order(signed, order_type.value, order.post_only)
        except ExchangeError as err:
            self._after_submit_error(client_id, err)
            return
        now = self.clock()
        with self._lock:
            if result.order_id and result.order_id.lower() != signed.order_hash.lower():
                # Believed never to happen (the id is the EIP-712 digest), but unverified for V2 in
                # production: follow the exchange's id rather than lose track of the order.
                self._book.alias(client_id, result.order_id)
                self._journal_order(order)
            filled = result.taking_amount if side is Side.BUY else result.making_amount
            # Amounts in the answer are decimal shares; guard against a base-unit (x1e6) answer.
            if filled > size * 1.0001:
                filled = filled / 1e6
            t = self._book.on_submit_accepted(client_id, result.status, filled, now)
            self._xstate.on_order_accepted(now)
            t2 = self._book.on_fill(order.order_id, self._fills.matched_shares(order.order_id), now)
            self._order_event(t)
            if t2 is not None:
                self._order_event(t2)
            self._log_order(t.after.state.value if t2 is None else t2.after.state.value, order,
                            f"accepted status={result.status}")
            due = self._book.cancel_due(client_id)
        if due:
            self._log_order("cancel", order, f"{order.cancel_reason} (deferred until the submit was answered)")
            self._send_cancels([client_id])

    def _after_submit_error(self, client_id: str, err: ExchangeError) -> None:
        now = self.clock()
        action = None
        with self._lock:
            order = self._book.by_client[client_id]
            if err.outcome_unknown:
                t = self._book.on_submit_unknown(client_id, str(err), now)
                # First lookup after one interval: give the exchange a moment to finish what timed out.
                self._last_lookup[order.order_id] = time.monotonic()
                self._log_order("unknown", order, f"{err}; looking the order up on the exchange", logging.WARNING)
            else:
                t = self._book.on_submit_rejected(client_id, str(err), now)
                action = self._xstate.on_error(err, now, order.leg)
                self._log_order("rejected", order, str(err), logging.WARNING)
                # "Price (0.475) breaks minimum tick size rule: 0.01": the tick changed before we heard of
                # it; learn it from the rejection so the next order is priced right.
                match = _TICK_RULE.search(err.message)
                if match:
                    self._learn_tick(order.token_id, float(match.group(1)))
            self._order_event(t)
            self._emit_status_locked()
        if action == "refresh_balance":
            self._refresh_balance(order)

    def _refresh_balance(self, order: Order) -> None:
        """First 'not enough balance / allowance' on a leg: make the exchange refresh its cache once."""
        try:
            if order.side is Side.BUY:
                self.gateway.update_balance_allowance("COLLATERAL")
            else:
                self.gateway.update_balance_allowance("CONDITIONAL", order.token_id)
            log.warning("balance/allowance cache refreshed after a balance error on leg %s", order.leg.value)
        except ExchangeError as err:
            log.warning("balance/allowance refresh failed: %s", err)

    def _send_cancels(self, client_ids: list[str]) -> None:
        with self._lock:
            ids = [o.order_id for o in (self._book.by_client.get(c) for c in client_ids) if o is not None and o.order_id]
        if not ids:
            return
        try:
            result = self.gateway.cancel_order(ids[0]) if len(ids) == 1 else self.gateway.cancel_orders(ids)
        except Exception as exc:  # noqa: BLE001 - an exchange error or a bug: either way the cancels are re-sent
            if isinstance(exc, ExchangeError):
                self._cancels_failed(ids, exc)
            else:
                log.exception("cancel of %s crashed; will retry", ", ".join(ids))
                self._cancels_failed(ids, None, f"internal error: {type(exc).__name__}: {exc}")
            return
        self._apply_cancel_result(ids, result.canceled, result.not_canceled)

    def _cancels_failed(self, ids: list[str], err: ExchangeError | None, message: str = "") -> None:
        """The cancel request got no answer we can use: the orders stay working, cancel re-sent later."""
        now = self.clock()
        why = str(err) if err is not None else message
        with self._lock:
            for oid in ids:
                t = self._book.on_cancel_result(oid, False, why, now)
                if t is not None:
                    order = self._book.by_exchange[oid]
                    self._log_order("cancel-failed", order, f"{why}; will retry", logging.WARNING)
                    self._order_event(t)
            if err is not None:
                self._xstate.on_error(err, now)
            self._emit_status_locked()

    def _apply_cancel_result(self, ids: list[str], canceled, not_canceled: dict[str, str]) -> None:
        now = self.clock()
        canceled = set(canceled)
        with self._lock:
            for oid in ids:
                order = self._book.by_exchange.get(oid)
                if order is None:
                    continue
                if oid in canceled:
                    t = self._book.on_cancel_result(oid, True, "", now)
                    self._log_order("canceled", order, order.cancel_reason or "")
                else:
                    reason = not_canceled.get(oid, "not in the cancel answer")
                    t = self._book.on_cancel_result(oid, False, reason, now)
                    self._log_order("cancel-refused", order, f"{reason}; asking the exchange", logging.WARNING)
                    self._last_lookup.pop(oid, None)
                    self._needs_lookup.add(oid)
                if t is not None:
                    self._order_event(t)

    def _cancel_everything(self, reason: str, wait_s: float) -> None:
        """Cancel all our working orders and wait (bounded) until none is left working or unanswered."""
        self.cancel_all(reason)
        deadline = time.monotonic() + wait_s
        last_resend = 0.0
        while time.monotonic() < deadline:
            with self._lock:
                left = self._book.working()
                resend = self._book.cancels_to_resend() if time.monotonic() - last_resend >= 0.5 else []
                last_resend = time.monotonic() if resend else last_resend
                for order in resend:
                    self._book.mark_cancel_sent(order.client_id)
            if not left:
                return
            if resend:
                self._send_cancels([o.client_id for o in resend])
            time.sleep(0.05)
        with self._lock:
            left = [o.view() for o in self._book.working()]
        if left:
            log.warning("%d order(s) still working after %s: %s", len(left), reason,
                        ", ".join(f"{o.order_id or o.client_id}({o.state.value})" for o in left))

    # ================================================================================================
    # user channel
    # ================================================================================================
    def _on_ws_connected(self, reconnect: bool) -> None:
        with self._lock:
            self._xstate.user_stream_connected = True
            self._xstate.extra_warnings.pop("user_ws", None)
        self._ws_connected.set()
        if reconnect:
            # The channel does not replay what was missed while disconnected.
            self.request_reconcile("user channel reconnected")
        self._emit_status()

    def _on_ws_disconnected(self, reason: str) -> None:
        with self._lock:
            self._xstate.user_stream_connected = False
            self._xstate.extra_warnings["user_ws"] = f"user channel disconnected ({reason}); reconnecting"
        self._emit_status()

    def _on_ws_events(self, events: list) -> None:
        now = self.clock()
        due = []
        with self._lock:
            for ev in events:
                if isinstance(ev, WireTrade):
                    self._apply_trade(trade_report(ev), now)
                elif isinstance(ev, WireOrder):
                    report = order_report(ev)
                    self._adopt_from_journal(report.order_id)
                    t = self._book.on_exchange_order(report.order_id, report.status, report.size_matched, now,
                                                     report.original_size)
                    if t is not None:
                        self._order_event(t)
                        order = self._book.by_exchange[report.order_id]
                        if t.before is not None and t.before.state != t.after.state:
                            self._log_order(t.after.state.value, order, f"user channel {report.kind}")
                        if self._book.cancel_due(order.client_id):
                            due.append(order.client_id)
        if due:
            self._send_cancels(due)
        self.wake.set()

    def _apply_trade(self, report, now: float) -> None:
        for order_id in [report.taker_order_id, *(m.order_id for m in report.maker_orders)]:
            self._adopt_from_journal(order_id)
        for fill, previous in self._fills.apply(report):
            self._fill_event(fill, previous)
            t = self._book.on_fill(fill.order_id, self._fills.matched_shares(fill.order_id), now)
            if t is not None:
                self._order_event(t)

    def _adopt_from_journal(self, order_id: str) -> None:
        if order_id and order_id not in self._book.by_exchange and order_id in self._journal_orders:
            order = reconcile_mod.order_from_journal(self._journal_orders[order_id])
            self._book.adopt(order)

    # ================================================================================================
    # heartbeats
    # ================================================================================================
    def _on_heartbeat_tripped(self, why: str) -> None:
        with self._lock:
            self._xstate.heartbeat_ok = False
        self._emit_status()
        # The exchange is about to cancel everything anyway; say so ourselves and stop placing.
        self.cancel_all(f"heartbeats failing: {why}")
        pool = self._pool
        if pool is not None:
            try:
                pool.submit(self._cancel_all_on_exchange, "heartbeats failing")
            except RuntimeError:  # shutting down: stop() cancels, and the exchange's switch fires anyway
                pass

    def _cancel_all_on_exchange(self, reason: str) -> None:
        try:
            result = self.gateway.cancel_all()
            log.warning("cancel-all sent (%s): %d cancelled", reason, len(result.canceled))
            with self._lock:
                ids = list(result.canceled)
            self._apply_cancel_result(ids, ids, {})
        except ExchangeError as err:
            log.warning("cancel-all (%s) failed: %s", reason, err)
        except Exception:  # noqa: BLE001 - runs in a pool worker: an exception there would vanish unseen
            log.exception("cancel-all (%s) crashed", reason)

    def _on_heartbeat_recovered(self) -> None:
        with self._lock:
            self._xstate.heartbeat_ok = True
        self.request_reconcile("heartbeats recovered")
        self._emit_status()

    # ================================================================================================
    # reconciliation and maintenance
    # ================================================================================================
    def reconcile(self, reason: str) -> bool:
        """REST truth vs local (blocking): open orders and trades of every tracked market; differences
        are repaired and logged. Orders whose submit outcome is unknown are looked up. False when the
        exchange could not be read (a retry is scheduled)."""
        with self._reconcile_lock:
            with self._lock:
                tracked = self._tracked_markets()
                backfill = [c for c in self._backfill if c in self._markets and c not in tracked]
                markets = {c: self._markets[c] for c in [*tracked, *backfill]}
            open_rows, trade_rows = [], []
            try:
                for cond, m in markets.items():
                    open_rows += self.gateway.open_orders(market=cond)
                    trade_rows += self.gateway.trades(market=cond, after=m.window_start - 3600)
            except ExchangeError as err:
                log.warning("reconcile (%s) failed: %s; will retry", reason, err)
                self.request_reconcile(reason)
                self._last_reconcile_error = err
                return False
            open_reports, bad_orders = decode_rest_orders(open_rows)
            trade_reports, bad_trades = decode_rest_trades(trade_rows)
            for bad in bad_orders + bad_trades:
                log.warning("reconcile (%s): %s", reason, bad)
            now = self.clock()
            with self._lock:
                res = reconcile_mod.apply(self._book, self._fills, open_reports, trade_reports, self._journal_orders,
                                          self._token_leg, set(markets), now)
                for t in res.order_changes:
                    self._order_event(t)
                for fill, previous in res.fill_changes:
                    self._fill_event(fill, previous, log_it=False)
                self._xstate.last_reconcile_at = now
                self._backfill.difference_update(markets)
            for diff in res.differences:
                log.warning("reconcile (%s): %s", reason, diff)
            for order_id in res.need_lookup:
                self._lookup(order_id)
            with self._lock:
                due = [o.client_id for o in self._book.working() if self._book.cancel_due(o.client_id)]
            if due:
                self._send_cancels(due)
            if not res.differences:
                # The periodic pass is routine: keep it out of the journal unless asked for.
                log.log(logging.DEBUG if reason == "periodic" else logging.INFO,
                        "reconcile (%s): in agreement (%d open orders, %d trades)", reason, len(open_reports),
                        len(trade_reports))
            self._last_reconcile_mono = time.monotonic()
            self.wake.set()
            return True

    def _lookup(self, order_id: str) -> None:
        """GET /data/order for one order whose state we must learn from the exchange."""
        self._last_lookup[order_id] = time.monotonic()
        try:
            row = self.gateway.get_order(order_id)
        except ExchangeError as err:
            log.warning("lookup of order %s failed: %s; will retry", order_id, err)
            return
        now = self.clock()
        with self._lock:
            self._needs_lookup.discard(order_id)
            order = self._book.by_exchange.get(order_id)
            if order is None:
                return
            if row is None:
                if order.state is OrderState.UNKNOWN:
                    # Production's GET /data/order answers nothing for an order that matched on entry
                    # ("if the order was filled, it will be in get_trades", py-clob-client #217): read the
                    # trades before counting this as a miss, so a filled taker order is never called rejected.
                    if not self._trades_checked_for.get(order_id):
                        if len(self._trades_checked_for) > 1000:  # rare (timed-out submits); never growing
                            self._trades_checked_for.clear()  # at worst one more trades read per order
                        self._trades_checked_for[order_id] = True
                        self._reconcile_wanted = f"order {order_id[:12]}… unknown to the order lookup"
                        return
                    t = self._book.on_lookup_missing(order.client_id, self.unknown_max_lookups, now)
                    if t is not None:
                        self._log_order("rejected", order, order.error, logging.WARNING)
                        self._order_event(t)
                else:
                    t = self._book.on_missing_from_open_orders(order_id, now)
                    if t is not None:
                        self._log_order(t.after.state.value, order, "exchange no longer has the order", logging.WARNING)
                        self._order_event(t)
                return
            try:
                report = decode_rest_order(row)
            except Exception as exc:  # noqa: BLE001 - malformed answer: keep the order, retry later
                log.warning("lookup of order %s: unreadable answer (%s)", order_id, exc)
                return
            before_state = order.state
            t = self._book.on_exchange_order(order_id, report.status, report.size_matched, now, report.original_size)
            if t is not None:
                self._order_event(t)
                if before_state is not order.state:
                    self._log_order(order.state.value, order, f"exchange says {report.status} "
                                    f"matched={_fmt(report.size_matched)}",
                                    logging.WARNING if before_state is OrderState.UNKNOWN else logging.INFO)
            due = self._book.cancel_due(order.client_id)
        if due:
            self._log_order("cancel", order, f"{order.cancel_reason} (deferred until the order was known)")
            self._send_cancels([order.client_id])

    def _maintenance(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._maintain_once()
            except Exception:  # noqa: BLE001 - the maintenance loop must survive any single failure
                log.exception("maintenance pass failed")

    def _maintain_once(self) -> None:
        mono = time.monotonic()
        with self._lock:
            self._emit_status_locked()
            lookups = [o.order_id for o in self._book.unknown() if o.order_id
                       and mono - self._last_lookup.get(o.order_id, 0) >= self.unknown_lookup_every_s]
            lookups += [oid for oid in self._needs_lookup if mono - self._last_lookup.get(oid, 0) >= 1.0]
            resend = [o for o in self._book.cancels_to_resend()
                      if mono - self._last_cancel_sent.get(o.client_id, 0) >= CANCEL_RESEND_EVERY_S]
            for order in resend:
                self._book.mark_cancel_sent(order.client_id)
                self._last_cancel_sent[order.client_id] = mono
            wanted, self._reconcile_wanted = self._reconcile_wanted, None
        for order_id in dict.fromkeys(lookups):
            self._lookup(order_id)
        if resend:
            for order in resend:
                self._log_order("cancel", order, f"{order.cancel_reason} (re-sent)")
            self._send_cancels([o.client_id for o in resend])
        if mono - self._last_prune_mono >= PRUNE_EVERY_S:
            self._last_prune_mono = mono
            self.prune(self.clock())
        if self._journal is not None and mono - self._last_compact_mono >= COMPACT_JOURNAL_EVERY_S:
            self._last_compact_mono = mono
            self._journal.compact(self.clock())
        if wanted is None and mono - self._last_reconcile_mono >= self.reconcile_every_s:
            wanted = "periodic"
        if wanted is not None:
            self.reconcile(wanted)

    def prune(self, now: float) -> list[str]:
        """Bound memory over days of windows (run every minute by the maintenance thread): done orders are
        kept an hour (mmctl orders --all); a market over for FORGET_MARKET_AFTER_S with no working order and
        nothing left to settle (resolved, or every position flat) is folded into a P&L summary (pnl() keeps
        counting it) and its fills, orders, journal attributions and tick/token entries are dropped.
        Returns the condition ids forgotten."""
        forgotten = []
        with self._lock:
            self._book.prune(KEEP_DONE_ORDERS_S, now)
            current = self._current.condition_id if self._current else None
            working = {o.condition_id for o in self._book.working()}
            for cond, m in list(self._markets.items()):
                if cond == current or cond in working or now - m.window_end < FORGET_MARKET_AFTER_S:
                    continue
                folded = fold(self._holdings(cond), self._resolutions)
                if cond not in self._resolutions and any(abs(p.shares) > 1e-9 for p in folded.values()):
                    continue  # shares still held: pending_resolution() must keep showing them
                self._settled.update(folded)
                self._fills.forget_market(cond)
                for order in [o for o in self._book.by_client.values() if o.condition_id == cond]:
                    del self._book.by_client[order.client_id]
                for oid in [oid for oid, o in self._book.by_exchange.items() if o.condition_id == cond]:
                    del self._book.by_exchange[oid]
                for oid in [oid for oid, j in self._journal_orders.items() if j.condition_id == cond]:
                    del self._journal_orders[oid]
                for token in (m.up_token, m.down_token):
                    self._tokens.pop(token, None)
                    self._ticks.pop(token, None)
                del self._markets[cond]
                self._backfill.discard(cond)
                forgotten.append(cond)
            known = set(self._book.by_client)
            for cid in [c for c in self._last_cancel_sent if c not in known]:
                del self._last_cancel_sent[cid]
            for oid in [o for o in self._last_lookup if o not in self._book.by_exchange]:
                del self._last_lookup[oid]
            self._needs_lookup &= set(self._book.by_exchange)
        if forgotten:
            log.info("forgot %d settled market(s) (P&L kept in the summary): %s", len(forgotten), ", ".join(forgotten))
        return forgotten

    # ================================================================================================
    # helpers
    # ================================================================================================
    def _register_market(self, market: MarketIdentity, now: float, journal: bool = True) -> None:
        with self._lock:
            known = market.condition_id in self._markets
            self._markets[market.condition_id] = market
            self._tokens[market.up_token] = TokenInfo(market.condition_id, Leg.UP, market.fee_rate)
            self._tokens[market.down_token] = TokenInfo(market.condition_id, Leg.DOWN, market.fee_rate)
            self._ticks.setdefault(market.up_token, market.tick_size)
            self._ticks.setdefault(market.down_token, market.tick_size)
        if not known and journal and self._journal is not None:
            self._journal.market(market, now)

    def _load_journal(self, journal: OrderJournal, now: float) -> None:
        contents = journal.load(now)
        with self._lock:
            self._journal_orders = contents.orders
            for m in contents.markets.values():
                # Already in the journal: re-writing it would restamp it and keep it forever.
                self._register_market(m, now, journal=False)
            for cond, leg in contents.resolutions.items():
                self._resolutions[cond] = Leg(leg)
            # Only markets that may still matter are reconciled: unresolved ones and the last day.
            for cond, m in list(self._markets.items()):
                if cond in self._resolutions and now - m.window_end > 3600:
                    del self._markets[cond]
            # Unresolved markets we placed orders in may hold shares however long ago they ended: the first
            # reconciliation reads their trades too (later ones only follow the recent markets).
            ordered = {j.condition_id for j in self._journal_orders.values()}
            self._backfill = {c for c in self._markets if c in ordered and c not in self._resolutions}
        log.info("order journal: %d orders, %d markets, %d resolutions", len(contents.orders),
                 len(contents.markets), len(contents.resolutions))

    def _journal_order(self, order: Order) -> None:
        entry = JournalOrder(order.order_id or "", order.client_id, order.strategy, order.leg.value,
                             order.side.value, order.price, order.size, order.role.value, order.order_type.value,
                             order.post_only, order.reason, order.token_id, order.condition_id, order.created_at)
        self._journal_orders[entry.order_id] = entry
        if self._journal is not None:
            self._journal.order(entry)

    def _tracked_markets(self) -> list[str]:
        """Markets to reconcile and follow on the user channel: the current one, any with working orders,
        and any whose window ended less than TRACK_AFTER_END_S ago (settlement statuses still move)."""
        now = self.clock()
        with self._lock:
            working = {o.condition_id for o in self._book.working()}
            current = self._current.condition_id if self._current else None
            return [c for c, m in self._markets.items()
                    if c == current or c in working or now - m.window_end < TRACK_AFTER_END_S]

    def _token_leg(self, token_id: str) -> tuple[str, Leg] | None:
        info = self._tokens.get(token_id)
        return (info.condition_id, info.leg) if info else None

    def _order_info(self, order_id: str) -> OrderInfo | None:
        order = self._book.by_exchange.get(order_id)
        if order is not None:
            return OrderInfo(order.client_id, order.strategy, order.leg, order.side)
        j = self._journal_orders.get(order_id)
        if j is not None:
            return OrderInfo(j.client_id, j.strategy, Leg(j.leg), Side(j.side))
        return None

    def _push(self, event: object) -> None:
        # Nobody polling (a stalled loop) must not grow memory without bound; state views stay exact.
        if len(self._events) >= MAX_QUEUED_EVENTS:
            del self._events[: MAX_QUEUED_EVENTS // 10]
            log.warning("event queue full: dropped the oldest %d events (is the decision loop polling?)",
                        MAX_QUEUED_EVENTS // 10)
        self._events.append(event)
        self.wake.set()

    def _order_event(self, t: Transition | None) -> None:
        if t is None:
            return
        if t.before is not None and t.before == t.after:
            return
        self._push(OrderChanged(t.after, t.before.state if t.before else None))

    def _fill_event(self, fill: FillView, previous: str | None, log_it: bool = True) -> None:
        self._push(FillChanged(fill, previous))
        level = logging.WARNING if fill.status == "FAILED" else logging.INFO
        if log_it or previous is None or fill.status == "FAILED":
            what = "fill" if previous is None else ("fill-reversed" if fill.status == "FAILED" else "fill-status")
            log.log(level, "%s trade=%s id=%s strategy=%s leg=%s side=%s price=%s size=%s fee=%s role=%s status=%s",
                    what, fill.trade_id, fill.order_id, fill.strategy, fill.leg.value, fill.side.value,
                    _fmt(fill.price), _fmt(fill.size), _fmt(fill.fee), fill.role, fill.status)
        self.wake.set()

    def _emit_status(self) -> None:
        with self._lock:
            self._emit_status_locked()

    def _emit_status_locked(self) -> None:
        self._xstate.tick(self.clock())
        status = self._xstate.status()
        if status != self._last_status:
            if self._last_status is not None and status.warnings != self._last_status.warnings:
                for w in status.warnings:
                    if w not in self._last_status.warnings:
                        log.warning("exchange state: %s", w)
            self._last_status = status
            self._push(StatusChanged(status))

    @staticmethod
    def _log_order(action: str, order: Order, reason: str, level: int = logging.INFO) -> None:
        log.log(level, "order %s id=%s strategy=%s leg=%s side=%s price=%s size=%s type=%s post_only=%d reason=%s",
                action, order.order_id or order.client_id, order.strategy, order.leg.value, order.side.value,
                _fmt(order.price), _fmt(order.size), order.order_type.value, int(order.post_only), reason or "-")
