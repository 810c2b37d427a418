"""The fill model's rules, one test each (trader/fill_model/): our fills consume displayed liquidity until the data
shows the level gone, takers walk the depth, latency moves the fill price, the balance is enforced."""
from __future__ import annotations

import pytest
from tests.support.strategy import WS

from polymm.trader.decision.fees import FeeSchedule, taker_fee as _taker_fee
from polymm.trader.backtest.runner import Backtest
from polymm.trader.backtest.ticks_file import BadTicks, TickLine, read_ticks
from polymm.trader.config import load_config
from polymm.trader.fill_model import ASK, BID, Book, WindowFillModel
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want

T0 = WS + 300


def taker_fee(shares, price, rate):
    """The one fee formula (trader/decision/fees.py) at the markets' exponent 1."""
    return _taker_fee(shares, price, FeeSchedule(rate, 1.0))


def line(t: float, up_bid=0.40, up_ask=0.42, up_bid_size=None, up_ask_size=None, **depth) -> TickLine:
    return TickLine(ts=T0 + t, window_start=WS, up_bid=up_bid, up_ask=up_ask, down_bid=0.58, down_ask=0.60,
                    up_bid_size=up_bid_size, up_ask_size=up_ask_size, **depth)


def model(first: TickLine, latency_s: float = 0.0, cash: float | None = None) -> WindowFillModel:
    m = WindowFillModel(first, load_config(None), latency_s, [], "t", cash=cash)
    m.apply_line(first)
    return m


def want(side: Side, price: float, size: float, order_type=OrderType.FAK, post_only=False, role=Role.STOP_LOSS) -> Want:
    return Want("s1", Leg.UP, side, price, size, role, order_type, post_only, "test")


def hold(m: WindowFillModel, shares: float, at: float) -> None:
    """Give s1 a position on Up: a BUY fill at the ask (the ask side is unlimited in these books)."""
    m.place(want(Side.BUY, 0.42, shares, role=Role.ENTRY), at)
    m.settle_pending(at + 0.1)
    assert m.positions[("s1", Leg.UP)].shares == shares


def test_a_static_one_share_bid_fills_one_share_of_our_stop_once_not_on_every_line():
    m = model(line(0, up_bid_size=1.0))
    hold(m, 10, T0)
    for i in range(1, 6):  # the same 1-share bid on every line; the strategy sends its stop again each time
        m.apply_line(line(i, up_bid_size=1.0))
        m.place(want(Side.SELL, 0.40, 10 - sum(f["size"] for f in m.fills if f["side"] == "SELL")), T0 + i)
        m.settle_pending(T0 + i)
    sells = [f for f in m.fills if f["side"] == "SELL"]
    assert [(f["price"], f["size"]) for f in sells] == [(0.40, 1.0)]
    # The size at 0.40 changes (someone else's order arrives): still only what is displayed beyond what we took.
    m.apply_line(line(6, up_bid_size=3.0))
    m.place(want(Side.SELL, 0.40, 9), T0 + 6)
    m.settle_pending(T0 + 6)
    # The level disappears and comes back: fresh liquidity.
    m.apply_line(line(7, up_bid=0.39, up_bid_size=1.0))
    m.apply_line(line(8, up_bid_size=1.0))
    m.place(want(Side.SELL, 0.40, 7), T0 + 8)
    m.settle_pending(T0 + 8)
    sells = [f for f in m.fills if f["side"] == "SELL"]
    assert [(f["price"], f["size"]) for f in sells] == [(0.40, 1.0), (0.40, 2.0), (0.40, 1.0)]


def test_a_fill_and_kill_sweeps_several_levels_at_worse_prices_paying_the_fee_per_level():
    depth = {"up_bids": [(0.40, 2.0), (0.39, 3.0), (0.38, 10.0)], "up_asks": [(0.42, 50.0)]}
    m = model(line(0, **depth))
    hold(m, 20, T0)
    m.place(want(Side.SELL, 0.38, 6), T0 + 1)
    m.settle_pending(T0 + 1)
    sells = [f for f in m.fills if f["side"] == "SELL"]
    assert [(f["price"], f["size"], f["role"]) for f in sells] == [(0.40, 2.0, "taker"), (0.39, 3.0, "taker"), (0.38, 1.0, "taker")]
    assert [f["fee"] for f in sells] == pytest.approx([taker_fee(2, 0.40, 0.07), taker_fee(3, 0.39, 0.07), taker_fee(1, 0.38, 0.07)])
    # Up to its limit only: a FAK at 0.39 takes what is left at 0.39 and above (nothing) and is killed.
    m.place(want(Side.SELL, 0.39, 5), T0 + 2)
    m.settle_pending(T0 + 2)
    assert len([f for f in m.fills if f["side"] == "SELL"]) == 3
    assert [e["action"] for e in m.events][-1] == "killed"


def test_a_fill_or_kill_that_the_depth_cannot_fill_whole_fills_nothing():
    m = model(line(0, up_bids=[(0.40, 2.0), (0.39, 3.0)], up_asks=[(0.42, 50.0)]))
    hold(m, 10, T0)
    m.place(want(Side.SELL, 0.39, 6, order_type=OrderType.FOK), T0 + 1)
    m.settle_pending(T0 + 1)
    assert [f for f in m.fills if f["side"] == "SELL"] == []
    m.place(want(Side.SELL, 0.39, 5, order_type=OrderType.FOK), T0 + 2)
    m.settle_pending(T0 + 2)
    assert sum(f["size"] for f in m.fills if f["side"] == "SELL") == 5


def test_latency_moves_the_fill_price_to_the_book_of_the_arrival_time():
    def stop_fill(latency_s: float) -> float:
        m = model(line(0), latency_s=latency_s)
        hold(m, 10, T0 - 1)
        m.place(want(Side.SELL, 0.01, 10), T0 + 1)  # sent when the bid is 0.40 ...
        m.settle_pending(T0 + 1)
        m.settle_pending(T0 + 1.001)
        m.apply_line(line(1.001, up_bid=0.35, up_ask=0.37))  # ... the book falls 1 ms later
        m.settle_pending(T0 + 1.01)
        (fill,) = [f for f in m.fills if f["side"] == "SELL"]
        return fill["price"]

    assert stop_fill(0.0) == 0.40
    assert stop_fill(0.0025) == 0.35


def test_backtest_default_latency_is_the_config_value_and_moves_the_stop_fill(tmp_path):
    cfg = load_config(None)
    assert Backtest(cfg).latency_s == pytest.approx(cfg.fill_model.latency_ms / 1000) and cfg.fill_model.latency_ms > 0
    rows = ([TickLine(ts=WS + 640 + i, window_start=WS, up_bid=0.85, up_ask=0.86, down_bid=0.14, down_ask=0.15) for i in range(10)]
            + [TickLine(ts=WS + 650, window_start=WS, up_bid=0.84, up_ask=0.85, down_bid=0.15, down_ask=0.16)]
            + [TickLine(ts=WS + 651 + i, window_start=WS, up_bid=0.84, up_ask=0.86, down_bid=0.14, down_ask=0.16) for i in range(9)]
            + [TickLine(ts=WS + 660, window_start=WS, up_bid=0.64, up_ask=0.66, down_bid=0.34, down_ask=0.36),
               TickLine(ts=WS + 660.002, window_start=WS, up_bid=0.60, up_ask=0.66, down_bid=0.34, down_ask=0.40)]
            + [TickLine(ts=WS + 661 + i, window_start=WS, up_bid=0.60, up_ask=0.66, down_bid=0.34, down_ask=0.40) for i in range(5)])

    def stop_price(latency_s):
        result = Backtest(cfg, latency_s=latency_s).run(rows)
        return [f["price"] for f in result.windows[0]["fills"] if f["order_role"] == "stop_loss"]

    assert stop_price(0.0) == [0.64]  # the bid that triggered it
    assert stop_price(None) == [0.60]  # the bid when the stop (sent after the take-profit's cancel) arrives


def test_a_resting_bid_fills_from_the_crossing_asks_once_and_at_its_own_price():
    m = model(line(0, up_bids=[(0.40, 5.0)], up_asks=[(0.42, 5.0)]))
    o = m.place(want(Side.BUY, 0.41, 10, order_type=OrderType.GTC, post_only=True, role=Role.ENTRY), T0)
    m.settle_pending(T0)
    assert o.state is OrderState.LIVE
    crossing = {"up_bids": [(0.39, 5.0)], "up_asks": [(0.40, 2.0), (0.41, 1.0), (0.42, 5.0)]}
    for i in (1, 2, 3):  # the same asks on three lines: 3 shares are there, once
        m.apply_line(line(i, up_bid=0.39, up_ask=0.40, **crossing))
    assert [(f["price"], f["size"], f["role"], f["fee"]) for f in m.fills] == [(0.41, 2.0, "maker", 0.0), (0.41, 1.0, "maker", 0.0)]
    assert o.state is OrderState.PARTIALLY_FILLED and o.remaining == 7


def test_a_marketable_limit_order_takes_at_arrival_and_rests_the_rest():
    m = model(line(0, up_bids=[(0.40, 5.0)], up_asks=[(0.42, 2.0), (0.43, 1.0), (0.45, 9.0)]))
    o = m.place(want(Side.BUY, 0.43, 6, order_type=OrderType.GTC, role=Role.ENTRY), T0)
    m.settle_pending(T0)
    assert [(f["price"], f["size"], f["role"]) for f in m.fills] == [(0.42, 2.0, "taker"), (0.43, 1.0, "taker")]
    assert o.state is OrderState.PARTIALLY_FILLED and o.rested and o.remaining == 3


def test_the_balance_is_enforced_when_one_applies_like_the_exchange_would():
    m = model(line(0), cash=10.0)
    ok = m.place(want(Side.BUY, 0.40, 15, order_type=OrderType.GTC, post_only=True, role=Role.ENTRY), T0)
    m.settle_pending(T0)
    too_much = m.place(want(Side.BUY, 0.40, 11, order_type=OrderType.GTC, post_only=True, role=Role.ENTRY), T0)
    m.settle_pending(T0)
    assert ok.state is OrderState.LIVE and too_much.state is OrderState.REJECTED  # 6 locked, 4 free
    assert "not enough balance" in m.events[-1]["reason"]
    m.place(want(Side.BUY, 0.42, 5, role=Role.ENTRY), T0 + 1)  # a taker buy pays price + fee from the cash
    m.settle_pending(T0 + 1)
    assert m.cash == pytest.approx(10 - 5 * 0.42 - taker_fee(5, 0.42, 0.07))


def test_the_book_knows_which_levels_the_data_shows_gone():
    top = Book.top(up_bid=0.40, up_ask=0.42)
    assert top.gone(Leg.UP, BID, 0.41) and not top.gone(Leg.UP, BID, 0.40) and not top.gone(Leg.UP, BID, 0.30)
    assert top.gone(Leg.DOWN, ASK, 0.5)  # an empty side
    deep = Book.depth({(Leg.UP, BID): [(0.40, 1.0), (0.38, 2.0)]})
    assert deep.gone(Leg.UP, BID, 0.39) and not deep.gone(Leg.UP, BID, 0.38) and not deep.gone(Leg.UP, BID, 0.30)
    assert deep.reachable(Leg.UP, BID, 0.39) == [(0.40, 1.0)]


def test_tick_files_carry_depth_and_bad_levels_name_their_line(tmp_path):
    path = tmp_path / "ticks.jsonl"
    path.write_text(
        '{"ts": 1800000300, "window_start": 1800000000, "up_bid": 0.4, "up_ask": 0.42, "down_bid": 0.58, '
        '"down_ask": 0.6, "up_bids": [[0.4, 2], [0.39, 3]]}\n'
        '{"ts": 1800000301, "window_start": 1800000000, "up_bid": 0.4, "up_ask": 0.42, "down_bid": 0.58, '
        '"down_ask": 0.6, "up_bids": [[1.4, 2]]}\n')
    lines = read_ticks(path)
    assert next(lines)[1].up_bids == [(0.4, 2.0), (0.39, 3.0)]
    with pytest.raises(BadTicks, match="line 2: up_bids price 1.4 is outside"):
        next(lines)


def test_backtest_a_static_one_share_bid_gives_the_repeated_stop_one_share_until_the_level_changes():
    def at(t, bid, ask, bid_size=None):
        return TickLine(ts=WS + t, window_start=WS, up_bid=bid, up_ask=ask, down_bid=round(1 - ask, 2),
                        down_ask=round(1 - bid, 2), up_bid_size=bid_size)

    rows = ([at(640 + i, 0.85, 0.86) for i in range(10)] + [at(650, 0.84, 0.85)]
            + [at(651 + i, 0.84, 0.86) for i in range(9)]
            + [at(660 + i, 0.64, 0.66, 1.0) for i in range(10)]  # the stop's bid: 1 share, the same on every line
            + [at(670 + i, 0.63, 0.66, 1.0) for i in range(3)])  # the level changes: one more share
    result = Backtest(load_config(None, {"s1.cap_schedule": "0-900:20"})).run(rows)  # 23.52 shares held
    stops = [(f["price"], f["size"]) for f in result.windows[0]["fills"] if f["order_role"] == "stop_loss"]
    assert stops == [(0.64, 1.0), (0.63, 1.0)]
    sent = [e for e in result.events if e["action"] == "place" and e["role"] == "stop_loss" and e["t"] < 670]
    assert len(sent) >= 5  # re-sent every exit_retry_s against the same line: the one share was taken once
