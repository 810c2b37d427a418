"""Market-channel WebSocket messages, decoded once at the edge into typed msgspec Structs.

Polymarket's market channel (polymarket-protocol.md 2.1) sends JSON objects tagged by `event_type`,
sometimes wrapped in a JSON array. Numbers arrive as decimal strings ("0.51", "1757908892351"); the
decoder runs msgspec in lax mode (strict=False) so those become float/int in the same pass, without a
second walk over the message. Unknown fields are ignored (the venue adds keys without notice); an unknown
`event_type` or a malformed frame is counted and skipped, never fatal.
"""
from __future__ import annotations

from typing import Literal, Union

import msgspec


class Level(msgspec.Struct, gc=False):
    price: float
    size: float


class Book(msgspec.Struct, tag_field="event_type", tag="book", gc=False):
    """Full snapshot of one token's book: on subscribe and after trades. The real feed lists each side
    worst-to-best (bids ascending, asks descending: best level LAST); hand-made samples do the reverse.
    Consumers must not rely on either order."""

    asset_id: str
    market: str = ""
    bids: list[Level] = []
    asks: list[Level] = []
    timestamp: int = 0  # ms
    hash: str = ""


class PriceChangeEntry(msgspec.Struct, gc=False):
    asset_id: str
    price: float
    size: float  # the NEW TOTAL at this level, not a delta; 0 removes the level
    side: Literal["BUY", "SELL"]  # BUY = a bid level, SELL = an ask level
    # (`hash`, the book hash after the change, is not declared: unused, and skipping it saves a string
    # allocation per entry on the hot path.)
    # The exchange's best bid/ask of this token after the change: our cross-check. Kept as text because
    # the venue has sent "" for an empty side, which lax float decoding would reject for the whole frame.
    best_bid: str = ""
    best_ask: str = ""


class PriceChange(msgspec.Struct, tag_field="event_type", tag="price_change", gc=False):
    """Level updates. Current schema (since 2025-09-15): `price_changes[]`, each entry with its own asset_id
    and best_bid/best_ask; one message can carry both tokens of the market. The old schema had a single
    level at the top (asset_id/price/size/side) and is still accepted: see `entries()`."""

    market: str = ""
    timestamp: int = 0  # ms
    price_changes: list[PriceChangeEntry] = []
    # old single-level schema
    asset_id: str = ""
    price: float | None = None
    size: float | None = None
    side: Literal["BUY", "SELL", ""] = ""
    hash: str = ""

    def entries(self) -> list[PriceChangeEntry]:
        if self.price_changes:
            return self.price_changes
        if self.asset_id and self.price is not None and self.size is not None and self.side:
            return [PriceChangeEntry(self.asset_id, self.price, self.size, self.side)]
        return []


class TickSizeChange(msgspec.Struct, tag_field="event_type", tag="tick_size_change", gc=False):
    """The tick changed (0.01 <-> 0.001 when the book trades beyond 0.96 / below 0.04)."""

    asset_id: str
    new_tick_size: float
    old_tick_size: float = 0.0
    market: str = ""
    timestamp: int = 0


class LastTradePrice(msgspec.Struct, tag_field="event_type", tag="last_trade_price", gc=False):
    asset_id: str
    price: float
    side: str = ""
    size: float = 0.0
    fee_rate_bps: float = 0.0
    market: str = ""
    timestamp: int = 0


class BestBidAsk(msgspec.Struct, tag_field="event_type", tag="best_bid_ask", gc=False):
    """custom_feature_enabled event: the exchange's top of book for one token (a cross-check for us)."""

    asset_id: str
    best_bid: str = ""
    best_ask: str = ""
    spread: str = ""
    market: str = ""
    timestamp: int = 0


class NewMarket(msgspec.Struct, tag_field="event_type", tag="new_market", gc=False):
    """custom_feature_enabled event: a market was created (informational; discovery goes through Gamma)."""

    market: str = ""
    id: str = ""
    slug: str = ""
    question: str = ""
    assets_ids: list[str] = []
    outcomes: list[str] = []
    timestamp: int = 0


class MarketResolved(msgspec.Struct, tag_field="event_type", tag="market_resolved", gc=False):
    market: str = ""
    id: str = ""
    assets_ids: list[str] = []
    winning_asset_id: str = ""
    winning_outcome: str = ""
    timestamp: int = 0


Event = Union[Book, PriceChange, TickSizeChange, LastTradePrice, BestBidAsk, NewMarket, MarketResolved]
EVENT_TYPES: dict[str, type] = {
    cls.__struct_config__.tag: cls
    for cls in (Book, PriceChange, TickSizeChange, LastTradePrice, BestBidAsk, NewMarket, MarketResolved)
}


class FrameDecoder:
    """bytes/str frame -> list of events. Never raises; counts what it skipped and remembers why.

    The fast path decodes the whole frame in one typed msgspec call. Only when that fails (an unknown type
    or a malformed item somewhere in the frame) does the slow path decode generically and convert item by
    item, so one bad item in a list does not lose its good neighbours.
    """

    __slots__ = ("fast", "_generic", "unknown", "malformed", "last_error")

    # What `fast` raises for a frame the slow path must look at.
    FAST_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)

    def __init__(self) -> None:
        # `fast(frame)` -> one event or a list of events; raises FAST_ERRORS. The stream calls it directly
        # (one call less per message) and hands a frame that raised to `slow`.
        self.fast = msgspec.json.Decoder(Union[Event, list[Event]], strict=False).decode
        self._generic = msgspec.json.Decoder()
        self.unknown = 0  # items with an event_type we do not know
        self.malformed = 0  # frames or items that are not valid market-channel events
        self.last_error = ""

    def decode(self, frame: bytes | str) -> list:
        try:
            out = self.fast(frame)
        except self.FAST_ERRORS:
            return self.slow(frame)
        return out if type(out) is list else [out]

    def slow(self, frame: bytes | str) -> list:
        """The events of a frame the typed pass refused, item by item; counts and remembers the rest."""
        try:
            doc = self._generic.decode(frame)
        except msgspec.DecodeError as e:
            self.malformed += 1
            self.last_error = f"not JSON: {e}"
            return []
        return self._items(doc)

    def _items(self, doc) -> list:
        items = doc if isinstance(doc, list) else [doc]
        out = []
        for item in items:
            kind = item.get("event_type") if isinstance(item, dict) else None
            cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
            if cls is None:
                if isinstance(kind, str):
                    self.unknown += 1
                    self.last_error = f"unknown event_type {kind!r}"
                else:
                    self.malformed += 1
                    self.last_error = "item without a string event_type"
                continue
            try:
                out.append(msgspec.convert(item, cls, strict=False))
            except msgspec.ValidationError as e:
                self.malformed += 1
                self.last_error = f"{kind}: {e}"
        return out
