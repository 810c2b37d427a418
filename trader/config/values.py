"""Values as an operator writes them: numbers (3 not 3.0) and the cap schedule's compact string form
(`"0-300:3,300-600:4,600-900:5"`), which `mmctl set` takes and `flatten` shows."""
import math

from polymm.trader.config.schema import CapWindow


def _fmt(x: float) -> str:
    """Numbers as an operator writes them: 3 not 3.0, 0.6 not 0.6000000000000001."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isfinite(x) and float(x).is_integer():
        return str(int(x))
    return repr(round(x, 10))


def format_cap_schedule(windows: tuple[CapWindow, ...]) -> str:
    return ",".join(f"{_fmt(w.start_s)}-{_fmt(w.end_s)}:{_fmt(w.cap_usd)}" for w in windows)


def parse_cap_schedule(text: str) -> list[dict[str, float]]:
    """`"0-300:3,300-600:4"` -> list of {start_s, end_s, cap_usd}; ValueError with words on bad syntax."""
    out = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip():
        raise ValueError("empty cap schedule; expected `start-end:usd,...` e.g. `0-300:3,300-600:4,600-900:5`")
    for part in parts:
        try:
            span, cap = part.split(":")
            start, end = span.split("-")
            out.append({"start_s": float(start), "end_s": float(end), "cap_usd": float(cap)})
        except ValueError:
            raise ValueError(
                f"cannot read cap window {part!r}; expected `start-end:usd` e.g. `0-300:3` "
                "(seconds since window start, USD cap)"
            ) from None
    return out


def cap_at(schedule: tuple[CapWindow, ...], elapsed_s: float) -> float:
    """The cap in force `elapsed_s` seconds into the window (before the first window: the first; after the
    last: the last)."""
    for w in schedule:
        if w.start_s <= elapsed_s < w.end_s:
            return w.cap_usd
    return schedule[0].cap_usd if elapsed_s < schedule[0].start_s else schedule[-1].cap_usd
