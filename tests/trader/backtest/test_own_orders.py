"""Our own orders out of a recording made while the trader was live (`polymm-backtest --own-orders LEDGER`): read
from the ledger of the period (trader/ledger/own_orders.py), replayed in time with their remainders
(trader/backtest/own_orders.py), netted with the live engine's own_book/net_book. The slow replay against a real
live run is tests/e2e/test_backtest_own_orders_live.py."""
from __future__ import annotations

import json

import pytest
from tests.support.ledger import OrderLike, fill, market
from tests.support.strategy import WS, write_ticks

from polymm.trader.backtest.cli import main
from polymm.trader.backtest.own_orders import OwnOrderTimeline, net_line
from polymm.trader.backtest.ticks_file import TickLine
from polymm.trader.ledger import LedgerWriter
from polymm.trader.ledger.own_orders import OwnOrdersLedger
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side

M = market(WS, window_s=900)


def ledger(path, build, mode: str = "live", series: str = "btc-15m", m=M):
    w = LedgerWriter(path, mode, series=series)
    w.start({"source": "test"})
    w.window(m, ts=WS)
    build(w)
    w.close()
    assert w.error is None
    return path


def entry(cid="c1", oid="0xo1", price=0.62, size=6.45, **kw) -> OrderLike:
    return OrderLike(cid, oid, M.condition_id, price=price, size=size, **kw)


def test_the_ledger_gives_each_sent_order_its_states_and_fills_in_time(tmp_path):
    def build(w):
        o = entry()
        w.order_action("submit", o, "entry", ts=WS + 300.0)
        w.order_action("live", o, "accepted", ts=WS + 300.01)
        w.fill(fill("t1", Leg.UP, Side.BUY, 0.62, 2.0, WS + 310.0, order="0xo1"), M.condition_id, ts=WS + 310.02)
        w.order_action("partially_filled", o, "user channel", ts=WS + 310.02)
        w.order_action("cancel", o, "bid fell", ts=WS + 320.0)
        w.order_action("canceled", o, "bid fell", ts=WS + 320.01)
        never = entry("c2", None)
        w.order_action("refused", never, "size", ts=WS + 330.0)  # never sent: never rested
        tp = entry("c3", "0xo3", price=0.70, size=2.0, side=Side.SELL, role=Role.TAKE_PROFIT)
        w.order_action("submit", tp, "tp", ts=WS + 340.0)  # no end recorded (a kill -9): rests to the window end

    path = ledger(tmp_path / "ledger.sqlite", build)
    orders = {o.client_id: o for o in OwnOrdersLedger(path).orders_of_window(WS)}
    assert sorted(orders) == ["c1", "c3"]
    c1 = orders["c1"]
    assert (c1.leg, c1.side, c1.price, c1.size, c1.order_type) == (Leg.UP, Side.BUY, 0.62, 6.45, OrderType.GTC)
    assert [s for _, s in c1.states] == [OrderState.PENDING_SUBMIT, OrderState.LIVE, OrderState.PARTIALLY_FILLED,
                                        OrderState.PENDING_CANCEL, OrderState.CANCELED]
    assert c1.fills == ((WS + 310.02, 2.0),)  # when the trader learnt it, as its own book changed live
    timeline = OwnOrderTimeline(list(orders.values()))
    assert timeline.book_at(WS + 299.0) == {}
    assert timeline.book_at(WS + 300.0)[(Leg.UP, Side.BUY)] == {0.62: (6.45,)}
    assert timeline.book_at(WS + 300.0)[(Leg.DOWN, Side.SELL)] == {0.38: (6.45,)}  # Up and Down are one book
    assert timeline.book_at(WS + 315.0)[(Leg.UP, Side.BUY)] == {0.62: (4.45,)}
    assert timeline.book_at(WS + 320.005)[(Leg.UP, Side.BUY)] == {0.62: (4.45,)}  # pending cancel still rests
    assert timeline.book_at(WS + 341.0) == {(Leg.UP, Side.SELL): {0.7: (2.0,)}, (Leg.DOWN, Side.BUY): {0.3: (2.0,)}}
    assert timeline.book_at(WS + 900.0) == {}  # the market closed


def test_a_paper_ledger_has_nothing_to_take_out(tmp_path):
    def build(w):
        w.order_action("submit", entry(), "entry", ts=WS + 300.0)

    path = ledger(tmp_path / "paper.sqlite", build, mode="paper")
    assert OwnOrdersLedger(path).orders_of_window(WS) == []


def test_only_the_replayed_series_orders_are_read_from_a_ledger_several_series_share(tmp_path):
    # Two 15-minute series' traders write one ledger (schema 3) and their windows start together: a replay of
    # eth-15m must not take btc-15m's orders out of its book.
    path = tmp_path / "ledger.sqlite"
    eth = market(WS, window_s=900, n=1)
    for series, m, cid in (("btc-15m", M, "btc1"), ("eth-15m", eth, "eth1")):
        order = OrderLike(cid, f"0x{cid}", m.condition_id, price=0.62, size=6.45)
        ledger(path, lambda w, o=order: w.order_action("submit", o, "entry", ts=WS + 300.0), series=series, m=m)
    assert [o.client_id for o in OwnOrdersLedger(path).orders_of_window(WS)] == ["btc1"]  # the default series
    assert [o.client_id for o in OwnOrdersLedger(path, "eth-15m").orders_of_window(WS)] == ["eth1"]
    assert OwnOrdersLedger(path, "sol-15m").orders_of_window(WS) == []


def test_net_line_takes_our_orders_out_of_depth_and_top_of_book():
    own = {(Leg.UP, Side.BUY): {0.62: (6.45,)}, (Leg.DOWN, Side.SELL): {0.38: (6.45,)}}
    line = TickLine(ts=WS + 301, window_start=WS, up_bid=0.62, up_ask=0.64, down_bid=0.36, down_ask=0.38,
                    up_bid_size=6.45, up_ask_size=50, down_bid_size=50, down_ask_size=6.45,
                    up_bids=[(0.62, 6.45), (0.55, 50)], up_asks=[(0.64, 50)], down_bids=[(0.36, 50)],
                    down_asks=[(0.38, 6.45), (0.45, 50)])
    net, taken = net_line(line, own)
    assert (net.up_bid, net.up_bid_size, net.up_bids) == (0.55, 50, [(0.55, 50)])
    assert (net.down_ask, net.down_ask_size, net.down_asks) == (0.45, 50, [(0.45, 50)])
    assert (net.up_ask, net.down_bid) == (0.64, 0.36) and taken == pytest.approx(12.9)
    top = TickLine(ts=WS + 301, window_start=WS, up_bid=0.62, up_ask=0.64, down_bid=0.36, down_ask=0.38,
                   up_bid_size=26.45, up_ask_size=50, down_bid_size=50, down_ask_size=None)
    net, taken = net_line(top, own)
    assert (net.up_bid, net.up_bid_size) == (0.62, 20.0)  # others' 20 shares stay
    assert (net.down_ask, net.down_ask_size) == (0.38, None)  # no size: cannot tell what is ours, kept
    assert taken == pytest.approx(6.45)


def lone_bid_run(tmp_path):
    """While live, our entry rested alone at 0.62 (the market's own best bid was 0.55) until a seller took it at
    330 s; then the market fell. Returns (tick file, ledger)."""
    def build(w):
        o = entry()
        w.order_action("submit", o, "entry", ts=WS + 299.5)
        w.order_action("live", o, "accepted", ts=WS + 299.51)
        w.fill(fill("t1", Leg.UP, Side.BUY, 0.62, 6.45, WS + 330.0, order="0xo1"), M.condition_id, ts=WS + 330.01)
        w.order_action("filled", o, "user channel", ts=WS + 330.01)

    led = ledger(tmp_path / "ledger.sqlite", build)

    def row(t, bids, asks, **kw):
        return {"ts": WS + t, "window_start": WS, "up_bid": bids[0][0], "up_ask": asks[0][0],
                "down_bid": round(1 - asks[0][0], 2), "down_ask": round(1 - bids[0][0], 2),
                "up_bids": bids, "up_asks": asks, "down_bids": [[round(1 - p, 2), q] for p, q in asks],
                "down_asks": [[round(1 - p, 2), q] for p, q in bids], **kw}

    rows = [row(t, [[0.62, 6.45], [0.55, 50]], [[0.64, 50]]) for t in range(300, 330)]
    rows.append(row(330.005, [[0.55, 50]], [[0.62, 43.55], [0.64, 50]]))  # the seller took our 6.45 at 0.62
    rows += [row(t, [[0.40, 50]], [[0.42, 50]]) for t in range(331, 340)]
    rows.append(row(340, [[0.40, 50]], [[0.42, 50]], winner="down"))
    return write_ticks(tmp_path / "ticks.jsonl", rows), led


def test_our_own_bid_alone_on_top_misleads_the_backtest_unless_taken_out(tmp_path, capsys):
    # Replayed as recorded, the backtest reads our 0.62 as the market's bid, enters there, is filled by that seller
    # and stopped out at 0.40 (a loss); netted, the bid is 0.55 < s1.entry_threshold 0.60: no entry, nothing lost.
    ticks, led = lone_bid_run(tmp_path)

    def run(*extra):
        assert main([str(ticks), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    as_recorded, netted = run(), run("--own-orders", str(led))
    assert [(f["side"], f["price"], f["size"], f["order_role"]) for f in as_recorded["windows"][0]["fills"]] == [
        ("BUY", 0.62, 6.45, "entry"), ("SELL", 0.4, 6.45, "stop_loss")]
    assert as_recorded["total_pnl"] < -1.4 and "own_orders" not in as_recorded
    assert netted["windows"][0]["fills"] == [] and netted["total_pnl"] == 0
    assert not [e for e in netted["orders"] if e["action"] == "place"]
    assert netted["own_orders"]["orders"] == 1 and netted["own_orders"]["lines_netted"] == 30
    # A sweep nets every point the same way (each worker reads the ledger itself): at 0.50 the market's own bid
    # of 0.55 is eligible, the entry goes there and is filled when the market falls through it; at 0.60 nothing.
    assert main([str(ticks), "--own-orders", str(led), "--sweep", "s1.entry_threshold=0.5:0.6:0.1", "--workers", "2",
                 "--json"]) == 0
    swept = {p["point"]["s1.entry_threshold"]: p for p in json.loads(capsys.readouterr().out)["points"]}
    assert (swept[0.6]["orders"], swept[0.6]["fills"], swept[0.6]["total_pnl"]) == (0, 0, 0)
    assert swept[0.5]["orders"] >= 1 and swept[0.5]["fills"] >= 1


def test_a_bad_ledger_is_a_clear_error(tmp_path, capsys):
    ticks = write_ticks(tmp_path / "ticks.jsonl", [{"ts": WS + 1, "window_start": WS, "up_bid": 0.5, "up_ask": 0.52,
                                                     "down_bid": 0.48, "down_ask": 0.5}])
    assert main([str(ticks), "--own-orders", str(tmp_path / "missing.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymm-backtest: --own-orders: no ledger at") and "Traceback" not in err
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    assert main([str(ticks), "--own-orders", str(tmp_path / "junk.sqlite")]) == 2
    assert "--own-orders:" in capsys.readouterr().err
