"""The wallet-wide limits as the decision pipeline sees them (trader/wallet/ computes them from every series'
published exposure and P&L). Pure data: risk.gate keeps new buys within the room they leave."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WalletLimits:
    others_usd: float = 0.0  # the other series' exposure on the wallet, as counted now
    cap_usd: float = 0.0  # wallet.max_exposure_usd in force (the smallest any running series has); 0 = none
    halt: str = ""  # why no series may enter now (a daily loss limit reached), in words; "" = none

    def room(self, committed_usd: float) -> float | None:
        """What new buys of this series may add under the wallet cap, or None without a cap."""
        if self.cap_usd <= 0:
            return None
        return self.cap_usd - self.others_usd - committed_usd

    def words(self) -> str:
        return f"wallet.max_exposure_usd {self.cap_usd:g} (other series ${self.others_usd:.2f})"
