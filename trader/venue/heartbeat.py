"""The exchange's dead-man switch: POST /v1/heartbeats every 5 s with the chained id.

Once the first heartbeat is accepted, the exchange cancels all our orders if no valid heartbeat arrives
within ~10 s. So a heartbeat failure is not cosmetic: after `max_failures` consecutive failures we stop
placing orders (the exchange is about to - or already did - cancel them), cancel what we have, and
resynchronise once heartbeats are accepted again.

The exchange answers a stale or wrong id with `400 Invalid Heartbeat ID` and the id it expects; we adopt
it and retry at once (that is not a failure of the link).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from polymm.trader.execution.exchange_state import ExchangeError

log = logging.getLogger("polymm.trader.heartbeat")

INTERVAL_S = 5.0


@dataclass
class HeartbeatState:
    """Pure: what the heartbeat loop knows. Actions are returned, not performed."""

    max_failures: int = 2
    heartbeat_id: str = ""
    failures: int = 0
    ok: bool = True
    last_ok_at: float | None = None
    last_error: str = ""
    sent: int = 0  # accepted heartbeats (the metrics' result="ok")
    failed: int = 0  # failed attempts (result="failed")

    def on_success(self, next_id: str, now: float) -> str | None:
        """-> "recovered" when heartbeats work again after a failure streak that stopped trading."""
        self.heartbeat_id = next_id
        self.failures = 0
        self.last_ok_at = now
        self.sent += 1
        self.last_error = ""
        if not self.ok:
            self.ok = True
            return "recovered"
        return None

    def on_failure(self, error: str) -> str | None:
        """-> "tripped" the moment consecutive failures reach max_failures."""
        self.failures += 1
        self.failed += 1
        self.last_error = error
        if self.ok and self.failures >= self.max_failures:
            self.ok = False
            return "tripped"
        return None


class Heartbeater:
    """Runs HeartbeatState against the gateway in its own thread (so nothing else can delay it)."""

    def __init__(self, send: Callable[[str], str | None], on_tripped: Callable[[str], None],
                 on_recovered: Callable[[], None], *, clock: Callable[[], float], interval_s: float = INTERVAL_S,
                 max_failures: int = 2) -> None:
        self._send = send
        self._on_tripped = on_tripped
        self._on_recovered = on_recovered
        self._clock = clock
        self.interval_s = interval_s
        self.state = HeartbeatState(max_failures=max_failures)
        self._stop = threading.Event()
        self._paused = threading.Event()  # tests: simulate a trader that stopped heart-beating
        self._thread: threading.Thread | None = None

    def beat_once(self) -> bool:
        """One heartbeat (with one immediate retry on an id mismatch). True when accepted."""
        from polymm.trader.venue.gateway import HeartbeatRejected  # the gateway owns the SDK; imported lazily for pure tests

        for _ in range(2):
            try:
                next_id = self._send(self.state.heartbeat_id)
                if next_id is None:
                    # Nothing was due (trader/wallet/: the wallet's leader sends every interval, the others confirm
                    # the leader's): the link is fine; after a failure streak that is a recovery.
                    if self.state.failures == 0 and self.state.ok:
                        return True
                    next_id = self.state.heartbeat_id
            except HeartbeatRejected as err:
                if err.expected_id is not None and err.expected_id != self.state.heartbeat_id:
                    log.info("heartbeat id rejected; adopting the id the exchange expects")
                    self.state.heartbeat_id = err.expected_id
                    continue
                return self._failed(f"heartbeat rejected: {err.message}")
            except ExchangeError as err:
                return self._failed(f"heartbeat failed: {err}")
            action = self.state.on_success(next_id, self._clock())
            if action == "recovered":
                log.warning("heartbeats accepted again: resuming after resync")
                self._on_recovered()
            return True
        return self._failed("heartbeat id rejected twice")

    def _failed(self, why: str) -> bool:
        action = self.state.on_failure(why)
        log.warning("%s (%d consecutive)", why, self.state.failures)
        if action == "tripped":
            log.error("heartbeats failed %d times in a row: stop placing orders, cancel, resync", self.state.failures)
            self._on_tripped(why)
        return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="polymm-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            if not self._paused.is_set():
                try:
                    self.beat_once()
                except Exception as exc:  # noqa: BLE001 - a dead heartbeat thread = every order cancelled, silently
                    log.exception("heartbeat pass crashed")
                    try:
                        self._failed(f"heartbeat crashed: {type(exc).__name__}: {exc}")
                    except Exception:  # noqa: BLE001 - the trip callback itself failed: keep beating
                        log.exception("heartbeat failure handling crashed")
            # After a failure retry sooner: the exchange's window is only ~10 s.
            wait = self.interval_s if self.state.failures == 0 else min(1.0, self.interval_s)
            self._stop.wait(max(0.0, wait - (self._clock() - started)))

    def pause(self, paused: bool = True) -> None:
        """Stop sending heartbeats without stopping the thread (fault drills and tests)."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
