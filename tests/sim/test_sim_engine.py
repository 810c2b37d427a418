"""The sim's matching engine behaves like Polymarket's CLOB: validation texts, price-time priority, the
Up/Down mint and merge crosses, fees, reservations, events, trade lifecycle and resolution."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from polymm.sim.engine import (
    BACKGROUND,
    Engine,
    LastTrade,
    LevelChange,
    MarketResolved,
    MarketSpec,
    OrderEvent,
    SimOrder,
    TickSizeChange,
    TradeEvent,
)

CID = "0x" + "ab" * 32
UP = "1111"
DOWN = "2222"
T0 = 1_800_000_000.0


def make_engine(**kw) -> Engine:
    engine = Engine(**kw)
    engine.add_market(MarketSpec(CID, "btc-updown-15m-1800000000", UP, DOWN, int(T0), int(T0) + 900))
    return engine


_ids = iter(range(10**9))


def order(token: str, side: str, price: str, size: str, who: str = "alice", order_type: str = "GTC",
          **kw) -> SimOrder:
    return SimOrder(order_id=kw.pop("order_id", f"0x{next(_ids):064x}"), owner=f"key-{who}", maker_address=who,
                    market=CID, token_id=token, side=side, price=D(price), original_size=D(size),
                    order_type=order_type, **kw)


def place(engine: Engine, *args, now: float = T0, **kw):
    result = engine.submit(order(*args, **kw), now)
    assert result.ok, result.error
    return result


def events_of(engine: Engine, kind) -> list:
    return [e for e in engine.events if isinstance(e, kind)]


def pairs_outstanding(engine: Engine) -> D:
    return sum(engine.positions_of_token(UP).values(), D(0))


# ---- plain trades and the mint/merge cross -----------------------------------------------------------
def test_buy_crossing_resting_sell_trades_at_maker_price_and_charges_taker_fee():
    engine = make_engine()
    mint_pair_for(engine, "mm", D(10))
    place(engine, UP, "SELL", "0.52", "10", who="mm")
    result = place(engine, UP, "BUY", "0.60", "10", who="bob")
    trade = result.trades[0]
    assert (trade.size, trade.price, trade.side) == (D(10), D("0.52"), "BUY")
    assert trade.taker_fee == D("0.17472")  # 10 * 0.07 * 0.52 * 0.48
    assert engine.balance("bob") == D(1000) - D("5.2") - D("0.17472")
    assert engine.position("bob", UP) == D(10)
    assert engine.position("mm", UP) == D(0)
    assert (result.making_amount, result.taking_amount) == (D("5.2"), D(10))


def mint_pair_for(engine: Engine, who: str, size: D) -> None:
    """Give `who` size Up and size Down via a mint against a counterparty, for setting up sells."""
    place(engine, DOWN, "BUY", "0.50", str(size), who="minter")
    place(engine, UP, "BUY", "0.50", str(size), who=who)
    # `who` now holds Up; give it Down as well with a second mint in the other direction.
    place(engine, UP, "BUY", "0.50", str(size), who="minter2")
    place(engine, DOWN, "BUY", "0.50", str(size), who=who)
    engine.events.clear()


def test_buy_up_matches_resting_buy_down_by_minting_a_pair():
    engine = make_engine()
    place(engine, DOWN, "BUY", "0.45", "10", who="alice")
    result = place(engine, UP, "BUY", "0.60", "10", who="bob")
    trade = result.trades[0]
    # The taker gets the maker's complementary price: 1 - 0.45.
    assert trade.price == D("0.55")
    assert trade.maker_fills[0].token_id == DOWN and trade.maker_fills[0].price == D("0.45")
    assert engine.position("alice", DOWN) == D(10)
    assert engine.position("bob", UP) == D(10)
    assert engine.balance("alice") == D(1000) - D("4.5")
    assert engine.balance("bob") == D(1000) - D("5.5") - trade.taker_fee
    assert pairs_outstanding(engine) == D(10)


def test_sell_up_matches_resting_sell_down_by_merging_pairs():
    engine = make_engine()
    mint_pair_for(engine, "alice", D(10))
    mint_pair_for(engine, "bob", D(10))
    before = (engine.balance("alice"), engine.balance("bob"), pairs_outstanding(engine))
    place(engine, DOWN, "SELL", "0.40", "10", who="alice")
    result = place(engine, UP, "SELL", "0.55", "10", who="bob")
    trade = result.trades[0]
    assert trade.price == D("0.60")  # 1 - 0.40: the best bid for Up that a resting Down offer implies
    assert engine.balance("alice") == before[0] + D("4.0")
    assert engine.balance("bob") == before[1] + D("6.0") - trade.taker_fee
    assert engine.position("alice", DOWN) == D(0) and engine.position("bob", UP) == D(0)
    assert pairs_outstanding(engine) == before[2] - D(10)


def test_taker_sell_pays_fee_out_of_proceeds():
    engine = make_engine()
    mint_pair_for(engine, "bob", D(10))
    place(engine, UP, "BUY", "0.30", "10", who="alice")
    start = engine.balance("bob")
    result = place(engine, UP, "SELL", "0.30", "10", who="bob")
    fee = result.trades[0].taker_fee
    assert fee == D("0.14700")  # 10 * 0.07 * 0.3 * 0.7
    assert engine.balance("bob") == start + D(3) - fee
    assert (result.making_amount, result.taking_amount) == (D(10), D("3.0"))


def test_makers_pay_no_fee():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    mint_pair_for(engine, "bob", D(10))
    place(engine, UP, "SELL", "0.40", "10", who="bob")
    assert engine.balance("alice") == D(1000) - D(4)


# ---- priority, sweeps, partial fills -------------------------------------------------------------------
def test_price_then_time_priority_across_both_tokens():
    engine = make_engine()
    first = place(engine, UP, "BUY", "0.40", "10", who="alice").order.order_id
    # A Down BUY at 0.60 sells Up at 0.40 (mint); the Up BUY at 0.41 outbids everyone.
    better = place(engine, UP, "BUY", "0.41", "10", who="dave", now=T0 + 2).order.order_id
    later = place(engine, UP, "BUY", "0.40", "10", who="erin", now=T0 + 3).order.order_id
    result = place(engine, DOWN, "BUY", "0.60", "25", who="bob", now=T0 + 4)
    fills = [(f.order_id, f.matched_amount, f.price) for f in result.trades[0].maker_fills]
    assert fills == [(better, D(10), D("0.41")), (first, D(10), D("0.40")), (later, D(5), D("0.40"))]


def test_one_trade_per_taker_with_every_maker_and_average_price():
    engine = make_engine()
    mint_pair_for(engine, "mm", D(20))
    place(engine, UP, "SELL", "0.50", "10", who="mm")
    place(engine, DOWN, "BUY", "0.48", "10", who="alice")  # an Up ask at 0.52 via mint
    result = place(engine, UP, "BUY", "0.55", "20", who="bob")
    assert len(result.trades) == 1
    trade = result.trades[0]
    assert trade.size == D(20)
    assert trade.price == D("0.51")
    assert [(f.token_id, f.side, f.price) for f in trade.maker_fills] == [(UP, "SELL", D("0.50")),
                                                                          (DOWN, "BUY", D("0.48"))]
    assert trade.taker_fee == D("0.34972")  # 10*.07*.5*.5 + 10*.07*.52*.48 = 0.175 + 0.17472
    assert len(events_of(engine, TradeEvent)) == 1
    assert len(events_of(engine, LastTrade)) == 1


def test_partially_filled_gtc_rests_its_remainder_and_reports_matched_part():
    engine = make_engine()
    place(engine, DOWN, "BUY", "0.45", "6", who="alice")
    result = place(engine, UP, "BUY", "0.55", "10", who="bob")
    assert result.status == "matched"
    assert result.order.size_matched == D(6) and result.order.status == "LIVE"
    assert engine.book(UP) == ([(D("0.55"), D(4))], [])
    bob_events = [(e.kind, e.order.size_matched, e.order.status) for e in events_of(engine, OrderEvent)
                  if e.order.owner == "key-bob"]
    assert bob_events == [("PLACEMENT", D(6), "LIVE"), ("UPDATE", D(6), "LIVE")]
    # The rest reserves only what is still working.
    assert engine.free_balance("bob") == engine.balance("bob") - D("0.55") * 4


def test_maker_partial_fills_send_updates_with_cumulative_size_matched():
    engine = make_engine()
    maker = place(engine, UP, "BUY", "0.40", "10", who="alice").order.order_id
    place(engine, DOWN, "BUY", "0.60", "3", who="bob", order_type="FAK")
    place(engine, DOWN, "BUY", "0.60", "4", who="bob", order_type="FAK")
    updates = [e.order.size_matched for e in events_of(engine, OrderEvent)
               if e.kind == "UPDATE" and e.order.order_id == maker]
    assert updates == [D(3), D(7)]
    assert engine.get_order(maker).size_matched == D(7)


def test_fak_fills_what_it_can_and_kills_the_rest():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "5", who="alice")
    result = place(engine, DOWN, "BUY", "0.60", "10", who="bob", order_type="FAK")
    assert result.order.size_matched == D(5)
    assert result.order.status == "MATCHED"
    assert engine.book(DOWN) == ([], [])
    assert engine.open_orders("key-bob") == []


def test_fok_fills_completely_when_the_book_has_enough():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "6", who="alice")
    place(engine, UP, "BUY", "0.39", "6", who="carol")
    result = place(engine, DOWN, "BUY", "0.61", "10", who="bob", order_type="FOK")
    assert result.order.size_matched == D(10)
    assert engine.book(UP)[0] == [(D("0.39"), D(2))]


# ---- validation with production's texts ------------------------------------------------------------
def reject(engine: Engine, *args, now: float = T0, **kw) -> str:
    result = engine.submit(order(*args, **kw), now)
    assert not result.ok and result.http_status == 400
    return result.error


def test_price_off_tick_is_rejected_with_production_message():
    engine = make_engine()
    msg = reject(engine, UP, "BUY", "0.555", "10", order_id="0xabc")
    assert msg == "order 0xabc is invalid. Price (0.555) breaks minimum tick size rule: 0.01"


@pytest.mark.parametrize("price", ["0", "1", "0.995", "1.2"])
def test_price_outside_tick_range_is_rejected(price):
    engine = make_engine()
    assert "breaks minimum tick size rule: 0.01" in reject(engine, UP, "BUY", price, "10")


def test_size_below_minimum_is_rejected_for_resting_orders_only():
    engine = make_engine()
    msg = reject(engine, UP, "BUY", "0.50", "4.99", order_id="0xdef")
    assert msg == "order 0xdef is invalid. Size (4.99) lower than the minimum: 5"
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    assert place(engine, DOWN, "BUY", "0.60", "2", who="bob", order_type="FAK").order.size_matched == D(2)


def test_duplicate_order_id_is_rejected():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", order_id="0x01")
    assert reject(engine, UP, "BUY", "0.40", "10", order_id="0x01") == "order 0x01 is invalid. Duplicated."


def test_post_only_that_would_cross_is_rejected_and_changes_nothing():
    engine = make_engine()
    place(engine, DOWN, "BUY", "0.55", "10", who="alice")  # Up ask at 0.45
    assert reject(engine, UP, "BUY", "0.45", "10", who="bob", post_only=True) == \
        "invalid post-only order: order crosses book"
    assert engine.balance("bob") == D(1000) and engine.position("alice", DOWN) == D(0)
    place(engine, UP, "BUY", "0.44", "10", who="bob", post_only=True)


def test_post_only_with_fok_or_fak_is_rejected():
    engine = make_engine()
    assert "post-only" in reject(engine, UP, "BUY", "0.40", "10", order_type="FAK", post_only=True)
    assert "post-only" in reject(engine, UP, "BUY", "0.40", "10", order_type="FOK", post_only=True)


def test_fok_that_cannot_fill_completely_is_killed_without_trading():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "5", who="alice")
    assert reject(engine, DOWN, "BUY", "0.60", "6", who="bob", order_type="FOK") == \
        "order couldn't be fully filled. FOK orders are fully filled or killed."
    assert engine.book(UP)[0] == [(D("0.40"), D(5))]


def test_fak_with_nothing_to_match_is_rejected():
    engine = make_engine()
    assert reject(engine, UP, "BUY", "0.40", "6", order_type="FAK") == (
        "no orders found to match with FAK order. FAK orders are partially filled or killed if no match is found.")


def test_buy_beyond_free_balance_is_rejected_and_reservations_count():
    engine = make_engine(default_fund=D(10))
    place(engine, UP, "BUY", "0.50", "12", who="alice")  # reserves 6
    assert reject(engine, UP, "BUY", "0.50", "10", who="alice") == "not enough balance / allowance"
    assert engine.free_balance("alice") == D(4)
    [resting] = engine.open_orders("key-alice")
    assert engine.cancel(resting.order_id, "key-alice", T0) is None
    assert engine.free_balance("alice") == D(10)
    place(engine, UP, "BUY", "0.50", "10", who="alice")


def test_taker_buy_needs_room_for_the_fee_too():
    engine = make_engine(default_fund=D(5))
    place(engine, DOWN, "BUY", "0.50", "10", who="mm")  # Up ask at 0.50
    # 10 @ 0.50 costs exactly 5 but the taker fee (0.175) comes on top.
    assert reject(engine, UP, "BUY", "0.50", "10", who="bob") == "not enough balance / allowance"


def test_sell_without_shares_is_rejected():
    engine = make_engine()
    assert reject(engine, UP, "SELL", "0.50", "10", who="alice") == "not enough balance / allowance"


def test_sell_reserves_shares_while_working():
    engine = make_engine()
    mint_pair_for(engine, "alice", D(10))
    place(engine, UP, "SELL", "0.70", "10", who="alice")
    assert engine.free_position("alice", UP) == D(0)
    assert reject(engine, UP, "SELL", "0.80", "5", who="alice") == "not enough balance / allowance"


def test_orders_on_a_market_not_accepting_are_rejected():
    engine = make_engine()
    engine.stop_accepting(CID, T0)
    assert reject(engine, UP, "BUY", "0.40", "10") == "the market is not yet ready to process new orders"


def test_unknown_token_is_rejected():
    engine = make_engine()
    assert reject(engine, "999", "BUY", "0.40", "10") == "the orderbook 999 does not exist"


def test_gtd_needs_an_expiration_at_least_three_minutes_ahead():
    engine = make_engine()
    assert reject(engine, UP, "BUY", "0.40", "10", order_type="GTD", expiration=int(T0) + 120) == \
        "invalid expiration"
    place(engine, UP, "BUY", "0.40", "10", order_type="GTD", expiration=int(T0) + 180)


# ---- cancels, expiry, resolution ---------------------------------------------------------------------
def test_cancel_removes_order_and_a_second_cancel_says_it_is_gone():
    engine = make_engine()
    oid = place(engine, UP, "BUY", "0.40", "10", who="alice").order.order_id
    assert engine.cancel(oid, "key-bob", T0) == "order can't be found - already canceled or matched"
    assert engine.cancel(oid, "key-alice", T0) is None
    assert engine.get_order(oid).status == "CANCELED"
    assert engine.cancel(oid, "key-alice", T0) == "order can't be found - already canceled or matched"
    assert engine.book(UP) == ([], [])
    assert [e.kind for e in events_of(engine, OrderEvent)] == ["PLACEMENT", "CANCELLATION"]


def test_cancel_market_cancels_only_that_owners_orders_in_scope():
    engine = make_engine()
    a1 = place(engine, UP, "BUY", "0.40", "10", who="alice").order.order_id
    a2 = place(engine, DOWN, "BUY", "0.40", "10", who="alice").order.order_id
    place(engine, UP, "BUY", "0.30", "10", who="bob")
    canceled, failed = engine.cancel_market("key-alice", T0, asset_id=DOWN)
    assert (canceled, failed) == ([a2], {})
    canceled, _ = engine.cancel_all("key-alice", T0)
    assert canceled == [a1]
    assert len(engine.open_orders("key-bob")) == 1


def test_gtd_expires_sixty_seconds_before_its_expiration():
    engine = make_engine()
    oid = place(engine, UP, "BUY", "0.40", "10", order_type="GTD", expiration=int(T0) + 300).order.order_id
    engine.advance(T0 + 239)
    assert engine.get_order(oid).status == "LIVE"
    engine.advance(T0 + 240)
    assert engine.get_order(oid).status == "CANCELED"
    assert engine.book(UP) == ([], [])
    assert events_of(engine, OrderEvent)[-1].kind == "CANCELLATION"


def test_window_end_cancels_orders_as_market_resolved_and_winner_is_paid():
    engine = make_engine()
    place(engine, DOWN, "BUY", "0.40", "10", who="alice")
    place(engine, UP, "BUY", "0.60", "10", who="bob")  # mint: alice Down, bob Up
    resting = place(engine, UP, "BUY", "0.30", "10", who="bob").order.order_id
    engine.stop_accepting(CID, T0 + 900)
    assert engine.get_order(resting).status == "CANCELED_MARKET_RESOLVED"
    assert events_of(engine, OrderEvent)[-1].kind == "CANCELLATION"
    bob_before = engine.balance("bob")
    engine.resolve(CID, UP, T0 + 900)
    assert engine.balance("bob") == bob_before + D(10)
    assert engine.position("bob", UP) == D(0) and engine.position("alice", DOWN) == D(0)
    assert engine.market(CID).winning_token == UP and engine.market(CID).closed
    assert isinstance(engine.events[-1], MarketResolved)


# ---- trade lifecycle ---------------------------------------------------------------------------------
def test_trade_goes_matched_mined_confirmed_on_advance():
    engine = make_engine(mined_after_s=1.0, confirmed_after_s=3.0)
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    trade_id = place(engine, DOWN, "BUY", "0.60", "10", who="bob").trades[0].trade_id
    engine.advance(T0 + 0.5)
    engine.advance(T0 + 1.0)
    engine.advance(T0 + 2.0)
    engine.advance(T0 + 3.0)
    engine.advance(T0 + 9.0)
    statuses = [e.trade.status for e in events_of(engine, TradeEvent) if e.trade.trade_id == trade_id]
    assert statuses == ["MATCHED", "MINED", "CONFIRMED"]
    assert engine.trades("alice")[0].status == "CONFIRMED"
    assert engine.trades("bob", trade_id=trade_id)[0].taker_order_id


def test_failed_trade_reverses_balances_positions_and_size_matched():
    engine = make_engine()
    maker = place(engine, UP, "BUY", "0.40", "10", who="alice").order.order_id
    trade_id = place(engine, DOWN, "BUY", "0.60", "4", who="bob", order_type="FAK").trades[0].trade_id
    engine.fail_trade(trade_id, T0 + 0.5)
    assert engine.balance("alice") == D(1000) and engine.balance("bob") == D(1000)
    assert engine.position("alice", UP) == D(0) and engine.position("bob", DOWN) == D(0)
    assert engine.get_order(maker).size_matched == D(0)
    assert engine.book(UP)[0] == [(D("0.40"), D(10))]  # the maker's size is working again
    assert engine.free_balance("alice") == D(1000) - D(4)
    assert engine.fees_collected == D(0)
    assert events_of(engine, TradeEvent)[-1].trade.status == "FAILED"
    with pytest.raises(ValueError):
        engine.fail_trade(trade_id, T0 + 1)


# ---- books and events ------------------------------------------------------------------------------
def test_down_book_is_the_mirror_of_the_up_book_best_first():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    place(engine, UP, "BUY", "0.42", "5", who="alice")
    place(engine, DOWN, "BUY", "0.50", "7", who="bob")  # Up ask 0.50
    place(engine, DOWN, "BUY", "0.45", "8", who="bob")  # Up ask 0.55
    assert engine.book(UP) == ([(D("0.42"), D(5)), (D("0.40"), D(10))], [(D("0.50"), D(7)), (D("0.55"), D(8))])
    assert engine.book(DOWN) == ([(D("0.50"), D(7)), (D("0.45"), D(8))], [(D("0.58"), D(5)), (D("0.60"), D(10))])


def test_level_changes_cover_both_tokens_with_their_own_best_prices():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    engine.events.clear()
    place(engine, DOWN, "BUY", "0.55", "7", who="bob")
    changes = events_of(engine, LevelChange)
    assert [(c.token_id, c.side, c.price, c.size, c.best_bid, c.best_ask) for c in changes] == [
        (UP, "SELL", D("0.45"), D(7), D("0.40"), D("0.45")),
        (DOWN, "BUY", D("0.55"), D(7), D("0.55"), D("0.60")),
    ]


def test_level_removed_by_a_trade_is_reported_as_size_zero_in_both_books():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    engine.events.clear()
    place(engine, DOWN, "BUY", "0.60", "10", who="bob")
    changes = {(c.token_id, c.side, c.price): c.size for c in events_of(engine, LevelChange)}
    assert changes == {(UP, "BUY", D("0.40")): D(0), (DOWN, "SELL", D("0.60")): D(0)}


def test_tick_size_change_is_announced_for_both_tokens_and_finer_prices_accepted():
    engine = make_engine()
    engine.set_tick_size(CID, D("0.001"), T0)
    ticks = events_of(engine, TickSizeChange)
    assert {(t.token_id, t.old_tick, t.new_tick) for t in ticks} == {(UP, D("0.01"), D("0.001")),
                                                                     (DOWN, D("0.01"), D("0.001"))}
    place(engine, UP, "BUY", "0.971", "10")
    assert "breaks minimum tick size rule: 0.001" in reject(engine, UP, "BUY", "0.9715", "10")


def test_background_trades_without_balance_and_sends_no_order_events():
    engine = make_engine()
    place(engine, UP, "SELL", "0.50", "100", who=BACKGROUND)
    place(engine, UP, "BUY", "0.50", "10", who="alice")
    assert engine.position("alice", UP) == D(10)
    assert engine.position(BACKGROUND, UP) == D(-10)
    owners = {e.order.maker_address for e in events_of(engine, OrderEvent)}
    assert owners == {"alice"}
    assert len(engine.trades("alice")) == 1


def test_prune_forgets_finished_orders_and_final_trades_but_keeps_working_ones():
    engine = make_engine(mined_after_s=1, confirmed_after_s=2)
    working = place(engine, UP, "BUY", "0.30", "10", who="alice").order.order_id
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    filled = place(engine, DOWN, "BUY", "0.60", "10", who="bob").order.order_id
    engine.advance(T0 + 5)
    assert engine.prune(T0 + 10) == 3  # two filled orders and their trade
    assert engine.get_order(filled) is None and engine.trades("bob") == []
    assert engine.get_order(working).status == "LIVE"
    assert engine.position("bob", DOWN) == D(10)


def test_taker_filled_on_entry_gets_one_update_and_no_placement():
    engine = make_engine()
    place(engine, UP, "BUY", "0.40", "10", who="alice")
    place(engine, DOWN, "BUY", "0.60", "10", who="bob")
    bob_events = [(e.kind, e.order.size_matched, e.order.status) for e in events_of(engine, OrderEvent)
                  if e.order.owner == "key-bob"]
    assert bob_events == [("UPDATE", D(10), "MATCHED")]


def test_fee_is_rounded_to_five_decimals():
    engine = make_engine()
    place(engine, UP, "BUY", "0.33", "7.77", who="alice")
    trade = place(engine, DOWN, "BUY", "0.67", "7.77", who="bob").trades[0]
    # 7.77 * 0.07 * 0.67 * 0.33 = 0.120256... (the taker's own price is 0.67)
    assert trade.taker_fee == D("0.12026")


def test_cancel_all_ends_the_stored_order_not_a_copy():
    """GET /data/order/{id} after DELETE /cancel-all (and the dead-man switch) must not say LIVE."""
    from decimal import Decimal as D

    from polymm.sim.engine import Engine, MarketSpec, SimOrder

    engine = Engine()
    spec = MarketSpec(condition_id="0x" + "ab" * 32, slug="btc-updown-15m-900", up_token="1", down_token="2",
                      window_start=900, window_end=1800)
    engine.add_market(spec)
    engine.ensure_account("0xmaker")
    order = SimOrder(order_id="0x" + "01" * 32, owner="k", maker_address="0xmaker", market=spec.condition_id,
                     token_id="1", side="BUY", price=D("0.40"), original_size=D("10"), created_at=1000.0)
    assert engine.submit(order, 1000.0).ok
    canceled, _ = engine.cancel_all("k", 1001.0)
    assert canceled == [order.order_id]
    assert engine.get_order(order.order_id).status == "CANCELED"
    assert engine.open_orders("k") == []


def test_fee_follows_the_markets_schedule_with_exponent_2():
    engine = Engine()
    engine.add_market(MarketSpec(CID, "btc-updown-15m-1800000000", UP, DOWN, int(T0), int(T0) + 900,
                                 fee_rate=D("0.25"), fee_exponent=D(2)))
    mint_pair_for(engine, "mm", D(10))
    place(engine, UP, "SELL", "0.50", "10", who="mm")
    trade = place(engine, UP, "BUY", "0.60", "10", who="bob").trades[0]
    assert trade.taker_fee == D("0.15625")  # 10 * 0.25 * (0.5 * 0.5) ** 2
    assert engine.balance("bob") == D(1000) - D(5) - D("0.15625")
