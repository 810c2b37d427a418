"""The paper exchange: Polymarket as far as our orders are concerned, on this machine. It follows the book the feed
publishes in shared memory (the same records `polymm-feed --record` writes, through the same conversion,
feed/record.py `tick_line`), fills our orders against it with the fill model the backtest uses
(trader/fill_model/), keeps a paper wallet (pUSD and positions) and pays 1/0 when a market resolves.

One answer with the backtest: every market update is applied in time order with our orders' arrivals (an order
sent at t reaches the book at t + latency), exactly as `polymm-backtest` replays the recording of the same updates.
So a paper run and the backtest of its recording fill the same orders at the same prices.

Threads: `polymm-paper-book` follows the shared memory; the execution core's workers call place/cancel (through
PaperGateway) and wait for their order's arrival; `polymm-paper-events` delivers order and trade events to the
user-channel listeners outside the exchange's lock (a listener takes the execution core's lock).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import msgspec

from polymm.feed import shm
from polymm.feed.market import MarketIdentity
from polymm.feed.record import tick_line
from polymm.trader.backtest.ticks_file import TickLine
from polymm.trader.config import Config
from polymm.trader.fill_model import EPS, ModelOrder, WindowFillModel
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want

log = logging.getLogger("polymm.trader.paper")

ACCOUNT = "paper"  # the fill model's account for the wallet (the exchange knows no strategies)
PAPER_OWNER = "paper-api-key"  # our `owner` on paper orders and trades (the API key's place)
PAPER_ADDRESS = "0x" + "00" * 19 + "0a"  # the paper wallet's address of older paper runs (never a real one)


def paper_address(state_dir: str | os.PathLike | None = None) -> str:
    """The paper wallet's address: one per state directory (never a real one: a hash, no key behind it).

    The execution core locks its wallet machine-wide by this address (one trader per wallet). A fixed paper address
    made every paper trader on a host one wallet: two test runs, or two paper traders with their own state
    directories, locked each other out (issue 27). A paper trader's wallet is its state directory (its journal
    and ledger live there), so that is what names it; without one, each paper exchange is a wallet of its own."""
    seed = str(Path(state_dir).resolve()) if state_dir is not None else secrets.token_hex(16)
    return "0x" + hashlib.sha256(f"polymm-paper-wallet:{seed}".encode()).hexdigest()[:40]
FOLLOW_EVERY_S = 0.05  # the book follower wakes at least this often (arrivals, window ends)


class PaperRejected(Exception):
    """The paper exchange refused an order (the reason in the exchange's words)."""


@dataclass
class _Market:
    identity: MarketIdentity | None
    model: WindowFillModel
    closed: bool = False
    winner: Leg | None = None
    fills_seen: int = 0
    events_seen: int = 0


class PaperExchange:
    def __init__(self, shm_name: str, config: Config, *, balance_usd: float, latency_s: float,
                 clock: Callable[[], float] = time.time, address: str | None = None) -> None:
        self.shm_name = shm_name
        self.address = address or paper_address()  # the service passes paper_address(state directory)
        self.config = config
        self.latency_s = latency_s
        self.clock = clock
        self.initial_balance = balance_usd
        self.cash = balance_usd
        self._lock = threading.RLock()
        self._markets: dict[int, _Market] = {}  # window_start -> market
        self._current: _Market | None = None
        self._tokens: dict[str, tuple[int, Leg]] = {}  # token id -> (window_start, leg)
        self._identities: dict[int, MarketIdentity] = {}
        self._orders: dict[str, tuple[int, ModelOrder]] = {}  # order id -> (window_start, order)
        self._trades: list[dict] = []  # REST /data/trades rows
        self._trade_ids = itertools.count(1)
        self._listeners: list[Callable[[list[dict]], None]] = []
        self._outbox: queue.Queue = queue.Queue()
        self._reader: shm.Reader | None = None
        self._last_seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lines = 0  # market updates applied
        # condition id -> (rate, exponent, minimum order age, taker delay) from the exchange's market info
        # (PaperGateway.market_rules): the market's own schedule, which the published Gamma rate alone does not give
        # (it has no exponent), and its order timing rules.
        self._fee_schedules: dict[str, tuple[float, float]] = {}

    # ---- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._reader is not None:
            return
        self._reader = shm.Reader(self.shm_name)
        # The book as it is now (the latest published update) is the first one applied.
        self._last_seq = max(0, self._reader.seq() - 1)
        self._stop.clear()
        with self._lock:
            self._learn_identity(self._reader.snapshot())
        self._threads = [threading.Thread(target=self._follow, name="polymm-paper-book", daemon=True),
                         threading.Thread(target=self._deliver, name="polymm-paper-events", daemon=True)]
        for t in self._threads:
            t.start()
        log.info("exchange started: balance %.2f pUSD, latency %.1f ms, book from shared memory %s",
                 self.cash, self.latency_s * 1000, self.shm_name)

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def subscribe(self, listener: Callable[[list[dict]], None]) -> None:
        """`listener(events)` gets every order/trade event (user-channel shape, dicts) from now on."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[list[dict]], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # ---- the book ---------------------------------------------------------------------------------
    def _follow(self) -> None:
        reader = shm.Reader(self.shm_name)  # its own mapping for the futex wait; reads happen under the lock
        try:
            last = reader.seq()
            while not self._stop.is_set():
                last = reader.wait_update(last, FOLLOW_EVERY_S)
                try:
                    self.advance(self.clock())
                except Exception:  # noqa: BLE001 - a bug here must not stop the paper market silently
                    log.exception("exchange: applying market updates failed")
        finally:
            reader.close()

    def advance(self, now: float) -> None:
        """Apply every market update published since the last call, in time order with our orders' arrivals,
        then let arrivals due by `now` happen and close markets whose window ended."""
        with self._lock:
            if self._reader is None:
                return
            updates = self._reader.updates_since(self._last_seq)
            if updates:
                if updates[0].seq > self._last_seq + 1 and self.lines:
                    log.warning("exchange fell behind the feed: %d update(s) lost", updates[0].seq - self._last_seq - 1)
                self._last_seq = updates[-1].seq
                snap = self._reader.snapshot()
                self._learn_identity(snap)
                for update in updates:
                    raw = tick_line(update, snap)
                    if raw is not None:
                        self._apply_line(msgspec.convert(raw, TickLine))
            for m in list(self._markets.values()):
                if not m.closed:
                    self._with_cash(m, lambda m=m: m.model.settle_pending(min(now, m.model.window_end)))
                    if now >= m.model.window_end:
                        self._close(m)
                self._publish(m)
            self._prune(now)

    def _learn_identity(self, snap: shm.Snapshot) -> None:
        if snap.status == "connected" and snap.market.condition_id and snap.market.window_start:
            identity = snap.market
            if self._identities.get(identity.window_start) != identity:
                self._identities[identity.window_start] = identity
                for leg in Leg:
                    self._tokens[identity.token(leg)] = (identity.window_start, leg)
                m = self._markets.get(identity.window_start)
                if m is not None:
                    m.identity = identity

    def _apply_line(self, line: TickLine) -> None:
        m = self._markets.get(line.window_start)
        if m is None:
            if self._current is not None and line.window_start < self._current.model.window_start:
                return  # a straggler of an older window
            model = WindowFillModel(line, self.config, self.latency_s, [], f"paper-{line.window_start}", cash=self.cash)
            m = self._markets[line.window_start] = _Market(self._identities.get(line.window_start), model)
            previous = self._current
            if previous is not None and not previous.closed:
                self._with_cash(previous, lambda: previous.model.settle_pending(min(line.ts, previous.model.window_end)))
                self._close(previous)
                self._publish(previous)
            self._current = m
        if m.closed:
            return
        # Arrivals strictly before the update meet the old book (the backtest's order of events).
        self._with_cash(m, lambda: m.model.settle_pending(line.ts - 2 * EPS))
        self._with_cash(m, lambda: m.model.apply_line(line))
        self._apply_fee_schedule(m)
        self.lines += 1

    def set_fee_schedule(self, condition_id: str, rate: float, exponent: float, min_order_age_s: float = 0.0,
                         taker_delay_s: float = 0.0) -> None:
        """The market's rules from its market info (the fee schedule, the minimum order age, the taker delay)."""
        with self._lock:
            self._fee_schedules[condition_id] = (rate, exponent, min_order_age_s, taker_delay_s)
            for m in self._markets.values():
                self._apply_fee_schedule(m)

    def _apply_fee_schedule(self, m: _Market) -> None:
        rules = self._fee_schedules.get(m.identity.condition_id) if m.identity is not None else None
        if rules is not None:
            m.model.fee_rate, m.model.fee_exponent, m.model.min_order_age_s, m.model.taker_delay_s = rules

    def _prune(self, now: float) -> None:
        """Bounded memory over weeks: a market an hour past its end with nothing left to pay is dropped (its
        cash effect stays in the wallet), with its orders; trades are kept for a day."""
        for ws, m in list(self._markets.items()):
            held = any(p.shares > EPS for p in m.model.positions.values())
            if m.closed and m.model.window_end < now - 3600 and (m.winner is not None or not held) and m is not self._current:
                del self._markets[ws]
                for oid in [oid for oid, (w, _) in self._orders.items() if w == ws]:
                    del self._orders[oid]
                self._identities.pop(ws, None)
                self._tokens = {t: v for t, v in self._tokens.items() if v[0] != ws}
        if self._trades and float(self._trades[0]["match_time"]) < now - 86_400:
            self._trades = [t for t in self._trades if float(t["match_time"]) >= now - 86_400]

    def _with_cash(self, m: _Market, work: Callable[[], object]) -> object:
        """The wallet is one for all markets; a window's model holds it while it works."""
        m.model.cash = self.cash
        try:
            return work()
        finally:
            self.cash = m.model.cash

    def _close(self, m: _Market) -> None:
        """The window ended: the exchange cancels what is still open (the backtest's close at the window end)."""
        self._with_cash(m, lambda: m.model.close(m.model.window_end))
        m.closed = True

    # ---- orders (PaperGateway calls these from the execution core's workers) ----------------------
    def market_of_token(self, token_id: str) -> tuple[_Market | None, Leg | None]:
        with self._lock:
            ws, leg = self._tokens.get(token_id, (None, None))
            return (self._markets.get(ws) if ws is not None else None), leg

    def place(self, order_id: str, token_id: str, side: Side, price: float, size: float, order_type: OrderType,
              post_only: bool) -> ModelOrder:
        """Send an order: it reaches the book `latency` from now. Blocks until it has; returns it (state: rested,
        filled or killed). PaperRejected when the exchange refuses it."""
        now = self.clock()
        with self._lock:
            self.advance(now)
            m, leg = self.market_of_token(token_id)
            if m is None or leg is None:
                raise PaperRejected(f"market not found for token {token_id[:16]}…")
            if m.closed:
                raise PaperRejected("market closed: orders are not accepted")
            want = Want(ACCOUNT, leg, side, price, size, Role.ENTRY, order_type, post_only, "paper")
            order = m.model.place(want, now, order_id=order_id)
            self._orders[order_id] = (m.model.window_start, order)
        self._wait_until(order.effective_at)
        with self._lock:
            self.advance(max(self.clock(), order.effective_at))
            if order.state is OrderState.REJECTED:
                reason = next((e["reason"] for e in reversed(m.model.events)
                               if e["id"] == order_id and e["action"] == "rejected"), "rejected")
                raise PaperRejected(reason)
            return order

    def cancel(self, order_ids: list[str]) -> tuple[list[str], dict[str, str]]:
        """Cancel orders: they leave the book `latency` from now. -> (cancelled ids, {id: why not})."""
        now = self.clock()
        sent, refused = [], {}
        with self._lock:
            self.advance(now)
            for oid in order_ids:
                entry = self._orders.get(oid)
                m = self._markets.get(entry[0]) if entry else None
                if entry is None or m is None:
                    refused[oid] = "order not found"
                elif m.model.cancel(oid, "cancel request", now):
                    sent.append(entry[1])
                else:
                    refused[oid] = "order already matched or cancelled" if entry[1].state.terminal else "cancel already sent"
        if sent:
            self._wait_until(max(o.cancel_at for o in sent if o.cancel_at is not None))
        with self._lock:
            self.advance(self.clock())
            done = []
            for o in sent:
                if o.state is OrderState.CANCELED:
                    done.append(o.client_id)
                else:
                    refused[o.client_id] = "order matched before the cancel arrived"
        return done, refused

    def fills_of(self, order_id: str) -> list[dict]:
        with self._lock:
            entry = self._orders.get(order_id)
            m = self._markets.get(entry[0]) if entry else None
            return [dict(f) for f in m.model.fills if f["id"] == order_id] if m else []

    def working_ids(self, condition_id: str | None = None) -> list[str]:
        with self._lock:
            return [oid for oid, (ws, o) in self._orders.items()
                    if o.state.working and (condition_id is None or self._condition(ws) == condition_id)]

    def _wait_until(self, at: float) -> None:
        delay = at - self.clock()
        if delay > 0:
            time.sleep(delay)

    # ---- what the exchange reports ------------------------------------------------------------------
    def _condition(self, window_start: int) -> str:
        identity = self._identities.get(window_start)
        return identity.condition_id if identity else f"paper-{window_start}"

    def _token(self, window_start: int, leg: Leg) -> str:
        identity = self._identities.get(window_start)
        return identity.token(leg) if identity else f"paper-{window_start}-{leg.value}"

    def order_row(self, order_id: str) -> dict | None:
        with self._lock:
            entry = self._orders.get(order_id)
            return self._order_row(*entry) if entry else None

    def _order_row(self, window_start: int, o: ModelOrder) -> dict:
        w = o.want
        if o.state is OrderState.REJECTED:
            status = "CANCELED"
        elif o.state is OrderState.FILLED:
            status = "MATCHED"
        elif o.state is OrderState.CANCELED:
            status = "CANCELED"
        else:
            status = "LIVE"
        return {
            "id": o.client_id, "status": status, "market": self._condition(window_start),
            "asset_id": self._token(window_start, w.leg), "side": w.side.value, "price": str(w.price),
            "original_size": str(w.size), "size_matched": str(round(o.filled, 6)), "owner": PAPER_OWNER,
            "maker_address": self.address, "order_type": w.order_type.value, "outcome": w.leg.value.capitalize(),
            "created_at": int(o.created_at), "expiration": "0", "associate_trades": [],
        }

    def open_orders(self, market: str | None = None) -> list[dict]:
        with self._lock:
            return [self._order_row(ws, o) for ws, o in self._orders.values()
                    if o.rested and o.state.working and (market is None or self._condition(ws) == market)]

    def trades(self, market: str | None = None, after: float | None = None) -> list[dict]:
        with self._lock:
            return [dict(t) for t in self._trades if (market is None or t["market"] == market)
                    and (after is None or float(t["match_time"]) >= after)]

    def _publish(self, m: _Market) -> None:
        """Turn the model's new fills and order events into the exchange's trade and order events."""
        ws = m.model.window_start
        new_fills = m.model.fills[m.fills_seen:]
        m.fills_seen = len(m.model.fills)
        out = [self._trade_event(ws, f) for f in new_fills]
        touched = {f["id"] for f in new_fills}
        touched |= {e["id"] for e in m.model.events[m.events_seen:] if e["action"] in ("cancelled", "expired")}
        m.events_seen = len(m.model.events)
        for oid in sorted(touched, key=lambda i: self._orders[i][1].created_at if i in self._orders else 0):
            entry = self._orders.get(oid)
            if entry is None or not (entry[1].rested or entry[1].state.terminal):
                continue
            row = self._order_row(*entry)
            kind = "CANCELLATION" if row["status"] == "CANCELED" else "UPDATE"
            out.append({**row, "event_type": "order", "type": kind, "timestamp": str(int(self.clock() * 1000))})
        if out:
            self._outbox.put(out)

    def _trade_event(self, window_start: int, fill: dict) -> dict:
        trade_id = f"paper-trade-{next(self._trade_ids)}"
        leg = Leg(fill["leg"])
        market, token = self._condition(window_start), self._token(window_start, leg)
        base = {
            "id": trade_id, "status": "CONFIRMED", "market": market, "asset_id": token,
            "fee_rate_bps": str(round(self._markets[window_start].model.fee_rate * 10_000, 6)),
            "match_time": str(fill["ts"]), "last_update": str(fill["ts"]), "owner": PAPER_OWNER,
            "maker_address": self.address, "type": "TRADE", "outcome": leg.value.capitalize(),
        }
        if fill["role"] == "taker":
            row = {**base, "side": fill["side"], "size": str(fill["size"]), "price": str(fill["price"]),
                   "taker_order_id": fill["id"], "trader_side": "TAKER", "maker_orders": []}
        else:  # we rested: the counterparty took; our part is the maker entry
            other = "SELL" if fill["side"] == "BUY" else "BUY"
            row = {**base, "side": other, "size": str(fill["size"]), "price": str(fill["price"]),
                   "taker_order_id": f"paper-counterparty-{trade_id}", "trader_side": "MAKER",
                   "owner": "paper-market", "maker_address": "0x" + "00" * 20,
                   "maker_orders": [{"order_id": fill["id"], "matched_amount": str(fill["size"]),
                                     "price": str(fill["price"]), "asset_id": token, "owner": PAPER_OWNER,
                                     "maker_address": self.address, "side": fill["side"],
                                     "outcome": leg.value.capitalize()}]}
        self._trades.append(row)
        return {**row, "event_type": "trade", "timestamp": str(int(fill["ts"] * 1000))}

    def _deliver(self) -> None:
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                try:
                    listener(batch)
                except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                    log.exception("exchange: delivering events failed")

    # ---- the wallet and resolution --------------------------------------------------------------------
    def balance(self) -> float:
        with self._lock:
            return self.cash

    def pending_resolution(self) -> list[tuple[MarketIdentity, dict]]:
        """Closed markets holding shares and not resolved yet (what ResolutionWatcher asks Gamma about)."""
        with self._lock:
            out = []
            for m in self._markets.values():
                held = any(p.shares > EPS for p in m.model.positions.values())
                if m.closed and m.winner is None and held and m.identity is not None:
                    out.append((m.identity, {}))
            return out

    def resolve_market(self, condition_id: str, winning_leg: Leg) -> None:
        """The market resolved (Gamma, as live): held shares pay 1 on the winning leg, 0 on the other."""
        with self._lock:
            for m in self._markets.values():
                if m.identity is None or m.identity.condition_id != condition_id or m.winner is not None:
                    continue
                m.winner = winning_leg
                m.model.winner = winning_leg.value
                payout = sum(p.shares for (_, leg), p in m.model.positions.items() if leg is winning_leg)
                self.cash += payout
                # The window's result as the backtest states it (the same fill model's resolve()), one JSON line:
                # a paper run is checked against the backtest of its recording with it.
                result = m.model.resolve()
                log.info("window %d resolved: %s won; %.2f shares paid %.2f pUSD; balance %.2f; result %s",
                         m.model.window_start, winning_leg.value, payout, payout, self.cash, json.dumps({
                             "window_start": m.model.window_start, "winner": result["winner"],
                             "pnl": result["pnl"], "fills": m.model.fills}, separators=(",", ":")))

    def pnl(self) -> dict:
        """The paper wallet's P&L: cash now against the starting balance, plus held shares of resolved markets
        (paid) and of unresolved ones at their last mid (marked, not realised)."""
        with self._lock:
            marked = 0.0
            for m in self._markets.values():
                if m.winner is not None:
                    continue
                for (_, leg), p in m.model.positions.items():
                    bid, ask = m.model.book.bid(leg), m.model.book.ask(leg)
                    mid = (bid + ask) / 2 if math.isfinite(bid) and math.isfinite(ask) else 0.5
                    marked += p.shares * mid
            fees = sum(p.fees for m in self._markets.values() for p in m.model.positions.values())
            return {"balance": round(self.cash, 6), "realised": round(self.cash - self.initial_balance, 6),
                    "marked": round(marked, 6), "fees": round(fees, 6),
                    "unresolved": sum(1 for m in self._markets.values() if m.winner is None and
                                      any(p.shares > EPS for p in m.model.positions.values())),
                    "fills": [dict(f) for m in self._markets.values() for f in m.model.fills]}
