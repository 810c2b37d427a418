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


# ---- paper trading on the sim's scripted market ------------------------------------------------------------

# Every window of the scripted sim follows these P(Up) steps; the sim keeps a two-tick spread around them, so the
# Up book is: 0-3 s 0.49/0.51, 3 s 0.61/0.63 (S1 enters at 0.61), 8 s 0.59/0.61 (the entry fills), 13 s
# 0.62/0.64 (its take-profit at 0.62 fills; S1 enters again at 0.62), 18 s 0.60/0.62 (filled), 24 s 0.44/0.46
# (stop: sold fill-and-kill at 0.44), 30 s 0.29/0.31, 41 s 0.07/0.09 (Down's ask 0.93: S2 bids 0.91 for Down),
# 45 s 0.09/0.11 (Down's ask 0.91: S2 filled, held to resolution; Down wins).
PAPER_SCRIPT = {"fair": [[0, 0.50], [3, 0.62], [8, 0.60], [13, 0.63], [18, 0.61], [24, 0.45], [30, 0.30],
                         [41, 0.08], [45, 0.10]]}
PAPER_WINDOW_S = 60


def paper_config(window_s: int = PAPER_WINDOW_S) -> str:
    """S1 on Up only and S2 in the last 20 s, timings scaled to 60 s windows; a quiet scripted book must not
    count as a stale feed."""
    return f"""\
[market]
window_s = {window_s}

[s1]
entry_threshold = 0.55
leg_mode = "up_only"
cap_schedule = "0-20:4,20-40:5,40-{window_s}:6"
late_window_s = 8
exit_delay_s = 1
exit_retry_s = 1
requote_wait_s = 1

[s2]
enabled = true
window_s = 20
target_usd = 10
order_size = 10

[risk]
max_exposure_usd = 50
cancel_before_end_s = 1
stale_feed_ms = 30000
"""


class PaperStack(Stack):
    """The sim with a scripted market, the feed recording every update it publishes, and (start_trader) a
    trader with no key in its environment at all."""

    def __init__(self, workdir: Path, script: dict | None = None, config_text: str | None = None, **kw) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        script_path = workdir / "script.json"
        script_path.write_text(__import__("json").dumps(script or PAPER_SCRIPT))
        super().__init__(workdir, window_s=PAPER_WINDOW_S, config_text=config_text or paper_config(),
                         sim_args=("--script", str(script_path)), **kw)
        self.ticks = workdir / "ticks.jsonl"

    def env(self, **extra: str) -> dict[str, str]:
        from polymm import env

        out = super().env(**extra)
        out.pop(env.PK, None)
        return out

    def start_feed(self, wait_s: float = 60.0) -> None:
        import subprocess

        from polymm.demo import _child_setup, _python_main

        log = self._log("feed")
        self.feed = subprocess.Popen(_python_main("polymm.feed.service") + ["--record", str(self.ticks)], env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_child_setup())
        self.wait_feed(wait_s)


def fresh_window(stack, need_s: float = 40.0) -> int:
    """Wait for a window with `need_s` left on the sim, and for the trader to trade it. Returns its start."""
    while True:
        market = stack.sim.admin.live_market()
        left = market["window_end"] - time.time()
        if left >= need_s:
            break
        time.sleep(max(0.2, left + 0.5))
    start = market["window_start"]
    wait_for(lambda: stack.status().window_start == start, timeout_s=15, what="the trader on the new window")
    return start


# A live run whose recording misleads unless our own orders are taken out (tests/e2e/test_backtest_own_orders_live.py).
# Up book: 3 s 0.61/0.63, S1 enters at 0.61 (6.55 shares at the $4 cap); 8 s 0.59/0.61, filled; its take-profit at 0.62
# joins the sim's 0.62 ask; 11 s 0.61/0.63: the sim withdraws its asks below 0.63 and our take-profit is alone at
# 0.62 - the displayed best ask, while the market's is 0.63. With s1.exit_drift 0.01 the trader (net of its own
# orders) sees the ask a tick above and moves the take-profit to 0.63 once that held s1.tp_reprice_hold_s (5 s);
# 20 s 0.63/0.65: filled at 0.63; 40 s: S1 enters at 0.63 (9.52 shares at the $6 cap); 42 s 0.61/0.63: filled;
# 45 s 0.44/0.46: stopped at 0.44 (taker); 47 s 0.07/0.09: S2 bids 0.91 for Down; 50 s 0.09/0.11: filled, held to
# resolution; Down wins.
# Every step is one where no rule fires on the books in between (the sim re-quotes in one step, but the feed gets
# its messages one by one): 20-40 s has a $3 cap, so no entry follows the take-profit's fill at once (it would be
# priced on whichever book the trader saw first, the user channel's fill racing the market channel's update), and
# the 42 s fill moves the bid two ticks, less than s1.requote_min_improve (a bid falling below the threshold would
# cancel the entry on the way, racing the fill).
LIVE_REPLAY_SCRIPT = {"fair": [[0, 0.50], [3, 0.62], [8, 0.60], [11, 0.62], [20, 0.64], [42, 0.62], [45, 0.45],
                               [47, 0.08], [50, 0.10]]}


def live_replay_config() -> str:
    text = paper_config().replace("exit_retry_s = 1\n", "exit_retry_s = 1\nexit_drift = 0.01\n")
    return text.replace('cap_schedule = "0-20:4,20-40:5,40-60:6"', 'cap_schedule = "0-20:4,20-40:3,40-60:6"')


class LiveScriptedStack(PaperStack):
    """A scripted sim and recording feed (PaperStack's) with a *live* trader (the sim's throw-away wallet): its
    orders rest on the sim's book, so the feed's recording shows them (what `polymm-backtest --own-orders` takes
    out)."""

    def env(self, **extra: str) -> dict[str, str]:
        return Stack.env(self, **extra)
