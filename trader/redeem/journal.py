"""Every redeem / merge request and its outcome, kept in the state directory (`redeem.json`).

Written before a request goes out ("sending"), again with the relayer's transaction id ("sent") and at the
outcome ("confirmed" / "failed"), each time atomically (temp file, fsync, rename). After a crash or
kill -9 a restarted redeemer resumes from it: a "sent" request is polled, not repeated; a "sending" one
(the process died mid-request, so whether the relayer got it is unknown) is retried only after
`resend_after_s`, and only if the Data API still lists the position. Repeating a redemption is harmless
on chain anyway (the second one burns nothing and pays 0); the journal keeps it from happening at all.

It also keeps what failures taught, so a restart does not reset it: a batch that reverted (or that the relayer
refused) is split, each of its positions marked to go in batches of at most half its size (`max_batch`), down to
one; a position that fails alone waits `retry_at` (1 min doubling to 6 h) and after MAX_ALONE_FAILURES such
failures is given up (reported, never requested again while the Data API lists it: redeem it in Polymarket's UI).
A request that only got no answer (relayer busy, no outcome) teaches nothing about the positions: it is retried
as it was.
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
MAX_MERGE_ATTEMPTS = 3  # failures alone before a merge is given up
MAX_ALONE_FAILURES = 8  # failures alone before a redemption is given up (about 2 h of backoff)
ALONE_BACKOFF_S, ALONE_BACKOFF_MAX_S = 60.0, 6 * 3600.0


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
    batch_size: int = 1  # how many actions the request it last went in carried
    max_batch: int = 0  # learnt from failures: the most it may be sent with (0 = no limit learnt)
    alone_failures: int = 0  # failures while sent alone
    retry_at: float = 0.0  # not requested again before this (backoff after failing alone)
    given_up: bool = False  # failed alone MAX_ALONE_FAILURES times: reported, not requested again

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
            entry = Entry(action.kind, action.condition_id, str(action.shares), action.slug, "sending", "", 1, now,
                          now, batch_size=len(batch))
            if old is not None and old.state != "confirmed":
                # What earlier failures taught survives the new attempt (and a restart: it is saved).
                entry.attempts, entry.max_batch = old.attempts + 1, old.max_batch
                entry.alone_failures, entry.error = old.alone_failures, old.error
            self.entries[action.key] = entry
        self.save()

    def sent(self, batch: list[Action], tx_id: str, now: float) -> None:
        for action in batch:
            entry = self.entries[action.key]
            entry.state, entry.tx_id, entry.updated_at = "sent", tx_id, now
        self.save()

    def abandon(self, batch: list[Action], error: str, now: float) -> None:
        """The request never got through (relayer busy, no answer): retryable as it was, nothing learnt."""
        for action in batch:
            entry = self.entries[action.key]
            entry.state, entry.error, entry.updated_at = "failed", error, now
        self.save()

    def refused(self, batch: list[Action], error: str, now: float) -> list[Entry]:
        """The relayer refused the request (4xx, e.g. its gas estimate): a failure of these positions."""
        entries = [self.entries[a.key] for a in batch]
        for entry in entries:
            entry.state, entry.updated_at = "failed", now
        self._learn(entries, error, now)
        self.save()
        return entries

    def finish(self, tx_id: str, state: str, now: float, error: str = "", reverted: bool = False) -> list[Entry]:
        """The relayed transaction's outcome. `reverted`: it failed on chain (a failure of its positions, which
        are split or backed off); otherwise a "failed" only means no outcome was seen (retried as it was)."""
        done = [e for e in self.entries.values() if e.tx_id == tx_id and e.state == "sent"]
        for entry in done:
            entry.state, entry.error, entry.updated_at = state, error, now
        if reverted and done:
            self._learn(done, error, now)
        if done:
            self.save()
        return done

    @staticmethod
    def _learn(entries: list[Entry], error: str, now: float) -> None:
        """A request of these entries failed. Sent together: each goes next in batches of at most half that size
        (at once: the split is the retry). Sent alone: that position waits, longer each time, and is given up
        after MAX_ALONE_FAILURES (a merge after MAX_MERGE_ATTEMPTS)."""
        for entry in entries:
            entry.error = error
            size = max(1, entry.batch_size)
            if size > 1:
                half = max(1, size // 2)
                entry.max_batch = min(entry.max_batch, half) if entry.max_batch else half
                entry.retry_at = now
                continue
            entry.max_batch = 1
            entry.alone_failures += 1
            entry.retry_at = now + min(ALONE_BACKOFF_MAX_S, ALONE_BACKOFF_S * 2 ** (entry.alone_failures - 1))
            limit = MAX_MERGE_ATTEMPTS if entry.kind == "merge" else MAX_ALONE_FAILURES
            entry.given_up = entry.alone_failures >= limit

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
            elif e.state == "failed" and (e.given_up or now < e.retry_at):
                out.add(key)
        return out

    def limits(self) -> dict[str, int]:
        """Keys whose failures limited the batch they may go in -> that limit."""
        return {k: e.max_batch for k, e in self.entries.items() if e.max_batch and e.state != "confirmed"}

    def failing(self) -> list[Entry]:
        """Positions that failed alone and are not redeemed (waiting for their next try, or given up)."""
        return [e for e in self.entries.values() if e.alone_failures and e.state != "confirmed"]

    def today(self, now: float) -> dict[str, float]:
        """pUSD that came back today (UTC) through confirmed redemptions and merges."""
        day = datetime.fromtimestamp(now, timezone.utc).date()
        sums = {"redeem": Decimal(0), "merge": Decimal(0)}
        for e in self.entries.values():
            if e.state == "confirmed" and datetime.fromtimestamp(e.updated_at, timezone.utc).date() == day:
                sums[e.kind] = sums.get(e.kind, Decimal(0)) + Decimal(e.shares)
        return {"redeemed_today_usd": float(sums["redeem"]), "merged_today_usd": float(sums["merge"])}

    def prune(self, now: float, listed: set[str] | frozenset[str] = frozenset()) -> None:
        """Drop finished entries older than KEEP_S, but never a given-up one whose position the Data API still
        lists (`listed`: condition ids): dropping it would start its retries over."""
        old = [k for k, e in self.entries.items() if e.state in TERMINAL and e.updated_at < now - KEEP_S
               and not (e.given_up and e.condition_id.lower() in listed)]
        for key in old:
            del self.entries[key]
        if old:
            self.save()
