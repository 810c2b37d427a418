"""The replay: runs the production pipeline (trader/decision/decide.py) over ticks against the fill model.

Timing. The pipeline is called after every line (at its `ts`) and every `--step-ms` (100 ms) between lines, as
the live loop decides on every tick and at least every 50-100 ms. Orders and cancels take effect `--latency-ms`
after the decision (default
`fill_model.latency_ms`, the place round trip measured on the sim); until then they are pending (the strategies see them as working, as live). With
zero latency the pipeline is called again at once after its actions took effect, as the live loop wakes on
order events. The feed counts as stale when no line arrived for `risk.quiet_feed_ms`: a recording has a line per
book change, so a shorter gap is a quiet book, which the live trader keeps trading on while the feed's socket is
alive; a longer one cancels entries as a frozen socket would live.

Own orders: a recording made while the trader was live shows our resting orders; with `own_orders` (an
OwnOrderFilter over the ledger of that period, own_orders.py) each line is netted of them before anything sees it.

"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

from polymm.trader.config import Config, warnings
from polymm.trader.decision.decide import Decision, DecisionState, decide, new_state
from polymm.trader.backtest.own_orders import OwnOrderFilter
from polymm.trader.backtest.ticks_file import BadTicks, TickLine
from polymm.trader.decision.fair_value import FairValue
from polymm.trader.fill_model import EPS, WindowFillModel

MAX_PASSES = 4  # decisions at one instant (each after the previous one's actions took effect)

@dataclass
class Result:
    windows: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    placements: list[dict] = field(default_factory=list)
    decisions: int = 0
    lines: int = 0
    warnings: list[str] = field(default_factory=list)
    own_orders: dict | None = None  # what --own-orders took out of the recording (OwnOrderFilter.summary)
    series: str = "btc-15m"  # the market series replayed (polymm/series.py)

    def pnl(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for w in self.windows:
            for strategy, s in w["pnl"].items():
                total[strategy] = round(total.get(strategy, 0.0) + s["net"], 6)
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series, "lines": self.lines, "decisions": self.decisions, "config_warnings": self.warnings,
            "windows": self.windows, "orders": self.events, "pnl": self.pnl(),
            "total_pnl": round(sum(self.pnl().values()), 6),
            **({"own_orders": self.own_orders} if self.own_orders is not None else {}),
        }


class Backtest:
    """Runs the production pipeline (trader/decision/decide.py) over ticks. Also used directly by tests."""

    def __init__(self, config: Config, *, step_s: float = 0.1, latency_s: float | None = None,
                 own_orders: OwnOrderFilter | None = None):
        if latency_s is None:
            latency_s = config.fill_model.latency_ms / 1000.0
        if step_s <= 0:
            raise ValueError("step must be > 0")
        if latency_s < 0:
            raise ValueError("latency must be >= 0")
        self.config = config
        self.step_s = step_s
        self.latency_s = latency_s
        self.result = Result(warnings=warnings(config))
        self.sim: WindowFillModel | None = None
        self.state: DecisionState | None = None
        self.now = -math.inf
        self._next_step = math.inf
        self.fair = FairValue()  # as the live engine: one volatility estimate across windows
        self.own_orders = own_orders

    def run(self, lines: Iterator[tuple[int, TickLine]] | list[TickLine]) -> Result:
        """Replay (line number, TickLine) pairs (read_ticks) or plain TickLines; BadTicks names the line."""
        for i, item in enumerate(lines, 1):
            n, line = item if isinstance(item, tuple) else (i, item)
            try:
                self.feed(line)
            except BadTicks as e:
                raise BadTicks(f"line {n}: {e}") from None
        self.finish()
        return self.result

    def feed(self, line: TickLine) -> None:
        self.result.lines += 1
        if self.own_orders is not None:
            line = self.own_orders.without_ours(line)
        if self.sim is not None and line.window_start != self.sim.window_start:
            if line.window_start < self.sim.window_start:
                raise BadTicks(f"window_start {line.window_start} goes back to an earlier window")
            self._close_window()
        if self.sim is None:
            self.sim = WindowFillModel(line, self.config, self.latency_s, self.result.events, f"w{len(self.result.windows) + 1}")
            self.state = new_state(self.sim.view(line.ts, self.config, self.fair))
            self._next_step = line.ts
        ts = max(line.ts, self.now)
        self._advance_to(ts)
        self.sim.apply_line(line)
        self._decide(ts)

    def finish(self) -> None:
        if self.sim is not None:
            self._close_window()
        if self.own_orders is not None:
            self.result.own_orders = self.own_orders.summary()

    def _rule_times(self) -> list[float]:
        """Instants a time rule starts to apply, decided on exactly (not at the next step of the step grid, which
        starts at the window's first line): every order cancelled `risk.cancel_before_end_s` before the end, S1's
        late window."""
        end = self.sim.window_end
        times = [end - self.config.risk.cancel_before_end_s]
        if self.config.s1.enabled:
            times.append(end - self.config.s1.late_window_s)
        return [t for t in times if t > self.now]

    def _advance_to(self, ts: float) -> None:
        """Periodic decisions (and pending actions taking effect) between the last instant and `ts`."""
        sim = self.sim
        end = min(ts, sim.window_end)
        while True:
            pending = [t for t in sim.pending_times() if t > self.now]
            nxt = min([self._next_step] + pending + self._rule_times())
            if nxt >= end:
                break
            self._decide(nxt)

    def _decide(self, now: float) -> None:
        sim = self.sim
        self.now = max(self.now, now)
        sim.settle_pending(now)
        while self._next_step <= now + EPS:
            self._next_step += self.step_s
        if now >= sim.window_end:
            return
        for _ in range(MAX_PASSES):
            d: Decision = decide(sim.view(now, self.config, self.fair), sim.order_views(), sim.position_views(), self.config, self.state, now)
            self.state = d.state
            self.result.decisions += 1
            for note in d.notes:
                sim.notes.setdefault(note, now)
            if not d.actions:
                break
            sim.submit(d.actions, now)
            if self.latency_s > 0:
                break

    def _close_window(self) -> None:
        sim = self.sim
        # The window's remaining time: periodic decisions run on the last book (it goes stale, as live).
        self._advance_to(sim.window_end)
        sim.close(sim.window_end)
        resolution = sim.resolve()
        self.result.windows.append({
            "window_start": sim.window_start, "window_end": sim.window_end, "fills": sim.fills,
            "notes": [{"t": round(t - sim.window_start, 3), "note": n} for n, t in sim.notes.items()],
            **resolution,
        })
        self.result.placements += sim.placements
        self.now = max(self.now, sim.window_end)
        self.sim = None
        self.state = None
