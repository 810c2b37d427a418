"""Pure pieces of polymm-sim's REST layer: the heartbeat chain, cursor pagination and the fault queue."""
from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from polymm.sim.clob import END_CURSOR, INITIAL_CURSOR, Heartbeats, num, paginate
from polymm.sim.faults import Faults


def test_heartbeat_chain_hands_out_a_new_id_per_beat_and_rejects_a_stale_one():
    beats = Heartbeats(timeout_s=10)
    ok, first = beats.beat("key", "", now=100.0)
    assert ok
    ok, second = beats.beat("key", first, now=101.0)
    assert ok and second != first
    assert beats.beat("key", first, now=102.0) == (False, second)  # stale id: told the expected one
    assert beats.beat("other-key", "", now=102.0)[0]  # chains are per API key


def test_dead_man_switch_fires_once_after_silence_and_a_new_chain_can_start():
    beats = Heartbeats(timeout_s=10)
    _, current = beats.beat("key", "", now=100.0)
    assert beats.expired(now=109.9) == []
    assert beats.expired(now=110.1) == ["key"]
    assert beats.expired(now=130.0) == []  # fired once
    assert beats.beat("key", "", now=131.0)[0]


def test_keys_that_never_beat_are_never_switched_off():
    assert Heartbeats(timeout_s=1).expired(now=1e12) == []


def test_pagination_walks_base64_offsets_from_ma_to_lte():
    rows = [{"n": i} for i in range(5)]
    page1 = paginate(rows, INITIAL_CURSOR, 2)
    page2 = paginate(rows, page1["next_cursor"], 2)
    page3 = paginate(rows, page2["next_cursor"], 2)
    assert [r["n"] for p in (page1, page2, page3) for r in p["data"]] == [0, 1, 2, 3, 4]
    assert base64.b64decode(page1["next_cursor"]) == b"2"
    assert page3["next_cursor"] == END_CURSOR == "LTE="
    assert paginate(rows, END_CURSOR, 2)["data"] == []
    assert paginate([], INITIAL_CURSOR, 2) == {"data": [], "next_cursor": END_CURSOR, "limit": 2, "count": 0}


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGEgbnVtYmVy", "!"])
def test_a_cursor_that_is_not_a_base64_offset_is_refused(cursor):
    assert paginate([{"n": 1}], cursor, 2) is None


def test_post_faults_answer_the_next_posts_in_order():
    faults = Faults()
    faults.add_post_faults(429, count=2, retry_after_s=3)
    faults.add_post_faults(500)
    answers = [faults.take_post_fault() for _ in range(4)]
    assert [a.status if a else None for a in answers] == [429, 429, 500, None]
    assert answers[0].headers() == {"Retry-After": "3"} and not answers[0].places_order
    assert answers[2].places_order and answers[2].body() == {"error": "order timed out"}


def test_only_known_post_statuses_can_be_injected():
    with pytest.raises(ValueError):
        Faults().add_post_faults(418)


def test_trade_failure_fault_targets_the_named_address_only():
    faults = Faults(fail_next_trades=1, fail_trades_of="0xAbC")
    assert not faults.should_fail_trade({"0xdef"})
    assert faults.should_fail_trade({"0xabc", "0xdef"})
    assert not faults.should_fail_trade({"0xabc"})  # used up


def test_clear_switches_every_fault_off():
    faults = Faults(freeze_market_ws=True, stop_accepting=True, closed_only={"0xabc"})
    faults.add_post_faults(503)
    faults.clear()
    assert faults == Faults()


@pytest.mark.parametrize("value, text", [(Decimal("5.000"), "5"), (Decimal("0.50"), "0.5"), (Decimal("1E+1"), "10"),
                                         (Decimal("-0"), "0"), (Decimal("0.000001"), "0.000001"), (None, "")])
def test_numbers_print_as_production_prints_them(value, text):
    assert num(value) == text
