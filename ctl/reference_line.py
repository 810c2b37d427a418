"""`mmctl status`'s one line on the price the market resolves on:

    BTC 97,123.45 chainlink 140ms · open 97,050.00 (+0.08%) · fair up 0.64 down 0.36

BTC and the window's opening price come from the feed's shared memory (Chainlink BTC/USD over RTDS, the age by
the price's own timestamp), the fair value from the trader's status (trader/decision/fair_value.py). Pure: no clock.
"""
from __future__ import annotations

import math

SEP = " · "


def _ok(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def age_text(age_s: float) -> str:
    if not math.isfinite(age_s):
        return "never"
    return f"{max(age_s, 0.0) * 1000:.0f}ms" if age_s < 1.0 else f"{age_s:.1f}s"


def reference_line(btc: float | None, age_s: float | None, open_price: float | None, open_note: str = "",
                   fair_up: float | None = None, stale_after_s: float = 5.0, source: str = "chainlink") -> str:
    """The line. `open_note` says why the opening price is missing ("unknown: started after the open")."""
    if not _ok(btc):
        parts = [f"BTC — (no {source} price yet)"]
    else:
        age = age_text(age_s) if _ok(age_s) else "?"
        stale = " STALE" if _ok(age_s) and age_s > stale_after_s else ""
        parts = [f"BTC {btc:,.2f} {source} {age}{stale}"]
    if _ok(open_price) and open_price > 0:
        move = f" ({(btc / open_price - 1) * 100:+.2f}%)" if _ok(btc) else ""
        parts.append(f"open {open_price:,.2f}{move}")
    else:
        parts.append(f"open {open_note or 'unknown'}")
    parts.append(f"fair up {fair_up:.2f} down {1 - fair_up:.2f}" if _ok(fair_up) else "fair —")
    return SEP.join(parts)
