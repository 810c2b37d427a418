"""Fill store and positions: idempotent under duplicates/reordering, FAILED reverses, maker fills come from
maker_orders by OUR order id (including the cross-asset case), taker fees, resolution."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.support.recorded import load_fixture
from polymm.trader.execution.fills import EXTERNAL, FillStore, OrderInfo, TokenInfo, normalise_trade_status
from polymm.trader.decision.fees import FeeSchedule
from polymm.trader.model import Leg, Side
from polymm.trader.decision.positions import fold, pnl_summary
from polymm.trader.venue.user_wire import decode_rest_trades, decode_user_frame, trade_report

UP = "21742633143463906290569050155826241533067272736897614950488156847949938836455"
DOWN = "48331043336612883890938759509493159234755048973500640148014422747788308965732"
COND = "0xdd22472e552920b8438158ea7238bfadfa4f736aa4cee91a6b86c39ead110917"
OUR_UP_ORDER = "0xab679e56242324e15e59cfd488cd0f12e4fd71b153b9bfb57518898b9983145e"  # user_trade1, 5 @ 0.518
OUR_DOWN_ORDER = "0x3b67d584e1e7ad29b06bda373449638898aa87f0c9fd52a34bdbfb1325a6c184"  # user_trade1, No leg


def store(orders: dict[str, OrderInfo], owner: str = "", address: str = "", fee_rate: float = 0.07,
          fee_exponent: float = 1.0) -> FillStore:
    fee = FeeSchedule(fee_rate, fee_exponent)
    tokens = {UP: TokenInfo(COND, Leg.UP, fee), DOWN: TokenInfo(COND, Leg.DOWN, fee)}
    return FillStore(orders.get, tokens.get, owner, address)


def ws_trade(name: str, **overrides):
    raw = load_fixture(f"nautilus-python/ws_messages/{name}")
    raw.update(overrides)
    events, _ = decode_user_frame(json.dumps(raw))
    return trade_report(events[0])


def s1(leg: Leg, side: Side = Side.BUY, cid: str = "c1") -> OrderInfo:
    return OrderInfo(cid, "s1", leg, side)


def test_maker_fill_is_our_maker_order_not_the_taker_size():
    fills = store({OUR_UP_ORDER: s1(Leg.UP)})
    changes = fills.apply(ws_trade("user_trade1.json"))
    assert len(changes) == 1
    fill, previous = changes[0]
    assert previous is None
    assert (fill.order_id, fill.leg, fill.side, fill.price, fill.size, fill.role, fill.fee) == \
           (OUR_UP_ORDER, Leg.UP, Side.BUY, 0.518, 5.0, "maker", 0.0)
    assert fill.status == "MINED" and fill.strategy == "s1"


def test_cross_asset_maker_fill_takes_leg_from_the_maker_entry_and_side_from_our_order():
    # Our BUY Down rested opposite a BUY Up taker: the exchange minted a pair; the trade's asset is Up.
    fills = store({OUR_DOWN_ORDER: OrderInfo("c9", "s2", Leg.DOWN, Side.BUY)})
    (fill, _), = fills.apply(ws_trade("user_trade1.json"))
    assert (fill.leg, fill.side, fill.price, fill.size, fill.strategy) == (Leg.DOWN, Side.BUY, 0.482, 10.0, "s2")


def test_several_of_our_maker_orders_in_one_trade_are_separate_fills():
    ours = {"0x3ad09f225ebe141dfbdb3824f31cb457e8e0301ca4e0a06311e543f5328b9dea": s1(Leg.UP, cid="a"),
            "0x67b598cab933c71389176573822be763192a35a8c37e49999a11d611a5882e7d": s1(Leg.UP, cid="b")}
    fills = store(ours)
    changes = fills.apply(ws_trade("user_trade4.json"))
    assert sorted((f.client_id, f.price, f.size) for f, _ in changes) == [("a", 0.4, 5.0), ("b", 0.3, 5.0)]
    pos = fold([(COND, f) for f in fills.fills()], {})
    assert pos[(COND, "s1", Leg.UP)].shares == 10.0
    assert abs(pos[(COND, "s1", Leg.UP)].avg_price - 0.35) < 1e-9


def test_duplicates_and_reordering_change_nothing():
    fills = store({OUR_UP_ORDER: s1(Leg.UP)})
    mined = ws_trade("user_trade1.json")
    matched = replace(mined, status="MATCHED")
    confirmed = replace(mined, status="CONFIRMED")
    assert len(fills.apply(mined)) == 1
    assert fills.apply(mined) == []  # duplicate
    assert fills.apply(matched) == []  # late, lower status
    (fill, previous), = fills.apply(confirmed)
    assert (previous, fill.status) == ("MINED", "CONFIRMED")
    assert fills.apply(matched) == [] and fills.apply(mined) == [] and fills.apply(confirmed) == []
    assert len(fills) == 1
    assert fold([(COND, f) for f in fills.fills()], {})[(COND, "s1", Leg.UP)].shares == 5.0


def test_failed_after_matched_reverses_and_a_late_matched_does_not_revive():
    fills = store({OUR_UP_ORDER: s1(Leg.UP)})
    matched = replace(ws_trade("user_trade1.json"), status="MATCHED")
    fills.apply(matched)
    (fill, previous), = fills.apply(replace(matched, status="FAILED"))
    assert (previous, fill.status) == ("MATCHED", "FAILED")
    assert fills.apply(matched) == []
    assert fills.matched_shares(OUR_UP_ORDER) == 0.0
    pos = fold([(COND, f) for f in fills.fills()], {})
    assert (COND, "s1", Leg.UP) not in pos


def test_taker_fill_pays_fee_from_market_rate_when_trade_says_zero():
    raw = load_fixture("nautilus-python/ws_messages/user_trade2.json")
    report = ws_trade("user_trade2.json", asset_id=UP)
    fills = store({report.taker_order_id: s1(Leg.UP, Side(raw["side"]))}, fee_rate=0.07)
    (fill, _), = fills.apply(report)
    p, n = float(raw["price"]), float(raw["size"])
    assert fill.role == "taker" and fill.size == n and fill.price == p
    assert abs(fill.fee - round(n * 0.07 * p * (1 - p), 5)) < 1e-12


@pytest.mark.parametrize("fee_rate_bps", ["0", "1000", "1250", "700"])
def test_taker_fee_is_the_markets_schedule_whatever_the_trades_fee_rate_bps_says(fee_rate_bps):
    """Issue 21's decision (docs/venue.md, Fees): the official client computes every fee from the market info's
    fd.r / fd.e and never reads a trade's fee_rate_bps (a V1 order field: 1000 was the base fee orders signed).
    Pinned here so a change of mind has to change this test."""
    raw = load_fixture("nautilus-python/ws_messages/user_trade2.json")
    p, n = float(raw["price"]), float(raw["size"])
    report = ws_trade("user_trade2.json", asset_id=UP, fee_rate_bps=fee_rate_bps)
    fills = store({report.taker_order_id: s1(Leg.UP, Side(raw["side"]))}, fee_rate=0.25, fee_exponent=2)
    (fill, _), = fills.apply(report)
    assert fill.fee == round(n * 0.25 * (p * (1 - p)) ** 2, 5)


def test_rest_trade_status_prefix_is_normalised():
    assert normalise_trade_status("TRADE_STATUS_CONFIRMED") == "CONFIRMED"
    assert normalise_trade_status("matched") == "MATCHED"
    row = load_fixture("nautilus-python/ws_messages/user_trade1.json")
    row["status"] = "TRADE_STATUS_CONFIRMED"
    (report,), bad = decode_rest_trades([row])
    assert bad == [] and report.status == "CONFIRMED"


def test_fill_of_unknown_order_on_our_api_key_is_kept_as_external_then_attributed():
    fills = store({}, owner="3e2c94ca-8124-c4c1-c7ea-be1ea21b71fe")
    report = ws_trade("user_trade1.json")
    # The older message has no maker side; an unknown order without a side cannot be attributed.
    assert fills.apply(report) == []
    legs = tuple(replace(m, side="BUY") for m in report.maker_orders)
    (fill, _), = fills.apply(replace(report, maker_orders=legs))
    assert fill.strategy == EXTERNAL and fill.order_id == OUR_UP_ORDER
    (again,) = fills.attribute(OUR_UP_ORDER, s1(Leg.UP, cid="c7"))
    assert again.strategy == "s1" and again.client_id == "c7"


def test_trades_of_other_markets_are_ignored_with_a_reason():
    fills = store({OUR_UP_ORDER: s1(Leg.UP)})
    report = ws_trade("user_trade1.json", asset_id="999", maker_orders=[])
    assert fills.apply(replace(report, taker_order_id=OUR_UP_ORDER)) == []
    assert any("no market we trade" in why for why in fills.ignored)


def test_positions_average_cost_fees_and_resolution_payout():
    fills = store({"0xa": s1(Leg.UP, Side.BUY, "a"), "0xb": s1(Leg.UP, Side.SELL, "b"),
                   "0xc": OrderInfo("c", "s2", Leg.DOWN, Side.BUY)})
    base = ws_trade("user_trade1.json", maker_orders=[])

    def taker(trade_id, order_id, asset, side, size, price, t):
        return replace(base, trade_id=trade_id, taker_order_id=order_id, asset_id=asset, side=side, size=size,
                       price=price, match_time=t, status="CONFIRMED", fee_rate_bps=0.0)

    fills.apply(taker("t1", "0xa", UP, "BUY", 10, 0.40, 1))
    fills.apply(taker("t2", "0xa", UP, "BUY", 10, 0.60, 2))
    fills.apply(taker("t3", "0xb", UP, "SELL", 5, 0.70, 3))
    fills.apply(taker("t4", "0xc", DOWN, "BUY", 10, 0.30, 4))
    fee = lambda n, p: round(n * 0.07 * p * (1 - p), 5)  # noqa: E731
    pos = fold([(COND, f) for f in fills.fills()], {})
    up = pos[(COND, "s1", Leg.UP)]
    assert up.shares == 15 and abs(up.avg_price - 0.5) < 1e-9
    fees_up = fee(10, 0.4) + fee(10, 0.6) + fee(5, 0.7)
    assert abs(up.fees - fees_up) < 1e-9
    assert abs(up.realised_pnl - (5 * 0.2 - fees_up)) < 1e-9
    resolved = fold([(COND, f) for f in fills.fills()], {COND: Leg.UP})
    assert resolved[(COND, "s1", Leg.UP)].shares == 0
    assert abs(resolved[(COND, "s1", Leg.UP)].realised_pnl - (5 * 0.2 + 15 * 0.5 - fees_up)) < 1e-9
    assert abs(resolved[(COND, "s2", Leg.DOWN)].realised_pnl - (-3.0 - fee(10, 0.3))) < 1e-9
    summary = pnl_summary(resolved, {COND: Leg.UP})
    assert summary["markets"][COND]["resolved"] == "up"
    assert abs(summary["total"]["realised"] - (1.0 + 7.5 - fees_up - 3.0 - fee(10, 0.3))) < 1e-6
    assert set(summary["by_strategy"]) == {"s1", "s2"}


def test_forgetting_a_settled_market_drops_only_its_fills_and_their_order_index():
    other_cond, other_up = "0xother", "777"
    tokens = {UP: TokenInfo(COND, Leg.UP, FeeSchedule(0.07)), DOWN: TokenInfo(COND, Leg.DOWN, FeeSchedule(0.07)),
              other_up: TokenInfo(other_cond, Leg.UP, FeeSchedule(0.07))}
    fills = FillStore({OUR_UP_ORDER: s1(Leg.UP), "0xo": s1(Leg.UP, cid="o")}.get, tokens.get)
    fills.apply(ws_trade("user_trade1.json"))
    fills.apply(replace(ws_trade("user_trade1.json"), trade_id="t-other", market=other_cond, asset_id=other_up,
                        taker_order_id="0xo", maker_orders=()))
    assert fills.markets() == {COND, other_cond} and fills.matched_shares(OUR_UP_ORDER) == 5.0
    assert fills.forget_market(COND) == 1
    assert fills.markets() == {other_cond} and fills.matched_shares(OUR_UP_ORDER) == 0.0
    assert fills.covered_shares(OUR_UP_ORDER) == 0.0 and fills.matched_shares("0xo") > 0
    assert [f.trade_id for f in fills.fills()] == ["t-other"]
    assert [c for c, _ in fills.fills_with_market(other_cond)] == [other_cond] and fills.fills_with_market(COND) == []


def test_one_markets_fills_and_positions_are_those_of_all_fills_filtered_to_it():
    # The store indexes fills by market (a publish reads the current market's, pending_resolution folds each older
    # one apart): the answer must be the same as filtering every fill, in the same causal order.
    other_cond, other_up = "0xother", "777"
    tokens = {UP: TokenInfo(COND, Leg.UP, FeeSchedule(0.07)), DOWN: TokenInfo(COND, Leg.DOWN, FeeSchedule(0.07)),
              other_up: TokenInfo(other_cond, Leg.UP, FeeSchedule(0.07))}
    fills = FillStore({OUR_UP_ORDER: s1(Leg.UP), "0xo": s1(Leg.UP, cid="o")}.get, tokens.get)
    base = ws_trade("user_trade1.json")
    for n in range(6):  # interleaved in time between the two markets
        if n % 2:
            fills.apply(replace(base, trade_id=f"t{n}", market=other_cond, asset_id=other_up, taker_order_id="0xo",
                                maker_orders=(), match_time=base.match_time + n, side="SELL" if n == 5 else "BUY"))
        else:
            fills.apply(replace(base, trade_id=f"t{n}", match_time=base.match_time + n))
    everything = fills.fills_with_market()
    for cond in (COND, other_cond):
        mine = [(c, f) for c, f in everything if c == cond]
        assert fills.fills_with_market(cond) == mine and mine
        assert fills.fills(condition_id=cond) == [f for _, f in mine]
        assert fills.fills(since=base.match_time + 3, condition_id=cond) == [
            f for _, f in mine if f.ts >= base.match_time + 3]
        assert fold(mine, {}) == {k: p for k, p in fold(everything, {}).items() if k[0] == cond}
    assert fills.fills_with_market("0xnone") == [] and fills.fills(condition_id="0xnone") == []


def test_unattributable_trades_keep_only_the_latest_reasons():
    fills = store({})
    for n in range(250):
        fills.apply(replace(ws_trade("user_trade1.json"), trade_id=f"t{n}", status="WEIRD"))
    assert len(fills.ignored) == 100 and "t249" in fills.ignored[-1]


# ---- maker legs without a side whose order we do not know (after a restart) -----------------------------
OWNER_OF_UP_LEG = "3e2c94ca-8124-c4c1-c7ea-be1ea21b71fe"  # user_trade1's maker leg 0xab67…, 5 @ 0.518, no side
OWNER_OF_DOWN_LEG = "78132bc3-22af-6aa2-79ae-11929f821cae"  # its cross-token (No) leg 0x3b67…, 10 @ 0.482


def test_recorded_user_trade1_after_a_restart_keeps_the_sideless_fill_pending_then_adds_it():
    fills = store({}, owner=OWNER_OF_UP_LEG)  # restarted: our book and journal know nothing of the order
    mined = ws_trade("user_trade1.json")
    assert fills.apply(mined) == [] and len(fills) == 0
    assert fills.pending_orders() == [OUR_UP_ORDER]  # kept, not dropped
    assert not any("has no side" in reason for reason in fills.ignored)
    # a later status of the same trade while still pending is kept too (the latest one wins)
    assert fills.apply(replace(mined, status="CONFIRMED")) == []
    (fill, previous), = fills.resolve_side(OUR_UP_ORDER, Side.SELL)  # what the order lookup says
    assert previous is None and fills.pending_orders() == []
    assert (fill.order_id, fill.leg, fill.side, fill.price, fill.size, fill.role, fill.status, fill.strategy) == \
           (OUR_UP_ORDER, Leg.UP, Side.SELL, 0.518, 5.0, "maker", "CONFIRMED", EXTERNAL)
    assert fills.apply(mined) == []  # a stale replay changes nothing once resolved


def test_matching_rule_gives_the_side_when_the_exchange_no_longer_has_the_order():
    fills = store({}, owner=OWNER_OF_UP_LEG)
    fills.apply(ws_trade("user_trade1.json"))
    # The taker BOUGHT Up; a maker on the Up token sold to it.
    assert fills.infer_side(OUR_UP_ORDER) is Side.SELL
    cross = store({}, owner=OWNER_OF_DOWN_LEG)
    cross.apply(ws_trade("user_trade1.json"))
    # A maker on the Down token matched a BUY Up taker by minting a pair: it bought Down.
    assert cross.pending_orders() == [OUR_DOWN_ORDER] and cross.infer_side(OUR_DOWN_ORDER) is Side.BUY
    (fill, _), = cross.resolve_side(OUR_DOWN_ORDER, cross.infer_side(OUR_DOWN_ORDER))
    assert (fill.leg, fill.side, fill.size, fill.price) == (Leg.DOWN, Side.BUY, 10.0, 0.482)
    assert fills.infer_side("0xnothing") is None


def test_fills_within_one_match_second_come_in_the_order_they_happened_not_by_trade_id():
    # Issue 27: the exchange stamps match times in whole seconds; a BUY and the SELL that closed it a few hundred
    # ms later share one, and sorting by trade id listed the SELL first.
    buy_order, sell_order = "0x" + "b1" * 32, "0x" + "5e" * 32
    fills = store({buy_order: s1(Leg.UP, Side.BUY, "buy"), sell_order: s1(Leg.UP, Side.SELL, "sell")}, owner="me")
    base = ws_trade("user_trade1.json")
    taker = dict(maker_orders=(), trader_side="TAKER", owner="me", asset_id=UP, match_time=1_800_000_000.0)
    fills.apply(replace(base, trade_id="zz-buy-later-in-the-alphabet", taker_order_id=buy_order, side="BUY", **taker))
    fills.apply(replace(base, trade_id="aa-sell", taker_order_id=sell_order, side="SELL", **taker))
    assert [f.side for f in fills.fills()] == [Side.BUY, Side.SELL]
    assert [f.side for _, f in fills.fills_with_market()] == [Side.BUY, Side.SELL]
