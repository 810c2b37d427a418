"""Execution core against the sim: fills under duplicated/reordered delivery, FAILED after MATCHED, our
maker fill on the opposite token, and fills made while the user socket was down (reconciled)."""
from __future__ import annotations

import logging
import time

import pytest

from tests.support.execution import book_top, live_market, make_core, marketable, running_core, wait_for, want
from polymm.sim.testing import STEADY, new_wallet, run_sim
from polymm.trader.model import FillChanged, Leg, OrderState, OrderType, Side, StatusChanged

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=5, window_s=900,
                 extra_args=("--mined-after-s", "0.3", "--confirmed-after-s", "0.6"), script=STEADY) as running:
        yield running


@pytest.fixture
def core(sim, tmp_path):
    with running_core(sim, tmp_path / "state", ws_backoff_s=2.0, reconcile_every_s=600) as c:
        yield c


def take(sim, token: str, price: float, size: float, side: str = "BUY") -> dict:
    """Another account crosses the book with a FAK (the real SDK, as any counterparty would)."""
    from py_clob_client_v2.clob_types import OrderArgsV2, OrderType as SdkOrderType

    pk, _ = new_wallet()
    client = sim.clob_client(pk)
    signed = client.create_order(OrderArgsV2(token_id=token, price=price, size=size, side=side))
    return client.post_order(signed, SdkOrderType.FAK, defer_exec=True)


def fill_statuses(core, order_id: str) -> list[str]:
    return [e.fill.status for e in core.poll_events() if isinstance(e, FillChanged) and e.fill.order_id == order_id]


def test_duplicated_and_reordered_trade_events_count_once(sim, core):
    m = live_market(sim)
    sim.admin.fault("wrap_in_list", on=True)  # production sometimes sends one-element JSON arrays
    sim.admin.fault("duplicate", count=20)
    sim.admin.fault("reorder", count=20)
    _, ask = book_top(sim, m.up_token)
    cids = [core.place(want(Leg.UP, Side.BUY, marketable(ask), 5, post_only=False, order_type=OrderType.FAK)) for _ in range(2)]
    wait_for(lambda: len([f for f in core.fills() if f.status == "CONFIRMED"]) == 2, what="two confirmed fills")
    assert core.positions()[("s1", Leg.UP)].shares == 10
    assert len(core.fills()) == 2
    assert {o.client_id for o in core.orders(working_only=False) if o.state is OrderState.FILLED} == set(cids)
    core.reconcile("check")  # REST agrees: nothing added
    assert core.positions()[("s1", Leg.UP)].shares == 10 and len(core.fills()) == 2


def test_failed_after_matched_reverses_the_fill(sim, core):
    m = live_market(sim)
    sim.admin.fault("fail_next_trade", count=1, address=core.gateway.funder)
    _, ask = book_top(sim, m.down_token)
    cid = core.place(want(Leg.DOWN, Side.BUY, marketable(ask), 5, post_only=False, order_type=OrderType.FAK))
    wait_for(lambda: core.fills() and core.fills()[0].status == "FAILED", what="FAILED fill")
    (fill,) = core.fills()
    assert fill.client_id == cid
    assert ("s1", Leg.DOWN) not in core.positions() or core.positions()[("s1", Leg.DOWN)].shares == 0
    assert core.pnl()["total"]["open_shares"] == 0


def test_our_down_bid_filled_by_an_up_taker_is_a_down_maker_fill(sim, core):
    m = live_market(sim)
    up_bid, up_ask = book_top(sim, m.up_token)
    # Our BUY Down at q is an offer to sell Up at 1 - q: price it inside the Up spread so it is best.
    q = round(1 - up_ask + 0.01, 2)
    assert 1 - q < up_ask and q < 1 - up_bid
    cid = core.place(want(Leg.DOWN, Side.BUY, q, 5, strategy="s2"))
    wait_for(lambda: any(o.client_id == cid and o.state is OrderState.LIVE for o in core.orders()), what="live")
    answer = take(sim, m.up_token, round(1 - q, 2), 5)
    assert answer.get("success"), answer
    wait_for(lambda: core.fills(), what="our maker fill")
    (fill,) = core.fills()
    assert (fill.leg, fill.side, fill.price, fill.size, fill.role, fill.fee, fill.strategy) == \
           (Leg.DOWN, Side.BUY, q, 5.0, "maker", 0.0, "s2")
    assert core.positions()[("s2", Leg.DOWN)].shares == 5
    wait_for(lambda: not core.orders(), what="order filled")


def test_fills_while_the_user_socket_is_down_are_found_by_reconciliation(sim, core, caplog):
    m = live_market(sim)
    up_bid, up_ask = book_top(sim, m.up_token)
    price = round(up_bid + 0.01, 2)  # the best Up bid: the next Up seller hits us
    assert price < up_ask
    cid = core.place(want(Leg.UP, Side.BUY, price, 5))
    wait_for(lambda: any(o.client_id == cid and o.state is OrderState.LIVE for o in core.orders()), what="live")
    with caplog.at_level(logging.INFO, logger="polymm.trader.execution"):
        sim.admin.fault("drop_ws", channel="user")
        wait_for(lambda: not core.state().user_stream_connected, timeout_s=5, what="socket down")
        seller = take_sell_after_buying(sim, m.up_token, price)
        assert seller.get("success"), seller
        assert core.fills() == []  # the socket is still down (reconnect back-off 2 s)
        wait_for(lambda: core.fills(), timeout_s=15, what="fill found after reconnect")
    assert any("missed by the user channel" in r.getMessage() for r in caplog.records)
    assert core.positions()[("s1", Leg.UP)].shares == 5
    wait_for(lambda: not core.orders(), what="order known filled")
    assert core.state().user_stream_connected


def take_sell_after_buying(sim, token: str, price: float) -> dict:
    """A counterparty that first buys 5 Up shares from the background book, then sells them into our bid."""
    from py_clob_client_v2.clob_types import OrderArgsV2, OrderType as SdkOrderType

    pk, _ = new_wallet()
    client = sim.clob_client(pk)
    book = client.get_order_book(token)
    best_ask = min(float(level["price"]) for level in book["asks"])
    bought = client.post_order(client.create_order(OrderArgsV2(token_id=token, price=best_ask, size=5, side="BUY")),
                               SdkOrderType.FAK, defer_exec=True)
    assert bought.get("success"), bought
    return client.post_order(client.create_order(OrderArgsV2(token_id=token, price=price, size=5, side="SELL")),
                             SdkOrderType.FAK, defer_exec=True)


def test_pings_keep_the_user_socket_alive(tmp_path):
    with run_sim(tmp_path / "sim", seed=6, window_s=900, extra_args=("--ws-idle-timeout-s", "1.5")) as sim:
        c, _ = make_core(sim, tmp_path / "state", ws_ping_every_s=0.5)
        c.start(live_market(sim))
        try:
            time.sleep(4)  # the sim drops a socket silent for 1.5 s
            assert c.state().user_stream_connected
            assert not any(isinstance(e, StatusChanged) and not e.status.user_stream_connected
                           for e in c.poll_events())
        finally:
            c.stop()
