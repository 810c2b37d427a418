"""What we placed, on disk: so a restarted trader knows which exchange orders and fills are whose.

The exchange knows our orders and trades but not which strategy or role each order served. Without
that, a restart would see S1's position as nobody's and S1 would enter again (a doubled position).
Each order is journaled (one JSON line) right after signing and before it is sent, so even an order
whose submit never returned is known after a crash; markets and resolutions are journaled too, and the
trade id of every fill we recorded, so a restarted trader tells the fills it already knew (found again by its
start-up reconciliation) from fills nobody recorded (missed by the user channel, or made while it was down).

Written under the state directory (never secrets). Lines older than `keep_s` are dropped when loaded.
A torn last line (crash mid-write) is skipped with a warning, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from polymm.trader.model import MarketIdentity

log = logging.getLogger("polymm.trader.journal")


@dataclass(frozen=True)
class JournalOrder:
    order_id: str
    client_id: str
    strategy: str
    leg: str
    side: str
    price: float
    size: float
    role: str
    order_type: str
    post_only: bool
    reason: str
    token_id: str
    condition_id: str
    created_at: float


@dataclass
class JournalContents:
    orders: dict[str, JournalOrder]
    markets: dict[str, MarketIdentity]
    resolutions: dict[str, str]  # condition_id -> winning leg value
    fills: set[str] = field(default_factory=set)  # trade ids of fills recorded by an earlier run


class OrderJournal:
    def __init__(self, path: str | Path, keep_s: float = 2 * 86400) -> None:
        self.path = Path(path)
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._file = None

    def load(self, now: float) -> JournalContents:
        """Read, drop old entries, rewrite compacted, and open for appending."""
        with self._lock:
            contents, kept = self._read(now)
            self._rewrite(kept)
        return contents

    def compact(self, now: float) -> None:
        """Drop entries older than keep_s from a journal that is being appended to (a trader running for
        weeks must not grow it without bound). Atomic: a crash leaves the old or the new file, whole."""
        with self._lock:
            if self._file is None:
                return
            self._file.flush()
            _, kept = self._read(now)
            self._file.close()
            self._file = None
            self._rewrite(kept)

    def _read(self, now: float) -> tuple[JournalContents, list[str]]:
        contents = JournalContents({}, {}, {})
        kept: list[str] = []
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    kind = rec.pop("kind")
                    ts = float(rec.pop("ts", now))
                except (ValueError, KeyError, TypeError):
                    log.warning("order journal %s line %d unreadable (torn write?); skipped", self.path, n)
                    continue
                if now - ts > self.keep_s:
                    continue
                try:
                    if kind == "order":
                        o = JournalOrder(**rec)
                        contents.orders[o.order_id] = o
                    elif kind == "market":
                        m = MarketIdentity(**rec)
                        contents.markets[m.condition_id] = m
                    elif kind == "resolved":
                        contents.resolutions[rec["condition_id"]] = rec["winning_leg"]
                    elif kind == "fill":
                        contents.fills.add(str(rec["trade_id"]))
                    else:
                        continue
                except (TypeError, KeyError):
                    log.warning("order journal %s line %d has an unexpected shape; skipped", self.path, n)
                    continue
                kept.append(line)
        return contents, kept

    def _rewrite(self, kept: list[str]) -> None:
        """Replace the file with `kept` and open it for appending (caller holds the lock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", buffering=1)

    def _append(self, kind: str, ts: float, record: dict) -> None:
        line = json.dumps({"kind": kind, "ts": ts, **record}, separators=(",", ":"))
        with self._lock:
            if self._file is None:
                return
            self._file.write(line + "\n")  # line-buffered: on disk (page cache) before the order is sent

    def order(self, entry: JournalOrder) -> None:
        self._append("order", entry.created_at, asdict(entry))

    def market(self, entry: MarketIdentity, now: float) -> None:
        self._append("market", now, asdict(entry))

    def fill(self, trade_id: str, now: float) -> None:
        """A fill we recorded (its first sighting; later status changes need no line)."""
        self._append("fill", now, {"trade_id": trade_id})

    def resolved(self, condition_id: str, winning_leg: str, now: float) -> None:
        self._append("resolved", now, {"condition_id": condition_id, "winning_leg": winning_leg})

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
