"""The redeemer's thread: read the wallet's positions, redeem / merge what is due through the relayer (or, for a
type-0 wallet, its own transactions: eoa.py), follow each request to its outcome, and publish the accounting
figures for `mmctl status`.

Every network call happens here, never on the decision thread; `snapshot()` is a cheap, lock-protected
read. A busy or unreachable relayer backs off (5 s doubling to 5 min) with a warning; nothing is lost,
because the journal only marks a request done when the relayer reports it mined.

Nothing can wedge it: batches are sized from the wallet type's gas figures (gas.py); a batch that reverts or is
refused is split, each half going out on the next cycle, down to single positions (journal.py keeps what was
learnt, across restarts); a position that fails alone is reported (status warning, the metric
polymm_trader_redeem_failing_positions and its alert) and backed off, then given up, while the others go on.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from polymm.trader.redeem import calls as ctf
from polymm.trader.redeem.gas import batch_limit
from polymm.trader.redeem.journal import Journal
from polymm.trader.redeem.plan import Action, plan, redeemable_conditions, worth
from polymm.trader.redeem.positions import PositionRow, PositionsError
from polymm.trader.redeem.relayer import Relayer, RelayerBusy, RelayerRefused

log = logging.getLogger("polymm.trader.redeem")

BACKOFF_MIN_S, BACKOFF_MAX_S = 5.0, 300.0
REPEAT_WARNING_S = 600.0  # an unreachable Data API is said once, then every 10 minutes while it lasts
NO_CREDENTIALS = "set the builder credentials (see README) or redeem in Polymarket's UI"
SUCCESS = ("STATE_MINED", "STATE_CONFIRMED")
FAILURE = ("STATE_FAILED", "STATE_INVALID")


@dataclass(frozen=True)
class RedeemSettings:
    delay_s: float = 30.0  # wait this long after the Data API first reports a position redeemable
    batch: int = 10
    merge: bool = False
    poll_s: float = 15.0
    resend_after_s: float = 120.0  # a request with no known outcome may go again after this
    stuck_after_s: float = 1800.0  # a relayed transaction with no outcome after this is given up (sent anew)


class Redeemer:
    def __init__(self, settings: RedeemSettings, fetch_rows: Callable[[], list[PositionRow]], journal: Journal,
                 relayer: Relayer | None, off_reason: str | None = None, clock: Callable[[], float] = time.time,
                 ledger=None):
        self.settings = settings
        # The trader's ledger (trader/ledger), when there is one: every request and outcome is also recorded
        # there as an event, for `mmctl history` and the report. The journal stays the restart-safe record:
        # the ledger is written asynchronously, and a request must be on disk before it is sent.
        self.ledger = ledger
        self.fetch_rows = fetch_rows
        self.journal = journal
        self.relayer = relayer
        self.off_reason = off_reason if relayer is None else None
        # Calls per transaction: the wallet type's gas figures bound the configured redeem.batch (gas.py).
        self.batch = batch_limit(relayer.kind, settings.batch) if relayer is not None else settings.batch
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshot: dict = {"enabled": relayer is not None, "off_reason": self.off_reason}
        self._backoff_s = 0.0
        self._next_try = 0.0
        self._warned: tuple = ()
        self._first_seen: dict[str, float] = {}  # condition id -> when the Data API first said redeemable
        self._positions_failing_since: float | None = None
        self._positions_said_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Called with the pUSD a confirmed redemption or merge paid: it moved outside our fills, so the trader counts
        # it at once and asks the exchange for its balance (trader/execution/cash.py, balance.py).
        self.on_cash_moved: Callable[[float], None] | None = None
        # Several series on one wallet (trader/wallet/): only the wallet's leader redeems; `active()` says whether
        # this trader is it. When it becomes so, the journal is read again: the previous leader wrote it.
        self.active: Callable[[], bool] | None = None
        self._was_active = True

    # ---- thread ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="redeemer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the redeemer must outlive any surprise; the next cycle tries again
                log.exception("redeemer cycle failed")
            self._stop.wait(self.settings.poll_s)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._snapshot)

    # ---- one cycle -------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock()
        try:
            rows = self.fetch_rows()
        except PositionsError as exc:
            self._publish(last_error=str(exc))
            if self._positions_failing_since is None or now - self._positions_said_at >= REPEAT_WARNING_S:
                log.warning("redeemer: %s (positions unknown: nothing is redeemed until it answers)", exc)
                self._positions_said_at = now
            self._positions_failing_since = self._positions_failing_since or now
            return
        if self._positions_failing_since is not None:
            log.info("redeemer: the Data API answers again (after %.0f s)", now - self._positions_failing_since)
            self._positions_failing_since = None
        value = worth(rows)
        redeemable = redeemable_conditions(rows)
        self._first_seen = {c: self._first_seen.get(c, now) for c in redeemable}
        warnings = []
        if value.awaiting_count and self.relayer is None:
            what = f"{value.awaiting_count} positions worth ${value.awaiting_usd:.2f} are redeemable"
            warnings.append(f"{what}: {NO_CREDENTIALS}" if self.off_reason is None else f"{what}: {self.off_reason}")
            if self._warned != (value.awaiting_count, value.awaiting_usd):
                self._warned = (value.awaiting_count, value.awaiting_usd)
                log.warning("%s", warnings[-1])
        active = self.active is None or self.active()
        if not active or not self._was_active:
            # Read, never written, while another trader of the wallet redeems: its requests and what they redeemed
            # today (status); once this one leads, it starts from what the previous leader requested.
            self.journal = Journal.open(self.journal.path.parent)
        self._was_active = active
        if self.relayer is not None and active:
            self._follow_up(now)
            if now >= self._next_try:
                self._send(rows, now)
        listed = {r.condition_id.lower() for r in rows}
        if active:
            self.journal.prune(now, listed)  # the journal file is the leader's to write
        failing = [e for e in self.journal.failing() if e.kind == "redeem" and e.condition_id.lower() in listed]
        warnings += [_failing_words(e, now) for e in failing]
        self._publish(open_value_usd=value.open_value_usd, awaiting_redemption_usd=value.awaiting_usd,
                      awaiting_redemption_count=value.awaiting_count, warning="; ".join(warnings) or None,
                      failing_count=len(failing), failing_usd=float(sum(Decimal(e.shares) for e in failing)),
                      failing=[{"condition_id": e.condition_id, "slug": e.slug, "shares": e.shares,
                                "failures": e.alone_failures, "given_up": e.given_up, "retry_at": e.retry_at,
                                "error": e.error} for e in failing], leader=active,
                      in_flight=len(self.journal.pending_tx_ids()), updated_at=now, **self.journal.today(now))

    def _follow_up(self, now: float) -> None:
        for tx_id in self.journal.pending_tx_ids():
            try:
                state, error = self.relayer.state(tx_id)
            except RelayerBusy as exc:
                self._trouble(str(exc), now)
                return
            if state in SUCCESS:
                paid = 0.0
                for entry in self.journal.finish(tx_id, "confirmed", now):
                    self._record("redeem_outcome", entry, tx_id, state=state, pusd=entry.shares)
                    verb = "redeemed" if entry.kind == "redeem" else "merged"
                    log.info("%s %s: +$%s pUSD (relayer tx %s)", verb, entry.slug or entry.condition_id,
                             entry.shares, tx_id)
                    paid += float(entry.shares)
                if paid and self.on_cash_moved is not None:
                    self.on_cash_moved(paid)
            elif state in FAILURE:
                # Reverted: the batch is split (or a single position backed off) by what the journal learns.
                for entry in self.journal.finish(tx_id, "failed", now, error or state, reverted=True):
                    self._record("redeem_outcome", entry, tx_id, state=state, error=error)
                    log.warning("%s of %s failed on chain (%s, relayer tx %s); %s", entry.kind,
                                entry.slug or entry.condition_id, error or state, tx_id, _next_step(entry, now))
            else:
                sent = [e for e in self.journal.entries.values() if e.tx_id == tx_id]
                if sent and now > sent[0].updated_at + self.settings.stuck_after_s:
                    self.journal.finish(tx_id, "failed", now, f"no outcome after {self.settings.stuck_after_s:.0f} s")
                    log.warning("relayer tx %s has had no outcome for %.0f min (state %s); requesting again",
                                tx_id, self.settings.stuck_after_s / 60, state)

    def _send(self, rows: list[PositionRow], now: float) -> None:
        s = self.settings
        for batch in plan(rows, self.journal.busy(now, s.resend_after_s), now, first_seen=self._first_seen,
                          delay_s=s.delay_s, merge=s.merge, batch=self.batch, limits=self.journal.limits()):
            calls = [ctf.approve_adapter()] + [_call(a) for a in batch]
            self.journal.begin(batch, now)
            try:
                tx_id = self.relayer.submit(calls, _metadata(batch))
            except RelayerRefused as exc:
                if exc.credentials:  # not these positions' fault: nothing to split, say it and wait
                    self.journal.abandon(batch, str(exc), now)
                    self._trouble(str(exc), now)
                    return
                for entry in self.journal.refused(batch, str(exc), now):
                    log.warning("%s of %s refused (%s); %s", entry.kind, entry.slug or entry.condition_id, exc,
                                _next_step(entry, now))
                continue
            except RelayerBusy as exc:
                self.journal.abandon(batch, str(exc), now)
                self._trouble(str(exc), now)
                return
            self.journal.sent(batch, tx_id, now)
            for action in batch:
                self._record("redeem_request", action, tx_id)
            self._backoff_s = 0.0
            log.info("requested %s (relayer tx %s)", ", ".join(f"{a.kind} {a.slug or a.condition_id} "
                                                                f"(${a.shares})" for a in batch), tx_id)

    def _record(self, kind: str, item, tx_id: str, **extra) -> None:
        if self.ledger is None:
            return
        detail = {"kind": item.kind, "condition_id": item.condition_id, "slug": item.slug,
                  "shares": str(item.shares), "tx_id": tx_id, **extra}
        try:
            self.ledger.event(kind, json.dumps(detail, sort_keys=True))
        except Exception:  # the ledger must never stop a redemption
            log.exception("recording %s in the ledger failed", kind)

    def _back_off(self, now: float) -> None:
        self._backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff_s * 2))
        self._next_try = now + self._backoff_s

    def _trouble(self, message: str, now: float) -> None:
        self._back_off(now)
        log.warning("redeemer: %s; trying again in %.0f s (nothing is lost: the positions stay redeemable)",
                    message, self._backoff_s)
        self._publish(last_error=message)

    def _publish(self, **fields) -> None:
        with self._lock:
            self._snapshot.update(fields)


def _next_step(entry, now: float) -> str:
    if entry.alone_failures == 0:
        return f"split: its positions go in batches of at most {entry.max_batch} next"
    if entry.given_up:
        return f"given up after failing alone {entry.alone_failures} times: redeem it in Polymarket's UI"
    return f"failed alone {entry.alone_failures} time(s): next try in {max(0.0, entry.retry_at - now) / 60:.0f} min"


def _failing_words(entry, now: float) -> str:
    what = f"redemption of {entry.slug or entry.condition_id} (${Decimal(entry.shares):.2f})"
    if entry.given_up:
        return (f"{what} failed alone {entry.alone_failures} times ({entry.error}); given up: redeem it in "
                f"Polymarket's UI")
    return (f"{what} failed alone {entry.alone_failures} time(s) ({entry.error}); next try in "
            f"{max(0.0, entry.retry_at - now) / 60:.0f} min")


def _call(action: Action) -> ctf.Call:
    return ctf.redeem(action.condition_id) if action.kind == "redeem" else ctf.merge(action.condition_id, action.shares)


def _metadata(batch: list[Action]) -> str:
    kinds = sorted({a.kind for a in batch})
    return f"polymm {'+'.join(kinds)} {len(batch)}"[:64]
