"""The wallet's collateral as the exchange sees it, refreshed in the background for `mmctl status`.

`GET /balance-allowance?asset_type=COLLATERAL` answers the pUSD balance in base units (6 decimals) and an allowance
per exchange contract. An operator needs two warnings from it, in words: the balance is too low to reach the
configured exposure cap, and an allowance is missing (orders would be refused with "not enough balance /
allowance" even with money in the wallet). The decision loop never waits for this: a thread polls it.
"""
from __future__ import annotations

import logging
import threading

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
    def __init__(self, gateway, *, every_s: float = POLL_EVERY_S) -> None:
        self.gateway = gateway
        self.every_s = every_s
        self.balance_usd: float | None = None
        self.allowance_ok: bool | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="polymm-balance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.every_s)

    def check_once(self) -> None:
        try:
            answer = self.gateway.balance_allowance("COLLATERAL")
        except Exception as exc:  # the gateway's typed errors, or anything else: status shows the last known value
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:
                log.warning("cannot read the wallet balance: %s", exc)
            return
        self._failures = 0
        balance, allowed = parse_balance(answer if isinstance(answer, dict) else {})
        self.balance_usd, self.allowance_ok = balance, allowed
