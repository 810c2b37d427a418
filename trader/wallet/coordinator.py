"""A trader's side of the wallet it shares with other series (the package docstring says why each part exists).

`WalletCoordinator` is built by the service once the wallet's address is known, before the execution core starts:
- `start()` publishes this series' slot (its last exposure is kept until the first decision replaces it);
- the decision loop calls `limits()` (cached for LIMITS_EVERY_S; a shared-memory read) before deciding, `admit()`
  when a decision sends buys (under the file lock: the claim that makes the wallet cap hold across processes),
  and `publish()` after every decision (a memory store; at most every PUBLISH_EVERY_S unless it changed);
- the execution core's heartbeat thread sends through `heartbeat_send()`: the leader posts (and reaps dead series'
  orders, and its redeemer runs), the others confirm the leader's last accepted heartbeat;
- `stop()` marks the slot stopped (open buys cancelled, positions still counted) and gives up the lease.
Nothing here raises into the decision loop: a shared record that cannot be read is a status warning and the
limits of the last good read.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import Callable

from polymm import series as series_mod
from polymm.trader.decision.wallet import WalletLimits
from polymm.trader.priority import DecisionGate
from polymm.trader.wallet import accounting
from polymm.trader.wallet.locks import LeaderLease, Liveness, series_alive
from polymm.trader.wallet.records import RUNNING, STOPPED, Heartbeat, SeriesRecord
from polymm.trader.wallet.store import SHM_DIR, WalletStore

log = logging.getLogger("polymm.trader.wallet")

LIMITS_EVERY_S = 0.25  # the limits the decision reads are at most this old (a background thread refreshes them);
# a claim for buys (admit) reads every series afresh under the lock, so this only sizes what is asked for
PUBLISH_EVERY_S = 1.0
ALIVE_EVERY_S = 1.0
# A dead series' orders are cancelled after the exchange's own dead-man delay (~10 s without a heartbeat; docs
# "Heartbeats"): the same protection one series alone has from the exchange.
REAP_AFTER_S = 10.0


class WalletCoordinator:
    def __init__(self, key: str, series: series_mod.Series, funder: str, *,
                 cancel_market: Callable[[str], int] | None = None, clock: Callable[[], float] = time.time,
                 directory=SHM_DIR, lead: bool = True, heartbeat_interval_s: float = 5.0) -> None:
        self.key = key
        self.series = series
        self.funder = funder.lower()
        self.index = series.index
        self.clock = clock
        self.store = WalletStore(key, directory)
        self.lease = LeaderLease(self.funder)
        # Alive for the others from now on: the service builds this right after taking the series lock, so a
        # restarted trader is never taken for its dead predecessor (whose markets the leader would reap) while it
        # starts; its start-up reconciles those markets' orders itself.
        self.liveness = Liveness(self.store.path, series.name)
        if not self.liveness.acquire():
            log.warning("series %s: another process holds its liveness lock %s", series.name, self.liveness.path)
        self.lead = lead  # False (paper): nothing on the exchange to heartbeat, redeem or reap
        self._cancel_market = cancel_market
        self.heartbeat_interval_s = heartbeat_interval_s
        self._lock = threading.Lock()
        now = clock()
        self._record = SeriesRecord(series.name, os.getpid(), RUNNING, now, 0.0, 0.0, 0, accounting.utc_day(now),
                                    0.0, 0.0, 0.0, 0.0)
        self._published_at = 0.0
        self._limits: tuple[float, WalletLimits] = (-1e9, WalletLimits())
        self._alive: dict[tuple[str, int], tuple[float, bool]] = {}
        self.realised_today = 0.0  # set by the service's ledger reader (its day: realised_day)
        self.realised_day = accounting.utc_day(now)
        self._last_sent = 0.0
        self._last_confirmed = 0.0
        self._was_leader = False
        self._started = False  # our slot is ours only once the series lock is (start())
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._refresher: threading.Thread | None = None
        # The decision loop (trader/priority.py): the refresher reads the shared record after a decision in progress
        # (its ~0.2 ms of Python would otherwise take the GIL from it). NONE: at once (tests, tools).
        self.gate = DecisionGate.NONE
        self.warning = ""  # a problem with the shared record, in words (status)
        # This series' cash moves so far (the execution core's cash book, set by the service): published with each
        # decision so the other series' cash checks know the wallet's pUSD moved (trader/execution/cash.py).
        self.cash_moves: Callable[[], int] | None = None

    # ---- this series' slot ------------------------------------------------------------------------
    def start(self, config, market=None) -> None:
        """Claim this series' slot: its limits from `config`; the exposure a previous run published stays until
        the first decision replaces it (its positions are still there)."""
        old = self.store.read(self.index)
        now = self.clock()
        rec = replace(self._record, updated=now, cap_usd=float(config.wallet.max_exposure_usd),
                      loss_limit_usd=float(config.wallet.max_daily_loss_usd),
                      own_loss_limit_usd=float(config.risk.max_daily_loss_usd))
        if old is not None and old.series == self.series.name:
            rec = replace(rec, exposure_usd=old.exposure_usd, open_buys_usd=old.open_buys_usd,
                          window_end=old.window_end, condition_ids=old.condition_ids,
                          pnl_today_usd=old.pnl_today_usd if old.day == rec.day else 0.0)
        if market is not None:
            rec = replace(rec, window_end=max(rec.window_end, int(market.window_end)),
                          condition_ids=_conds(market.condition_id, rec.condition_ids))
        with self.store.locked():
            self._write(rec)
        self._started = True
        log.info("wallet %s: series %s registered (slot %d, shared record %s)", self.funder, self.series.name,
                 self.index, self.store.path)

    def configure(self, config) -> None:
        """A new config (mmctl set, reload): its wallet limits go into the record at the next publish."""
        with self._lock:
            self._record = replace(self._record, cap_usd=float(config.wallet.max_exposure_usd),
                                   loss_limit_usd=float(config.wallet.max_daily_loss_usd),
                                   own_loss_limit_usd=float(config.risk.max_daily_loss_usd))
            self._published_at = 0.0

    def publish(self, *, exposure_usd: float, open_buys_usd: float, unrealised_usd: float, market=None,
                now: float | None = None) -> None:
        """After a decision: what this series' risk counts now (a memory store when something moved)."""
        now = self.clock() if now is None else now
        day = accounting.utc_day(now)
        realised = self.realised_today if self.realised_day == day else 0.0
        with self._lock:
            rec = self._record
            conds = _conds(market.condition_id, rec.condition_ids) if market is not None else rec.condition_ids
            pnl = realised + unrealised_usd
            moves = self._cash_moves(rec.cash_moves)
            moved = (abs(exposure_usd - rec.exposure_usd) > 0.005 or abs(pnl - rec.pnl_today_usd) > 0.005
                     or conds != rec.condition_ids or day != rec.day or moves != rec.cash_moves)
            # judged before the new record is built: most decisions move nothing, and this runs after every one
            if not moved and now - self._published_at < PUBLISH_EVERY_S:
                return
            window_end = int(market.window_end) if market is not None else rec.window_end
            self._write(replace(rec, updated=now, exposure_usd=exposure_usd, open_buys_usd=open_buys_usd,
                                pnl_today_usd=pnl, day=day, window_end=window_end, condition_ids=conds,
                                state=RUNNING, cash_moves=moves))

    def _cash_moves(self, last: int) -> int:
        if self.cash_moves is None:
            return last
        try:
            return int(self.cash_moves())
        except Exception:  # noqa: BLE001 - the decision's publish never fails on it: the last count stays
            return last

    def others_cash_moves(self) -> tuple:
        """The other series' published cash-move counters (who, which process, how many), for this series' cash
        check (trader/execution/balance.py reads it when a poll is asked and answered; a memory read)."""
        return tuple(sorted((rec.series, rec.pid, rec.cash_moves) for index, rec in self.store.records().items()
                            if index != self.index))

    def _write(self, rec: SeriesRecord) -> None:
        self.store.write(self.index, rec)
        self._record = rec
        self._published_at = rec.updated

    def stop(self, *, exposure_usd: float | None = None) -> None:
        """A clean stop: our orders are cancelled; what we hold still counts (state stopped). A trader that never
        got its series lock leaves the slot alone (it is another trader's)."""
        self._stop.set()
        for thread in (self._reader, self._refresher):
            if thread is not None:
                thread.join(timeout=5)
        if self._started:
            with self._lock:
                rec = replace(self._record, state=STOPPED, updated=self.clock(), open_buys_usd=0.0,
                              exposure_usd=self._record.exposure_usd - self._record.open_buys_usd
                              if exposure_usd is None else exposure_usd)
                try:
                    self._write(rec)
                except Exception:  # noqa: BLE001 - stopping must not fail on the shared record
                    log.exception("wallet record: could not mark series %s stopped", self.series.name)
            self._started = False
        self.liveness.release()
        self.lease.release()
        self.store.close()

    # ---- today's realised P&L, from the ledger (crash-safe: a restart reads it back) --------------
    def read_ledger(self, path, every_s: float = 30.0) -> None:
        """Read this series' P&L of windows that started today (UTC) from the ledger every `every_s`, in a thread
        of its own (a fold over a day of windows: never on the decision thread)."""
        def run() -> None:
            while True:
                self.refresh_realised(path)
                if self._stop.wait(every_s):
                    return
        self._reader = threading.Thread(target=run, name="polymm-wallet-ledger", daemon=True)
        self._reader.start()

    def refresh_realised(self, path) -> None:
        from polymm.trader.ledger import LedgerReadError, load_history

        now = self.clock()
        day_start = float(int(now) // 86400 * 86400)
        try:
            history = load_history(path, by="window", since=day_start, series=[self.series.name])
        except LedgerReadError as exc:
            log.debug("today's P&L not read from the ledger yet: %s", exc)
            return
        except Exception:  # noqa: BLE001 - the figure keeps its last value; status shows the ledger's own health
            log.exception("reading today's P&L from the ledger failed")
            return
        # Realised and resolution payouts of today's windows; a window still held counts at the bid (unrealised,
        # published with each decision), so only its realised part is taken here.
        self.realised_today = history.totals.net
        self.realised_day = accounting.utc_day(now)

    # ---- limits -----------------------------------------------------------------------------------
    def _others(self, now: float) -> list[tuple[SeriesRecord, bool]]:
        out = []
        for index, rec in self.store.records().items():
            if index == self.index:
                continue
            out.append((rec, rec.state == RUNNING and self._is_alive(rec, now)))
        return out

    def _is_alive(self, rec: SeriesRecord, now: float) -> bool:
        key = (rec.series, rec.pid)
        cached = self._alive.get(key)
        if cached is not None and now - cached[0] < ALIVE_EVERY_S:
            return cached[1]
        alive = series_alive(self.store.path, rec.series)
        self._alive[key] = (now, alive)
        if len(self._alive) > 64:
            self._alive = {k: v for k, v in self._alive.items() if now - v[0] < 60}
        return alive

    def state(self, now: float | None = None) -> accounting.WalletState:
        """Every series as the limits count them now (status, metrics)."""
        now = self.clock() if now is None else now
        with self._lock:
            own = self._record
        return accounting.wallet_state(own, self._others(now), now)

    def limits(self, now: float | None = None) -> WalletLimits:
        """For the decision: the other series' exposure, the cap in force, a halt (at most LIMITS_EVERY_S old). With
        the refresher running (start_refresher) this is a read of what it computed: no I/O on the decision thread
        (it reads the shared record and the other traders' liveness locks); without it, computed here when due."""
        now = self.clock() if now is None else now
        at, cached = self._limits
        if now - at < LIMITS_EVERY_S or (self._refresher is not None and now - at < 5 * LIMITS_EVERY_S):
            return cached
        return self._refresh_limits(now)

    def _refresh_limits(self, now: float) -> WalletLimits:
        at, cached = self._limits
        try:
            limits = self.state(now).limits()
            self.warning = ""
        except Exception as exc:  # noqa: BLE001 - the decision goes on with the last good limits
            if not self.warning:
                log.exception("wallet record unreadable")
            self.warning = f"shared wallet record {self.store.path} unreadable ({exc}); limits of the last good read"
            limits = cached
        self._limits = (now, limits)
        return limits

    def start_refresher(self) -> None:
        """Compute the limits every LIMITS_EVERY_S in a thread of their own (the decision then only reads them)."""
        def run() -> None:
            while not self._stop.wait(LIMITS_EVERY_S):
                self.gate.step_aside()
                try:
                    self._refresh_limits(self.clock())
                except Exception:  # noqa: BLE001 - the decision then computes them itself when due
                    log.exception("refreshing the wallet's limits failed")
        self._refresher = threading.Thread(target=run, name="polymm-wallet-limits", daemon=True)
        self._refresher.start()

    def admit(self, committed_usd: float, new_buys_usd: float, now: float | None = None) -> str | None:
        """Claim room for buys about to be sent: under the file lock, this series' exposure with them plus every
        other series' must stay within the wallet cap. None = claimed (published); else why not, in words. With no
        cap in force (wallet.max_exposure_usd 0 everywhere) there is nothing to claim: no lock is taken."""
        now = self.clock() if now is None else now
        at, cached = self._limits
        if cached.cap_usd <= 0 and now - at < 1.0:
            return None
        with self.store.locked():
            state = self.state(now)
            after = committed_usd + new_buys_usd
            if not accounting.claim_fits(after, state.others_usd, state.cap_usd):
                self._limits = (now, state.limits())
                return (f"wallet.max_exposure_usd {state.cap_usd:g}: this series ${after:.2f} with the new buys, "
                        f"the other series ${state.others_usd:.2f}")
            with self._lock:
                rec = replace(self._record, updated=now, exposure_usd=after,
                              open_buys_usd=self._record.open_buys_usd + new_buys_usd)
                self._write(rec)
        return None

    # ---- the leader -------------------------------------------------------------------------------
    @property
    def leader(self) -> bool:
        return self.lease.held

    def leader_info(self) -> Heartbeat:
        with self.store.locked():
            return self.store.heartbeat()

    def try_lead(self) -> bool:
        if not self.lead:
            return False
        if self.lease.try_acquire():
            if not self._was_leader:
                self._was_leader = True
                log.warning("this trader (series %s, pid %d) leads wallet %s: it sends the wallet's heartbeats, "
                            "redeems and cancels the orders of series whose trader died", self.series.name,
                            os.getpid(), self.funder)
            return True
        return False

    def heartbeat_send(self, send: Callable[[str], str], stale_after_s: float | None = None
                       ) -> Callable[[str], str | None]:
        """The heartbeat function for the execution core's Heartbeater (run every second): the leader posts every
        `heartbeat_interval_s` through `send`; the others confirm that the leader's heartbeats are accepted.
        Returns the next id, or None when nothing was due (no state change)."""
        from polymm.trader.execution.exchange_state import ExchangeError
        from polymm.trader.venue.gateway import HeartbeatRejected

        stale_after = stale_after_s if stale_after_s is not None else 2 * self.heartbeat_interval_s + 1.0

        def beat(heartbeat_id: str) -> str | None:
            now = self.clock()
            if self.try_lead():
                if now - self._last_sent < self.heartbeat_interval_s - 0.05:
                    return None
                try:
                    next_id = send(heartbeat_id)
                except HeartbeatRejected:
                    raise  # the chain's id: adopted and retried at once by the Heartbeater
                except ExchangeError as err:
                    self._set_heartbeat(failing=True, error=str(err)[:64], now=now)
                    raise
                self._last_sent = now
                self._set_heartbeat(failing=False, error="", now=now)
                self._reap_safely(now)
                return next_id
            hb = self.leader_info()
            age = now - hb.ok_at if hb.ok_at else float("inf")
            if hb.leader_pid and not hb.failing_since and age <= stale_after:
                if now - self._last_confirmed < self.heartbeat_interval_s - 0.05:
                    return None
                self._last_confirmed = now
                return heartbeat_id
            who = f"the leader (pid {hb.leader_pid}, series {hb.leader_series})" if hb.leader_pid else "no leader"
            why = f": {hb.error}" if hb.error else ""
            last = f"last accepted {age:.0f} s ago" if hb.ok_at else "none accepted yet"
            raise ExchangeError(None, f"the wallet's heartbeats ({who}) {last}{why}")
        return beat

    def _set_heartbeat(self, *, failing: bool, error: str, now: float) -> None:
        with self.store.locked():
            hb = self.store.heartbeat()
            self.store.set_heartbeat(Heartbeat(
                leader_pid=os.getpid(), leader_series=self.series.name,
                ok_at=hb.ok_at if failing else now,
                failing_since=(hb.failing_since or now) if failing else 0.0, error=error))

    def _reap_safely(self, now: float) -> None:
        try:
            self.reap(now)
        except Exception:  # noqa: BLE001 - a reaping problem must never stop the heartbeats
            log.exception("reaping dead series failed")

    def reap(self, now: float) -> list[str]:
        """The leader: a series whose trader is gone without a clean stop gets its markets' orders cancelled after
        REAP_AFTER_S (the dead-man switch one series alone has from the exchange). Returns the series reaped."""
        if self._cancel_market is None:
            return []
        reaped = []
        for index, rec in self.store.records().items():
            if index == self.index or rec.state != RUNNING:
                continue
            if self._is_alive(rec, now):
                continue
            if not rec.dead_since:
                with self.store.locked():
                    current = self.store.read(index)
                    if current is not None and current.pid == rec.pid and current.state == RUNNING:
                        self.store.write(index, replace(current, dead_since=now))
                log.warning("series %s: its trader (pid %d) is gone without stopping; its orders are cancelled in "
                            "%.0f s unless it comes back", rec.series, rec.pid, REAP_AFTER_S)
                continue
            if rec.reaped_at >= rec.dead_since or now - rec.dead_since < REAP_AFTER_S:
                continue
            cancelled = 0
            for condition_id in rec.condition_ids:
                cancelled += self._cancel_market(condition_id)
            with self.store.locked():
                current = self.store.read(index)
                if current is not None and current.pid == rec.pid:
                    self.store.write(index, replace(current, reaped_at=now))
            log.warning("series %s: its trader (pid %d) died with the wallet's heartbeats going on: cancelled %d "
                        "order(s) in its markets %s; its positions stay counted", rec.series, rec.pid, cancelled,
                        ", ".join(c[:12] for c in rec.condition_ids))
            reaped.append(rec.series)
        return reaped


def _conds(current: str, previous: tuple[str, ...]) -> tuple[str, ...]:
    """The current market first, then the one before it (orders may rest there until it closes)."""
    if previous and previous[0] == current:
        return previous
    return (current, *previous[:1]) if previous else (current,)


def wallet_key(funder: str, mode: str, state_dir) -> str:
    """The shared record's name: the wallet's address; a paper trader's paper wallet is its state directory's
    (paper wallets of unrelated runs never share limits)."""
    if mode != "paper":
        return funder.lower()
    import hashlib

    return "paper-" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]
