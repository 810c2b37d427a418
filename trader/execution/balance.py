"""The wallet's collateral as the exchange sees it, polled in the background; the cash the trader shows and spends.

`GET /balance-allowance?asset_type=COLLATERAL` answers the pUSD balance in base units (6 decimals) and an allowance
per exchange contract. An operator needs two warnings from it, in words: the balance is too low to reach the
configured exposure cap, and an allowance is missing (orders would be refused with "not enough balance /
allowance" even with money in the wallet). The decision loop never waits for this: a thread polls it.

Cash (issue 27: one money truth): with a `book` (the execution core), each answer goes to its cash book (cash.py),
which our own fills move at once between polls; `balance_usd` is then that cash: the exchange's figure, plus the
fills learnt since it was asked, put right (the exchange wins) at every poll. The book asks for an early poll when
a fill is in doubt (learnt while a poll was in flight, or over REST after a gap); `poll_soon()` asks for one from
outside (a redemption or merge confirmed: pUSD moved without a fill). `others` (several series on one wallet): the
other series' cash-move counters, read when a poll is asked and when it is answered (cash.py says why).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("polymm.trader.balance")

POLL_EVERY_S = 15.0
USDC_UNITS = 1_000_000


def parse_balance(answer: dict) -> tuple[float | None, bool | None]:
    """(pUSD balance, every allowance non-zero) from one /balance-allowance answer; None where absent (pure)."""
    balance = None
    try:
        balance = int(str(answer.get("balance", ""))) / USDC_UNITS
    except ValueError:
        pass
    allowances = answer.get("allowances")
    allowed = None
    if isinstance(allowances, dict) and allowances:
        try:
            allowed = all(int(str(v)) > 0 for v in allowances.values())
        except ValueError:
            allowed = None
    return balance, allowed


def balance_warnings(balance_usd: float | None, allowance_ok: bool | None, max_exposure_usd: float) -> list[str]:
    out = []
    if balance_usd is not None and balance_usd < max_exposure_usd:
        out.append(f"balance low: ${balance_usd:.2f} pUSD in the wallet, below risk.max_exposure_usd ${max_exposure_usd:g}")
    if allowance_ok is False:
        out.append("allowance missing: the exchange contracts may not spend the wallet's pUSD (approve them first)")
    return out


class BalanceWatcher:
    def __init__(self, gateway, *, every_s: float = POLL_EVERY_S, book=None, clock=time.time,
                 others: Callable[[], object] | None = None) -> None:
        self.gateway = gateway
        self.every_s = every_s
        self.book = book  # the execution core (cash_poll_asked / cash_poll_answered / cash_usd), or None
        self.others = others  # the wallet's other series' cash-move counters (WalletCoordinator.others_cash_moves)
        self.clock = clock
        self._polled_usd: float | None = None
        self.allowance_ok: bool | None = None
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    @property
    def balance_usd(self) -> float | None:
        """The wallet's cash: with a book, the exchange's last figure plus our fills since; else the last poll."""
        if self.book is not None:
            return self.book.cash_usd()
        return self._polled_usd

    @property
    def warning(self) -> str | None:
        """Our fills and the exchange's balance have disagreed for more than one poll (both figures), or None."""
        return self.book.cash_warning() if self.book is not None else None

    def poll_soon(self) -> None:
        """Ask the exchange now rather than at the next regular poll (pUSD moved outside our fills)."""
        self._soon.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="polymm-balance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._soon.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            next_at = self.clock() + self.every_s
            while not self._stop.is_set():
                due = self.book.cash_repoll_due() if self.book is not None else None
                wake = min(next_at, due) if due is not None else next_at
                if self._soon.wait(max(0.0, min(wake - self.clock(), 1.0))):
                    self._soon.clear()
                    break
                if self.clock() >= wake:
                    break

    def _others_now(self) -> object:
        if self.others is None:
            return None
        try:
            return self.others()
        except Exception as exc:  # noqa: BLE001 - an unreadable shared record: this comparison is in doubt
            return ("unreadable", str(exc), time.monotonic())

    def check_once(self) -> None:
        token = self.book.cash_poll_asked(self._others_now()) if self.book is not None else None
        try:
            answer = self.gateway.balance_allowance("COLLATERAL")
        except Exception as exc:  # the gateway's typed errors, or anything else: status shows the last known value
            if token is not None:
                self.book.cash_poll_failed()
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                log.warning("cannot read the wallet balance: %s", exc)
            return
        self._failures = 0
        balance, allowed = parse_balance(answer if isinstance(answer, dict) else {})
        self._polled_usd, self.allowance_ok = balance, allowed
        if token is not None:
            if balance is None:
                self.book.cash_poll_failed()
            else:
                self.book.cash_poll_answered(token, balance, self._others_now())
