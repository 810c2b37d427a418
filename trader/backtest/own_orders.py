"""Our own orders out of a recording made while the trader was live (`polymm-backtest --own-orders LEDGER`).

The feed records the book the exchange displays, and while the trader was live that book held our resting orders:
replayed as is, our entry would "hold" the bid it was itself making and our take-profit "be" the ask. So each
line is netted before the replay sees it: our orders of that moment, from the ledger of the same period
(trader/ledger/own_orders.py: times, prices, remaining sizes), are subtracted with the live engine's own
definitions - `decision/own_book.py` (which orders can rest, their remainders, mirrored into the other leg, since
Up and Down are one book) and `decision/net_book.py` (each order only where the displayed level still holds it).
The fill model and the strategies then both see the market without us, as for any other recording.

Limits (said in README "Backtest"): a line with top of book only and no size cannot be netted (kept as recorded);
where our orders filled every published level of a depth cut at N, what lay beyond is unknown and the side reads
as empty; and the ledger's times are when the trader learnt each change, so a line published in the few
milliseconds between the exchange's change and the trader learning it is netted as the live engine netted it then
(the netting's "only where the level still holds it" keeps that from removing others' shares).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from msgspec.structs import replace

from polymm.trader.backtest.ticks_file import TickLine
from polymm.trader.decision.net_book import net_levels
from polymm.trader.decision.own_book import own_book
from polymm.trader.ledger.own_orders import OwnOrdersLedger, RecordedOrder
from polymm.trader.model import Leg, OrderState, OrderView, Side

_FILL = None  # an event that is a fill, not a state


class OwnOrderTimeline:
    """One window's recorded orders replayed forward in time: `book_at(ts)` is the own book (decision/own_book.py)
    of the orders working at `ts`, with their remainders then. Times must not go back."""

    def __init__(self, orders: Sequence[RecordedOrder]) -> None:
        events: list[tuple[float, int, int, OrderState | None, float]] = []
        for i, o in enumerate(orders):
            for ts, state in o.states:
                events.append((ts, len(events), i, state, 0.0))
            for ts, shares in o.fills:
                events.append((ts, len(events), i, _FILL, shares))
            events.append((o.window_end, len(events), i, OrderState.CANCELED, 0.0))  # the market closed
        events.sort()
        self.orders = list(orders)
        self._events = events
        self._next = 0
        self._state: dict[int, OrderState] = {}
        self._filled: dict[int, float] = {}
        self._book: dict = {}

    def book_at(self, ts: float) -> Mapping[tuple[Leg, Side], Mapping[float, tuple[float, ...]]]:
        events, n = self._events, self._next
        changed = False
        while n < len(events) and events[n][0] <= ts:
            _, _, i, state, shares = events[n]
            if state is _FILL:
                self._filled[i] = self._filled.get(i, 0.0) + shares
            elif self._state.get(i) is None or not self._state[i].terminal:
                self._state[i] = state
            changed = True
            n += 1
        self._next = n
        if changed:
            self._book = own_book(self._view(i, s) for i, s in self._state.items() if not s.terminal)
        return self._book

    def _view(self, i: int, state: OrderState) -> OrderView:
        o = self.orders[i]
        return OrderView(
            client_id=o.client_id, order_id=o.order_ids[0] if o.order_ids else None, strategy=o.strategy,
            leg=o.leg, side=o.side, price=o.price, size=o.size, filled=round(self._filled.get(i, 0.0), 6),
            state=state, role=o.role, order_type=o.order_type, post_only=o.post_only, created_at=0.0, updated_at=0.0)


class OwnOrderFilter:
    """Takes our live orders out of every line of a recording, window by window, from a ledger."""

    def __init__(self, ledger: OwnOrdersLedger) -> None:
        self.ledger = ledger
        self._window: int | None = None
        self._timeline = OwnOrderTimeline(())
        self.orders = 0  # our orders found in the ledger for the recording's windows
        self.lines = 0  # lines that showed some of ours
        self.shares = 0.0  # shares of ours taken out, summed over lines and levels (both legs)

    def without_ours(self, line: TickLine) -> TickLine:
        if line.window_start != self._window:
            self._window = line.window_start
            self._timeline = OwnOrderTimeline(self.ledger.orders_of_window(line.window_start))
            self.orders += len(self._timeline.orders)
        own = self._timeline.book_at(line.ts)
        if not own:
            return line
        net, taken = net_line(line, own)
        if taken > 0:
            self.lines += 1
            self.shares += taken
        return net

    def summary(self) -> dict:
        return {"ledger": str(self.ledger.path), "orders": self.orders, "lines_netted": self.lines,
                "shares_taken_out": round(self.shares, 6)}


def net_line(line: TickLine, own: Mapping[tuple[Leg, Side], Mapping[float, Sequence[float]]]) -> tuple[TickLine, float]:
    """`line` without our orders `own` (decision/own_book.py's shape), and how many shares were taken out."""
    changes: dict = {}
    taken = 0.0
    for leg in (Leg.UP, Leg.DOWN):
        for side, many, top in ((Side.BUY, "bids", "bid"), (Side.SELL, "asks", "ask")):
            ours = own.get((leg, side))
            if not ours:
                continue
            name = leg.value
            depth = getattr(line, f"{name}_{many}")
            price, size = getattr(line, f"{name}_{top}"), getattr(line, f"{name}_{top}_size")
            if depth is not None:
                levels = [(p, q) for p, q in depth]
            elif price is not None and size is not None:
                levels = [(price, size)]
            else:
                continue  # no size to judge what is ours: kept as recorded
            net = net_levels(levels, ours)
            removed = sum(q for _, q in levels) - sum(q for _, q in net)
            if removed <= 1e-9:
                continue
            taken += removed
            if depth is not None:
                changes[f"{name}_{many}"] = net
            changes[f"{name}_{top}"] = net[0][0] if net else None
            changes[f"{name}_{top}_size"] = net[0][1] if net else None
    return (replace(line, **changes) if changes else line), taken
