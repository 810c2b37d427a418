"""What `mmctl status` says: feed health from the shared-memory snapshot plus the trader's own status,
reduced to warnings in words and one healthy/unhealthy verdict (the exit code).

Pure: the caller reads shared memory and the socket and passes what it got (or why it got nothing) and
the time. Nothing here touches a clock, a socket or a segment.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from polymm.ctl import protocol as p
from polymm.ctl import render
from polymm.ctl.reference_line import reference_line

# The feed refreshes its heartbeat even when the market is quiet, so a few seconds of silence means it is
# hung or gone. A book that does not change is not a warning (a quiet market): the feed's market socket is
# judged from its own liveness in shared memory (layout.Link: connected, a frame or PONG within its ping interval +
# PONG timeout, market data within the feed's stale-after), and the trader judges with its configured limits.
HEARTBEAT_LATE_S = 3.0
WINDOW_OVERDUE_S = 10.0  # the feed should have rotated to the next window by now
# At a window boundary the new market's first book may take a moment (the next market connected ahead of its
# start publishes at once; one found late needs its snapshot): within this much of the start, "first book
# pending" is a note, not a warning (a health check polling at the boundary must not page anyone for it).
ROTATION_GRACE_S = WINDOW_OVERDUE_S
# The trader's own words for failing dead-man-switch heartbeats (trader/execution/exchange_state.py says exactly this);
# used only for a trader that reports heartbeat_ok=False without any heartbeat warning, so one condition
# always reads the same.
HEARTBEATS_FAILING = "heartbeats failing: not placing orders; the exchange may cancel ours (dead-man switch)"
PAUSED_WARNING = "trader is paused (mmctl resume to trade again)"

# Health classes, so a health check can tell "deliberately paused" from "broken" from "down". The exit
# code of each (mmctl's cli documents them); a trader that cannot be asked exits with the reason's own code
# (3 not running, 4 permission denied, 5 timeout, 6 protocol mismatch, 7 connection lost), as every command does.
# Busy: the trader runs and serves other clients, but every control slot is taken, so it could not answer this
# one: it is not down (issue 27), and its health is unknown for this poll (try again shortly).
HEALTHY, UNHEALTHY, FEED_DOWN, PAUSED, TRADER_DOWN, BUSY = (
    "healthy", "unhealthy", "feed_down", "paused", "trader_down", "busy")
EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_FEED_DOWN, EXIT_PAUSED, EXIT_TRADER_DOWN, EXIT_BUSY = 0, 1, 8, 9, 3, 10


@dataclass(frozen=True)
class LegQuote:
    bid: float | None
    bid_size: float | None
    ask: float | None
    ask_size: float | None
    last_trade: float | None


@dataclass(frozen=True)
class FeedHealth:
    available: bool  # a snapshot was read
    problem: str | None = None  # why not (segment missing, layout unknown), in words
    status: str = ""
    writer_pid: int = 0
    condition_id: str = ""
    window_start: int = 0
    window_end: int = 0
    time_left_s: float | None = None
    book_age_s: float | None = None
    heartbeat_age_s: float | None = None
    updates_per_s: float | None = None
    updates_total: int = 0
    reconnects: int = 0
    crossed: bool = False
    up: LegQuote | None = None
    down: LegQuote | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong (a rollover in progress)
    socket_age_s: float | None = None  # since the market socket's last frame of any kind (data or PONG)
    # The BTC reference price (issue 16; None from a feed without it)
    btc: float | None = None
    btc_age_s: float | None = None
    btc_open: float | None = None
    btc_open_note: str = ""
    publishing: bool = False  # a live writer: a segment, not stopped, heartbeat fresh (else the feed is down)


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _quote(leg: Any) -> LegQuote:
    return LegQuote(
        bid=_finite(leg.bid), bid_size=_finite(leg.bid_size), ask=_finite(leg.ask), ask_size=_finite(leg.ask_size),
        last_trade=_finite(leg.last_trade),
    )


def feed_health(snapshot: Any | None, now: float, *, problem: str | None = None,
                heartbeat_late_s: float = HEARTBEAT_LATE_S) -> FeedHealth:
    """Feed health from a `polymm.feed.shm.Snapshot` (contract 1), or from why there is none."""
    if snapshot is None:
        why = problem or "feed shared memory not readable"
        return FeedHealth(available=False, problem=why, warnings=[f"feed: {why}"])
    warnings: list[str] = []
    notes: list[str] = []
    heartbeat_age = snapshot.heartbeat_age_s(now)
    book_age = snapshot.data_age_s(now)
    link = getattr(snapshot, "link", None)
    publishing = False
    if snapshot.status == "stopped":
        warnings.append(f"feed stopped (polymm-feed pid {snapshot.writer_pid} exited cleanly); no market data")
    elif heartbeat_age > heartbeat_late_s:
        warnings.append(
            f"feed heartbeat {render.duration(heartbeat_age)} old: polymm-feed (pid {snapshot.writer_pid}) is hung or not running"
        )
    else:
        publishing = True
    if snapshot.status not in ("connected", "rotating", "stopped"):
        warnings.append(f"feed status is {snapshot.status}")  # stale, starting, or a status this mmctl does not know
    into_window = now - snapshot.market.window_start if snapshot.market.window_start else math.inf
    if snapshot.status == "rotating" or (snapshot.status == "connected" and math.isinf(book_age)):
        # The new window's first book is on its way: a note during the rollover, a warning once it is late.
        if 0 <= into_window <= ROTATION_GRACE_S:
            notes.append(f"new window: first book pending ({render.duration(into_window)} into it)")
        elif not snapshot.market.window_end or now < snapshot.market.window_end:
            warnings.append(f"feed has no book for this window yet ({render.duration(into_window)} into it)")
    elif snapshot.status == "connected" and link is not None:
        # Liveness from the socket, not from book changes: a quiet market keeps a live socket.
        for why in (link.dead_reason(now), link.frozen_reason(now)):
            if why:
                warnings.append(f"feed: {why}")
    time_left = snapshot.market.window_end - now if snapshot.market.window_end else None
    if time_left is not None and time_left < -WINDOW_OVERDUE_S and snapshot.status != "stopped":
        warnings.append(f"window ended {render.duration(-time_left)} ago and the feed has not moved to the next one")
    if snapshot.crossed:
        warnings.append("feed reports a crossed book (bid >= ask) for this market")
    return FeedHealth(
        available=True,
        status=snapshot.status,
        writer_pid=snapshot.writer_pid,
        condition_id=snapshot.market.condition_id,
        window_start=snapshot.market.window_start,
        window_end=snapshot.market.window_end,
        time_left_s=time_left,
        book_age_s=book_age if math.isfinite(book_age) else None,
        heartbeat_age_s=heartbeat_age if math.isfinite(heartbeat_age) else None,
        updates_per_s=_finite(snapshot.updates_per_s),
        updates_total=snapshot.updates_total,
        reconnects=snapshot.reconnects,
        crossed=snapshot.crossed,
        up=_quote(snapshot.up),
        down=_quote(snapshot.down),
        warnings=warnings,
        notes=notes,
        socket_age_s=_finite_age(link.frame_age_s(now)) if link is not None else None,
        **_reference(snapshot, now),
        publishing=publishing,
    )


def _finite_age(age: float) -> float | None:
    return age if math.isfinite(age) else None


def _reference(snapshot: Any, now: float) -> dict[str, Any]:
    ref = getattr(snapshot, "ref", None)
    if ref is None:
        return {}
    opening = _finite(ref.opening_for(snapshot.market.window_start))
    if opening is not None:
        note = ""
    elif ref.open_window_start == snapshot.market.window_start and ref.open_status == "unknown":
        note = "unknown (missed: the feed was not watching at the window start)"
    elif not ref.rtds_connected and ref.chainlink != ref.chainlink:
        note = "unknown (no reference prices: RTDS not connected)"
    else:
        note = "pending (no Chainlink price of this window yet)"
    age = ref.chainlink_age_s(now)
    return {"btc": _finite(ref.chainlink), "btc_age_s": age if math.isfinite(age) else None, "btc_open": opening,
            "btc_open_note": note}


@dataclass(frozen=True)
class StatusView:
    feed: FeedHealth
    trader: p.StatusReply | None
    trader_problem: str | None  # why there is no trader status (not running, permission, timeout)
    warnings: list[str]
    healthy: bool
    verdict: str = UNHEALTHY  # one of the health classes above
    exit_code: int = EXIT_UNHEALTHY
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong (a rollover in progress)


def trader_warnings(trader: p.StatusReply) -> list[str]:
    """The trader's warnings, plus the conditions it reports as fields but might not have put in words."""
    words = list(trader.warnings)
    text = " ".join(words).lower()
    if not trader.heartbeat_ok and "heartbeat" not in text:
        words.append(HEARTBEATS_FAILING)
    if trader.paused and "pause" not in text:
        words.append(PAUSED_WARNING)
    if trader.pending_restart and "restart" not in text:
        words.append("config change pending restart: " + ", ".join(trader.pending_restart))
    for leg, reason in sorted(trader.blocked_legs.items()):
        if reason.lower() not in text:
            words.append(f"leg {leg} blocked: {reason}")
    if not trader.healthy and not words:
        words.append(f"trader reports itself unhealthy (state {trader.state})")
    return words


def _only_paused(trader: p.StatusReply, warnings: list[str]) -> bool:
    """The trader is paused (or flattening, which leaves it paused) on an operator's word and nothing else
    is wrong: every warning is the pause itself."""
    if not (trader.paused or trader.state == "paused"):
        return False
    return all(w == PAUSED_WARNING or w.startswith("flattening:") or "paused by operator" in w for w in warnings)


def build_status(feed: FeedHealth, trader: p.StatusReply | None, trader_problem: str | None,
                 trader_exit_code: int = EXIT_TRADER_DOWN, *, busy: bool = False) -> StatusView:
    """`trader_exit_code`: when there is no trader status, the code of the reason (client.CtlError's). `busy`: the
    trader answered "too many clients": it runs, so it is not down."""
    warnings = list(feed.warnings)
    notes = list(feed.notes)
    if trader is None:
        warnings.append(f"trader busy: {trader_problem or 'too many clients'}" if busy else
                        f"trader not running or unreachable: {trader_problem or 'no reply'}")
        healthy = False
    else:
        warnings.extend(trader_warnings(trader))
        notes.extend(trader.notes)
        healthy = trader.healthy
    unique = list(dict.fromkeys(warnings))
    healthy = healthy and not unique
    # The worst class wins: a trader that cannot be asked, then a dead feed, then a busy trader (it runs; its
    # health is unknown this time), then anything else wrong; "paused" only when the pause is all there is.
    if trader is None and not busy:
        verdict, code = TRADER_DOWN, trader_exit_code
    elif trader is None:
        verdict, code = (BUSY, EXIT_BUSY) if feed.publishing else (FEED_DOWN, EXIT_FEED_DOWN)
    elif not feed.publishing:
        verdict, code = FEED_DOWN, EXIT_FEED_DOWN
    elif healthy:
        verdict, code = HEALTHY, EXIT_HEALTHY
    elif _only_paused(trader, unique):
        verdict, code = PAUSED, EXIT_PAUSED
    else:
        verdict, code = UNHEALTHY, EXIT_UNHEALTHY
    # One note per subject: the feed and the trader both say "first book pending" during a rollover.
    by_subject: dict[str, str] = {}
    for n in notes:
        by_subject.setdefault(n.split(" (", 1)[0], n)
    return StatusView(feed=feed, trader=trader, trader_problem=trader_problem, warnings=unique,
                      healthy=healthy, verdict=verdict, exit_code=code, notes=list(by_subject.values()))


def status_json(view: StatusView) -> dict[str, Any]:
    return {
        "mode": view.trader.mode if view.trader is not None else None,
        "healthy": view.healthy,
        "verdict": view.verdict,
        "exit_code": view.exit_code,
        "warnings": view.warnings,
        "notes": view.notes,
        "feed": asdict(view.feed),
        "trader": p.to_builtins(view.trader) if view.trader is not None else None,
        "trader_problem": view.trader_problem,
    }


# ---------------------------------------------------------------------------------------------------------
# Text

VERDICT_WORDS = {HEALTHY: "HEALTHY", UNHEALTHY: "UNHEALTHY", PAUSED: "PAUSED", FEED_DOWN: "UNHEALTHY: FEED DOWN",
                 TRADER_DOWN: "UNHEALTHY: TRADER DOWN", BUSY: "BUSY: TRADER RUNNING, NO CONTROL SLOT FREE"}


def render_status(view: StatusView, now: float) -> str:
    feed_block = _feed_block(view.feed, view.trader.book if view.trader is not None else None)
    if view.feed.available and (view.feed.btc is not None or view.feed.btc_open_note):
        feed_block += "\n" + reference_line(view.feed.btc, view.feed.btc_age_s, view.feed.btc_open, view.feed.btc_open_note,
                                            view.trader.fair_up if view.trader is not None else None)
    blocks = [feed_block, _trader_block(view.trader, view.trader_problem, now)]
    trader = view.trader
    if trader is not None:
        blocks.append(render.heading("positions") + "\n" + positions_table(trader.positions))
        blocks.append(render.heading("open orders") + "\n" + orders_table(trader.orders, trader.now or None))
        if trader.exposure:
            blocks.append(render.heading("exposure") + "\n" + exposure_table(trader.exposure))
        if trader.config_warnings:
            blocks.append(render.heading("config warnings") + "\n" + render.bullets(trader.config_warnings))
    verdict = VERDICT_WORDS.get(view.verdict, "UNHEALTHY")
    if not view.healthy:
        verdict += f" ({len(view.warnings)} warning{'s' * (len(view.warnings) != 1)})"
    tail = verdict if not view.warnings else verdict + "\n" + render.bullets(view.warnings)
    if view.notes:
        tail += "\n" + render.bullets(["note: " + n for n in view.notes])
    blocks.append(tail)
    if trader is not None and trader.mode == "paper":
        # First, before anything else: an operator must never take a paper trader for a live one.
        blocks.insert(0, "PAPER TRADING: orders are filled locally against the live book; no order reaches the "
                         "exchange, no money moves")
    return "\n\n".join(blocks)


def _feed_block(feed: FeedHealth, trader_book: list[p.LegBook] | None = None) -> str:
    if not feed.available:
        return "FEED    not available: " + (feed.problem or "unknown")
    rows = [
        ("FEED", feed.status, f"pid {feed.writer_pid}", f"heartbeat {render.duration(feed.heartbeat_age_s)} ago",
         # the market socket's last frame (data or PONG): liveness; the book's age is only how long it has not changed
         f"socket {render.duration(feed.socket_age_s)} ago", f"book age {render.duration(feed.book_age_s)}",
         f"{render.number(feed.updates_per_s, 1)} updates/s", f"{feed.reconnects} reconnects"),
        ("market", render.short_id(feed.condition_id, 10),
         f"window {render.clock(feed.window_start)}-{render.clock(feed.window_end)} UTC",
         "ends in " + render.duration(feed.time_left_s) if (feed.time_left_s or 0) >= 0 else
         "ended " + render.duration(-(feed.time_left_s or 0)) + " ago"),
    ]
    books = {b.leg: b for b in (trader_book or [])}
    for name, quote in (("up", feed.up), ("down", feed.down)):
        if quote is None:
            continue
        book = books.get(name)
        if book is not None and (net_differs(book, "bid") or net_differs(book, "ask")):
            # The trader's view at its last decision, raw and without us side by side (one consistent book).
            rows.append((name, leg_side_words(book, "bid"), leg_side_words(book, "ask"),
                         f"last {render.price(quote.last_trade)}"))
        else:
            rows.append((name, f"bid {render.price(quote.bid)} x {render.number(quote.bid_size)}",
                         f"ask {render.price(quote.ask)} x {render.number(quote.ask_size)}",
                         f"last {render.price(quote.last_trade)}"))
    return render.table(None, rows)


def net_differs(book: p.LegBook, side: str) -> bool:
    """The top of that side without our orders is not the displayed one."""
    known = book.net_bid_known if side == "bid" else book.net_ask_known
    raw = (book.bid, book.bid_size) if side == "bid" else (book.ask, book.ask_size)
    net = (book.net_bid, book.net_bid_size) if side == "bid" else (book.net_ask, book.net_ask_size)
    return not known or raw != net


def leg_side_words(book: p.LegBook, side: str) -> str:
    """`bid 0.61 x 6.55 (ours) → 0.58 x 40 without us`, or just `bid 0.61 x 40` when we are not in it."""
    price, size = (book.bid, book.bid_size) if side == "bid" else (book.ask, book.ask_size)
    shown = f"{side} {render.price(price)} x {render.number(size)}"
    if not net_differs(book, side):
        return shown
    known = book.net_bid_known if side == "bid" else book.net_ask_known
    net_price, net_size = (book.net_bid, book.net_bid_size) if side == "bid" else (book.net_ask, book.net_ask_size)
    if not known:
        return f"{shown} (ours) → ? without us (the published depth shows only ours)"
    if net_price is None:
        return f"{shown} (ours) → none without us"
    return f"{shown} (ours) → {render.price(net_price)} x {render.number(net_size)} without us"


def book_lines(books: list[p.LegBook]) -> list[str]:
    """One line per leg where our own orders change the top of the book, for `mmctl orders`."""
    lines = []
    for book in books:
        if net_differs(book, "bid") or net_differs(book, "ask"):
            lines.append(f"{book.leg}: {leg_side_words(book, 'bid')}; {leg_side_words(book, 'ask')}")
    return lines


def _trader_block(trader: p.StatusReply | None, problem: str | None, now: float) -> str:
    if trader is None:
        return "TRADER  not running or unreachable: " + (problem or "no reply")
    uptime = render.duration(trader.now - trader.started_at) if trader.started_at and trader.now else render.EMPTY
    if not trader.last_decision_at:
        last = "none yet"
    elif trader.now:
        last = render.duration(trader.now - trader.last_decision_at) + " ago"
    else:
        last = "at " + render.clock(trader.last_decision_at)
    rows = [
        ("TRADER", trader.state, f"pid {trader.pid or render.EMPTY}", f"up {uptime}", f"last decision {last}",
         "heartbeat ok" if trader.heartbeat_ok else "heartbeat FAILING"),
        ("window", render.short_id(trader.condition_id, 10),
         f"{render.clock(trader.window_start)}-{render.clock(trader.window_end)} UTC",
         f"feed age at decision {render.number(trader.feed_age_ms, 0)}ms" if trader.feed_age_ms is not None else ""),
        ("P&L", f"realised {render.money(trader.realised_pnl, signed=True)}",
         f"unrealised {render.money(trader.unrealised_pnl, signed=True)}"),
        ("wallet", f"cash {render.money(trader.balance_usd)}", f"open positions {render.money(trader.open_value_usd)}",
         f"awaiting redemption {render.money(trader.awaiting_redemption_usd)}",
         f"redeemed today {render.money(trader.redeemed_today_usd)}"
         + (f" (+ merged {render.money(trader.merged_today_usd)})" if trader.merged_today_usd else "")),
    ]
    return render.table(None, rows)


def positions_table(positions: list[p.PositionInfo]) -> str:
    """The current window's positions; then, when there are any, positions of ended windows still awaiting
    resolution in their own block, with the window they were bought in (they have no book, so no mark)."""
    current = [pos for pos in positions if not pos.awaiting_resolution]
    awaiting = [pos for pos in positions if pos.awaiting_resolution]
    rows = [
        (pos.strategy, pos.leg, render.number(pos.shares, 2), render.number(pos.avg_price, 4), render.price(pos.mark),
         render.money(pos.unrealised_pnl, signed=True), render.money(pos.realised_pnl, signed=True),
         render.money(pos.fees), render.clock(pos.last_fill_at))
        for pos in current
    ]
    text = render.table(("strategy", "leg", "shares", "avg", "mark", "unrealised", "realised", "fees", "last fill"),
                        rows)
    if awaiting:
        old = [
            (_window(pos.window_start), pos.strategy, pos.leg, render.number(pos.shares, 2),
             render.number(pos.avg_price, 4), render.money(_at_cost(pos)), render.money(pos.realised_pnl, signed=True),
             render.money(pos.fees), render.clock(pos.last_fill_at))
            for pos in awaiting
        ]
        text += ("\n\n" + render.heading("awaiting resolution") + " (ended windows; each share pays 1 or 0 when the "
                 "market resolves)\n" + render.table(("window (UTC)", "strategy", "leg", "shares", "avg", "at cost",
                                                      "realised", "fees", "last fill"), old))
    return text


def _window(window_start: int | None) -> str:
    return f"{render.clock(window_start)} start" if window_start else render.EMPTY


def _at_cost(pos: p.PositionInfo) -> float | None:
    value = pos.shares * pos.avg_price
    return value if math.isfinite(value) else None


def orders_table(orders: list[p.OrderInfo], now: float | None = None) -> str:
    """Orders with age and distance from the book. A value the trader did not report shows as "-"; the age
    falls back to `now - created_at` when the reply carries the trader's clock but no age."""
    rows = [
        (o.strategy, o.leg, o.side, render.price(o.price), render.number(o.size, 2), render.number(o.filled, 2),
         _order_type(o), o.role or None, o.state, render.duration(_age(o, now)), render.price(o.distance),
         render.short_id(o.order_id or o.client_id, 8), o.reason or None)
        for o in orders
    ]
    return render.table(("strategy", "leg", "side", "price", "size", "filled", "type", "role", "state", "age",
                         "behind", "id", "reason"), rows)


def _order_type(order: p.OrderInfo) -> str | None:
    if not order.order_type:
        return "post" if order.post_only else None
    return order.order_type + (" post" if order.post_only else "")


def _age(order: p.OrderInfo, now: float | None) -> float | None:
    if order.age_s is not None:
        return order.age_s
    if now and order.created_at:
        return max(0.0, now - order.created_at)
    return None


def exposure_table(exposure: list[p.Exposure]) -> str:
    rows = []
    for e in exposure:
        usable = _finite(e.usd) is not None and _finite(e.cap_usd) is not None and e.cap_usd > 0
        used = f"{100 * e.usd / e.cap_usd:.0f}%" if usable else render.EMPTY
        rows.append((e.scope, render.money(e.usd), render.money(e.cap_usd), used))
    return render.table(("scope", "usd", "cap", "used"), rows)


def fills_table(fills: list[p.FillInfo]) -> str:
    rows = [
        (render.clock(f.ts, with_date=True), f.strategy, f.leg, f.side, render.price(f.price), render.number(f.size, 2),
         render.money(f.fee), f.role, f.status, render.short_id(f.trade_id, 8))
        for f in fills
    ]
    return render.table(("time (UTC)", "strategy", "leg", "side", "price", "size", "fee", "role", "status", "trade"), rows)
