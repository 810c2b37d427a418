"""The book without us (decision/net_book.py) and our own book (decision/own_book.py), and the rules that read
it: an entry alone at the top no longer keeps itself alive, and S2's bid never hides S1's stop."""
from __future__ import annotations

import math

from tests.support.strategy import WS, book, config, order, pos

from polymm.trader.decision.decide import decide, new_state
from polymm.trader.decision.net_book import net_side, net_view
from polymm.trader.decision.planner import Cancel, Place
from polymm.trader.decision.own_book import own_book
from polymm.trader.model import Leg, LegTop, OrderState, OrderType, Role, Side

CFG = config()


def test_net_side_subtracts_ours_level_by_level():
    levels = [(0.61, 6.55), (0.58, 40.0)]
    assert net_side(levels, {}, True) == (0.61, 6.55, True)
    assert net_side(levels, {0.61: (6.55,)}, True) == (0.58, 40.0, True)  # alone at the top: the next level
    assert net_side(levels, {0.61: (2.0,)}, True) == (0.61, 4.55, True)  # sharing the level: the others' part
    assert net_side(levels[:1], {0.61: (6.55,)}, True)[2] is True
    assert math.isnan(net_side(levels[:1], {0.61: (6.55,)}, True)[0])
    # depth cut at N with only ours in it: unknown, never our own price
    price, size, known = net_side(levels[:1], {0.61: (6.55,)}, False)
    assert math.isnan(price) and math.isnan(size) and known is False
    # ours not displayed yet (a submit in flight): nothing to subtract
    assert net_side(levels, {0.62: (5.0,)}, True) == (0.61, 6.55, True)
    # an order larger than what the level shows is not in it yet: the level is the others' (no churn of a fresh
    # entry joining a small level); several orders of ours at one price are taken one by one
    assert net_side([(0.61, 3.0), (0.58, 40.0)], {0.61: (6.55,)}, True) == (0.61, 3.0, True)
    assert net_side([(0.61, 9.55), (0.58, 40.0)], {0.61: (6.55, 5.0)}, True) == (0.61, 3.0, True)
    assert net_side([(0.61, 11.55), (0.58, 40.0)], {0.61: (6.55, 5.0)}, True) == (0.58, 40.0, True)


def test_own_book_counts_what_can_rest_with_its_remainder():
    orders = [
        order(Leg.UP, Side.BUY, 0.61, 10, Role.ENTRY, filled=3.45),  # partly filled: its remainder
        order(Leg.UP, Side.BUY, 0.61, 5, Role.ENTRY, strategy="s2", state=OrderState.PENDING_SUBMIT),
        order(Leg.UP, Side.SELL, 0.7, 5, Role.TAKE_PROFIT, state=OrderState.PENDING_CANCEL),
        order(Leg.UP, Side.SELL, 0.01, 5, Role.STOP_LOSS, order_type=OrderType.FAK, post_only=False),  # never rests
        order(Leg.DOWN, Side.BUY, 0.3, 5, Role.ENTRY, state=OrderState.CANCELED),  # gone
    ]
    # Up and Down are one book on the exchange: each order also shows, mirrored, in the other leg's book
    # (one entry per order, acknowledged ones first)
    assert own_book(orders) == {(Leg.UP, Side.BUY): {0.61: (6.55, 5.0)}, (Leg.DOWN, Side.SELL): {0.39: (6.55, 5.0)},
                                (Leg.UP, Side.SELL): {0.7: (5.0,)}, (Leg.DOWN, Side.BUY): {0.3: (5.0,)}}


def test_net_view_keeps_the_published_top_as_raw_and_says_when_the_net_price_is_unknown():
    view = book(0.61, 0.63, size=6.55)
    own = {(Leg.UP, Side.BUY): {0.61: (6.55,)}}
    net = net_view(view, ([(0.61, 6.55), (0.58, 40.0)], [(0.63, 6.55)]), ((), ()), own, 10)
    assert (net.up_bid, net.up_bid_size, net.up_ask) == (0.58, 40.0, 0.63)
    assert net.raw(Leg.UP) == LegTop(0.61, 6.55, 0.63, 6.55) and net.down_raw is None
    assert net.known(Leg.UP, Side.BUY)
    # a feed without depth: only the top, all ours -> unknown
    net = net_view(view, ((), ()), ((), ()), own, 0)
    assert math.isnan(net.up_bid) and not net.known(Leg.UP, Side.BUY)
    assert net_view(view, ((), ()), ((), ()), {}, 0) is view


def test_entry_alone_at_the_top_is_cancelled_at_the_first_decision_the_net_bid_is_below_the_threshold():
    # S1 rests 6.55 @ 0.61 (threshold 0.60). The other bidders at 0.61 leave; the market falls to 0.58. The
    # published best bid is still 0.61 (our own order): without netting the entry would stay.
    entry = order(Leg.UP, Side.BUY, 0.61, 6.55, Role.ENTRY, created_at=WS + 300)
    view = book(0.61, 0.62, size=6.55)
    net = net_view(view, ([(0.61, 6.55), (0.58, 40.0)], [(0.62, 10.0)]), ((), ()), own_book([entry]), 10)
    d = decide(net, [entry], {}, CFG, new_state(net), WS + 301)
    assert [a.client_id for a in d.actions if isinstance(a, Cancel)] == [entry.client_id]
    assert not [a for a in d.actions if isinstance(a, Place) and a.want.leg is Leg.UP]
    # depth shows only ours: treated as no bid, the entry goes too
    net = net_view(view, ([(0.61, 6.55)], [(0.62, 10.0)]), ((), ()), own_book([entry]), 1)
    d = decide(net, [entry], {}, CFG, new_state(net), WS + 301)
    assert [a.client_id for a in d.actions if isinstance(a, Cancel)] == [entry.client_id]
    assert "only our own bids" in d.leg_notes["s1 up entry"]


def test_s2_bid_on_a_leg_s1_holds_does_not_hide_s1s_stop():
    # S1 holds 10 Up at avg 0.80 (stop trigger 0.60 with the defaults); S2 bids 5 @ 0.75 on Up. Everyone
    # else bids 0.50: the market without us is below the trigger, so S1 stops now.
    cfg = config(**{"s2.enabled": True})
    s2_entry = order(Leg.UP, Side.BUY, 0.75, 5, Role.ENTRY, strategy="s2")
    positions = {("s1", Leg.UP): pos(Leg.UP, 10, 0.80)}
    view = book(0.75, 0.77, size=5)
    trigger = 0.80 - cfg.s1.sl_offset
    assert 0.50 < trigger < 0.75
    net = net_view(view, ([(0.75, 5.0), (0.50, 100.0)], [(0.77, 5.0)]), ((), ()), own_book([s2_entry]), 10)
    d = decide(net, [s2_entry], positions, cfg, new_state(net), WS + 800)
    stops = [a.want for a in d.actions if isinstance(a, Place) and a.want.role is Role.STOP_LOSS]
    assert [(w.strategy, w.leg, w.side, w.order_type) for w in stops] == [("s1", Leg.UP, Side.SELL, OrderType.FAK)]


def test_take_profit_never_rests_on_or_below_our_own_bid_on_the_leg():
    # S1 holds 10 Up at avg 0.62 (tp 0.63); S2 bids 5 @ 0.63 on Up; the others bid 0.60. The market without us
    # (0.60) does not reach tp, but a post-only SELL at 0.63 would cross S2's displayed bid: rest one tick above.
    s2_entry = order(Leg.UP, Side.BUY, 0.63, 5, Role.ENTRY, strategy="s2")
    view = book(0.63, 0.66, size=5)
    net = net_view(view, ([(0.63, 5.0), (0.60, 50.0)], [(0.66, 5.0)]), ((), ()), own_book([s2_entry]), 10)
    assert net.up_bid == 0.60 and net.raw(Leg.UP).bid == 0.63
    d = decide(net, [s2_entry], {("s1", Leg.UP): pos(Leg.UP, 10, 0.62, first_fill_at=WS + 10)}, CFG, new_state(net),
               WS + 300)
    tps = [a.want for a in d.actions if isinstance(a, Place) and a.want.role is Role.TAKE_PROFIT]
    assert [(w.price, w.post_only) for w in tps] == [(0.64, True)]


def test_an_entry_joining_a_small_level_is_not_cancelled_before_the_feed_shows_it():
    # Others bid 3 @ 0.61. S1 joins with 6.55 at 0.61; the market channel shows it a little after our REST answer.
    # Across those decisions the market without us stays 0.61 x 3: no cancel, no re-place (no churn).
    cfg = config(**{"s1.cap_schedule": "0-900:4"})
    view = book(0.61, 0.63, size=3)
    d = decide(view, [], {}, cfg, new_state(view), WS + 300)
    [entry_want] = [a.want for a in d.actions if isinstance(a, Place)]
    state = d.state
    for st, shown in ((OrderState.PENDING_SUBMIT, 3.0), (OrderState.LIVE, 3.0), (OrderState.LIVE, 3.0 + entry_want.size)):
        entry = order(Leg.UP, Side.BUY, entry_want.price, entry_want.size, Role.ENTRY, created_at=WS + 300, state=st)
        net = net_view(view, ([(0.61, shown), (0.58, 40.0)], [(0.63, 10.0)]), ((), ()), own_book([entry]), 10)
        assert (net.up_bid, net.up_bid_size) == (0.61, 3.0)
        d = decide(net, [entry], {}, cfg, state, WS + 300.1)
        state = d.state
        assert d.actions == [], (st, shown, d.actions)
