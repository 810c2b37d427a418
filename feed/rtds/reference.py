"""The feed's view of its asset's reference prices: latest price per source and each window's opening price.

Pure state, no I/O: `stream.py` feeds it decoded prices with their receive time, the service publishes what
it holds and persists openings (so a restart mid-window can recover the window's price to beat).

The opening price ("price to beat"). The BTC 15-minute markets resolve Up when Chainlink's BTC/USD price at
the window's end is at or above its price at the window's start (polymarket-protocol.md 3); the other assets'
5- and 15-minute markets the same on their own Chainlink stream, the hourly ones on Binance's 1-hour candle
(open vs close; docs/venue.md), so the source is the series' (`open_source`). We take as the opening price the
first point of that source whose *source* timestamp is at or after the window start T, and only
when we can tell it is the first: the previous point we saw is before T (the boundary was crossed while we
watched; after a reconnect the server's history dump fills the gap) and the point is at most
`open_tolerance_s` after T (Chainlink publishes about once a second; a later first point means we missed
the open). A point stamped exactly T is the open even with nothing seen before it. Otherwise the window's
opening is "unknown" until `restore()` supplies one (the feed's state file), and guards treat it as stale.
Assumption to re-check per market: late-2026 rule text names a 60-second Chainlink TWAP rather than the spot
stream (polymarket-protocol.md 0, 7.2); this module captures what the subscribed stream says.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from polymm.feed.rtds.wire import BINANCE, CHAINLINK, Price

DEFAULT_OPEN_TOLERANCE_S = 2.0
NAN = math.nan

# What an `apply` changed (bits, so the caller publishes only what moved).
CHAINLINK_BIT = 1
BINANCE_BIT = 2
OPEN_BIT = 4

CAPTURED = "captured"  # seen crossing the boundary on the stream
RECOVERED = "recovered"  # from the feed's state file after a restart
UNKNOWN = "unknown"  # the open was missed: guards must treat the window as stale


@dataclass
class SourcePrice:
    price: float = NAN
    source_ts: float = NAN  # unix s, the source's timestamp of `price`
    recv_ts: float = NAN  # unix s, when we received it
    updates: int = 0

    def age_s(self, now: float) -> float:
        """How old the price is by its own timestamp (inf when none yet)."""
        return now - self.source_ts if self.source_ts == self.source_ts else math.inf


@dataclass(frozen=True)
class Opening:
    window_start: int
    price: float  # NaN when unknown
    source_ts: float  # the point's own timestamp (NaN when unknown)
    how: str  # CAPTURED | RECOVERED | UNKNOWN
    note: str = ""

    @property
    def known(self) -> bool:
        return self.how != UNKNOWN and self.price == self.price


class ReferenceBook:
    """Latest Chainlink and Binance prices and the opening price of recent windows."""

    KEEP_OPENINGS = 8

    def __init__(self, window_s: int, open_tolerance_s: float = DEFAULT_OPEN_TOLERANCE_S,
                 open_source: str = CHAINLINK) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if open_source not in (CHAINLINK, BINANCE):
            raise ValueError(f"open_source must be {CHAINLINK} or {BINANCE}, got {open_source!r}")
        self.window_s = int(window_s)
        # The source the series resolves on (polymm/series.py `resolution_source`): Chainlink for the 5- and
        # 15-minute windows, Binance (the 1-hour candle's open) for the hourly ones. Its first point of a window
        # is the window's opening price.
        self.open_source = open_source
        self.open_tolerance_s = open_tolerance_s
        self.sources = {CHAINLINK: SourcePrice(), BINANCE: SourcePrice()}
        self.openings: dict[int, Opening] = {}
        self.out_of_order = 0  # points older than one already applied (history dumps repeat recent points)

    @property
    def chainlink(self) -> SourcePrice:
        return self.sources[CHAINLINK]

    @property
    def binance(self) -> SourcePrice:
        return self.sources[BINANCE]

    def window_of(self, ts: float) -> int:
        return int(ts // self.window_s) * self.window_s

    def apply(self, price: Price, recv_ts: float) -> int:
        """One decoded price. Returns the bits of what changed."""
        state = self.sources[price.source]
        last = state.source_ts
        if last == last and price.source_ts <= last:
            self.out_of_order += 1
            return 0
        state.price, state.source_ts, state.recv_ts = price.price, price.source_ts, recv_ts
        state.updates += 1
        bit = CHAINLINK_BIT if price.source == CHAINLINK else BINANCE_BIT
        if price.source != self.open_source:
            return bit
        return bit | self._maybe_open(price, last)

    def _maybe_open(self, price: Price, previous_ts: float) -> int:
        start = self.window_of(price.source_ts)
        known = self.openings.get(start)
        if known is not None and known.how != UNKNOWN:
            return 0
        if previous_ts == previous_ts and previous_ts >= start:
            return 0  # not the first point of this window (its fate was decided at the first)
        late = price.source_ts - start
        exact = late == 0.0
        if exact or (previous_ts == previous_ts and late <= self.open_tolerance_s):
            self._remember(Opening(start, price.price, price.source_ts, CAPTURED))
        elif known is None:
            why = (f"first point {late:.1f}s after the open (tolerance {self.open_tolerance_s:g}s)"
                   if previous_ts == previous_ts else "started after the open")
            self._remember(Opening(start, NAN, NAN, UNKNOWN, why))
        else:
            return 0
        return OPEN_BIT

    def restore(self, window_start: int, price: float, source_ts: float) -> bool:
        """An opening from the feed's own state file (a restart mid-window). Never overrides a capture."""
        if not (price > 0 and math.isfinite(price)) or window_start % self.window_s:
            return False
        known = self.openings.get(window_start)
        if known is not None and known.how == CAPTURED:
            return False
        self._remember(Opening(int(window_start), float(price), float(source_ts), RECOVERED))
        return True

    def opening(self, window_start: int) -> Opening:
        return self.openings.get(window_start) or Opening(window_start, NAN, NAN, UNKNOWN, f"no {self.open_source} point yet")

    def _remember(self, opening: Opening) -> None:
        self.openings[opening.window_start] = opening
        for old in sorted(self.openings)[:-self.KEEP_OPENINGS]:
            del self.openings[old]


def cross_check(ours: Opening, stated: float | None) -> tuple[str, str]:
    """(level, words) for the log after asking Gamma for the window's price to beat: "warning" on a
    disagreement, "info" otherwise."""
    if not ours.known:
        return "info", f"window {ours.window_start}: opening price {ours.how}; nothing to cross-check"
    if stated is None:
        return "info", f"window {ours.window_start}: Gamma states no price to beat; opening {ours.price:,.2f} unchecked"
    text = disagreement(ours, stated)
    if text:
        return "warning", text
    return "info", f"window {ours.window_start}: opening price {ours.price:,.2f} agrees with Gamma's price to beat"


def disagreement(ours: Opening, stated: float | None, rel_tol: float = 1e-4) -> str:
    """A log line when Gamma's stated price to beat (`eventMetadata.priceToBeat`, [3rd-party] in
    polymarket-protocol.md 3) differs from the opening we captured by more than `rel_tol`; else ''."""
    if stated is None or not ours.known or not (stated > 0):
        return ""
    if abs(ours.price - stated) <= rel_tol * stated:
        return ""
    return (f"window {ours.window_start}: our opening price {ours.price:,.2f} ({ours.how}) differs from the "
            f"exchange's stated price to beat {stated:,.2f} ({(ours.price / stated - 1) * 100:+.3f}%)")
