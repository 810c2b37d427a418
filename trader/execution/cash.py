"""One money truth: the wallet's cash (pUSD) as the trader shows and spends it, moved by our own fills the moment we
learn them, and put right by the exchange's balance at every poll (the exchange wins). Pure: no I/O, no clock.

The exchange's figure (`GET /balance-allowance`) is a snapshot; between polls the trader learns fills at once (the
user channel). Cash shown = the last polled balance + the cash effect of every fill learnt since that poll was
*asked* (a fill we knew before asking is in the answer: the exchange tells us of a fill only after it moved the
money). A fill learnt while a poll is in flight, or learnt from a REST reconciliation after a gap (it may be old),
may or may not be in the answer: the book then asks for another poll soon (`repoll_due`), so such a doubt lasts
a second, not a poll interval.

Cash effect of a fill (trader/decision/fees.py's convention, the sim's engine the same): a BUY pays price x size,
a SELL receives it, the taker fee is paid in pUSD on top (makers pay none); a FAILED trade gives it all back.
Redemptions and merges move cash outside our fills: the redeemer reports each confirmed one (`on_external`), counted
at once and in doubt (the exchange paid before we heard), so an early poll follows.

Disagreement: at each poll the book compares what it expected (the previous poll + the fills since) with the
answer. One mismatch beyond a cent is put right silently (a deposit, a withdrawal, a settlement we did not see:
the exchange wins). A mismatch at two polls in a row, with no fill in doubt at either, is a warning with both
figures until a poll agrees again: our own accounting of fills is then wrong somewhere, and someone should look.

Several series on one wallet (trader/wallet/): the other series' fills, and the redemptions their leader makes, move
the same pUSD balance. Each series' trader publishes how many cash moves it has counted (`moves`) in its slot of the
wallet's shared record; a poll carries the other series' counters (`others`, as read when asked and when answered).
A comparison across which another series counted a move is in doubt like one of our own fills in doubt: the
exchange's figure is taken and no disagreement is counted. Between polls the cash shown moves with this series' own
fills only (the others' reach it at the next poll). So the wallet is judged as a whole (the exchange wins at every
poll), and a disagreement is still caught whenever it shows over a poll interval in which the other series were
quiet; with every series trading all the time it can only show there.
"""
from __future__ import annotations

from dataclasses import dataclass

from polymm.trader.model import FillView, Side

TOLERANCE_USD = 0.01  # a disagreement beyond a cent is one
REPOLL_AFTER_S = 0.5  # a fill in doubt: ask the exchange again this soon


def fill_cash(fill: FillView) -> float:
    """What one fill does to the wallet's pUSD (a FAILED one: nothing; the caller reverses what it counted)."""
    notional = fill.price * fill.size
    return (-notional if fill.side is Side.BUY else notional) - fill.fee


@dataclass(frozen=True)
class PollToken:
    """What the book knew when a poll was asked."""

    asked_at: float
    seq: int  # fills counted so far (their order of arrival)
    others: object = None  # the other series' cash-move counters on this wallet when asked (None: no other series)


class CashBook:
    def __init__(self) -> None:
        self.exchange_usd: float | None = None  # the last polled balance
        self.polled_at: float | None = None  # when that poll was asked
        self._deltas: list[tuple[int, float]] = []  # (seq, cash effect) of fills counted after that poll was asked
        self._counted: dict[tuple[str, str], float] = {}  # (trade id, order id) -> effect counted (reversal: 0)
        self._seq = 0
        self._asked: PollToken | None = None  # the poll in flight
        self._doubt_seq: set[int] = set()  # fills that may or may not be in the next answer
        self.repoll_due: float | None = None  # ask again at this time (a fill in doubt), None: no hurry
        self.mismatches = 0  # polls in a row whose answer disagreed with what we expected, none in doubt
        self.warning: str | None = None  # in words, with both figures, while the disagreement lasts
        self.last_gap: float = 0.0  # exchange - expected at the last poll
        self._others_base: object = None  # `others` when the poll behind exchange_usd was asked
        self.others_moved = 0  # comparisons in doubt because another series on the wallet moved its cash
        # cash_usd, recomputed by every change (_changed): one float read whole, so the decision loop reads it
        # without the core's lock (a writer holding that lock must never delay a decision: issue 26)
        self.now_usd: float | None = None

    # -- fills --------------------------------------------------------------------------------------------

    def on_fill(self, fill: FillView, now: float, *, in_doubt: bool = False) -> None:
        """A new fill, or a status change of one (only a reversal to FAILED moves cash again). `in_doubt`: learnt
        from a REST reconciliation, so possibly already in the balance the exchange last gave us."""
        key = (fill.trade_id, fill.order_id)
        effect = 0.0 if fill.status == "FAILED" else fill_cash(fill)
        before = self._counted.get(key)
        if before is None and fill.status == "FAILED":
            self._counted[key] = 0.0  # never counted: nothing to give back
            return
        delta = effect - (before or 0.0)
        self._counted[key] = effect
        if abs(delta) < 1e-12:
            return
        self._seq += 1
        self._deltas.append((self._seq, delta))
        self._changed()
        if in_doubt or self._asked is not None:
            self._doubt_seq.add(self._seq)
            self._want_repoll(now)

    def on_external(self, usd: float, now: float) -> None:
        """pUSD that moved without a fill of ours (a redemption or merge confirmed: +usd). Counted at once, and in
        doubt: the exchange may have paid it before we heard, so it may already be in the last balance."""
        if abs(usd) < 1e-12:
            return
        self._seq += 1
        self._deltas.append((self._seq, usd))
        self._changed()
        self._doubt_seq.add(self._seq)
        self._want_repoll(now)

    def _want_repoll(self, now: float) -> None:
        due = now + REPOLL_AFTER_S
        self.repoll_due = due if self.repoll_due is None else min(self.repoll_due, due)

    def forget(self, keys) -> None:
        """Fills of markets long settled: their effect is in every later balance (bounded memory)."""
        for key in keys:
            self._counted.pop(key, None)

    # -- polls --------------------------------------------------------------------------------------------

    @property
    def moves(self) -> int:
        """Cash moves counted so far (fills, their reversals, redemptions): published for the wallet's other series."""
        return self._seq

    def poll_asked(self, now: float, others: object = None) -> PollToken:
        token = PollToken(now, self._seq, others)
        self._asked = token
        return token

    def poll_failed(self) -> None:
        self._asked = None

    def poll_answered(self, token: PollToken, balance_usd: float, now: float, others: object = None) -> None:
        """The exchange's answer to the poll asked with `token`: it wins. Fills counted before the poll was asked
        are in it; the ones counted since are added on top. `others`: the other series' counters now."""
        self._asked = None
        expected = self.cash_usd_at(token.seq)
        # Any fill in doubt makes this comparison unreliable (it may be counted twice, or not at all, by `expected`).
        in_doubt = bool(self._doubt_seq)
        # Another series on the wallet counted a move between the previous poll's asking and this answer: the
        # balance moved by money `expected` knows nothing of.
        if self.exchange_usd is not None and others != self._others_base:
            in_doubt = True
            self.others_moved += 1
        self._others_base = token.others
        # Those counted while this poll was in flight stay in doubt until the next answer (on_fill marked them).
        self._doubt_seq = {seq for seq in self._doubt_seq if seq > token.seq}
        self._deltas = [(seq, d) for seq, d in self._deltas if seq > token.seq]
        first = self.exchange_usd is None
        self.exchange_usd, self.polled_at = balance_usd, token.asked_at
        self._changed()
        if self._doubt_seq:
            self._want_repoll(now)
        elif self.repoll_due is not None and self.repoll_due <= now:
            self.repoll_due = None
        if first or expected is None:
            return
        self.last_gap = balance_usd - expected
        if abs(self.last_gap) <= TOLERANCE_USD or in_doubt:
            if abs(self.last_gap) <= TOLERANCE_USD:
                self.mismatches = 0
                self.warning = None
            return
        self.mismatches += 1
        if self.mismatches >= 2:
            self.warning = (f"cash disagrees with the exchange for {self.mismatches} polls: our fills say "
                            f"${expected:,.2f}, the exchange says ${balance_usd:,.2f} (using the exchange's)")

    def cash_usd_at(self, seq: int) -> float | None:
        """What we expected the balance to be once the fills up to `seq` are in."""
        if self.exchange_usd is None:
            return None
        return self.exchange_usd + sum(d for s, d in self._deltas if s <= seq)

    @property
    def cash_usd(self) -> float | None:
        """The cash to show and spend: the exchange's last figure + our fills since it was asked."""
        return self.now_usd

    def _changed(self) -> None:
        self.now_usd = (None if self.exchange_usd is None
                        else round(self.exchange_usd + sum(d for _, d in self._deltas), 6))
