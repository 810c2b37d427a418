"""Wire shapes of the user channel (`order` and `trade` events) and of the REST order/trade rows,
decoded once at the edge into typed msgspec Structs and converted to the pure cores' records.

Quirks handled here:
- A frame is one JSON object or a JSON array of them; the text frame `PONG` answers our `PING`.
- Numbers arrive as strings on the WebSocket and sometimes as numbers on REST: both are accepted.
- Older messages spell `matchtime` instead of `match_time`; maker entries may lack `side`.
- `match_time` is unix seconds as a string in the recorded user-channel trades, but REST trade reports have
  been recorded with ISO 8601 (`"2024-01-01T00:00:00Z"`, nautilus http_trade_report.json): both are read.
- A trade we cannot read is never dropped silently: it becomes UnreadableTrade (the trade id and what is
  wrong), which the execution core logs and answers with a REST reconcile at once, so the fill is recovered
  from /data/trades rather than lost.
- Status strings: `TRADE_STATUS_CONFIRMED`, `ORDER_STATUS_LIVE`, `CANCELED_MARKET_RESOLVED`, lower case
  from POST /order - normalised in fills.normalise_trade_status / orders.normalise_order_status.
- Unknown event types are skipped (logged by the caller), never fatal: the channel may grow new events.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Union

import msgspec

from polymm.trader.execution.fills import MakerLeg, TradeReport, normalise_trade_status
from polymm.trader.execution.orders import normalise_order_status

Num = Union[str, float, int, None]


def num(value: Num, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    return float(value)


def unix_s(value: Num) -> float:
    """Timestamps come as unix seconds or milliseconds, as strings or numbers, or as ISO 8601 text."""
    try:
        t = num(value)
    except ValueError:
        if not isinstance(value, str):
            raise
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is neither unix seconds/milliseconds nor an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise ValueError(f"ISO time {value!r} has no time zone") from None
        return moment.timestamp()
    return t / 1000.0 if t > 1e11 else t


class WireMakerOrder(msgspec.Struct, frozen=True):
    order_id: str
    matched_amount: Num = None
    price: Num = None
    asset_id: str = ""
    owner: str = ""
    maker_address: str = ""
    side: str | None = None
    outcome: str = ""
    fee_rate_bps: Num = None


class WireTrade(msgspec.Struct, frozen=True, tag_field="event_type", tag="trade"):
    """User-channel `trade` event; REST /data/trades rows have the same fields without event_type."""

    id: str
    status: str = ""
    market: str = ""
    asset_id: str = ""
    side: str = ""
    size: Num = None
    price: Num = None
    fee_rate_bps: Num = None
    match_time: Num = None
    matchtime: Num = None
    last_update: Num = None
    taker_order_id: str = ""
    trader_side: str = ""
    owner: str = ""
    maker_address: str = ""
    maker_orders: list[WireMakerOrder] | None = None
    type: str = ""
    timestamp: Num = None


class WireOrder(msgspec.Struct, frozen=True, tag_field="event_type", tag="order"):
    """User-channel `order` event (PLACEMENT | UPDATE | CANCELLATION); REST order rows are the same shape."""

    id: str
    status: str = ""
    type: str = ""
    market: str = ""
    asset_id: str = ""
    side: str = ""
    price: Num = None
    original_size: Num = None
    size_matched: Num = None
    owner: str = ""
    maker_address: str = ""
    order_type: str = ""
    outcome: str = ""
    created_at: Num = None
    expiration: Num = None
    timestamp: Num = None
    associate_trades: list[str] | None = None


class RestTrade(WireTrade, frozen=True, tag=False):
    """A REST /data/trades row: the same shape, no event_type (ignored if present)."""


class RestOrder(WireOrder, frozen=True, tag=False):
    """A REST /data/order(s) row: the same shape, no event_type (ignored if present)."""


UserEvent = Union[WireOrder, WireTrade]  # (decode_user_frame may also return UnreadableTrade)
_event_decoder = msgspec.json.Decoder(Union[list[UserEvent], UserEvent])
_any_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class OrderReport:
    order_id: str
    status: str  # normalised
    kind: str  # PLACEMENT | UPDATE | CANCELLATION | REST
    market: str
    asset_id: str
    side: str
    price: float
    original_size: float
    size_matched: float
    owner: str
    maker_address: str
    order_type: str
    created_at: float


class WireError(ValueError):
    """A frame we cannot read; the message says what and shows the start of the frame."""


class UnreadableTrade(WireError):
    """A trade message (or one of its fields) we cannot read. Returned among a frame's events and raised by
    trade_report(); the caller logs it and reconciles over REST at once so the fill is not lost."""

    def __init__(self, trade_id: object, problem: str) -> None:
        super().__init__(f"unreadable trade message id={trade_id!r}: {problem}")
        self.trade_id = trade_id if isinstance(trade_id, str) else repr(trade_id)
        self.problem = problem


def decode_user_frame(frame: bytes | str) -> tuple[list[UserEvent], list[str]]:
    """-> (events, skipped descriptions). Raises WireError for frames that are not JSON objects/arrays."""
    data = frame.encode() if isinstance(frame, str) else frame
    try:
        decoded = _event_decoder.decode(data)
        return (decoded if isinstance(decoded, list) else [decoded]), []
    except msgspec.DecodeError:
        pass
    # Slow path: a frame with an unknown event type (or one bad element). Keep what we understand.
    try:
        raw = _any_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise WireError(f"user channel frame is not JSON ({exc}): {data[:120]!r}") from None
    items = raw if isinstance(raw, list) else [raw]
    events, skipped = [], []
    for item in items:
        if not isinstance(item, dict):
            skipped.append(f"non-object element {str(item)[:80]!r}")
            continue
        kind = item.get("event_type")
        target = {"order": WireOrder, "trade": WireTrade}.get(kind)
        if target is None:
            skipped.append(f"event_type {kind!r}")
            continue
        try:
            events.append(msgspec.convert(item, target))
        except msgspec.ValidationError as exc:
            if target is WireTrade:
                events.append(UnreadableTrade(item.get("id"), str(exc)))  # a fill may hide in it: never skip
            else:  # an order event only updates state the next reconcile reads again
                skipped.append(f"malformed {kind} event ({exc}) id={item.get('id')!r}")
    return events, skipped


def _row_id(row: object) -> str:
    """What a log line may say about a bad REST row: its id, never the row (rows carry `owner`, our API key)."""
    return f"id={row.get('id')!r}" if isinstance(row, dict) else f"a {type(row).__name__}, not an object"


def decode_rest_trades(rows: list) -> tuple[list[TradeReport], list[str]]:
    out, bad = [], []
    for row in rows:
        try:
            out.append(trade_report(msgspec.convert(row, RestTrade)))
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            bad.append(f"malformed trade row ({exc}): {_row_id(row)}")
    return out, bad


def decode_rest_orders(rows: list) -> tuple[list[OrderReport], list[str]]:
    out, bad = [], []
    for row in rows:
        try:
            out.append(order_report(msgspec.convert(row, RestOrder), kind="REST"))
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            bad.append(f"malformed order row ({exc}): {_row_id(row)}")
    return out, bad


def decode_rest_order(row: dict) -> OrderReport:
    return order_report(msgspec.convert(row, RestOrder), kind="REST")


def trade_report(t: WireTrade) -> TradeReport:
    """The pure cores' record of one trade. Raises UnreadableTrade naming the trade and the field."""
    try:
        return _trade_report(t)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UnreadableTrade(t.id, str(exc)) from None


def _field(name: str, value: Num, convert=num) -> float:
    try:
        return convert(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"field {name} {value!r}: {exc}") from None


def _trade_report(t: WireTrade) -> TradeReport:
    match_time = t.match_time if t.match_time not in (None, "") else t.matchtime
    if match_time in (None, ""):
        match_time = t.timestamp
    return TradeReport(
        trade_id=t.id, status=normalise_trade_status(t.status), market=t.market, asset_id=t.asset_id,
        side=t.side.upper(), size=_field("size", t.size), price=_field("price", t.price),
        fee_rate_bps=_field("fee_rate_bps", t.fee_rate_bps), match_time=_field("match_time", match_time, unix_s),
        taker_order_id=t.taker_order_id, trader_side=t.trader_side.upper(),
        owner=t.owner, maker_address=t.maker_address,
        maker_orders=tuple(
            MakerLeg(order_id=m.order_id, owner=m.owner, maker_address=m.maker_address, asset_id=m.asset_id,
                     price=_field("maker_orders.price", m.price),
                     matched_amount=_field("maker_orders.matched_amount", m.matched_amount),
                     side=m.side.upper() if m.side else None)
            for m in (t.maker_orders or ())
        ),
    )


def order_report(o: WireOrder, kind: str | None = None) -> OrderReport:
    return OrderReport(
        order_id=o.id, status=normalise_order_status(o.status), kind=kind or (o.type or "").upper(),
        market=o.market, asset_id=o.asset_id, side=o.side.upper(), price=num(o.price),
        original_size=num(o.original_size), size_matched=num(o.size_matched), owner=o.owner,
        maker_address=o.maker_address, order_type=(o.order_type or "").upper(), created_at=unix_s(o.created_at),
    )
