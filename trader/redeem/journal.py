"""Every redeem / merge request and its outcome, kept in the state directory (`redeem.json`).

Written before a request goes out ("sending"), again with the relayer's transaction id ("sent") and at the
outcome ("confirmed" / "failed"), each time atomically (temp file, fsync, rename). After a crash or
kill -9 a restarted redeemer resumes from it: a "sent" request is polled, not repeated; a "sending" one
(the process died mid-request, so whether the relayer got it is unknown) is retried only after
`resend_after_s`, and only if the Data API still lists the position. Repeating a redemption is harmless
on chain anyway (the second one burns nothing and pays 0); the journal keeps it from happening at all.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from polymm.trader.redeem.plan import Action

log = logging.getLogger("polymm.trader.redeem")

FILE_NAME = "redeem.json"
KEEP_S = 2 * 86400  # finished entries older than this are dropped
TERMINAL = ("confirmed", "failed")
# A merge that keeps reverting is given up (the pairs are then redeemed after resolution, which returns the
# same pUSD). Polymarket's TypeScript relayer client notes that merges relayed with builder HMAC credentials
# have failed at gas estimation since the V2 cutover (docs/redemption.md).
MAX_MERGE_ATTEMPTS = 3


@dataclass
class Entry:
    kind: str
    condition_id: str
    shares: str
    slug: str = ""
    state: str = "sending"  # sending | sent | confirmed | failed
    tx_id: str = ""
    attempts: int = 1
    requested_at: float = 0.0
    updated_at: float = 0.0
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.condition_id}"


@dataclass
class Journal:
    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def open(cls, state_dir: Path) -> "Journal":
        path = Path(state_dir) / FILE_NAME
        journal = cls(path)
        try:
            raw = json.loads(path.read_text())
            for item in raw.get("entries", []):
                entry = Entry(**item)
                Decimal(entry.shares)
                journal.entries[entry.key] = entry
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError, InvalidOperation) as exc:
            bad = path.with_name(path.name + f".bad-{int(time.time())}")
            os.replace(path, bad)
            log.warning("redeem journal %s is unreadable (%s); moved it to %s and start empty: a request in "
                        "flight may be sent again (harmless: a second redemption pays 0)", path, exc, bad)
        return journal

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump({"entries": [asdict(e) for e in self.entries.values()]}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # ---- transitions ------------------------------------------------------------------------------
    def begin(self, batch: list[Action], now: float) -> None:
        for action in batch:
            old = self.entries.get(action.key)
            attempts = old.attempts + 1 if old is not None and old.state not in ("confirmed",) else 1
            self.entries[action.key] = Entry(action.kind, action.condition_id, str(action.shares), action.slug,
                                             "sending", "", attempts, now, now)
        self.save()

    def sent(self, batch: list[Action], tx_id: str, now: float) -> None:
        for action in batch:
            entry = self.entries[action.key]
            entry.state, entry.tx_id, entry.updated_at = "sent", tx_id, now
        self.save()

    def abandon(self, batch: list[Action], error: str, now: float) -> None:
        """The request was refused or never got through: retryable at once."""
        for action in batch:
            entry = self.entries[action.key]
            entry.state, entry.error, entry.updated_at = "failed", error, now
        self.save()

    def finish(self, tx_id: str, state: str, now: float, error: str = "") -> list[Entry]:
        done = [e for e in self.entries.values() if e.tx_id == tx_id and e.state == "sent"]
        for entry in done:
            entry.state, entry.error, entry.updated_at = state, error, now
        if done:
            self.save()
        return done

    # ---- views ------------------------------------------------------------------------------------
    def pending_tx_ids(self) -> list[str]:
        return sorted({e.tx_id for e in self.entries.values() if e.state == "sent" and e.tx_id})

    def busy(self, now: float, resend_after_s: float) -> set[str]:
        """Keys not to request again now: in flight, or done so recently the Data API may still list them."""
        out = set()
        for key, e in self.entries.items():
            if e.state == "sent":
                out.add(key)
            elif e.state == "sending" and now < e.requested_at + resend_after_s:
                out.add(key)
            elif e.state == "confirmed" and now < e.updated_at + resend_after_s:
                out.add(key)
            elif e.state == "failed" and e.kind == "merge" and e.attempts >= MAX_MERGE_ATTEMPTS:
                out.add(key)
        return out

    def today(self, now: float) -> dict[str, float]:
        """pUSD that came back today (UTC) through confirmed redemptions and merges."""
        day = datetime.fromtimestamp(now, timezone.utc).date()
        sums = {"redeem": Decimal(0), "merge": Decimal(0)}
        for e in self.entries.values():
            if e.state == "confirmed" and datetime.fromtimestamp(e.updated_at, timezone.utc).date() == day:
                sums[e.kind] = sums.get(e.kind, Decimal(0)) + Decimal(e.shares)
        return {"redeemed_today_usd": float(sums["redeem"]), "merged_today_usd": float(sums["merge"])}

    def prune(self, now: float) -> None:
        old = [k for k, e in self.entries.items() if e.state in TERMINAL and e.updated_at < now - KEEP_S]
        for key in old:
            del self.entries[key]
        if old:
            self.save()
