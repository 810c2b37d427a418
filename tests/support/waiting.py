"""The one polling helper of the feed and execution-core suites: wait for a condition with a generous
deadline and a failure message that says what was awaited (never an assertion on measured time)."""
from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition",
             every_s: float = 0.05, detail: Callable[[], str] | None = None) -> object:
    """Return predicate()'s first truthy value; AssertionError naming `what` (plus `detail()`, e.g. a
    log tail) when it stays falsy for `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    extra = detail() if detail is not None else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{extra}")
