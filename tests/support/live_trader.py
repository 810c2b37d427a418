"""Helpers for the live trader tests: sim + feed + trader as real processes (polymm.demo.Stack), waiting for
conditions, and reading the trader's one-line order log."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from polymm.demo import Stack, demo_config

WINDOW_S = 30
def live_config(window_s: int = WINDOW_S, entry_threshold: float = 0.55) -> str:
    """Fast windows and thresholds the synthetic market crosses often, so entries, exits and stops all happen
    within a few windows; cancel_before_end_s = 3 leaves a clear gap to observe before each window ends."""
    return demo_config(window_s, entry_threshold=entry_threshold, cancel_before_end_s=3)


def start_stack(workdir: Path, window_s: int = WINDOW_S, config_text: str | None = None, seed: int = 7) -> Stack:
    stack = Stack(workdir, window_s=window_s, seed=seed,
                  config_text=config_text if config_text is not None else live_config(window_s))
    try:
        stack.start()
    except BaseException:
        stack.close()
        raise
    return stack


def wait_for(predicate, timeout_s: float, every_s: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; return its value. AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


_ORDER_LINE = re.compile(
    r"order (?P<action>[\w-]+) id=(?P<id>\S+) strategy=(?P<strategy>\w+) leg=(?P<leg>\w+) side=(?P<side>\w+) "
    r"price=(?P<price>[\d.]+) size=(?P<size>[\d.]+) type=(?P<type>\w+) post_only=(?P<post_only>\d) reason=(?P<reason>.*)$")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


@dataclass(frozen=True)
class OrderLine:
    at: float  # unix seconds from the log timestamp
    action: str  # submit | live | filled | cancel | canceled | rejected ...
    id: str
    strategy: str
    leg: str
    side: str
    price: float
    size: float
    type: str
    reason: str


def order_lines(log_path: Path, since: float = 0.0) -> list[OrderLine]:
    """Every order action the trader logged (the one-line format of contract 5), at or after `since`."""
    out = []
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        m = _ORDER_LINE.search(line)
        t = _TIME.match(line)
        if not m or not t:
            continue
        at = time.mktime(time.strptime(t.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + float(t.group(1)[19:])
        if at < since:
            continue
        out.append(OrderLine(at=at, action=m["action"], id=m["id"], strategy=m["strategy"], leg=m["leg"],
                             side=m["side"], price=float(m["price"]), size=float(m["size"]), type=m["type"],
                             reason=m["reason"]))
    return out
