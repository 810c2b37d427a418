"""The Real-Time Data Socket (RTDS) price topics, served from the synthetic markets' price walks (one per asset of
the series the sim serves: `btc/usd` + `btcusdt`, `eth/usd` + `ethusdt`, ...).

Shapes follow docs.polymarket.com "Real-Time Data Socket" and the recorded messages in tests/fixtures
(rtds_crypto_prices_*.json); the consumer is polymm/feed/rtds:
* subscribe: `{"action": "subscribe", "subscriptions": [{"topic", "type", "filters"}]}`; `unsubscribe` the same.
  `crypto_prices` (Binance, `btcusdt`) takes a plain comma list or a JSON object `{"symbol": ...}` as filter;
  `crypto_prices_chainlink` (`btc/usd`) a JSON object encoded as a string. No filter: every symbol the sim
  serves. A subscription the sim cannot read is answered with a plain-text error (production's answer is not
  documented) and otherwise ignored; a symbol the sim does not serve is simply never sent.
* after each subscription, one message of type `subscribe` per topic with the recent history (`data`, oldest
  first, the last `HISTORY_POINTS` points, as in the recording); then one `update` per point, once a second.
* Chainlink's value is the walk's price at each whole second, so a window's opening price is the point
  stamped exactly at its start (the sim's own `window_open_price`). Binance's is that price times a small
  fixed premium (BTC/USDT trades a little above BTC/USD), with a decimal-string `full_accuracy_value`.
* delivery: the sim's `ws_delay` fault applies; the CLOB-only faults (wrap_in_list, duplicate, reorder) do not.
* text `PING` is answered `PONG` (sim/ws.py); a socket silent for the idle timeout is closed.
Faults (admin API): `freeze_rtds` stops the updates while PONGs go on (the stall third parties report);
`drop_ws channel=rtds` kills the sockets without a close frame.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from aiohttp import web

from polymm.sim.orders import JSON_ERRORS
from polymm.sim.ws import Conn, _Channel, encode

if TYPE_CHECKING:
    from polymm.sim.server import Sim

CHAINLINK_TOPIC = "crypto_prices_chainlink"
BINANCE_TOPIC = "crypto_prices"
SYMBOL = {CHAINLINK_TOPIC: "btc/usd", BINANCE_TOPIC: "btcusdt"}  # the default series' asset
TOPICS = (CHAINLINK_TOPIC, BINANCE_TOPIC)
BINANCE_PREMIUM = 1.0003  # USDT over USD, fixed: enough for a consumer to tell the sources apart
HISTORY_POINTS = 3


def _ms(ts: float) -> int:
    return int(round(ts * 1000))  # RTDS timestamps are JSON numbers (the CLOB's are strings)


def _value(topic: str, price: float) -> float:
    return round(price * BINANCE_PREMIUM, 2) if topic == BINANCE_TOPIC else price


def update_msg(topic: str, point_ts: float, price: float, sent_at: float, symbol: str | None = None) -> dict:
    value = _value(topic, price)
    payload = {"symbol": symbol or SYMBOL[topic], "timestamp": _ms(point_ts), "value": value}
    if topic == BINANCE_TOPIC:
        payload["full_accuracy_value"] = f"{value:.8f}"
    return {"topic": topic, "type": "update", "timestamp": _ms(sent_at), "payload": payload}


def history_msg(topic: str, points: list[tuple[float, float]], sent_at: float, symbol: str | None = None) -> dict:
    data = [{"timestamp": _ms(ts), "value": _value(topic, price)} for ts, price in points]
    return {"topic": topic, "type": "subscribe", "timestamp": _ms(sent_at),
            "payload": {"symbol": symbol or SYMBOL[topic], "data": data}}


def _wanted(topic: str, filters: object, served: set[str]) -> set[str] | None:
    """The served symbols a subscription's filter selects; None when the filter cannot be read."""
    if filters in (None, ""):
        return set(served)
    if not isinstance(filters, str):
        return None
    text = filters.strip()
    if text.startswith("{"):
        try:
            parsed = msgspec.json.decode(text)
        except JSON_ERRORS:
            return None
        symbol = parsed.get("symbol") if isinstance(parsed, dict) else None
        return {symbol.lower()} & served if isinstance(symbol, str) else None
    if topic == CHAINLINK_TOPIC:
        return None  # documented as a JSON object only
    return {s.strip().lower() for s in text.split(",")} & served


class RtdsChannel(_Channel):
    channel = "rtds"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.topics: dict[Conn, set[tuple[str, str]]] = {}  # the (topic, symbol)s each socket subscribed to
        # One price walk per asset: the first market served of each asset (they all walk the same path).
        self.walks = {}
        for market in self.sim.markets.values():
            self.walks.setdefault(market.series.asset, market)
        self._published_to = {asset.code: 0.0 for asset in self.walks}  # source time of the last point sent

    def _symbol(self, topic: str, asset) -> str:
        return asset.chainlink if topic == CHAINLINK_TOPIC else asset.binance

    def _served(self, topic: str) -> set[str]:
        return {self._symbol(topic, asset) for asset in self.walks}

    def _on_message(self, conn: Conn, text: str) -> None:
        try:
            message = msgspec.json.decode(text)
        except JSON_ERRORS:
            message = None
        action = message.get("action") if isinstance(message, dict) else None
        subs = message.get("subscriptions") if isinstance(message, dict) else None
        if action not in ("subscribe", "unsubscribe") or not isinstance(subs, list):
            conn.send_control("invalid message: expected {\"action\": \"subscribe\", \"subscriptions\": [...]}")
            return
        mine = self.topics.setdefault(conn, set())
        added = []
        for sub in subs:
            topic = sub.get("topic") if isinstance(sub, dict) else None
            if topic not in TOPICS:
                continue  # other topics (comments, equities) are not served by the sim
            wants = _wanted(topic, sub.get("filters"), self._served(topic))
            if wants is None:
                conn.send_control(f"invalid Subscription.Filters for {topic}: {sub.get('filters')!r}")
                continue
            for symbol in sorted(wants):
                if action == "unsubscribe":
                    mine.discard((topic, symbol))
                elif (topic, symbol) not in mine:
                    mine.add((topic, symbol))
                    added.append((topic, symbol))
        conn.subscribed = True
        now = time.time()
        for topic, symbol in added:
            market = next(m for a, m in self.walks.items() if self._symbol(topic, a) == symbol)
            history = list(market.price_points)[-HISTORY_POINTS:]
            if history and not self.sim.faults.freeze_rtds:
                self._send(conn, encode(history_msg(topic, history, now, symbol)))

    def publish_new(self, now: float) -> None:
        """Send every point each asset's walk made since the last call (called from the sim's tick)."""
        for asset, market in self.walks.items():
            points = market.price_points
            if not points or points[-1][0] <= self._published_to[asset.code]:
                continue
            fresh = [p for p in points if p[0] > self._published_to[asset.code]]
            self._published_to[asset.code] = points[-1][0]
            if not self.conns or self.sim.faults.freeze_rtds:
                continue
            for topic in TOPICS:
                key = (topic, self._symbol(topic, asset))
                texts = [encode(update_msg(topic, ts, price, now, key[1])) for ts, price in fresh]
                for conn, topics in self.topics.items():
                    if key in topics and not conn.closed:
                        for text in texts:
                            self._send(conn, text)

    def _send(self, conn: Conn, text: str) -> None:
        # Of the delivery faults only the delay applies here: wrap_in_list, duplicate and reorder describe
        # the CLOB sockets (Conn.send_data) and stay there.
        conn._enqueue(text, self.sim.faults.ws_delay_s)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        try:
            return await super().handle(request)
        finally:
            for conn in [c for c in self.topics if c not in self.conns]:
                del self.topics[conn]
