"""The synthetic BTC market: deterministic window identities, a seeded BTC path that does not depend on
how often the sim steps, fair value, background liquidity and takers, tick switching and resolution."""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest

from polymm.sim.engine import BACKGROUND, Engine, LastTrade, LevelChange, MarketResolved, SimOrder, TickSizeChange
from polymm.sim.market import MarketCalendar, SyntheticMarket, fair_up_probability

T0 = 1_800_000_000.0  # a multiple of 60 and of 900


def make_sim(seed: int = 7, window_s: int = 60, **kw) -> tuple[Engine, MarketCalendar, SyntheticMarket]:
    engine = Engine()
    calendar = MarketCalendar(seed, window_s)
    return engine, calendar, SyntheticMarket(engine, calendar, seed, **kw)


def run(sim: SyntheticMarket, start: float, end: float, every: float) -> None:
    now = start
    while now <= end:
        sim.step(now)
        now += every


# ---- calendar ------------------------------------------------------------------------------------------
def test_window_start_is_the_multiple_of_the_window_length_at_or_before_now():
    calendar = MarketCalendar(1, 900)
    assert calendar.window_start(T0) == T0
    assert calendar.window_start(T0 + 899.9) == T0
    assert calendar.window_start(T0 + 900) == T0 + 900


def test_market_identity_is_production_shaped_and_deterministic():
    spec = MarketCalendar(1, 900).spec_for(int(T0))
    assert re.fullmatch(r"0x[0-9a-f]{64}", spec.condition_id)
    assert re.fullmatch(r"[1-9][0-9]{60,78}", spec.up_token) and re.fullmatch(r"[1-9][0-9]{60,78}", spec.down_token)
    assert int(spec.up_token) < 2**256 and spec.up_token != spec.down_token
    assert spec.slug == f"btc-updown-15m-{int(T0)}"
    assert (spec.window_start, spec.window_end) == (T0, T0 + 900)
    again = MarketCalendar(1, 900).spec_for(int(T0))
    assert (again.condition_id, again.up_token, again.down_token) == (spec.condition_id, spec.up_token,
                                                                     spec.down_token)


def test_other_seed_or_window_gives_other_ids():
    a = MarketCalendar(1, 900).spec_for(int(T0))
    assert MarketCalendar(2, 900).spec_for(int(T0)).condition_id != a.condition_id
    assert MarketCalendar(1, 900).spec_for(int(T0) + 900).condition_id != a.condition_id


def test_spec_for_refuses_a_time_that_is_not_a_window_start():
    with pytest.raises(ValueError):
        MarketCalendar(1, 900).spec_for(int(T0) + 5)


# ---- fair value --------------------------------------------------------------------------------------
def test_fair_is_one_half_at_the_open_and_leans_with_the_price():
    assert fair_up_probability(100.0, 100.0, 600, 1e-4) == pytest.approx(0.5)
    assert fair_up_probability(100.1, 100.0, 600, 1e-4) > 0.5
    assert fair_up_probability(99.9, 100.0, 600, 1e-4) < 0.5


def test_same_move_means_more_as_time_runs_out():
    early = fair_up_probability(100.05, 100.0, 800, 1e-4)
    late = fair_up_probability(100.05, 100.0, 30, 1e-4)
    assert 0.5 < early < late


def test_fair_is_clamped_away_from_zero_and_one():
    assert fair_up_probability(200.0, 100.0, 10, 1e-4) == pytest.approx(0.998)
    assert fair_up_probability(50.0, 100.0, 0, 1e-4) == pytest.approx(0.002)


# ---- the BTC path ---------------------------------------------------------------------------------------
def test_btc_path_does_not_depend_on_how_often_step_is_called():
    _, _, often = make_sim(seed=3)
    _, _, rarely = make_sim(seed=3)
    often.step(T0)
    rarely.step(T0)
    for k in range(1, 41):
        now = T0 + 0.25 * k
        often.step(now)
        if k % 8 == 0:
            rarely.step(now)
            assert rarely.btc_price() == often.btc_price()


def test_same_seed_same_market_other_seed_other_market():
    def events(seed: int) -> list[str]:
        engine, _, sim = make_sim(seed=seed)
        run(sim, T0 + 10, T0 + 200, 0.5)
        return [repr(e) for e in engine.events]

    first = events(11)
    assert first == events(11)
    assert first != events(12)


def test_window_open_price_is_the_btc_price_when_the_window_starts():
    _, calendar, sim = make_sim()
    run(sim, T0 + 30, T0 + 59.75, 0.25)
    before = sim.btc_price()
    assert sim.window_open_price(int(T0) + 60) is None
    sim.step(T0 + 60)
    assert sim.window_open_price(int(T0) + 60) == sim.btc_price()
    assert sim.btc_price() != before


# ---- listing, quoting, trading, resolution --------------------------------------------------------------
def test_current_and_listed_ahead_windows_exist_in_the_engine():
    engine, calendar, sim = make_sim(listed_ahead=4)
    sim.step(T0 + 5)
    for i in range(5):
        spec = calendar.spec_for(int(T0) + 60 * i)
        assert engine.market(spec.condition_id) is not None
        assert engine.market(spec.condition_id).accepting_orders
    assert engine.market(calendar.spec_for(int(T0) + 300).condition_id) is None


def test_background_quotes_several_levels_around_fair_on_both_books():
    engine, calendar, sim = make_sim(window_s=900, levels=5)
    sim.step(T0 + 100)
    spec = calendar.spec_for(int(T0))
    bids, asks = engine.book(spec.up_token)
    assert len(bids) >= 5 and len(asks) >= 5
    fair = D(repr(sim.fair(spec.condition_id)))
    assert bids[0][0] < fair < asks[0][0]
    assert asks[0][0] - bids[0][0] <= D("0.03")
    down_bids, down_asks = engine.book(spec.down_token)
    assert down_bids[0][0] == 1 - asks[0][0] and down_asks[0][0] == 1 - bids[0][0]


def test_background_follows_fair_and_the_book_never_crosses():
    engine, calendar, sim = make_sim(window_s=900)
    spec = calendar.spec_for(int(T0))
    now = T0
    while now < T0 + 300:
        sim.step(now)
        bids, asks = engine.book(spec.up_token)
        fair = D(repr(sim.fair(spec.condition_id)))
        assert bids[0][0] < asks[0][0]
        # Re-quotes trail fair by at most the re-quote threshold plus a tick either way.
        assert bids[0][0] - D("0.03") <= fair <= asks[0][0] + D("0.03")
        now += 1.0


def test_background_takers_trade_now_and_then():
    engine, _, sim = make_sim(window_s=900, taker_rate_per_s=0.5)
    run(sim, T0, T0 + 120, 1.0)
    trades = [e for e in engine.events if isinstance(e, LastTrade)]
    assert 20 <= len(trades) <= 120


def test_price_changes_stay_a_few_per_second_per_token():
    engine, calendar, sim = make_sim(window_s=900)
    run(sim, T0, T0 + 300, 0.5)
    up = calendar.spec_for(int(T0)).up_token
    changes = [e for e in engine.events if isinstance(e, LevelChange) and e.token_id == up]
    assert len(changes) / 300 < 10


def test_our_resting_bid_at_the_touch_gets_filled_by_background_flow():
    engine, calendar, sim = make_sim(window_s=900, taker_rate_per_s=1.0)
    spec = calendar.spec_for(int(T0))
    sim.step(T0)
    filled = D(0)
    now = T0
    for attempt in range(40):
        bids, _ = engine.book(spec.up_token)
        price = bids[0][0] + spec.tick_size  # improve the bid by a tick: first in line
        order = SimOrder(order_id=f"0x{attempt:064x}", owner="key-us", maker_address="us", market="",
                         token_id=spec.up_token, side="BUY", price=price, original_size=D(10), post_only=True)
        result = engine.submit(order, now)
        for _ in range(10):
            now += 0.5
            sim.step(now)
        got = engine.get_order(order.order_id)
        if result.ok and got.size_matched > 0:
            filled += got.size_matched
            break
        engine.cancel(order.order_id, "key-us", now)
    assert filled > 0
    assert engine.position("us", spec.up_token) == filled


def test_window_end_stops_orders_and_resolves_up_iff_btc_closed_at_or_above_open():
    engine, calendar, sim = make_sim(window_s=60)
    spec = calendar.spec_for(int(T0))
    run(sim, T0, T0 + 59.75, 0.25)
    opened = sim.window_open_price(int(T0))
    engine.events.clear()
    sim.step(T0 + 60)
    closed = sim.btc_price()
    market = engine.market(spec.condition_id)
    assert not market.accepting_orders and market.closed
    assert market.winning_token == (spec.up_token if closed >= opened else spec.down_token)
    assert [e for e in engine.events if isinstance(e, MarketResolved)][0].winning_token == market.winning_token
    assert engine.book(spec.up_token) == ([], [])
    assert sim.fair(spec.condition_id) in (0.0, 1.0)


def test_resolution_happens_for_every_window_over_many_windows():
    engine, calendar, sim = make_sim(window_s=60)
    run(sim, T0, T0 + 600, 2.0)
    resolved = [e for e in engine.events if isinstance(e, MarketResolved)]
    assert len(resolved) == 10
    ups = sum(1 for e in resolved if engine.market(e.market).up_token == e.winning_token)
    assert 0 < ups < 10  # a fair coin over ten windows with this seed


def test_tick_switches_to_fine_when_fair_leaves_the_middle_and_back():
    # A very volatile BTC sends fair to the extremes quickly.
    engine, calendar, sim = make_sim(window_s=60, vol_per_sqrt_s=3e-3)
    run(sim, T0, T0 + 600, 0.5)
    changes = [e for e in engine.events if isinstance(e, TickSizeChange)]
    assert any(c.new_tick == D("0.001") for c in changes)
    to_fine = next(c for c in changes if c.new_tick == D("0.001"))
    market = engine.market(to_fine.market)
    assert {c.token_id for c in changes if c.market == to_fine.market} == {market.up_token, market.down_token}
    assert any(c.old_tick == D("0.001") and c.new_tick == D("0.01") for c in changes)


def test_background_never_touches_our_balances_or_needs_funds():
    engine, _, sim = make_sim(window_s=60)
    run(sim, T0, T0 + 180, 1.0)
    assert engine.accounts().keys() <= {BACKGROUND}
    assert engine.balance(BACKGROUND) != 0  # it paid fees and lost/won on resolution without a fund


def test_a_window_resolved_early_from_outside_keeps_that_verdict():
    engine, calendar, sim = make_sim(window_s=60)
    spec = calendar.spec_for(int(T0))
    run(sim, T0, T0 + 20, 0.5)
    engine.resolve(spec.condition_id, spec.down_token, T0 + 20.5)
    run(sim, T0 + 21, T0 + 70, 0.5)
    assert engine.market(spec.condition_id).winning_token == spec.down_token
    assert sim.fair(spec.condition_id) == 0.0
    assert engine.book(spec.up_token) == ([], [])
