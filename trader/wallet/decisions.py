"""The decision loop's three touches of the wallet (trader/engine.py calls them; the coordinator does the I/O):

- `decide_args(now)`: the wallet's limits for the pipeline (risk.gate sizes new buys within the room the other
  series leave and stops entries on a daily-loss halt);
- `admit(actions, exposure, now)`: the buys about to go out are claimed under the shared record's lock, so two
  series deciding at the same moment cannot both spend the last of the wallet cap; buys that do not fit are held
  back with the reason (their slot retries at its next decision, when the other series' exposure may have moved);
- `after(...)`: this series' exposure (with the buys just claimed), open buys and unrealised P&L are published
  for the others.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from polymm.trader.decision.strategy.common import EPS, mark_price
from polymm.trader.model import Side

log = logging.getLogger("polymm.trader.wallet")

WARN_EVERY_S = 30.0


class DecisionHook:
    def __init__(self, coordinator, config_source=None) -> None:
        self.coordinator = coordinator
        self._config_source = config_source  # the effective config: its wallet limits go into our record
        self._config = None
        self._claimed_usd = 0.0
        self._warned_at = 0.0
        self._publish_warned_at = 0.0
        self.held_back = 0  # buys the wallet cap held back (status, metrics)
        self.last_refusal = ""

    def decide_args(self, now: float) -> dict[str, Any]:
        if self._config_source is not None:
            config = self._config_source()
            if config is not self._config:  # mmctl set / reload: an identity check per decision
                self._config = config
                self.coordinator.configure(config)
        return {"wallet": self.coordinator.limits(now)}

    def admit(self, actions: Sequence, exposure_usd: float, now: float) -> list:
        buys = [a for a in actions if getattr(getattr(a, "want", None), "side", None) is Side.BUY]
        self._claimed_usd = 0.0
        if not buys:
            return list(actions)
        new_usd = sum(a.want.size * a.want.price for a in buys)
        refusal = self.coordinator.admit(exposure_usd, new_usd, now)
        if refusal is None:
            self._claimed_usd = new_usd
            return list(actions)
        self.held_back += len(buys)
        self.last_refusal = refusal
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("not placing %d buy(s) ($%.2f): %s", len(buys), new_usd, refusal)
        return [a for a in actions if a not in buys]

    def after(self, exposure_usd: float, orders: Sequence, positions: dict, view, market, now: float) -> None:
        open_buys = sum(o.remaining * o.price for o in orders
                        if o.state.working and o.side is Side.BUY and o.remaining > EPS) + self._claimed_usd
        unrealised = 0.0
        if view is not None:
            for (_strategy, leg), pos in positions.items():
                if pos.shares > EPS:
                    unrealised += pos.shares * (mark_price(view, leg, pos.avg_price) - pos.avg_price)
        try:
            self.coordinator.publish(exposure_usd=exposure_usd + self._claimed_usd, open_buys_usd=open_buys,
                                     unrealised_usd=unrealised, market=market, now=now)
        except Exception:  # noqa: BLE001 - publishing must never stop a decision; status says the record is stale
            if time.monotonic() - self._publish_warned_at >= WARN_EVERY_S:
                self._publish_warned_at = time.monotonic()
                log.exception("publishing to the shared wallet record failed")
