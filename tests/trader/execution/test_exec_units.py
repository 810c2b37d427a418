"""Execution-core parts that need no exchange: exchange states, error classification, heartbeat state,
the wallet lock, credentials from the environment, user-channel frames, the order journal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.recorded import load_fixture
from polymm.trader.execution.exchange_state import (CancelOnly, ClosedOnly, EngineRestarting, ExchangeState, InsufficientBalance,
                                          NetworkError, PostOnlyMode, RateLimited, Rejected, ServerError, classify)
from polymm.trader.venue.gateway import ConfigError, Gateway
from polymm.trader.venue.heartbeat import HeartbeatState
from polymm.trader.model import ExchangeMode, Leg, MarketIdentity, Side
from polymm.trader.execution.order_journal import JournalOrder, OrderJournal
from polymm.trader.venue.user_wire import WireOrder, WireTrade, WireError, decode_user_frame
from polymm.trader.execution.wallet_lock import WalletLock, WalletLocked

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
def _random_address() -> str:
    """The wallet lock is machine-wide (an abstract socket): tests running in parallel must not share a wallet."""
    return "0x" + os.urandom(20).hex()


def _hold_lock_in_a_child(state_dir, address: str) -> subprocess.Popen:
    code = ("import sys,time; from polymm.trader.execution.wallet_lock import WalletLock; "
            f"l=WalletLock({str(state_dir)!r}, {address!r}); l.acquire(); "
            "print('held', flush=True); sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_trader_on_the_same_wallet_is_refused_naming_the_holder(tmp_path):
    address = _random_address()
    holder = _hold_lock_in_a_child(tmp_path, address.upper().replace("0X", "0x"))
    try:
        with pytest.raises(WalletLocked) as err:
            WalletLock(tmp_path, address).acquire()
        assert f"pid {holder.pid}" in str(err.value) and "refusing" in str(err.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with WalletLock(tmp_path, address) as lock:  # free again after exit
        assert lock.held
    with WalletLock(tmp_path, _random_address()):  # another wallet: independent
        pass


def test_the_wallet_lock_holds_across_different_state_directories(tmp_path):
    """POLYMM_STATE_DIR differs between the two traders: the lock files are different, the wallet is not."""
    address = _random_address()
    holder = _hold_lock_in_a_child(tmp_path / "a", address)
    try:
        with pytest.raises(WalletLocked) as err:
            WalletLock(tmp_path / "b", address).acquire()
        assert f"pid {holder.pid}" in str(err.value) and address in str(err.value)
        assert not (tmp_path / "b" / f"wallet-{address}.lock").exists() or \
            (tmp_path / "b" / f"wallet-{address}.lock").read_text() == ""
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with WalletLock(tmp_path / "b", address) as lock:  # the kernel freed the name when the holder exited
        assert lock.held


def test_a_killed_holder_leaves_no_stale_wallet_lock(tmp_path):
    address = _random_address()
    holder = _hold_lock_in_a_child(tmp_path, address)
    holder.kill()
    holder.wait(timeout=10)
    holder.stdin.close()
    holder.stdout.close()
    with WalletLock(tmp_path / "elsewhere", address) as lock:
        assert lock.held


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
    # A malformed trade is never skipped: it comes back as UnreadableTrade (the core reconciles at once).
    assert [type(e).__name__ for e in events] == ["UnreadableTrade"] and skipped == []
    with pytest.raises(WireError, match="not JSON"):
        decode_user_frame(b"PONGish")


# ---- order journal ------------------------------------------------------------------------------------
def journaled(order_id: str, client_id: str, created_at: float) -> JournalOrder:
    """A journal entry of an s1 entry order (only its ids and time matter here)."""
    return JournalOrder(order_id, client_id, "s1", "up", "BUY", 0.5, 10, "entry", "GTC", True, "r", "tok", "cond",
                        created_at)


def test_journal_round_trip_skips_torn_lines_and_drops_old_entries(tmp_path):
    path = tmp_path / "orders.jsonl"
    j = OrderJournal(path, keep_s=100)
    j.load(now=1000)
    j.order(journaled("0xa", "c1", 990))
    j.order(journaled("0xold", "c0", 800))
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
    from polymm.trader.venue.gateway import HeartbeatRejected
    from polymm.trader.venue.heartbeat import Heartbeater

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


def test_heartbeat_thread_survives_a_crash_in_its_pass_and_trips_instead_of_dying_silently():
    from polymm.trader.venue.heartbeat import Heartbeater

    tripped = []

    def send(heartbeat_id):
        raise RuntimeError("bug in the gateway")  # not an ExchangeError: used to kill the thread

    hb = Heartbeater(send, tripped.append, lambda: None, clock=time.monotonic, interval_s=0.01, max_failures=2)
    hb.start()
    try:
        deadline = time.monotonic() + 30
        while not tripped and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tripped and "heartbeat crashed: RuntimeError" in tripped[0], "a crashing heartbeat must trip the switch"
        assert hb._thread.is_alive() and not hb.state.ok
    finally:
        hb.stop()


def test_journal_compaction_drops_old_entries_and_keeps_appending(tmp_path):
    path = tmp_path / "orders.jsonl"
    j = OrderJournal(path, keep_s=100)
    j.load(now=1000)
    j.order(journaled("0xold", "c0", 950))
    j.order(journaled("0xa", "c1", 1040))
    j.compact(now=1070)  # 0xold is now 120 s old
    j.order(journaled("0xb", "c2", 1080))
    j.close()
    assert [json.loads(line)["order_id"] for line in path.read_text().splitlines()] == ["0xa", "0xb"]
    assert set(OrderJournal(path, keep_s=100).load(now=1090).orders) == {"0xa", "0xb"}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def gateway_over(handler) -> Gateway:
    """A Gateway whose HTTP goes to `handler` (no sockets), with API credentials already set."""
    import httpx

    from polymm.trader.venue.gateway import ApiCredentials

    gw = Gateway("http://clob.invalid", "0x" + "5a" * 32, creds=ApiCredentials("key-1", "c2VjcmV0", "pass"))
    gw._http = gw._l2 = httpx.Client(transport=httpx.MockTransport(handler))  # the L2 calls' client too
    return gw


def test_post_order_that_matches_is_one_request_never_the_sdks_30_s_trade_polling():
    import httpx

    seen = []

    def handler(request):
        seen.append((request.method, request.url.path, json.loads(request.content) if request.content else None))
        return httpx.Response(200, json={"success": True, "orderID": "0xid", "status": "matched",
                                         "makingAmount": "3.1", "takingAmount": "5", "errorMsg": ""})

    gw = gateway_over(handler)
    signed = gw.signer.build("123", Side.BUY, 0.62, 5, 0.01)
    result = gw.post_order(signed, "FAK", False)
    assert (result.status, result.taking_amount) == ("matched", 5.0)
    assert [(m, p) for m, p, _ in seen] == [("POST", "/order")]  # no GET /data/trades polling afterwards
    assert seen[0][2]["deferExec"] is False and seen[0][2]["orderType"] == "FAK"


def test_post_order_timeout_or_5xx_is_an_unknown_outcome_and_4xx_a_rejection():
    import httpx

    from polymm.trader.execution.exchange_state import ExchangeError

    answers = iter([httpx.ReadTimeout("slow"), httpx.Response(502, text="bad gateway"),
                    httpx.Response(400, json={"error": "invalid order"})])

    def handler(request):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gw = gateway_over(handler)
    signed = gw.signer.build("123", Side.BUY, 0.62, 5, 0.01)
    outcomes = []
    for _ in range(3):
        with pytest.raises(ExchangeError) as err:
            gw.post_order(signed)
        outcomes.append(err.value.outcome_unknown)
    assert outcomes == [True, True, False]


def test_malformed_rest_rows_are_reported_by_id_without_our_api_key():
    from polymm.trader.venue.user_wire import decode_rest_orders, decode_rest_trades

    _, bad_trades = decode_rest_trades([{"id": "t-1", "owner": "our-secret-api-key", "size": "lots"}, [1]])
    _, bad_orders = decode_rest_orders([{"id": "0xo", "owner": "our-secret-api-key", "price": {}}])
    assert len(bad_trades) == 2 and len(bad_orders) == 1
    assert "t-1" in bad_trades[0] and "0xo" in bad_orders[0]
    assert not any("our-secret-api-key" in line for line in bad_trades + bad_orders)
