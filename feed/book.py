"""Both legs' order books for one market, from `book` snapshots and `price_change` deltas.

Pure: no I/O, no clock (callers pass the receive time). The stream applies decoded events here and
publishes `top(leg)` to shared memory when `apply` says a leg changed.

Exchange quirks handled here:
- A `price_change` size is the NEW TOTAL at that price, not a delta; "0" removes the level.
- Snapshots list each side worst-to-best on the real feed (best LAST); hand-made samples do the reverse.
  Nothing here depends on the order: the best level is the max bid / min ask of the level map.
- Each change carries the exchange's own best_bid/best_ask after it: we compare ours with it and count
  disagreements; a leg that keeps disagreeing asks for a resync (a fresh snapshot).
- `tick_size_change`: the new tick is recorded, and the leg's published top is withheld (NaN) until the
  book is seen consistent with the exchange again (a snapshot, or a change / best_bid_ask whose best
  prices match ours): prices quoted on the old tick are not trusted across the switch.
- The venue reports an empty side as best_bid "0" / best_ask "1" (or ""), which match our "no level".
"""
from __future__ import annotations

import math
import struct
from bisect import bisect_left, insort

from polymm.feed.shm.layout import geometry
from polymm.feed.wire import (
    BestBidAsk,
    Book,
    LastTradePrice,
    MarketResolved,
    NewMarket,
    PriceChange,
    TickSizeChange,
)

NAN = math.nan

# apply() result bits
UP = 1  # the Up leg's top of book (or last trade) changed
DOWN = 2  # the Down leg's top changed
TICK = 4  # the market's tick size changed (see MarketBook.tick_size)
RESYNC = 8  # our book cannot be trusted any more: get a fresh snapshot (reconnect)
RESOLVED = 16  # market_resolved arrived for this market
SNAPSHOT = 32  # a full `book` snapshot was applied

DISAGREE_RESYNC_AFTER = 3  # consecutive disagreeing messages on one leg before we ask for a resync
_EPS = 1e-9
CROSS_SUM_BIDS = 1.0 - _EPS  # up_bid + down_bid at/above this: a BUY Up and a BUY Down that should have minted
CROSS_SUM_ASKS = 1.0 + _EPS  # up_ask + down_ask at/below this: a SELL Up and a SELL Down that should have merged


class Side:
    """One side of one token's book: price -> size, the prices kept sorted ascending (so the top N levels are a
    slice, not a sort), the best price cached, and the side's part of the shm DEPTH block (N prices then N
    sizes, best first, NaN-padded) kept packed in its leg's buffer at `base`: a size change at a level in the
    top N patches one double in place; a level added or removed re-packs the side at the next publish
    (`stale`)."""

    __slots__ = ("levels", "prices", "best", "is_bid", "stale", "n", "buf", "base", "_struct", "_pad")

    def __init__(self, is_bid: bool, depth: int = 0, buf: bytearray | None = None, base: int = 0) -> None:
        self.levels: dict[float, float] = {}
        self.prices: list[float] = []  # ascending; the best bid is the last, the best ask the first
        self.best = NAN
        self.is_bid = is_bid
        self.stale = True
        self.n = depth
        self.buf = buf if buf is not None else bytearray(16 * depth)
        self.base = base  # byte offset of this side's N prices, then N sizes, in `buf`
        self._struct = geometry(depth).side
        self._pad = (NAN,) * depth

    def replace(self, levels) -> None:
        book = {lv.price: lv.size for lv in levels if lv.size > 0}
        self.levels = book
        self.prices = sorted(book)
        self.stale = True
        if book:
            self.best = self.prices[-1] if self.is_bid else self.prices[0]
        else:
            self.best = NAN

    def set(self, price: float, size: float) -> None:
        # (MarketBook._price_change inlines this, with the in-place size patch: keep the two the same)
        levels = self.levels
        self.stale = True
        if size > 0:
            if price not in levels:
                insort(self.prices, price)
            levels[price] = size
            best = self.best
            # NaN compares False both ways: the first level becomes the best
            if not (best == best) or (price > best if self.is_bid else price < best):
                self.best = price
        elif levels.pop(price, None) is not None:
            prices = self.prices
            del prices[bisect_left(prices, price)]
            if price == self.best:
                self.best = (prices[-1] if self.is_bid else prices[0]) if prices else NAN

    def best_size(self) -> float:
        best = self.best
        return self.levels[best] if best == best else NAN

    def top_levels(self, n: int) -> list[tuple[float, float]]:
        """The best `n` levels as (price, size), best first."""
        prices = self.prices[: -n - 1 : -1] if self.is_bid else self.prices[:n]
        levels = self.levels
        return [(p, levels[p]) for p in prices]

    def pack(self) -> None:
        """Re-pack this side's part of the shm DEPTH block (n prices then n sizes, best first, NaN-padded) into
        its leg's buffer when a level came or went since the last time."""
        if self.stale:
            n = self.n
            prices = self.prices[: -n - 1 : -1] if self.is_bid else self.prices[:n]
            short = self._pad[: n - len(prices)]
            self._struct.pack_into(self.buf, self.base, *prices, *short, *map(self.levels.__getitem__, prices), *short)
            self.stale = False

    def clear(self) -> None:
        self.levels = {}
        self.prices = []
        self.best = NAN
        self.stale = True


_PACK_SIZE = struct.Struct("<d").pack_into


def _venue_best(text: str, is_bid: bool) -> float:
    """The exchange's best_bid/best_ask string -> float, NaN for an empty side ("", "0" bid, "1"/"0" ask)."""
    if not text:
        return NAN
    try:
        value = float(text)
    except ValueError:
        return NAN
    if is_bid and value <= 0:
        return NAN
    if not is_bid and (value >= 1 or value <= 0):
        return NAN
    return value


_VENUE_BID: dict[str, float] = {}
_VENUE_ASK: dict[str, float] = {}


def _venue_bid(text: str) -> float:
    value = _VENUE_BID.get(text)
    if value is None:
        if len(_VENUE_BID) > 4096:  # prices are tick multiples; anything beyond that is noise
            _VENUE_BID.clear()
        value = _VENUE_BID[text] = _venue_best(text, True)
    return value


def _venue_ask(text: str) -> float:
    value = _VENUE_ASK.get(text)
    if value is None:
        if len(_VENUE_ASK) > 4096:
            _VENUE_ASK.clear()
        value = _VENUE_ASK[text] = _venue_best(text, False)
    return value


def _same(ours: float, theirs: float) -> bool:
    if ours != ours:
        return theirs != theirs
    return theirs == theirs and abs(ours - theirs) < _EPS


def _same_levels(side: Side, levels) -> bool:
    """Whether a snapshot's levels of one side are exactly the side we hold (sizes of 0 are no level)."""
    held = side.levels
    n = 0
    for lv in levels:
        if lv.size > 0:
            n += 1
            if held.get(lv.price) != lv.size:
                return False
    return n == len(held)


class LegBook:
    """One outcome token's book plus what we publish about it."""

    __slots__ = (
        "token",
        "bit",
        "bids",
        "asks",
        "last_trade",
        "exchange_ts",
        "recv_ts",
        "has_snapshot",
        "verified",
        "unverified_since",
        "disagree_run",
        "_depth_n",
        "_nan_depth",
        "_depth_buf",
    )

    def __init__(self, token: str, bit: int, depth: int = 0) -> None:
        self.token = token
        self.bit = bit
        self._depth_buf = bytearray(32 * depth)  # this leg's DEPTH: bids (N prices, N sizes), then asks
        self.bids = Side(True, depth, self._depth_buf, 0)
        self.asks = Side(False, depth, self._depth_buf, 16 * depth)
        self.last_trade = NAN
        self.exchange_ts = NAN
        self.recv_ts = NAN
        self.has_snapshot = False
        self.verified = True  # False between a tick_size_change and the next consistent sighting
        self.unverified_since = NAN
        self.disagree_run = 0
        self._depth_n = depth
        self._nan_depth = geometry(depth).nan_leg_depth

    def depth(self) -> bytes | bytearray | None:
        """This leg's part of the shm DEPTH block (bids then asks, `depth` levels each), as
        shm.Writer.publish_locked wants it: all NaN exactly when `top()`'s prices are (no snapshot yet, or
        awaiting re-verification after a tick change); None for a feed publishing no depth."""
        if not self._depth_n:
            return None
        if not (self.has_snapshot and self.verified):
            return self._nan_depth
        self.bids.pack()
        self.asks.pack()
        return self._depth_buf  # the writer copies it into the segment at once (same lock)

    def top(self) -> tuple:
        """(bid, bid_size, ask, ask_size, last_trade, exchange_ts, recv_ts) as shm.Writer.publish wants it.
        NaN prices while there is no snapshot yet or the leg awaits re-verification after a tick change."""
        if not (self.has_snapshot and self.verified):
            return (NAN, NAN, NAN, NAN, self.last_trade, self.exchange_ts, self.recv_ts)
        bid = self.bids.best
        ask = self.asks.best
        return (
            bid,
            self.bids.levels[bid] if bid == bid else NAN,
            ask,
            self.asks.levels[ask] if ask == ask else NAN,
            self.last_trade,
            self.exchange_ts,
            self.recv_ts,
        )

    def matches(self, best_bid: float, best_ask: float) -> bool:
        return _same(self.bids.best, best_bid) and _same(self.asks.best, best_ask)

    def matches_text(self, best_bid: str, best_ask: str) -> bool:
        """Our best prices equal the exchange's best_bid/best_ask strings (empty-side markers included).
        Written out flat: it runs for every leg of every price_change."""
        theirs = _VENUE_BID.get(best_bid)
        if theirs is None:
            theirs = _venue_bid(best_bid)
        ours = self.bids.best
        if ours == ours:
            if not (theirs == theirs and -_EPS < ours - theirs < _EPS):
                return False
        elif theirs == theirs:
            return False
        theirs = _VENUE_ASK.get(best_ask)
        if theirs is None:
            theirs = _venue_ask(best_ask)
        ours = self.asks.best
        if ours == ours:
            return theirs == theirs and -_EPS < ours - theirs < _EPS
        return theirs != theirs


class MarketBook:
    """The two legs of one market (window). `apply(event, recv_ts)` returns a bit set of what changed."""

    def __init__(
        self, up_token: str, down_token: str, condition_id: str = "", tick_size: float = 0.01, depth: int = 0
    ) -> None:
        self.up = LegBook(up_token, UP, depth)
        self.down = LegBook(down_token, DOWN, depth)
        self.condition_id = condition_id
        self.tick_size = tick_size
        self.by_token = {up_token: self.up, down_token: self.down}
        self.applied = 0  # market-data events applied to this market
        self.foreign = 0  # events for tokens that are not this market's
        self.disagreements = 0
        self.resolved_winner = ""  # winning token id once market_resolved arrived
        self.dispatch = {  # event type -> handler (the stream calls it directly)
            PriceChange: self._price_change,
            Book: self._book,
            LastTradePrice: self._last_trade,
            TickSizeChange: self._tick_size_change,
            BestBidAsk: self._best_bid_ask,
            NewMarket: self._ignore,
            MarketResolved: self._market_resolved,
        }

    # -- events -------------------------------------------------------------------------------------------

    def apply(self, event, recv_ts: float) -> int:
        return self.dispatch[type(event)](event, recv_ts)

    def _price_change(self, msg: PriceChange, recv_ts: float) -> int:
        # The hot path (bench/bench_feed.py): Side.set is inlined, and only the last change per leg is
        # cross-checked, because the exchange's best prices describe the book after the whole message.
        by_token = self.by_token
        up = self.up
        last_up = last_down = None
        for ch in msg.price_changes or msg.entries():
            leg = by_token.get(ch.asset_id)
            if leg is None:
                self.foreign += 1
                continue
            side = leg.bids if ch.side == "BUY" else leg.asks
            price = ch.price
            levels = side.levels
            size = ch.size
            if size > 0:
                if price in levels:
                    # A new size at a known level (most changes): the best cannot move; patch the packed depth.
                    levels[price] = size
                    if not side.stale:
                        n = side.n
                        if price == side.best:
                            _PACK_SIZE(side.buf, side.base + (n << 3), size)
                        else:
                            prices = side.prices
                            k = bisect_left(prices, price)
                            if side.is_bid:
                                k = len(prices) - 1 - k
                            if k < n:
                                _PACK_SIZE(side.buf, side.base + ((n + k) << 3), size)
                else:
                    insort(side.prices, price)
                    levels[price] = size
                    side.stale = True
                    best = side.best
                    if not (best == best) or (price > best if side.is_bid else price < best):
                        side.best = price
            elif levels.pop(price, None) is not None:
                prices = side.prices
                del prices[bisect_left(prices, price)]
                side.stale = True
                if price == side.best:
                    side.best = (prices[-1] if side.is_bid else prices[0]) if prices else NAN
            if leg is up:
                last_up = ch
            else:
                last_down = ch
        if last_up is None and last_down is None:
            return 0
        self.applied += 1
        ts = msg.timestamp / 1000.0
        changed = 0
        if last_up is not None:
            up.exchange_ts = ts
            up.recv_ts = recv_ts
            changed = UP
            if last_up.best_bid or last_up.best_ask:
                if up.matches_text(last_up.best_bid, last_up.best_ask):
                    up.disagree_run = 0
                    if not up.verified:
                        changed |= self._confirm(up)
                else:
                    changed |= self._disagree(up)
        if last_down is not None:
            down = self.down
            down.exchange_ts = ts
            down.recv_ts = recv_ts
            changed |= DOWN
            if last_down.best_bid or last_down.best_ask:
                if down.matches_text(last_down.best_bid, last_down.best_ask):
                    down.disagree_run = 0
                    if not down.verified:
                        changed |= self._confirm(down)
                else:
                    changed |= self._disagree(down)
        return changed

    def _disagree(self, leg: LegBook) -> int:
        if not leg.has_snapshot:
            return 0  # nothing to compare yet: the snapshot will come
        self.disagreements += 1
        leg.disagree_run += 1
        return RESYNC if leg.disagree_run >= DISAGREE_RESYNC_AFTER else 0

    @staticmethod
    def _confirm(leg: LegBook) -> int:
        """A leg awaiting re-verification (after a tick change) was seen consistent with the exchange."""
        leg.disagree_run = 0
        if leg.has_snapshot:
            leg.verified = True
            leg.unverified_since = NAN
            return leg.bit
        return 0

    def _cross_check(self, leg: LegBook, best_bid: str, best_ask: str) -> int:
        """Compare our best prices with the exchange's. Returns extra bits."""
        if leg.matches_text(best_bid, best_ask):
            return self._confirm(leg) if not leg.verified else self._agree(leg)
        return self._disagree(leg)

    @staticmethod
    def _agree(leg: LegBook) -> int:
        leg.disagree_run = 0
        return 0

    def _book(self, msg: Book, recv_ts: float) -> int:
        leg = self.by_token.get(msg.asset_id)
        if leg is None:
            self.foreign += 1
            return 0
        self.applied += 1
        if leg.has_snapshot and leg.verified and _same_levels(leg.bids, msg.bids) and _same_levels(leg.asks, msg.asks):
            # The exchange sends each leg's `book` right after a trade, behind the `price_change` that already moved
            # it: most are the book we hold. Published, each woke the trader for a decision on the same book while
            # the trade's next frame waited behind it (issue 26). Nothing the segment shows changes: no publish.
            leg.exchange_ts = msg.timestamp / 1000.0
            leg.recv_ts = recv_ts
            return SNAPSHOT
        leg.bids.replace(msg.bids)
        leg.asks.replace(msg.asks)
        leg.has_snapshot = True
        leg.verified = True
        leg.unverified_since = NAN
        leg.disagree_run = 0
        leg.exchange_ts = msg.timestamp / 1000.0
        leg.recv_ts = recv_ts
        return leg.bit | SNAPSHOT

    def _last_trade(self, msg: LastTradePrice, recv_ts: float) -> int:
        leg = self.by_token.get(msg.asset_id)
        if leg is None:
            self.foreign += 1
            return 0
        self.applied += 1
        leg.last_trade = msg.price
        leg.exchange_ts = msg.timestamp / 1000.0
        leg.recv_ts = recv_ts
        return leg.bit

    def _tick_size_change(self, msg: TickSizeChange, recv_ts: float) -> int:
        leg = self.by_token.get(msg.asset_id)
        if leg is None:
            self.foreign += 1
            return 0
        self.applied += 1
        leg.exchange_ts = msg.timestamp / 1000.0
        leg.recv_ts = recv_ts
        bits = leg.bit
        if msg.new_tick_size > 0 and msg.new_tick_size != self.tick_size:
            self.tick_size = msg.new_tick_size
            bits |= TICK
        if leg.verified:
            leg.verified = False
            leg.unverified_since = recv_ts
        return bits

    def _best_bid_ask(self, msg: BestBidAsk, recv_ts: float) -> int:
        leg = self.by_token.get(msg.asset_id)
        if leg is None:
            self.foreign += 1
            return 0
        self.applied += 1
        leg.recv_ts = recv_ts
        leg.exchange_ts = msg.timestamp / 1000.0
        return self._cross_check(leg, msg.best_bid, msg.best_ask)

    def _market_resolved(self, msg: MarketResolved, recv_ts: float) -> int:
        if msg.market and self.condition_id and msg.market != self.condition_id:
            if not (set(msg.assets_ids) & set(self.by_token)):
                self.foreign += 1
                return 0
        self.resolved_winner = msg.winning_asset_id
        return RESOLVED

    def _ignore(self, _msg, _recv_ts: float) -> int:
        return 0

    # -- derived --------------------------------------------------------------------------------------------

    def crossed(self) -> bool:
        """A book that should have matched. Within a leg: bid >= ask. Across legs (Up and Down are
        complements; the engine mints on BUY Up p + BUY Down >= 1-p and merges on SELL Up p + SELL Down
        <= 1-p): up_bid + down_bid >= 1 or up_ask + down_ask <= 1."""
        ub, ua, db, da = self.up.bids.best, self.up.asks.best, self.down.bids.best, self.down.asks.best
        # NaN comparisons are False, so an empty side never reads as crossed. (stream.on_frame inlines this.)
        return ub >= ua or db >= da or ub + db >= CROSS_SUM_BIDS or ua + da <= CROSS_SUM_ASKS

    def ready(self) -> bool:
        """Both legs have a snapshot (the first complete book of this market)."""
        return self.up.has_snapshot and self.down.has_snapshot

    def unverified_for(self, now: float) -> float:
        """Seconds the oldest leg has awaited re-verification after a tick change (0 if none)."""
        worst = 0.0
        for leg in (self.up, self.down):
            if not leg.verified and leg.unverified_since == leg.unverified_since:
                worst = max(worst, now - leg.unverified_since)
        return worst

    def reset(self) -> None:
        """Forget both books (a reconnect: the next snapshot rebuilds them)."""
        for leg in (self.up, self.down):
            leg.bids.clear()
            leg.asks.clear()
            leg.has_snapshot = False
            leg.verified = True
            leg.unverified_since = NAN
            leg.disagree_run = 0
