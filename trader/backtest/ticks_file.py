"""The tick file a backtest replays (contract 2, written by `polymm-feed --record FILE`).

Input: one JSON object per line (contract 2, written by `polymm-feed --record FILE`):
`ts` (unix s), `window_start`, `up_bid`, `up_ask`, `down_bid`, `down_ask` (number or null) and optionally
`*_size`, `window_end` (default window_start + market.window_s), `tick_size` (0.01), `min_order_size` (5),
`fee_rate` and `fee_exponent` (the market's taker fee schedule; default trader/decision/fees.py's
DEFAULT_SCHEDULE, 0.07 / 1), `min_order_age_s` and `taker_delay_s` (the market info's `oas` and, for `itode`,
the taker delay; default 0: recordings without them replay as if the market had none), `winner` ("up" | "down", see Resolution) and the BTC reference price as the
recorder writes it:
`btc` (Chainlink BTC/USD), `btc_ts` (its source timestamp) and `btc_open` (the window's opening price, null when
unknown). With them the strategies see the same fair value as live (trader/decision/fair_value.py, one estimator across the
replay), so `s1.fair_guard` and `s2.min_fair` act as they would; without them the fair value is unknown and a
guarded strategy does not enter. Blank lines and lines starting with `#` are skipped; any other bad line stops the run with its line number. Unknown fields are ignored.

`series` (polymm/series.py: btc-15m, eth-5m, ...; recorded by every feed since series existed; absent in older
recordings, which are the default series'): the market series the line's window belongs to. One recording is one
series; `select_series` picks one out of a file that holds several.

Depth (recorded since shm layout 2 by a feed with `--depth N`, N > 0): `up_bids`, `up_asks`, `down_bids`,
`down_asks`, each a list of [price, size] pairs, best first (bids descending, asks ascending), at most N
of them; when present the first pair is the top of book (`up_bid`, `up_bid_size`, ...). Older recordings have
none: `TickLine.depth(leg)` returns None for them and the top of book is all there is.

"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Literal

import msgspec


TICK_SIZES = (0.1, 0.01, 0.005, 0.0025, 0.001, 0.0001)  # the exchange's tick sizes (py_clob_client_v2 TickSize)


class BadTicks(Exception):
    """A ticks file that cannot be replayed; the message names the line."""


class TickLine(msgspec.Struct):
    ts: float
    window_start: int
    up_bid: float | None
    up_ask: float | None
    down_bid: float | None
    down_ask: float | None
    up_bid_size: float | None = None
    up_ask_size: float | None = None
    down_bid_size: float | None = None
    down_ask_size: float | None = None
    window_end: int | None = None
    tick_size: float | None = None
    min_order_size: float | None = None
    fee_rate: float | None = None
    fee_exponent: float | None = None
    min_order_age_s: float | None = None
    taker_delay_s: float | None = None
    winner: Literal["up", "down"] | None = None
    btc: float | None = None
    btc_ts: float | None = None
    btc_open: float | None = None
    up_bids: list[tuple[float, float]] | None = None
    up_asks: list[tuple[float, float]] | None = None
    down_bids: list[tuple[float, float]] | None = None
    down_asks: list[tuple[float, float]] | None = None
    series: str | None = None

    def depth(self, leg: Literal["up", "down"]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]] | None:
        """The recorded depth of `leg`: (bids, asks), each a list of (price, size) best first; None when this
        line has top of book only (a recording without depth)."""
        bids, asks = (self.up_bids, self.up_asks) if leg == "up" else (self.down_bids, self.down_asks)
        if bids is None and asks is None:
            return None
        return (bids or [], asks or [])


_DECODER = msgspec.json.Decoder(TickLine)


def read_ticks(path: str | Path) -> Iterator[tuple[int, TickLine]]:
    """(line number, TickLine) for every data line; BadTicks naming the line otherwise."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise BadTicks(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        last_ts = -math.inf
        for n, raw in enumerate(fh, 1):
            text = raw.strip()
            if not text or text.startswith(b"#"):
                continue
            try:
                line = _DECODER.decode(text)
            except msgspec.ValidationError as e:
                raise BadTicks(f"{path} line {n}: {e}") from None
            except msgspec.DecodeError as e:
                raise BadTicks(f"{path} line {n}: not JSON ({e})") from None
            _check_line(line, path, n)
            if line.ts < last_ts - 1.0:
                raise BadTicks(f"{path} line {n}: ts {line.ts} goes back in time (previous {last_ts})")
            last_ts = max(last_ts, line.ts)
            yield n, line


DEFAULT_SERIES = "btc-15m"  # polymm/series.py's default: the series of a recording that names none


def first_series(path: str | Path) -> str:
    """The series of a recording's first data line (the default series when it names none or has no line)."""
    for _n, line in read_ticks(path):
        return line.series or DEFAULT_SERIES
    return DEFAULT_SERIES


def select_series(lines: Iterator[tuple[int, TickLine]], series: str, explicit: bool,
                  skipped: list[int] | None = None) -> Iterator[tuple[int, TickLine]]:
    """Only the lines of `series`. Another series' line is skipped when the series was chosen (`explicit`: the
    operator's --series), and a BadTicks naming both otherwise: a replay never mixes two markets' books."""
    for n, line in lines:
        mine = line.series or DEFAULT_SERIES
        if mine == series:
            yield n, line
        elif explicit:
            if skipped is not None:
                skipped.append(n)
        else:
            raise BadTicks(f"line {n} is of series {mine}, the recording began with {series}: it holds several "
                           "series; pick one with --series")


def _check_line(line: TickLine, path: str | Path, n: int) -> None:
    if not math.isfinite(line.ts) or line.ts <= 0:
        raise BadTicks(f"{path} line {n}: ts must be a positive unix time, got {line.ts}")
    for name in ("up_bid", "up_ask", "down_bid", "down_ask"):
        v = getattr(line, name)
        if v is not None and not (0 < v < 1):
            raise BadTicks(f"{path} line {n}: {name} {v} is outside (0, 1)")
    for name in ("up_bid_size", "up_ask_size", "down_bid_size", "down_ask_size"):
        v = getattr(line, name)
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise BadTicks(f"{path} line {n}: {name} {v} must be a size >= 0")
    for name in ("up", "down"):
        for side in ("bids", "asks"):
            _check_depth(line, name, side, path, n)
    if line.window_end is not None and line.window_end <= line.window_start:
        raise BadTicks(f"{path} line {n}: window_end {line.window_end} is not after window_start {line.window_start}")
    if line.tick_size is not None and line.tick_size not in TICK_SIZES:
        raise BadTicks(f"{path} line {n}: tick_size {line.tick_size} is not a Polymarket tick (one of {', '.join(map(str, TICK_SIZES))})")
    if line.min_order_size is not None and not line.min_order_size > 0:
        raise BadTicks(f"{path} line {n}: min_order_size must be > 0")
    if line.fee_rate is not None and not 0 <= line.fee_rate < 1:
        raise BadTicks(f"{path} line {n}: fee_rate {line.fee_rate} is outside [0, 1)")
    for name in ("btc", "btc_open"):
        v = getattr(line, name)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise BadTicks(f"{path} line {n}: {name} {v} must be a positive price")
    if line.btc is not None and (line.btc_ts is None or not math.isfinite(line.btc_ts)):
        raise BadTicks(f"{path} line {n}: btc needs btc_ts (the price's own timestamp)")
    if line.fee_exponent is not None and not 0 <= line.fee_exponent <= 10:
        raise BadTicks(f"{path} line {n}: fee_exponent {line.fee_exponent} is outside [0, 10]")


def _check_depth(line: TickLine, leg: str, side: str, path: str | Path, n: int) -> None:
    levels = getattr(line, f"{leg}_{side}")
    if levels is None:
        return
    field = f"{leg}_{side}"
    last = None
    for price, size in levels:
        if not 0 < price < 1:
            raise BadTicks(f"{path} line {n}: {field} price {price} is outside (0, 1)")
        if not (size > 0 and math.isfinite(size)):
            raise BadTicks(f"{path} line {n}: {field} size {size} at {price} must be > 0")
        if last is not None and not (price < last if side == "bids" else price > last):
            raise BadTicks(f"{path} line {n}: {field} is not best first ({price} after {last})")
        last = price
    top = getattr(line, f"{leg}_{side[:-1]}")  # up_bid / up_ask
    if levels and top is not None and abs(levels[0][0] - top) > 1e-9:
        raise BadTicks(f"{path} line {n}: {field} starts at {levels[0][0]} but {leg}_{side[:-1]} is {top}")
