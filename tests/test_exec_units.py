"""Execution-core parts that need no exchange: exchange states, error classification, heartbeat state,
the wallet lock, credentials from the environment, user-channel frames, the order journal."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import load_fixture
from polymm.trader.exchange_state import (CancelOnly, ClosedOnly, EngineRestarting, ExchangeState, InsufficientBalance,
                                          NetworkError, PostOnlyMode, RateLimited, Rejected, ServerError, classify)
from polymm.trader.gateway import ConfigError, Gateway
from polymm.trader.heartbeat import HeartbeatState
from polymm.trader.model import ExchangeMode, Leg, Side
from polymm.trader.model import MarketIdentity
from polymm.trader.order_journal import JournalOrder, OrderJournal
from polymm.trader.user_wire import WireOrder, WireTrade, WireError, decode_user_frame
from polymm.trader.wallet_lock import WalletLock, WalletLocked

PK = "0x" + "4f" * 32


# ---- error classification -------------------------------------------------------------------------
def test_http_answers_map_to_typed_errors():
    assert isinstance(classify(None, "timeout"), NetworkError) and classify(None, "x").outcome_unknown
    assert isinstance(classify(500, "order timed out"), ServerError) and classify(500, "x").outcome_unknown
    assert isinstance(classify(425, "restarting"), EngineRestarting)
    assert classify(429, "Too Many Requests", None, 3.0).retry_after == 3.0
    assert isinstance(classify(503, "Trading is currently cancel-only."), CancelOnly)
    post_only = classify(503, "post-only mode: only post-only orders and cancels are allowed",
                         {"code": "post_only_mode", "retry_after_seconds": 79})
    assert isinstance(post_only, PostOnlyMode) and post_only.retry_after == 79
    assert isinstance(classify(400, "not enough balance / allowance"), InsufficientBalance)
    assert isinstance(classify(400, "'0xabc' address in closed only mode"), ClosedOnly)
    assert isinstance(classify(400, "invalid post-only order: order crosses book"), Rejected)
    assert not classify(400, "x").outcome_unknown


# ---- exchange states ------------------------------------------------------------------------------
def test_engine_restart_backs_off_then_post_only_for_the_announced_time():
    st = ExchangeState(post_only_after_restart_s=120)
    st.on_error(EngineRestarting(425, "restarting"), now=100)
    assert st.mode is ExchangeMode.ENGINE_RESTARTING
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=100.5) == "engine_restarting"
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=101.1) is None  # back-off over -> post-only
    assert st.mode is ExchangeMode.POST_ONLY
    assert "post-only" in st.refuse_reason(Leg.UP, Side.BUY, False, now=150)
    assert st.refuse_reason(Leg.UP, Side.BUY, False, now=221.2) is None
    assert st.mode is ExchangeMode.NORMAL


def test_repeated_425_doubles_the_back_off():
    st = ExchangeState()
    st.on_error(EngineRestarting(425, "r"), now=0)
    st.on_error(EngineRestarting(425, "r"), now=1)
    assert st.until == 3  # 1 s, then 2 s


def test_cancel_only_blocks_new_orders_until_probe_then_an_accepted_order_clears_it():
    st = ExchangeState(cancel_only_probe_s=10, _cancel_only_backoff=10)
    st.on_error(CancelOnly(503, "Trading is currently cancel-only."), now=0)
    assert st.refuse_reason(Leg.DOWN, Side.SELL, True, now=5) == "cancel_only"
    assert any("cancel-only" in w for w in st.warnings())
    assert st.refuse_reason(Leg.DOWN, Side.SELL, True, now=10.5) is None
    st.on_order_accepted(now=11)
    assert st.mode is ExchangeMode.NORMAL


def test_rate_limit_honours_retry_after():
    st = ExchangeState()
    st.on_error(RateLimited(429, "Too Many Requests", retry_after=7), now=100)
    assert st.mode is ExchangeMode.RATE_LIMITED and st.until == 107
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=106) == "rate_limited"
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=107) is None


def test_balance_error_refreshes_once_then_blocks_the_leg_until_cleared():
    st = ExchangeState()
    err = InsufficientBalance(400, "not enough balance / allowance")
    assert st.on_error(err, now=0, leg=Leg.UP) == "refresh_balance"
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=1) is None
    assert st.on_error(err, now=2, leg=Leg.UP) is None
    assert "leg up blocked" in st.refuse_reason(Leg.UP, Side.BUY, True, now=3)
    assert st.refuse_reason(Leg.DOWN, Side.BUY, True, now=3) is None
    assert st.status().blocked_legs == {Leg.UP: st.blocked_legs[Leg.UP]}
    assert any("leg up blocked" in w for w in st.status().warnings)
    st.clear_blocks()
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=4) is None


def test_closed_only_allows_closing_sells_only():
    st = ExchangeState()
    st.on_error(ClosedOnly(400, "address in closed only mode"), now=0)
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=1) == "account in closed-only mode"
    assert st.refuse_reason(Leg.UP, Side.SELL, True, now=1) is None
    assert st.status().mode is ExchangeMode.CLOSED_ONLY
    assert any("closed-only" in w for w in st.status().warnings)


def test_failing_heartbeats_stop_placing():
    st = ExchangeState()
    st.heartbeat_ok = False
    assert st.refuse_reason(Leg.UP, Side.BUY, True, now=0) == "heartbeats failing"
    assert not st.status().can_place


def test_heartbeat_state_trips_after_consecutive_failures_and_recovers():
    hb = HeartbeatState(max_failures=2)
    assert hb.on_success("id1", 1.0) is None and hb.heartbeat_id == "id1"
    assert hb.on_failure("timeout") is None
    assert hb.on_failure("timeout") == "tripped" and not hb.ok
    assert hb.on_failure("timeout") is None  # tripped once
    assert hb.on_success("id2", 9.0) == "recovered" and hb.ok and hb.failures == 0


# ---- wallet lock ------------------------------------------------------------------------------------
def test_second_trader_on_the_same_wallet_is_refused_naming_the_holder(tmp_path):
    code = ("import sys,time; from polymm.trader.wallet_lock import WalletLock; "
            f"l=WalletLock({str(tmp_path)!r}, '0xAbC0000000000000000000000000000000000001'); l.acquire(); "
            "print('held', flush=True); sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WalletLocked) as err:
            WalletLock(tmp_path, "0xabc0000000000000000000000000000000000001").acquire()
        assert f"pid {holder.pid}" in str(err.value) and "refusing" in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with WalletLock(tmp_path, "0xabc0000000000000000000000000000000000001") as lock:  # free again after exit
        assert lock.held
    with WalletLock(tmp_path, "0xabc0000000000000000000000000000000000002"):  # another wallet: independent
        pass


# ---- credentials ------------------------------------------------------------------------------------
def test_gateway_from_env_errors_name_the_variable_never_the_secret():
    with pytest.raises(ConfigError, match="PK is not set"):
        Gateway.from_env("http://127.0.0.1:9", environ={})
    with pytest.raises(ConfigError, match="SIGNATURE_TYPE"):
        Gateway.from_env("http://127.0.0.1:9", environ={"PK": PK, "SIGNATURE_TYPE": "7"})
    with pytest.raises(ConfigError, match="BROWSER_ADDRESS"):
        Gateway.from_env("http://127.0.0.1:9", environ={"PK": PK, "SIGNATURE_TYPE": "1"})
    with pytest.raises(ConfigError, match="POLY_API_KEY") as err:
        Gateway.from_env("http://127.0.0.1:9", environ={"PK": PK, "POLY_API_KEY": "k", "POLY_API_SECRET": "topsecret"})
    assert "topsecret" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        Gateway.from_env("http://127.0.0.1:9", environ={"PK": "0xdeadsecretbeef"})
    assert "deadsecret" not in str(err.value)
    with pytest.raises(ConfigError, match="SIGNATURE_TYPE=0"):
        Gateway.from_env("http://127.0.0.1:9", environ={"PK": PK, "BROWSER_ADDRESS": "0x" + "12" * 20})


def test_gateway_repr_and_credentials_repr_hide_secrets():
    gw = Gateway.from_env("http://127.0.0.1:9", environ={
        "PK": PK, "POLY_API_KEY": "key-id", "POLY_API_SECRET": "c2VjcmV0c2VjcmV0", "POLY_PASSPHRASE": "pass-phrase"})
    text = repr(gw) + repr(gw._creds)
    assert PK[2:] not in text and "c2VjcmV0c2VjcmV0" not in text and "pass-phrase" not in text
    assert gw.api_key == "key-id" and gw.funder == gw.address
    gw.close()


# ---- user-channel frames ------------------------------------------------------------------------------
def test_user_frames_object_or_list_and_unknown_events_skipped():
    order = load_fixture("nautilus-python/ws_messages/order_placement.json")
    trade = load_fixture("nautilus-python/ws_messages/user_trade3.json")
    events, skipped = decode_user_frame(json.dumps(order))
    assert isinstance(events[0], WireOrder) and skipped == []
    events, skipped = decode_user_frame(json.dumps([order, {"event_type": "brand_new"}, trade]))
    assert [type(e) for e in events] == [WireOrder, WireTrade] and skipped == ["event_type 'brand_new'"]
    events, skipped = decode_user_frame(json.dumps([{"event_type": "trade", "id": 5}]))
    assert events == [] and "malformed trade" in skipped[0]
    with pytest.raises(WireError, match="not JSON"):
        decode_user_frame(b"PONGish")


# ---- order journal ------------------------------------------------------------------------------------
def test_journal_round_trip_skips_torn_lines_and_drops_old_entries(tmp_path):
    path = tmp_path / "orders.jsonl"
    j = OrderJournal(path, keep_s=100)
    j.load(now=1000)
    j.order(JournalOrder("0xa", "c1", "s1", "up", "BUY", 0.5, 10, "entry", "GTC", True, "r", "tok", "cond", 990))
    j.order(JournalOrder("0xold", "c0", "s1", "up", "BUY", 0.5, 10, "entry", "GTC", True, "r", "tok", "cond", 800))
    j.market(MarketIdentity("cond", "u", "d", 900, 1800, 0.01, 5, 0.07), now=995)
    j.resolved("cond", "up", now=999)
    j.close()
    with open(path, "a") as f:
        f.write('{"kind":"order","ts":99')  # torn
    contents = OrderJournal(path, keep_s=100).load(now=1001)
    assert set(contents.orders) == {"0xa"}
    # the journal stores and returns the same MarketIdentity the core trades (one type, no copy)
    assert contents.markets["cond"] == MarketIdentity("cond", "u", "d", 900, 1800, 0.01, 5, 0.07)
    assert contents.resolutions == {"cond": "up"}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_heartbeater_adopts_the_id_the_exchange_expects_and_trips_on_repeated_failures():
    from polymm.trader.gateway import HeartbeatRejected
    from polymm.trader.heartbeat import Heartbeater

    sent, tripped, recovered = [], [], []
    expected = {"id": "chain-7"}
    down = {"on": False}

    def send(heartbeat_id):
        sent.append(heartbeat_id)
        if down["on"]:
            raise NetworkError(None, "timed out")
        if heartbeat_id != expected["id"]:
            raise HeartbeatRejected(400, "Invalid Heartbeat ID", expected["id"])
        expected["id"] = f"next-{len(sent)}"
        return expected["id"]

    hb = Heartbeater(send, tripped.append, lambda: recovered.append(True), clock=lambda: 0.0, max_failures=2)
    assert hb.beat_once() and sent == ["", "chain-7"] and hb.state.heartbeat_id == expected["id"]
    down["on"] = True
    assert not hb.beat_once() and tripped == []
    assert not hb.beat_once() and len(tripped) == 1 and not hb.state.ok
    down["on"] = False
    assert hb.beat_once() and recovered == [True] and hb.state.ok
