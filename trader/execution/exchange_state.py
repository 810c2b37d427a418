"""What the exchange lets us do right now, as explicit states - never a retry loop (pure; callers pass `now`).

Typed exchange errors are defined here (the gateway raises them; the state machine consumes them):

| exchange answer                                   | error               | state                                   |
|---------------------------------------------------|---------------------|-----------------------------------------|
| 425 (matching engine restarting)                  | EngineRestarting    | engine_restarting for an exponential back-off (1 s, 2 s, ... 30 s), then post_only for `post_only_after_restart_s` (production: 2 min) |
| 503 `post_only_mode` (+ retry_after_seconds)      | PostOnlyMode        | post_only until then                    |
| 503 cancel-only / trading disabled                | CancelOnly          | cancel_only; probed again after a back-off (no end is announced) |
| 429 (+ Retry-After)                               | RateLimited         | rate_limited until Retry-After          |
| 400 `not enough balance / allowance` (every wording in BALANCE_REFUSAL) | InsufficientBalance | 1st time: refresh the balance cache; 2nd: that leg blocked (until a new window or an operator clears it) |
| 400 `address in closed only mode` / ban-status    | ClosedOnly          | closed_only: only SELLs (closing) allowed |
| timeout / network / other 5xx                     | NetworkError / ServerError | no state: a submit's outcome is *unknown* and is looked up |
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from polymm.trader.model import ExchangeMode, ExchangeStatus, Leg, Side


# ---- typed errors --------------------------------------------------------------------------------
class ExchangeError(Exception):
    """An exchange answer other than success. `status` is the HTTP status (None: no answer at all)."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status is not None else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def outcome_unknown(self) -> bool:
        """For a submit: the order may or may not have reached the book."""
        return False


class NetworkError(ExchangeError):
    """Timeout, connection refused/reset: no HTTP answer."""

    @property
    def outcome_unknown(self) -> bool:
        return True


class ServerError(ExchangeError):
    """5xx other than 503 (e.g. 500 "order timed out")."""

    @property
    def outcome_unknown(self) -> bool:
        return True


class EngineRestarting(ExchangeError):
    pass


class PostOnlyMode(ExchangeError):
    pass


class CancelOnly(ExchangeError):
    pass


class RateLimited(ExchangeError):
    pass


class InsufficientBalance(ExchangeError):
    pass


class ClosedOnly(ExchangeError):
    pass


class NotFound(ExchangeError):
    pass


class AuthError(ExchangeError):
    pass


class Rejected(ExchangeError):
    """Any other 4xx: the exchange refused this request (bad price, min size, crosses book...)."""


# Every wording of "your balance or allowance does not cover this order" seen from the exchange, matched
# case-insensitively (docs/venue.md lists where each was seen):
#   "not enough balance / allowance"   docs.polymarket.com resources/error-codes; py-clob-client #109, #287, #290
#   "not enough balance / allowance: the balance is not enough -> balance: 4893500, order amount: 5000000"
#                                      py-clob-client #311, Polymarket/py-sdk #101 (the newer, detailed form)
#   "not enough balance / allowances"  Polymarket/clob-client #310
#   "Insufficient balance" / "insufficient funds"   py-clob-client #93; the unified SDK's wording
#   "... the allowance is not enough ..."           the detailed form's allowance twin
BALANCE_REFUSAL = re.compile(
    r"not enough (?:balance|allowance)|insufficient (?:balance|allowance|funds)|(?:balance|allowance) is not enough",
    re.IGNORECASE)


def classify(status: int | None, message: str, body: object = None, retry_after: float | None = None) -> ExchangeError:
    """One place that turns an HTTP answer into a typed error."""
    text = message.lower()
    if isinstance(body, dict) and retry_after is None:
        ra = body.get("retry_after_seconds")
        if isinstance(ra, (int, float)):
            retry_after = float(ra)
    code = str(body.get("code", "")).lower() if isinstance(body, dict) else ""
    if status is None:
        return NetworkError(None, message or "no answer from the exchange", retry_after)
    if status == 425:
        return EngineRestarting(status, message, retry_after)
    if status == 429:
        return RateLimited(status, message, retry_after)
    if status == 503 or "post_only_mode" in code or "post-only mode" in text:
        if "post_only" in code or "post-only mode" in text:
            return PostOnlyMode(status, message, retry_after)
        return CancelOnly(status, message, retry_after)
    if status >= 500:
        return ServerError(status, message, retry_after)
    if BALANCE_REFUSAL.search(message):
        return InsufficientBalance(status, message, retry_after)
    if "closed only" in text or "closed_only" in text:
        return ClosedOnly(status, message, retry_after)
    if status == 404 or "not found" in text:
        return NotFound(status, message, retry_after)
    if status == 401:
        return AuthError(status, message, retry_after)
    return Rejected(status, message, retry_after)


def reject_cause(err: ExchangeError) -> str:
    """Why the exchange refused an order, as a short closed-set word (the metrics' `cause` label): its class,
    e.g. RateLimited -> rate_limited, InsufficientBalance -> insufficient_balance, Rejected -> rejected."""
    name = type(err).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


# The one wording of "the dead-man switch heartbeats fail" (mmctl status shows it; ctl/status.py falls back to
# the same words for a trader that only sets heartbeat_ok=False).
HEARTBEATS_FAILING = "heartbeats failing: not placing orders; the exchange may cancel ours (dead-man switch)"


# ---- the state machine ---------------------------------------------------------------------------
@dataclass
class ExchangeState:
    post_only_after_restart_s: float = 120.0
    backoff_max_s: float = 30.0
    cancel_only_probe_s: float = 10.0

    mode: ExchangeMode = ExchangeMode.NORMAL
    until: float | None = None
    heartbeat_ok: bool = True
    user_stream_connected: bool = False
    last_reconcile_at: float | None = None
    blocked_legs: dict[Leg, str] = field(default_factory=dict)
    balance_refreshed: set[Leg] = field(default_factory=set)
    extra_warnings: dict[str, str] = field(default_factory=dict)  # key -> words (heartbeat, user stream...)
    # Set while the exchange wants an order version we cannot sign (the gateway's words): no new orders, since
    # every one would be refused; cleared when GET /version names a version we sign again.
    order_version_problem: str | None = None
    _restart_backoff: float = 1.0
    _cancel_only_backoff: float = 10.0
    _rate_backoff: float = 1.0
    _mode_reason: str = ""

    def status(self) -> ExchangeStatus:
        return ExchangeStatus(
            mode=self.mode, until=self.until, heartbeat_ok=self.heartbeat_ok,
            user_stream_connected=self.user_stream_connected, last_reconcile_at=self.last_reconcile_at,
            blocked_legs=dict(self.blocked_legs), warnings=self.warnings(),
        )

    def warnings(self) -> list[str]:
        out = []
        if self.mode is not ExchangeMode.NORMAL:
            until = f" until {self.until:.0f}" if self.until else ""
            out.append({
                ExchangeMode.ENGINE_RESTARTING: "exchange matching engine is restarting (HTTP 425): no new orders",
                ExchangeMode.POST_ONLY: "exchange is in post-only mode: only post-only orders are sent",
                ExchangeMode.CANCEL_ONLY: "exchange is cancel-only (HTTP 503): no new orders, cancels still sent",
                ExchangeMode.RATE_LIMITED: "rate limited by the exchange (HTTP 429): waiting for Retry-After",
                ExchangeMode.CLOSED_ONLY: "account is in closed-only mode: only closing SELL orders are sent",
            }[self.mode] + until + (f" ({self._mode_reason})" if self._mode_reason else ""))
        if self.order_version_problem:
            out.append(self.order_version_problem)
        if not self.heartbeat_ok:
            out.append(HEARTBEATS_FAILING)
        for leg, reason in sorted(self.blocked_legs.items(), key=lambda kv: kv[0].value):
            out.append(f"leg {leg.value} blocked: {reason}")
        out.extend(self.extra_warnings.values())
        return out

    # ---- inputs -----------------------------------------------------------------------------------
    def on_error(self, err: ExchangeError, now: float, leg: Leg | None = None) -> str | None:
        """Apply an error from an order/cancel call. Returns an action for the caller: "refresh_balance"
        (refresh the exchange's balance cache, once per leg) or None."""
        if isinstance(err, EngineRestarting):
            self._set(ExchangeMode.ENGINE_RESTARTING, now + self._restart_backoff, err.message)
            self._restart_backoff = min(self.backoff_max_s, self._restart_backoff * 2)
        elif isinstance(err, PostOnlyMode):
            self._set(ExchangeMode.POST_ONLY, now + (err.retry_after or self.post_only_after_restart_s), err.message)
        elif isinstance(err, CancelOnly):
            self._set(ExchangeMode.CANCEL_ONLY, now + self._cancel_only_backoff, err.message)
            self._cancel_only_backoff = min(60.0, self._cancel_only_backoff * 2)
        elif isinstance(err, RateLimited):
            wait = err.retry_after if err.retry_after is not None else self._rate_backoff
            self._rate_backoff = min(self.backoff_max_s, self._rate_backoff * 2)
            self._set(ExchangeMode.RATE_LIMITED, now + wait, err.message)
        elif isinstance(err, ClosedOnly):
            self._set(ExchangeMode.CLOSED_ONLY, None, err.message)
        elif isinstance(err, InsufficientBalance) and leg is not None:
            if leg not in self.balance_refreshed:
                self.balance_refreshed.add(leg)
                return "refresh_balance"
            self.blocked_legs[leg] = f"not enough balance / allowance (after refreshing the balance cache): {err.message}"
        return None

    def on_order_accepted(self, now: float) -> None:
        """A new order was accepted: cancel-only / rate limiting are over; back-offs reset."""
        if self.mode in (ExchangeMode.CANCEL_ONLY, ExchangeMode.RATE_LIMITED):
            self._set(ExchangeMode.NORMAL, None, "")
        self._cancel_only_backoff = self.cancel_only_probe_s
        self._rate_backoff = 1.0

    def set_closed_only(self, closed_only: bool) -> None:
        if closed_only and self.mode is not ExchangeMode.CLOSED_ONLY:
            self._set(ExchangeMode.CLOSED_ONLY, None, "ban-status/closed-only says so")
        elif not closed_only and self.mode is ExchangeMode.CLOSED_ONLY:
            self._set(ExchangeMode.NORMAL, None, "")

    def clear_blocks(self) -> None:
        """New window or operator: try the blocked legs again (a balance cache refresh first, once)."""
        self.blocked_legs.clear()
        self.balance_refreshed.clear()

    def tick(self, now: float) -> bool:
        """Time passes: expire modes. Returns True when the state changed."""
        if self.until is None or now < self.until:
            return False
        if self.mode is ExchangeMode.ENGINE_RESTARTING:
            # After a restart production runs ~2 minutes of post-only.
            self._set(ExchangeMode.POST_ONLY, now + self.post_only_after_restart_s, "after engine restart")
        elif self.mode is ExchangeMode.POST_ONLY:
            self._restart_backoff = 1.0
            self._set(ExchangeMode.NORMAL, None, "")
        elif self.mode in (ExchangeMode.RATE_LIMITED, ExchangeMode.CANCEL_ONLY):
            # No end was announced for cancel-only: the next order is the probe.
            self._set(ExchangeMode.NORMAL, None, "")
        else:
            return False
        return True

    # ---- the gate ---------------------------------------------------------------------------------
    def refuse_reason(self, leg: Leg, side: Side, post_only: bool, now: float) -> str | None:
        """Why a new order may not be sent now (None: it may)."""
        self.tick(now)
        if self.order_version_problem:
            return self.order_version_problem
        if not self.heartbeat_ok:
            return "heartbeats failing"
        if self.mode in (ExchangeMode.ENGINE_RESTARTING, ExchangeMode.CANCEL_ONLY, ExchangeMode.RATE_LIMITED):
            return self.mode.value
        if self.mode is ExchangeMode.POST_ONLY and not post_only:
            return "exchange in post-only mode and the order is not post-only"
        if self.mode is ExchangeMode.CLOSED_ONLY and side is not Side.SELL:
            return "account in closed-only mode"
        if leg in self.blocked_legs:
            return f"leg {leg.value} blocked: {self.blocked_legs[leg]}"
        return None

    def _set(self, mode: ExchangeMode, until: float | None, reason: str) -> None:
        self.mode, self.until, self._mode_reason = mode, until, reason
