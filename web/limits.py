"""Request-rate limits (pure: the caller passes the time), so one client cannot flood the trader's control socket
or guess the token.

- Every client address has a token bucket: `rate` requests a second on average, bursts up to `burst`.
- Requests with a wrong or missing token count against the address: after `max_failures` within `window_s`, the
  address is refused outright for `lockout_s` (a guesser gets a handful of tries a minute, not thousands).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Loose enough for the page (a status stream, a few clicks) and a script polling once a second; tight enough
# that no client can keep the trader's control socket busy.
RATE_PER_S = 10.0
BURST = 40
MAX_AUTH_FAILURES = 10
FAILURE_WINDOW_S = 60.0
LOCKOUT_S = 60.0
MAX_CLIENTS_TRACKED = 4096  # forget the oldest beyond this: memory stays bounded whoever connects


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    rate: float = RATE_PER_S
    burst: int = BURST
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, client: str, now: float) -> float:
        """0 when the request may go ahead (and is counted), else the seconds to wait before the next one."""
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS_TRACKED:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


@dataclass
class AuthFailures:
    max_failures: int = MAX_AUTH_FAILURES
    window_s: float = FAILURE_WINDOW_S
    lockout_s: float = LOCKOUT_S
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked(self, client: str, now: float) -> float:
        """Seconds left of this address's lockout (0: not locked out)."""
        until = self._locked_until.get(client, 0.0)
        if until <= now:
            self._locked_until.pop(client, None)
            return 0.0
        return until - now

    def failed(self, client: str, now: float) -> None:
        recent = [t for t in self._failures.get(client, []) if now - t < self.window_s] + [now]
        if len(recent) >= self.max_failures:
            self._locked_until[client] = now + self.lockout_s
            recent = []
        if client not in self._failures and len(self._failures) >= MAX_CLIENTS_TRACKED:
            self._failures.pop(next(iter(self._failures)))
        self._failures[client] = recent
