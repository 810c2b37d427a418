"""RTDS messages, decoded once at the edge into typed msgspec Structs.

Sources: docs.polymarket.com "Real-Time Data Socket" (market-data/websocket/rtds, RTDS-crypto-prices) and the
recorded messages in tests/fixtures/polymarket-recorded/nautilus-rust/test_data/rtds_crypto_prices_*.json.

Every message is `{"topic", "type", "timestamp", "payload"}`; `timestamp` is when the server sent it (ms).
Two price topics matter here:
- `crypto_prices` (Binance, symbols like `btcusdt`), subscribed with type `update`;
- `crypto_prices_chainlink` (Chainlink, symbols like `btc/usd`), subscribed with type `*`. The BTC 15-minute
  markets resolve on this stream (polymarket-protocol.md 3, 4.1).
An `update` carries one price: payload `{"symbol", "timestamp" (ms, the source's), "value"}` (Binance adds
`full_accuracy_value` as a decimal string). Right after a filtered subscription the server sends one message
of type `subscribe` whose payload is `{"symbol", "data": [{"timestamp", "value"}, ...]}`: the recent history,
oldest first. The server answers our text `PING` keepalive with a non-JSON frame (skipped, never decoded).

Unknown fields are ignored (the venue adds keys without notice); unknown topics, symbols and malformed frames
are counted and skipped, never fatal.
"""
from __future__ import annotations

import msgspec

CHAINLINK_TOPIC = "crypto_prices_chainlink"
BINANCE_TOPIC = "crypto_prices"
# The default series' asset; every asset's symbols are in polymm/series.py (`Asset.chainlink`, `Asset.binance`).
CHAINLINK_SYMBOL = "btc/usd"
BINANCE_SYMBOL = "btcusdt"

CHAINLINK = "chainlink"
BINANCE = "binance"
SOURCE_OF_TOPIC = {CHAINLINK_TOPIC: CHAINLINK, BINANCE_TOPIC: BINANCE}
SYMBOL_OF_SOURCE = {CHAINLINK: CHAINLINK_SYMBOL, BINANCE: BINANCE_SYMBOL}


def symbols(chainlink: str = CHAINLINK_SYMBOL, binance: str = BINANCE_SYMBOL) -> dict[str, str]:
    """source -> the RTDS symbol of one asset (lower case, as the server writes them)."""
    return {CHAINLINK: chainlink.lower(), BINANCE: binance.lower()}


class Point(msgspec.Struct, gc=False):
    timestamp: int  # ms, the source's time of this price
    value: float


class Payload(msgspec.Struct, gc=False):
    symbol: str = ""
    timestamp: int = 0  # ms (update)
    value: float | None = None  # (update)
    data: list[Point] = []  # (subscribe: the recent history, oldest first)


class Message(msgspec.Struct, gc=False):
    topic: str = ""
    type: str = ""
    timestamp: int = 0  # ms, when the server sent it
    payload: Payload | None = None


class Price(msgspec.Struct, frozen=True, gc=False):
    """One reference price as the rest of the feed sees it."""

    source: str  # CHAINLINK | BINANCE
    price: float
    source_ts: float  # unix seconds, the source's timestamp of this price


def subscription(syms: dict[str, str] | None = None) -> str:
    """The one subscribe frame for both topics of one asset (`symbols()`; BTC by default), as documented: the
    Binance filter is a plain symbol list, the Chainlink filter a JSON object *encoded as a string*. Messages are
    also filtered by symbol on our side (a third-party report says the live server has at times ignored or
    refused filters)."""
    syms = syms or SYMBOL_OF_SOURCE
    return msgspec.json.encode({
        "action": "subscribe",
        "subscriptions": [
            {"topic": BINANCE_TOPIC, "type": "update", "filters": syms[BINANCE]},
            {"topic": CHAINLINK_TOPIC, "type": "*", "filters": msgspec.json.encode({"symbol": syms[CHAINLINK]}).decode()},
        ],
    }).decode()


class Decoder:
    """bytes/str frame -> list of `Price` (oldest first). Never raises; counts what it skipped."""

    __slots__ = ("_decode", "_symbols", "skipped", "malformed", "last_error")

    def __init__(self, syms: dict[str, str] | None = None) -> None:
        self._decode = msgspec.json.Decoder(Message, strict=False).decode
        self._symbols = syms or SYMBOL_OF_SOURCE  # the asset's symbols: other coins' prices are skipped
        self.skipped = 0  # well-formed messages of other topics/symbols/types (comments, other coins)
        self.malformed = 0  # frames that are not RTDS messages
        self.last_error = ""

    def decode(self, frame: bytes | str) -> list[Price]:
        try:
            msg = self._decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            self.malformed += 1
            self.last_error = f"not an RTDS message: {e}"
            return []
        source = SOURCE_OF_TOPIC.get(msg.topic)
        payload = msg.payload
        if source is None or payload is None or payload.symbol.lower() != self._symbols[source]:
            self.skipped += 1
            return []
        if payload.value is not None and payload.timestamp > 0:
            return [Price(source, payload.value, payload.timestamp / 1000.0)] if payload.value > 0 else self._bad(msg)
        if payload.data:
            return [Price(source, p.value, p.timestamp / 1000.0) for p in payload.data if p.value > 0 and p.timestamp > 0]
        self.skipped += 1
        return []

    def _bad(self, msg: Message) -> list[Price]:
        self.malformed += 1
        self.last_error = f"{msg.topic}: price {msg.payload.value if msg.payload else None!r} is not positive"
        return []
