"""Fault injection: the ways production misbehaves that polymm must survive, switched on by tests through
the admin endpoint (sim/admin.py) and consumed by the REST and WebSocket layers.

Every fault is plain state here; the edges ask "is there a fault for this?" at one well-defined point,
so a fault fires exactly where production's would.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Production texts (polymarket-protocol.md section 6).
CANCEL_ONLY = "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed."
ORDER_TIMED_OUT = "order timed out"
POST_ONLY_MODE = "post-only mode: only post-only orders and cancels are allowed"
# 425 and 429 bodies are not recorded anywhere we could read; clients branch on the status code (and on
# Retry-After for 429), so these texts only need to be clear.
ENGINE_RESTARTING = "the matching engine is restarting, please retry later"
RATE_LIMITED = "Too Many Requests"

POST_STATUSES = (425, 429, 500, 503)


@dataclass
class PostFault:
    """The answer one upcoming POST /order or POST /orders gets instead of (or, for 500, after) placing."""

    status: int
    retry_after_s: float = 1.0

    @property
    def places_order(self) -> bool:
        # 500 "order timed out" is the dangerous one: the order IS on the book although the client saw
        # an error, so a client must ask the exchange rather than assume.
        return self.status == 500

    def body(self) -> dict:
        if self.status == 425:
            return {"error": ENGINE_RESTARTING}
        if self.status == 429:
            return {"error": RATE_LIMITED}
        if self.status == 503:
            return {"error": CANCEL_ONLY}
        return {"error": ORDER_TIMED_OUT}

    def headers(self) -> dict[str, str]:
        if self.status in (429, 503):
            return {"Retry-After": str(max(1, round(self.retry_after_s)))}
        return {}


@dataclass
class Faults:
    post_faults: list[PostFault] = field(default_factory=list)  # FIFO: the next posts' answers
    freeze_market_ws: bool = False  # data stops on the market channel, PONGs go on
    freeze_rtds: bool = False  # price updates stop on the RTDS socket (sim/rtds.py), PONGs go on
    ws_delay_s: float = 0.0  # every data frame waits this long before it is sent
    duplicate_next: int = 0  # the next N data frames are sent twice
    reorder_next: int = 0  # the next N pairs of data frames are swapped
    wrap_in_list: bool = False  # every data frame is a one-element JSON array (production does it at times)
    fail_next_trades: int = 0  # the next N trades involving a real account go FAILED after MATCHED
    fail_trades_of: str | None = None  # ...only those involving this address (any when None)
    stop_accepting: bool = False  # no new orders anywhere (Gamma shows acceptingOrders false)
    post_only_until: float = 0.0  # production's post-only mode after an engine restart
    closed_only: set[str] = field(default_factory=set)  # lower-case addresses in closed-only mode
    clock_skew_s: float = 0.0  # GET /time answers the exchange's clock this far from ours
    geoblock: tuple[bool, str, str] = (False, "IE", "L")  # GET /api/geoblock: (blocked, country, region)

    def take_post_fault(self) -> PostFault | None:
        return self.post_faults.pop(0) if self.post_faults else None

    def add_post_faults(self, status: int, count: int = 1, retry_after_s: float = 1.0) -> None:
        if status not in POST_STATUSES:
            raise ValueError(f"post_status must be one of {POST_STATUSES}, got {status}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self.post_faults.extend(PostFault(status, retry_after_s) for _ in range(count))

    def should_fail_trade(self, addresses: set[str]) -> bool:
        if self.fail_next_trades <= 0:
            return False
        if self.fail_trades_of is not None and self.fail_trades_of.lower() not in {a.lower() for a in addresses}:
            return False
        self.fail_next_trades -= 1
        return True

    def clear(self) -> None:
        fresh = Faults()
        self.__dict__.update(fresh.__dict__)

    def describe(self) -> dict:
        return {
            "post_faults": [f.status for f in self.post_faults],
            "freeze_market_ws": self.freeze_market_ws,
            "freeze_rtds": self.freeze_rtds,
            "ws_delay_s": self.ws_delay_s,
            "duplicate_next": self.duplicate_next,
            "reorder_next": self.reorder_next,
            "wrap_in_list": self.wrap_in_list,
            "fail_next_trades": self.fail_next_trades,
            "fail_trades_of": self.fail_trades_of,
            "stop_accepting": self.stop_accepting,
            "post_only_until": self.post_only_until,
            "closed_only": sorted(self.closed_only),
            "clock_skew_s": self.clock_skew_s,
            "geoblock": list(self.geoblock),
        }
