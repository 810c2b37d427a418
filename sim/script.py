"""A scripted market: the one way tests (and anyone) tell the sim what a window's market does.

A script is a list of steps, each at a time since its window's start:

- a **fair** step: P(Up) from then on (instead of the BTC walk); the synthetic ladder keeps its usual two-tick
  spread around it, and the leg the last step favours wins the window;
- a **book** step: exactly these background levels (Up prices; [price, size]) rest from then on, and the ladder
  leaves the window alone (a later fair step does not bring it back; a later book step replaces the levels).

A window that follows a script gets no random background takers: it trades only when the script's book, the test
(`POST /_sim/take`) or a trader says so. Two ways to give one, both the same thing:

- `polymm-sim --script FILE`: every window follows the file's script (what paper trading's end-to-end test uses);
- `POST /_sim/book` (sim/admin.py; `sim.admin.book(bids, asks)` in tests): a book step for one window, now (at the
  current offset into it); it is added to what that window already follows.

The file is JSON: `{"steps": [{"at": 0, "fair": 0.5}, {"at": 3, "bids": [[0.61, 20]], "asks": [[0.63, 10]]}]}`;
`{"fair": [[seconds, P(Up)], ...]}` is short for fair steps (both keys may be given).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

Level = tuple[Decimal, Decimal]  # (Up price, size)


class ScriptError(ValueError):
    """A script that cannot be followed, in words."""


@dataclass(frozen=True)
class Step:
    at_s: float  # seconds since the window's start
    fair: float | None = None  # a fair step: P(Up)
    bids: tuple[Level, ...] | None = None  # a book step: exactly these background levels
    asks: tuple[Level, ...] | None = None

    @property
    def is_book(self) -> bool:
        return self.bids is not None


def fair_step(at_s: float, fair: float) -> Step:
    if not (at_s >= 0):
        raise ScriptError(f"a step's time must be >= 0 seconds, got {at_s}")
    if not 0 < fair < 1:
        raise ScriptError(f"P(Up) must be between 0 and 1, got {fair}")
    return Step(float(at_s), fair=float(fair))


def book_step(at_s: float, bids: list[Level], asks: list[Level]) -> Step:
    if not (at_s >= 0):
        raise ScriptError(f"a step's time must be >= 0 seconds, got {at_s}")
    for name, levels in (("bids", bids), ("asks", asks)):
        for price, size in levels:
            if not 0 < price < 1:
                raise ScriptError(f"{name}: price {price} is not in (0, 1)")
            if not size > 0:
                raise ScriptError(f"{name}: size {size} must be > 0")
    if bids and asks and max(p for p, _ in bids) >= min(p for p, _ in asks):
        raise ScriptError("the scripted bids must be below the scripted asks")
    return Step(float(at_s), bids=tuple(bids), asks=tuple(asks))


@dataclass(frozen=True)
class Script:
    steps: tuple[Step, ...] = ()  # by time; at one time, in the order given

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(sorted(self.steps, key=lambda s: s.at_s)))

    def plus(self, step: Step) -> "Script":
        """This script and one more step (after those at the same time)."""
        return Script((*self.steps, step))

    @property
    def has_fair(self) -> bool:
        return any(s.fair is not None for s in self.steps)

    def fair_at(self, offset_s: float) -> float | None:
        """P(Up) at `offset_s` into the window: the last fair step at or before it (the first one before any);
        None when the script has no fair step (the BTC walk decides)."""
        fairs = [s for s in self.steps if s.fair is not None]
        if not fairs:
            return None
        fair = fairs[0].fair
        for s in fairs:
            if s.at_s <= offset_s + 1e-9:
                fair = s.fair
        return fair

    def book_at(self, offset_s: float) -> tuple[int, Step] | None:
        """The book step in effect at `offset_s` (its index, to tell a new one from the one applied), or None."""
        current = None
        for i, s in enumerate(self.steps):
            if s.is_book and s.at_s <= offset_s + 1e-9:
                current = (i, s)
        return current


def parse(data: object) -> Script:
    """A script from its JSON form (module docstring). ScriptError says what is wrong."""
    if not isinstance(data, dict) or not ({"fair", "steps"} & set(data)):
        raise ScriptError('expected {"steps": [...]} and/or {"fair": [[seconds, P(Up)], ...]}')
    steps: list[Step] = []
    try:
        for t, p in data.get("fair", []):
            steps.append(fair_step(float(t), float(p)))
        for item in data.get("steps", []):
            if not isinstance(item, dict) or "at" not in item:
                raise ScriptError(f'each step is {{"at": seconds, ...}}, got {item!r}')
            at = float(item["at"])
            if "fair" in item:
                steps.append(fair_step(at, float(item["fair"])))
            elif "bids" in item or "asks" in item:
                steps.append(book_step(at, levels(item.get("bids", []), "bids"), levels(item.get("asks", []), "asks")))
            else:
                raise ScriptError(f'a step sets "fair" or "bids"/"asks", got {item!r}')
    except (TypeError, ValueError) as exc:
        raise ScriptError(str(exc)) from None
    if not steps:
        raise ScriptError("a script needs at least one step")
    return Script(tuple(steps))


def levels(raw: object, name: str) -> list[Level]:
    """[[price, size], ...] as decimals (prices as written: 0.61, "0.61")."""
    if not isinstance(raw, list):
        raise ScriptError(f"{name} must be a list of [price, size]")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2):
            raise ScriptError(f"{name}: each level is [price, size], got {item!r}")
        out.append((number(item[0], name), number(item[1], name)))
    return out


def number(value: object, name: str) -> Decimal:
    """A JSON number (or a number in a string: "0.61") as a Decimal, exactly as written."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ScriptError(f"{name} must be a number, got {value!r}")
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise ScriptError(f"{name} must be a number, got {value!r}") from None
    if not out.is_finite():
        raise ScriptError(f"{name} must be finite, got {value!r}")
    return out


def load(path: str | Path) -> Script:
    """`polymm-sim --script FILE`; ScriptError with the reason for a bad file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ScriptError(f"cannot read it as JSON ({exc})") from None
    return parse(data)
