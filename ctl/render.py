"""The one table formatter for mmctl, and the few value formats every table shares.

Plain text, no colours: mmctl output lands in terminals, journald, ssh sessions and scripts' logs alike.
Numeric columns are right-aligned so prices and sizes line up on the decimal point.
"""
from __future__ import annotations

import math
import re
import time
from typing import Any, Iterable, Sequence

EMPTY = "-"
_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*)?(\.\d+)?(e[-+]?\d+)?( ?(%|s|ms|µs|x))?$")


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]], *, indent: int = 0, empty: str = "(none)") -> str:
    """Rows under headers, columns padded to their widest cell; numbers right-aligned.

    `headers=None` gives a header-less two-or-more column layout (key/value blocks). Cells are shown with
    `cell()`: None as "-", floats without trailing noise.
    """
    body = [[cell(value) for value in row] for row in rows]
    if not body:
        return " " * indent + empty
    width = max(len(row) for row in body)
    if headers is not None:
        width = max(width, len(headers))
    body = [row + [""] * (width - len(row)) for row in body]
    head = list(headers) + [""] * (width - len(headers)) if headers is not None else None
    widths = [max(len(row[i]) for row in body) for i in range(width)]
    if head is not None:
        widths = [max(w, len(h)) for w, h in zip(widths, head)]
    right = [all(_NUMERIC.match(row[i]) or row[i] in ("", EMPTY) for row in body) and any(row[i] not in ("", EMPTY) for row in body)
             for i in range(width)]
    lines = []
    if head is not None:
        lines.append(_line(head, widths, [False] * width))
    lines.extend(_line(row, widths, right) for row in body)
    pad = " " * indent
    return "\n".join(pad + line for line in lines)


def _line(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
    return "  ".join(parts).rstrip()


def cell(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) if value else EMPTY
    return str(value)


def number(value: float | None, places: int | None = None) -> str:
    """A float as an operator reads it: 0.61 not 0.6100000000000001; NaN/None as "-"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    if places is not None:
        return f"{value:.{places}f}"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def price(value: float | None) -> str:
    """A price with at least two decimals (0.40, 0.61, 0.005): columns of prices line up and read as prices."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    text = f"{value:.4f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def money(value: float | None, signed: bool = False) -> str:
    """pUSD with cents: "12.30", or "+12.30"/"-1.20" when signed."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    if abs(value) < 0.005:
        value = 0.0
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def duration(seconds: float | None) -> str:
    """Compact human duration: 850ms, 4.2s, 7m12s, 2h03m, 3d04h."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return EMPTY
    if math.isinf(seconds):
        return "never" if seconds > 0 else EMPTY
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f}ms"
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{sign}{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{sign}{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def clock(ts: float | None, *, with_date: bool = False) -> str:
    """A unix time as UTC wall clock ("21:04:10" or "2026-11-23 21:04:10"): servers run in UTC."""
    if ts is None or ts <= 0 or (isinstance(ts, float) and math.isnan(ts)):
        return EMPTY
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return time.strftime(fmt, time.gmtime(ts))


def short_id(text: str | None, keep: int = 6) -> str:
    """0x3f2a…91bc: enough to match against logs, short enough for a table."""
    if not text:
        return EMPTY
    if len(text) <= 2 * keep + 3:
        return text
    return f"{text[:keep]}…{text[-4:]}"


def heading(title: str) -> str:
    return title.upper()


def bullets(lines: Iterable[str], *, indent: int = 2) -> str:
    return "\n".join(" " * indent + "- " + line for line in lines)
