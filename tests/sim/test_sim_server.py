"""polymm-sim end to end: the real py-clob-client-v2 and websocket-client against a real polymm-sim process.

Most tests share one sim (module fixture) and trade on a market listed ahead of the live window, which
accepts orders for a full window and is not touched by background takers. Tests needing short timeouts
or fast windows use a second sim.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest
import websocket
from tests.support.recorded import load_fixture
from py_clob_client_v2.clob_types import (ApiCreds, BalanceAllowanceParams, CreateOrderOptions, OpenOrderParams,
                                          OrderArgs, OrderMarketCancelParams, OrderPayload, PostOrdersV2Args,
                                          RequestArgs, TradeParams)
from py_clob_client_v2.exceptions import PolyApiException
from py_clob_client_v2.headers.headers import create_level_2_headers
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

from polymm.sim.testing import SimError, new_wallet, run_sim, shape_diff

pytestmark = pytest.mark.slow

FEE_RATE = Decimal("0.07")
HTTP = httpx.Client(timeout=10)  # one client: httpx.request() builds a new SSL context (~30 ms) per call


# ---- fixtures and helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=11, window_s=900,
                 extra_args=("--page-size", "2", "--mined-after-s", "0.3", "--confirmed-after-s", "0.6")) as running:
        yield running


@pytest.fixture(scope="module")
def fast_sim(tmp_path_factory):
    """10-second windows, a 1.5 s dead-man switch and short WebSocket timeouts."""
    with run_sim(tmp_path_factory.mktemp("fast"), seed=12, window_s=10,
                 extra_args=("--heartbeat-timeout-s", "1.5", "--ws-subscribe-timeout-s", "1",
                             "--ws-idle-timeout-s", "3")) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults_left(request):
    yield
    for name in ("sim", "fast_sim"):
        if name in request.fixturenames:
            request.getfixturevalue(name).admin.fault("clear")


def market_ahead(sim, windows: int = 1) -> dict:
    """A listed market `windows` after the live one: it takes orders and only we trade on it."""
    state = sim.admin.state()
    start = state["live_window_start"] + windows * state["window_s"]
    return next(m for m in state["markets"] if m["window_start"] == start)


def trader(sim):
    pk, address = new_wallet()
    return sim.clob_client(pk), address


def post(client, token: str, price: float, size: float, side: str = "BUY", expiration: int = 0, **kwargs):
    return client.create_and_post_order(OrderArgs(token_id=token, price=price, size=size, side=side,
                                                  expiration=expiration), **kwargs)


def error_of(call) -> tuple[int, object]:
    with pytest.raises(PolyApiException) as caught:
        call()
    return caught.value.status_code, caught.value.error_msg


def raw(sim, client, method: str, path: str, body=None, params: dict | None = None) -> httpx.Response:
    """A request signed exactly as the SDK signs it (path without the query), returning the whole HTTP
    response (headers too)."""
    text = json.dumps(body, separators=(",", ":")) if body is not None else None
    headers = create_level_2_headers(client.signer, client.creds,
                                     RequestArgs(method=method, request_path=path, body=body, serialized_body=text))
    return HTTP.request(method, sim.urls["clob_url"] + path, headers={**headers, "Content-Type": "application/json"},
                        content=text.encode() if text else None, params=params)


def usd(client) -> Decimal:
    return Decimal(client.get_balance_allowance(BalanceAllowanceParams(asset_type="COLLATERAL"))["balance"]) / 10**6


def taker_fee(size: Decimal, price: Decimal) -> Decimal:
    return (size * FEE_RATE * price * (1 - price)).quantize(Decimal("0.00001"))


class Listener:
    """websocket-client on one channel; frames (lists flattened) collected by a reader thread."""

    def __init__(self, url: str, subscribe: dict | None, keepalive_s: float | None = None) -> None:
        self.ws = websocket.create_connection(url, timeout=10)
        self.texts: queue.Queue[str] = queue.Queue()
        self.seen: list[dict] = []
        self.arrays = 0  # frames that were JSON arrays of messages
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if subscribe is not None:
            self.ws.send(json.dumps(subscribe))
        if keepalive_s is not None:
            threading.Thread(target=self._keepalive, args=(keepalive_s,), daemon=True).start()

    def _keepalive(self, every_s: float) -> None:
        while not self.closed.wait(every_s):
            try:
                self.ws.send("PING")
            except Exception:
                return

    def _read(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue  # a quiet socket is not a closed one
            except Exception:
                self.closed.set()
                return
            if not text:
                self.closed.set()
                return
            self.texts.put(text)

    def synced(self, timeout: float = 20.0) -> None:
        """Returns once the sim has processed everything sent so far: frames on one socket are handled
        in order, so the PONG to a PING sent now comes after the subscription took effect."""
        self.ws.send("PING")
        self.wait_for(lambda m: m.get("text") == "PONG", timeout)

    def next_text(self, timeout: float = 20.0) -> str:
        return self.texts.get(timeout=timeout)

    def messages(self, timeout: float = 0.3) -> list[dict]:
        """Everything that arrives until the socket is quiet for `timeout`."""
        found = []
        while True:
            try:
                text = self.texts.get(timeout=timeout)
            except queue.Empty:
                return found
            found += self._decode(text)

    def wait_for(self, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.texts.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            for message in self._decode(text):
                if predicate(message):
                    return message
        raise AssertionError(f"no matching message within {timeout} s; seen {[m.get('event_type') for m in self.seen][-20:]}")

    def find(self, predicate, timeout: float = 20.0) -> dict:
        """Like wait_for, but also looks at what already arrived (the order of events is not fixed)."""
        for message in self.seen:
            if predicate(message):
                return message
        return self.wait_for(predicate, timeout)

    def _decode(self, text: str) -> list[dict]:
        if text in ("PONG", "INVALID OPERATION"):
            self.seen.append({"text": text})
            return [{"text": text}]
        value = json.loads(text)
        self.arrays += isinstance(value, list)
        items = value if isinstance(value, list) else [value]
        self.seen += items
        return items

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


def market_listener(sim, market: dict, custom: bool = False, keepalive_s: float | None = None) -> Listener:
    return Listener(sim.urls["ws_market_url"], {"assets_ids": [market["up_token"], market["down_token"]],
                                                "type": "market", "custom_feature_enabled": custom}, keepalive_s)


def user_listener(sim, client) -> Listener:
    creds = client.creds
    return Listener(sim.urls["ws_user_url"], {"auth": {"apiKey": creds.api_key, "secret": creds.api_secret,
                                                       "passphrase": creds.api_passphrase},
                                              "markets": [], "type": "user"})


@contextmanager
def watched_market(sim):
    """A fresh trader and a market-channel listener on the market ahead (book dump consumed); the
    trader's orders are cancelled afterwards."""
    client, _ = trader(sim)
    m = market_ahead(sim)
    listener = market_listener(sim, m)
    try:
        listener.next_text()
        yield client, m, listener
    finally:
        listener.close()
        client.cancel_all()


def event(kind: str, **fields):
    return lambda m: m.get("event_type") == kind and all(m.get(k) == v for k, v in fields.items())


# ---- the real client's trading path -----------------------------------------------------------------------
def test_credentials_derived_over_l1_are_stable(sim):
    pk, address = new_wallet()
    first = sim.clob_client(pk).creds
    again = sim.clob_client(pk).derive_api_key()
    assert (again.api_key, again.api_secret, again.api_passphrase) == (first.api_key, first.api_secret,
                                                                         first.api_passphrase)


def test_post_only_order_rests_is_listed_and_cancels(sim):
    client, address = trader(sim)
    m = market_ahead(sim)
    price = float(Decimal(m["up_best_bid"]) - Decimal("0.03"))
    placed = post(client, m["up_token"], price, 10, post_only=True)
    assert placed["success"] and placed["status"] == "live" and placed["errorMsg"] == ""
    listed = client.get_open_orders(OpenOrderParams(market=m["condition_id"]))
    assert [o["id"] for o in listed] == [placed["orderID"]]
    assert (listed[0]["price"], listed[0]["original_size"], listed[0]["side"]) == (str(price), "10", "BUY")
    assert client.get_order(placed["orderID"])["status"] == "LIVE"
    assert client.cancel_order(OrderPayload(orderID=placed["orderID"])) == {"canceled": [placed["orderID"]],
                                                                           "not_canceled": {}}
    assert client.get_open_orders(OpenOrderParams(market=m["condition_id"])) == []
    again = client.cancel_order(OrderPayload(orderID=placed["orderID"]))
    assert again["canceled"] == [] and placed["orderID"] in again["not_canceled"]


def test_crossing_order_fills_at_the_ask_with_the_taker_fee_and_the_trade_reads_back(sim):
    client, address = trader(sim)
    m = market_ahead(sim)
    ask = Decimal(client.get_order_book(m["up_token"])["asks"][-1]["price"])
    before = usd(client)
    filled = post(client, m["up_token"], float(ask), 10)
    assert filled["status"] == "matched" and filled["takingAmount"] == "10"
    assert Decimal(filled["makingAmount"]) == ask * 10
    # Without defer_exec the SDK waited for the settlement hash, as it does against production.
    assert filled["transactionsHashes"] and len(filled["tradeIDs"]) == 1
    (trade,) = client.get_trades(TradeParams(id=filled["tradeIDs"][0]))
    assert (trade["side"], trade["size"], Decimal(trade["price"]), trade["trader_side"]) == ("BUY", "10", ask, "TAKER")
    assert trade["fee_rate_bps"] == "700" and trade["taker_order_id"] == filled["orderID"]
    assert usd(client) == before - ask * 10 - taker_fee(Decimal(10), ask)
    shares = client.get_balance_allowance(BalanceAllowanceParams(asset_type="CONDITIONAL", token_id=m["up_token"]))
    assert shares["balance"] == "10000000"


def test_deferred_crossing_order_answers_before_settlement(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    ask = float(client.get_order_book(m["up_token"])["asks"][-1]["price"])
    filled = post(client, m["up_token"], ask, 5, defer_exec=True)
    assert filled["tradeIDs"] and "transactionsHashes" not in filled
    (trade,) = client.get_trades(TradeParams(id=filled["tradeIDs"][0]))
    assert trade["status"] in ("MATCHED", "MINED", "CONFIRMED")


def test_signature_altered_by_one_byte_is_rejected(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    order = client.create_order(OrderArgs(token_id=m["up_token"], price=0.3, size=10, side="BUY"))
    raw_sig = bytearray(bytes.fromhex(order.signature[2:]))
    raw_sig[10] ^= 0xFF
    order.signature = "0x" + raw_sig.hex()
    assert error_of(lambda: client.post_order(order)) == (400, {"error": "invalid signature"})


def test_wrong_api_secret_is_unauthorized(sim):
    client, _ = trader(sim)
    real = client.creds
    client.set_api_creds(ApiCreds(real.api_key, "A" * 43 + "=", real.api_passphrase))
    assert error_of(lambda: client.get_open_orders()) == (401, {"error": "Unauthorized/Invalid api key"})
    m = market_ahead(sim)
    assert error_of(lambda: post(client, m["up_token"], 0.3, 10))[0] == 401


def test_price_off_the_tick_is_rejected_with_the_production_message(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    # The SDK refuses a finer tick itself, so build with the finer rounding and post what it signed.
    order = client.builder.build_order(OrderArgs(token_id=m["up_token"], price=0.305, size=10, side="BUY"),
                                       CreateOrderOptions(tick_size="0.001", neg_risk=False))
    status, body = error_of(lambda: client.post_order(order))
    assert status == 400
    assert body["error"].startswith("order 0x") and body["error"].endswith(
        "is invalid. Price (0.305) breaks minimum tick size rule: 0.01")


def test_size_below_the_minimum_is_rejected_with_the_production_message(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    status, body = error_of(lambda: post(client, m["up_token"], 0.3, 4.5))
    assert status == 400 and body["error"].endswith("is invalid. Size (4.5) lower than the minimum: 5")


def test_post_only_order_that_would_cross_is_rejected(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    assert error_of(lambda: post(client, m["up_token"], float(m["up_best_ask"]), 5, post_only=True)) == (
        400, {"error": "invalid post-only order: order crosses book"})


def test_same_signed_order_twice_is_a_duplicate_and_overspending_is_refused(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    order = client.create_order(OrderArgs(token_id=m["up_token"], price=0.3, size=10, side="BUY"))
    first = client.post_order(order, post_only=True)
    assert error_of(lambda: client.post_order(order, post_only=True)) == (
        400, {"error": f"order {first['orderID']} is invalid. Duplicated."})
    assert error_of(lambda: post(client, m["up_token"], 0.3, 5000)) == (400, {"error": "not enough balance / allowance"})
    assert error_of(lambda: post(client, m["down_token"], 0.6, 5, "SELL")) == (
        400, {"error": "not enough balance / allowance"})


def test_gtd_order_needs_three_minutes_of_life_and_reports_its_expiration(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    soon = int(time.time()) + 60
    assert error_of(lambda: post(client, m["up_token"], 0.2, 5, order_type="GTD", post_only=True,
                                 expiration=soon)) == (400, {"error": "invalid expiration"})
    later = int(time.time()) + 600
    placed = post(client, m["up_token"], 0.2, 5, order_type="GTD", post_only=True, expiration=later)
    order = client.get_order(placed["orderID"])
    assert (order["order_type"], order["expiration"], order["status"]) == ("GTD", str(later), "LIVE")
    client.cancel_all()


def test_batch_of_orders_answers_per_order_and_refuses_more_than_fifteen(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    good = client.create_order(OrderArgs(token_id=m["up_token"], price=0.2, size=5, side="BUY"))
    tiny = client.create_order(OrderArgs(token_id=m["up_token"], price=0.2, size=1, side="BUY"))
    answers = client.post_orders([PostOrdersV2Args(order=good), PostOrdersV2Args(order=tiny)], post_only=True)
    assert [a["success"] for a in answers] == [True, False]
    assert "lower than the minimum" in answers[1]["errorMsg"]
    many = [PostOrdersV2Args(order=client.create_order(OrderArgs(token_id=m["up_token"], price=0.2, size=5,
                                                                 side="BUY"))) for _ in range(16)]
    assert error_of(lambda: client.post_orders(many)) == (
        400, {"error": "Too many orders in payload: 16, max allowed: 15"})


def test_open_orders_page_through_cursors_until_lte(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    ids = {post(client, m["up_token"], 0.1 + i / 100, 5, post_only=True)["orderID"] for i in range(5)}
    assert {o["id"] for o in client.get_open_orders()} == ids  # the sim runs with --page-size 2: 3 pages
    first = client.get_open_orders(only_first_page=True)
    assert len(first) == 2
    page = raw(sim, client, "GET", "/data/orders").json()
    assert page["next_cursor"] != "LTE=" and page["count"] == 2
    canceled = client.cancel_all()
    assert set(canceled["canceled"]) == ids


def test_cancel_market_orders_only_cancels_that_token(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    up = post(client, m["up_token"], 0.2, 5, post_only=True)["orderID"]
    down = post(client, m["down_token"], 0.2, 5, post_only=True)["orderID"]
    assert client.cancel_market_orders(OrderMarketCancelParams(asset_id=m["up_token"]))["canceled"] == [up]
    assert [o["id"] for o in client.get_open_orders()] == [down]
    assert client.cancel_orders([down, "0x" + "00" * 32])["canceled"] == [down]


def test_public_price_routes_answer_from_the_book_as_the_sdk_reads_them(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    book = client.get_order_book(m["up_token"])
    bid, ask = Decimal(book["bids"][-1]["price"]), Decimal(book["asks"][-1]["price"])
    assert Decimal(client.get_midpoint(m["up_token"])["mid"]) == (bid + ask) / 2
    assert Decimal(client.get_spread(m["up_token"])["spread"]) == ask - bid
    assert Decimal(client.get_price(m["up_token"], "BUY")["price"]) == ask  # what a BUY would pay
    assert Decimal(client.get_price(m["up_token"], "SELL")["price"]) == bid
    assert client.get_tick_size(m["up_token"]) == "0.01" and client.get_neg_risk(m["up_token"]) is False
    assert set(client.get_last_trade_price(m["up_token"])) == {"price", "side"}
    assert error_of(lambda: client.get_midpoint("123"))[0] == 404


def test_heartbeat_ids_chain_and_a_wrong_id_gets_the_expected_one(sim):
    client, _ = trader(sim)
    first = client.post_heartbeat("")["heartbeat_id"]
    second = client.post_heartbeat(first)["heartbeat_id"]
    assert second != first
    assert error_of(lambda: client.post_heartbeat("not-the-id")) == (
        400, {"error_msg": "Invalid Heartbeat ID", "heartbeat_id": second})
    client.post_heartbeat(second)


def test_closed_only_status_reads_false_for_a_fresh_account(sim):
    client, _ = trader(sim)
    assert client.get_closed_only_mode() == {"closed_only": False}


# ---- Gamma --------------------------------------------------------------------------------------------------
def test_gamma_lists_the_live_and_next_windows_with_production_shapes(sim):
    state = sim.admin.state()
    live, step = state["live_window_start"], state["window_s"]
    live_market = next(m for m in state["markets"] if m["window_start"] == live)
    gamma = sim.urls["gamma_url"]
    event = HTTP.get(f"{gamma}/events/slug/btc-updown-15m-{live}").json()
    market = event["markets"][0]
    assert json.loads(market["clobTokenIds"]) == [live_market["up_token"], live_market["down_token"]]
    assert market["acceptingOrders"] is True and market["closed"] is False
    recorded = load_fixture("nautilus-rust/test_data/gamma_market.json")
    allowed = {"feeSchedule", "version", "eventMetadata", "markets"}
    assert shape_diff(market, recorded, allow_extra=allowed) == [f"$.events: missing (recorded has it)"]
    listed = HTTP.get(f"{gamma}/events", params={"slug": f"btc-updown-15m-{live + step}"}).json()
    assert [e["slug"] for e in listed] == [f"btc-updown-15m-{live + step}"]
    by_market = HTTP.get(f"{gamma}/markets/slug/btc-updown-15m-{live + step}").json()
    assert shape_diff(by_market, recorded, allow_extra=allowed) == []


def test_gamma_past_windows_are_closed_and_unknown_slugs_are_404(sim):
    state = sim.admin.state()
    live, step = state["live_window_start"], state["window_s"]
    gamma = sim.urls["gamma_url"]
    past = HTTP.get(f"{gamma}/markets/slug/btc-updown-15m-{live - 10 * step}").json()
    assert (past["closed"], past["acceptingOrders"]) == (True, False)
    assert sorted(json.loads(past["outcomePrices"])) == ["0", "1"]
    assert HTTP.get(f"{gamma}/events/slug/btc-updown-15m-{live + 100 * step}").status_code == 404
    assert HTTP.get(f"{gamma}/events/slug/btc-updown-15m-{live + 1}").status_code == 404
    assert HTTP.get(f"{gamma}/events/slug/eth-updown-15m-{live}").status_code == 404
    assert HTTP.get(f"{gamma}/events", params={"slug": "nope"}).json() == []


# ---- WebSockets ---------------------------------------------------------------------------------------------
def test_market_channel_sends_books_price_changes_and_trades_in_recorded_shapes(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    listener = market_listener(sim, m)
    try:
        first = json.loads(listener.next_text())
        assert isinstance(first, list) and {b["asset_id"] for b in first} == {m["up_token"], m["down_token"]}
        listener.seen += first
        up_book = next(b for b in first if b["asset_id"] == m["up_token"])
        bids = [Decimal(level["price"]) for level in up_book["bids"]]
        assert bids == sorted(bids)  # best bid last
        listener.ws.send("PING")
        listener.wait_for(lambda msg: msg.get("text") == "PONG")
        resting = post(client, m["up_token"], 0.25, 7, post_only=True)
        change = listener.wait_for(event("price_change"))
        entry = next(e for e in change["price_changes"] if e["asset_id"] == m["up_token"] and e["price"] == "0.25")
        assert (entry["side"], Decimal(entry["size"]) >= 7) == ("BUY", True)
        ask = float(client.get_order_book(m["up_token"])["asks"][-1]["price"])
        post(client, m["up_token"], ask, 5, defer_exec=True)
        listener.wait_for(event("last_trade_price", asset_id=m["up_token"]))
        listener.wait_for(event("book"))
        client.cancel_order(OrderPayload(orderID=resting["orderID"]))
        listener.messages()
    finally:
        listener.close()
    recordings = {"book": "nautilus-python/ws_messages/book.json",
                  "price_change": "nautilus-python/ws_messages/price_change_v2.json",
                  "last_trade_price": "nautilus-python/ws_messages/last_trade_price.json"}
    seen_types = {msg.get("event_type") for msg in listener.seen} - {None}
    assert seen_types == set(recordings)  # no custom events without custom_feature_enabled
    for msg in listener.seen:
        if "event_type" in msg:
            assert shape_diff(msg, load_fixture(recordings[msg["event_type"]])) == [], msg


def test_user_channel_reports_our_orders_and_trades_as_taker_and_maker(sim):
    maker, maker_address = trader(sim)
    taker, _ = trader(sim)
    m = market_ahead(sim)
    maker_feed, taker_feed = user_listener(sim, maker), user_listener(sim, taker)
    try:
        maker_feed.synced()
        taker_feed.synced()
        # Our Up bid one tick above the background's best bid is the best bid.
        bid = Decimal(m["up_best_bid"]) + Decimal("0.01")
        assert bid < Decimal(m["up_best_ask"])
        resting = post(maker, m["up_token"], float(bid), 10, post_only=True)
        placement = maker_feed.wait_for(event("order", type="PLACEMENT"))
        assert (placement["id"], placement["status"], placement["owner"]) == (resting["orderID"], "LIVE",
                                                                              maker.creds.api_key)
        # BUY Down at 1 - bid crosses exactly our Up bid: a minted pair, our fill is in maker_orders.
        taken = post(taker, m["down_token"], float(1 - bid), 6, defer_exec=True)
        as_maker = maker_feed.wait_for(event("trade", status="MATCHED"))
        (ours,) = [o for o in as_maker["maker_orders"] if o["owner"] == maker.creds.api_key]
        assert (ours["order_id"], ours["matched_amount"], ours["asset_id"]) == (resting["orderID"], "6", m["up_token"])
        assert (as_maker["trader_side"], as_maker["asset_id"], as_maker["size"]) == ("MAKER", m["down_token"], "6")
        update = maker_feed.find(event("order", type="UPDATE"))
        assert (update["size_matched"], update["associate_trades"]) == ("6", [as_maker["id"]])
        statuses = [taker_feed.wait_for(event("trade", status=s))["status"] for s in ("MATCHED", "MINED", "CONFIRMED")]
        assert statuses == ["MATCHED", "MINED", "CONFIRMED"]
        maker_feed.wait_for(event("trade", status="CONFIRMED"))
        maker.cancel_order(OrderPayload(orderID=resting["orderID"]))
        cancel = maker_feed.wait_for(event("order", type="CANCELLATION"))
        assert (cancel["status"], cancel["size_matched"]) == ("CANCELED", "6")
        assert taken["orderID"] in {m_["taker_order_id"] for m_ in taker_feed.seen if m_.get("event_type") == "trade"}
        # The maker's UPDATE and its trade come from one match: production-style, one JSON array.
        assert maker_feed.arrays >= 1
    finally:
        maker_feed.close()
        taker_feed.close()
    recordings = {("order", "PLACEMENT"): ("nautilus-python/ws_messages/order_placement.json", set()),
                  ("order", "UPDATE"): ("nautilus-rust/test_data/ws_user_order_update.json", {"event_type"}),
                  ("order", "CANCELLATION"): ("nautilus-python/ws_messages/order_cancel.json", set()),
                  ("trade", "TRADE"): ("nautilus-python/ws_messages/user_trade3.json", set())}
    for msg in [msg for msg in maker_feed.seen + taker_feed.seen if "event_type" in msg]:  # not the PONGs
        recording, extras = recordings[(msg["event_type"], msg["type"])]
        assert shape_diff(msg, load_fixture(recording), allow_extra=extras) == [], msg


@pytest.mark.parametrize("secret", ["wrong", "é"])
def test_user_channel_with_bad_credentials_is_closed(sim, secret):
    client, _ = trader(sim)
    creds = client.creds
    listener = Listener(sim.urls["ws_user_url"], {"auth": {"apiKey": creds.api_key, "secret": secret,
                                                           "passphrase": creds.api_passphrase}, "type": "user"})
    assert listener.closed.wait(20)
    assert "Traceback" not in sim.log_tail(2000)


def test_garbage_and_a_second_initial_subscription_get_invalid_operation(sim):
    m = market_ahead(sim)
    listener = market_listener(sim, m)
    try:
        listener.next_text()  # the book dump
        listener.ws.send("{not json")
        assert listener.next_text() == "INVALID OPERATION"
        listener.ws.send(json.dumps({"assets_ids": [m["up_token"]], "type": "market"}))
        assert listener.next_text() == "INVALID OPERATION"
        listener.ws.send(json.dumps({"assets_ids": [m["up_token"]], "operation": "unsubscribe"}))
        listener.ws.send("PING")
        assert listener.next_text() == "PONG"
    finally:
        listener.close()


def test_oversized_websocket_frame_closes_that_socket_only(sim):
    m = market_ahead(sim)
    listener = market_listener(sim, m)
    listener.next_text()
    listener.ws.send("x" * (300 * 1024))
    assert listener.closed.wait(20)
    assert HTTP.get(sim.urls["clob_url"] + "/ok").status_code == 200


def test_socket_that_never_subscribes_is_closed(fast_sim):
    listener = Listener(fast_sim.urls["ws_market_url"], None)
    assert listener.closed.wait(20)


def test_socket_that_stops_pinging_is_closed_and_one_that_pings_is_not(fast_sim):
    m = market_ahead(fast_sim, 3)
    quiet, pinging = market_listener(fast_sim, m), market_listener(fast_sim, m)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not quiet.closed.is_set():
            pinging.ws.send("PING")
            time.sleep(0.5)
        assert quiet.closed.is_set()
        assert not pinging.closed.is_set()
    finally:
        quiet.close()
        pinging.close()


def test_custom_feature_socket_sees_new_markets_and_resolutions_and_a_plain_socket_does_not(fast_sim):
    client, _ = trader(fast_sim)
    m = market_ahead(fast_sim, 4)
    listener = market_listener(fast_sim, m, custom=True, keepalive_s=1.0)  # the fast sim drops silent sockets
    plain = market_listener(fast_sim, m, keepalive_s=1.0)
    try:
        listener.next_text()  # book dump
        plain.synced()
        post(client, m["up_token"], float(Decimal(m["up_best_bid"]) + Decimal("0.01")), 5, post_only=True)
        best = listener.wait_for(event("best_bid_ask", asset_id=m["up_token"]))
        fast_sim.admin.fault("tick_size", tick=0.001, condition_id=m["condition_id"])
        tick = listener.wait_for(event("tick_size_change", asset_id=m["up_token"]))
        new = listener.wait_for(event("new_market"), timeout=30)
        resolved = listener.wait_for(event("market_resolved"), timeout=30)
        plain.find(event("tick_size_change", asset_id=m["up_token"]))  # the plain socket was live throughout
        plain.synced()
    finally:
        listener.close()
        plain.close()
        client.cancel_all()
    custom_only = {"new_market", "market_resolved", "best_bid_ask"}
    assert not [msg for msg in plain.seen if msg.get("event_type") in custom_only]
    assert shape_diff(best, load_fixture("nautilus-rust/test_data/ws_market_best_bid_ask_msg.json")) == []
    assert shape_diff(tick, load_fixture("nautilus-python/ws_messages/tick_size_change.json")) == []
    assert (tick["old_tick_size"], tick["new_tick_size"]) == ("0.01", "0.001")
    assert shape_diff(new, load_fixture("nautilus-rust/test_data/ws_market_new_market_msg.json")) == []
    assert shape_diff(resolved, load_fixture("nautilus-rust/test_data/ws_market_resolved_msg.json")) == []
    assert resolved["winning_asset_id"] in resolved["assets_ids"]
    assert new["market"] not in {m["condition_id"]} and new["slug"].startswith("btc-updown-15m-")


def test_resolve_now_pays_the_winner_and_ends_open_orders(fast_sim):
    client, address = trader(fast_sim)
    m = market_ahead(fast_sim, 3)
    ask = float(client.get_order_book(m["up_token"])["asks"][-1]["price"])
    post(client, m["up_token"], ask, 5, defer_exec=True)
    resting = post(client, m["up_token"], 0.2, 5, post_only=True)["orderID"]
    before = Decimal(fast_sim.admin.balance(address)["pusd"])
    fast_sim.admin.resolve_now(condition_id=m["condition_id"], winner="Up")
    assert Decimal(fast_sim.admin.balance(address)["pusd"]) == before + 5
    assert client.get_order(resting)["status"] == "CANCELED_MARKET_RESOLVED"


# ---- dead-man switch ----------------------------------------------------------------------------------------
def test_dead_man_switch_keeps_orders_while_heartbeats_flow_and_cancels_when_they_stop(fast_sim):
    client, _ = trader(fast_sim)
    m = market_ahead(fast_sim, 4)  # the furthest listed window: open for the whole test
    order_id = post(client, m["up_token"], 0.2, 5, post_only=True)["orderID"]
    beat = client.post_heartbeat("")["heartbeat_id"]
    for _ in range(8):  # 4 s of beats, well past the 1.5 s timeout
        time.sleep(0.5)
        beat = client.post_heartbeat(beat)["heartbeat_id"]
        assert client.get_order(order_id)["status"] == "LIVE"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and client.get_order(order_id)["status"] == "LIVE":
        time.sleep(0.2)
    assert client.get_order(order_id)["status"] == "CANCELED"
    assert client.post_heartbeat("")["heartbeat_id"]  # a new chain starts after the switch fired


# ---- faults --------------------------------------------------------------------------------------------------
def test_fault_drop_ws_disconnects_subscribers(sim):
    listener = market_listener(sim, market_ahead(sim))
    listener.next_text()
    assert sim.admin.fault("drop_ws", channel="market")["dropped"] >= 1
    assert listener.closed.wait(20)


def test_fault_freeze_market_ws_stops_data_but_not_pongs(sim):
    with watched_market(sim) as (client, m, listener):
        sim.admin.fault("freeze_market_ws", on=True)
        since = len(listener.seen)
        post(client, m["up_token"], 0.21, 5, post_only=True)  # its price_change is due before the PONG below
        listener.synced()
        assert listener.seen[since:] == [{"text": "PONG"}]
        sim.admin.fault("freeze_market_ws", on=False)
        post(client, m["up_token"], 0.22, 5, post_only=True)
        listener.wait_for(event("price_change"))


def test_fault_ws_delay_holds_frames_back(sim):
    with watched_market(sim) as (client, m, listener):
        sim.admin.fault("ws_delay", seconds=1.0)
        sent = time.monotonic()
        post(client, m["up_token"], 0.23, 5, post_only=True)
        listener.wait_for(event("price_change"))
        assert time.monotonic() - sent >= 1.0  # a lower bound the sim guarantees, not a timing race


def test_fault_duplicate_sends_the_next_frame_twice(sim):
    with watched_market(sim) as (client, m, listener):
        sim.admin.fault("duplicate", count=1)
        post(client, m["up_token"], 0.24, 5, post_only=True)
        first, second = listener.next_text(), listener.next_text()
        assert first == second and json.loads(first)["event_type"] == "price_change"


def test_fault_reorder_swaps_the_next_two_frames(sim):
    with watched_market(sim) as (client, m, listener):
        sim.admin.fault("reorder", count=1)
        post(client, m["up_token"], 0.26, 5, post_only=True)
        post(client, m["up_token"], 0.27, 5, post_only=True)
        first, second = json.loads(listener.next_text()), json.loads(listener.next_text())
        prices = [next(e["price"] for e in msg["price_changes"] if e["asset_id"] == m["up_token"])
                  for msg in (first, second)]
        assert prices == ["0.27", "0.26"]


def test_fault_wrap_in_list_sends_arrays(sim):
    with watched_market(sim) as (client, m, listener):
        sim.admin.fault("wrap_in_list", on=True)
        post(client, m["up_token"], 0.28, 5, post_only=True)
        wrapped = json.loads(listener.next_text())
        assert isinstance(wrapped, list) and wrapped[0]["event_type"] == "price_change"


@pytest.mark.parametrize("status, text", [
    (425, "the matching engine is restarting, please retry later"),
    (429, "Too Many Requests"),
    (503, "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed."),
])
def test_fault_post_status_refuses_the_next_order_without_placing_it(sim, status, text):
    client, _ = trader(sim)
    m = market_ahead(sim)
    sim.admin.fault("post_status", status=status, retry_after_s=3)
    order = client.create_order(OrderArgs(token_id=m["up_token"], price=0.2, size=5, side="BUY"))
    body = order_to_json_v2(order, client.creds.api_key, "GTC", True)
    answer = raw(sim, client, "POST", "/order", body)
    assert (answer.status_code, answer.json()) == (status, {"error": text})
    if status in (429, 503):
        assert answer.headers["Retry-After"] == "3"
    assert client.get_open_orders() == []
    assert client.post_order(order, post_only=True)["success"]  # only the next post was affected
    client.cancel_all()


def test_fault_post_status_500_times_out_after_placing_the_order(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    sim.admin.fault("post_status", status=500)
    assert error_of(lambda: post(client, m["up_token"], 0.2, 5, post_only=True)) == (500, {"error": "order timed out"})
    (placed,) = client.get_open_orders()
    assert placed["price"] == "0.2"
    client.cancel_all()


def test_fault_fail_next_trade_turns_a_match_into_failed_and_restores_balances(sim):
    client, address = trader(sim)
    m = market_ahead(sim)
    feed = user_listener(sim, client)
    try:
        feed.synced()
        before = usd(client)
        sim.admin.fault("fail_next_trade", address=address)
        ask = float(client.get_order_book(m["up_token"])["asks"][-1]["price"])
        post(client, m["up_token"], ask, 5, defer_exec=True)
        feed.wait_for(event("trade", status="MATCHED"))
        failed = feed.wait_for(event("trade", status="FAILED"))
    finally:
        feed.close()
    assert failed["transaction_hash"] == ""
    assert usd(client) == before
    (trade,) = client.get_trades()
    assert trade["status"] == "FAILED"


def test_fault_stop_accepting_refuses_orders_and_gamma_says_so(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    sim.admin.fault("stop_accepting", on=True)
    assert error_of(lambda: post(client, m["up_token"], 0.2, 5)) == (
        400, {"error": "the market is not yet ready to process new orders"})
    gamma = HTTP.get(f"{sim.urls['gamma_url']}/markets/slug/{m['slug']}").json()
    assert gamma["acceptingOrders"] is False


def test_fault_post_only_mode_takes_only_post_only_orders(sim):
    client, _ = trader(sim)
    m = market_ahead(sim)
    sim.admin.fault("post_only_mode", seconds=30)
    status, body = error_of(lambda: post(client, m["up_token"], 0.2, 5))
    assert status == 503 and body["code"] == "post_only_mode" and body["retry_after_seconds"] >= 1
    assert post(client, m["up_token"], 0.2, 5, post_only=True)["success"]
    client.cancel_all()


def test_fault_closed_only_refuses_new_orders_of_that_address(sim):
    client, address = trader(sim)
    m = market_ahead(sim)
    sim.admin.fault("closed_only", address=address)
    assert client.get_closed_only_mode() == {"closed_only": True}
    assert error_of(lambda: post(client, m["up_token"], 0.2, 5)) == (
        400, {"error": f"'{address}' address in closed only mode"})


# ---- bad input ----------------------------------------------------------------------------------------------
def test_bad_requests_get_json_errors_and_never_break_the_sim(sim):
    client, _ = trader(sim)
    base = sim.urls["clob_url"]
    assert raw(sim, client, "POST", "/order", None).json() == {"error": "Invalid order payload"}
    assert raw(sim, client, "POST", "/order", {"order": {}, "owner": "x"}).status_code == 400
    assert raw(sim, client, "DELETE", "/order", ["not", "an", "object"]).status_code == 400
    unsigned = HTTP.post(base + "/order", content=b"{}", headers={"Content-Type": "application/json"})
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "Unauthorized/Invalid api key"})
    assert HTTP.get(base + "/auth/derive-api-key").json() == {"error": "Invalid L1 Request headers"}
    assert HTTP.get(base + "/no/such/route").status_code == 404
    assert HTTP.put(base + "/order").status_code == 405
    huge = HTTP.post(base + "/order", content=b"x" * (2 * 1024 * 1024))
    assert (huge.status_code, huge.json()) == (413, {"error": "request body too large"})
    assert HTTP.get(base + "/book", params={"token_id": "123"}).status_code == 404
    cursor = raw(sim, client, "GET", "/data/orders", params={"next_cursor": "%%%"})
    assert (cursor.status_code, cursor.json()) == (400, {"error": "invalid next_cursor"})
    assert HTTP.get(base + "/ok").status_code == 200
    assert "Traceback" not in sim.log_tail(200)


PRIVATE_ROUTES = [("GET", "/auth/api-keys", None), ("DELETE", "/auth/api-key", None),
                  ("GET", "/auth/ban-status/closed-only", None), ("POST", "/order", {"order": {}, "owner": ""}),
                  ("POST", "/orders", []), ("DELETE", "/order", {"orderID": "0x" + "00" * 32}),
                  ("DELETE", "/orders", ["0x" + "00" * 32]), ("DELETE", "/cancel-all", None),
                  ("DELETE", "/cancel-market-orders", {"asset_id": "1"}), ("GET", "/data/orders", None),
                  ("GET", "/data/order/0x" + "00" * 32, None), ("GET", "/data/trades", None),
                  ("GET", "/balance-allowance", None), ("GET", "/balance-allowance/update", None),
                  ("POST", "/v1/heartbeats", {"heartbeat_id": ""})]


@pytest.mark.parametrize("method, path, body", PRIVATE_ROUTES, ids=[f"{m} {p[:24]}" for m, p, _ in PRIVATE_ROUTES])
def test_every_private_route_refuses_missing_or_wrong_l2_auth(sim, method, path, body):
    client, _ = trader(sim)
    _, stranger = new_wallet()
    text = json.dumps(body, separators=(",", ":")) if body is not None else None
    good = create_level_2_headers(client.signer, client.creds,
                                  RequestArgs(method=method, request_path=path, body=body, serialized_body=text))
    other_path = create_level_2_headers(client.signer, client.creds,
                                        RequestArgs(method=method, request_path=path + "x", body=body,
                                                    serialized_body=text))
    wrong_secret = create_level_2_headers(client.signer, ApiCreds(client.creds.api_key, "A" * 43 + "=",
                                                                  client.creds.api_passphrase),
                                          RequestArgs(method=method, request_path=path, body=body,
                                                      serialized_body=text))
    bad = [{}, {**good, "POLY_PASSPHRASE": "wrong"}, {**good, "POLY_ADDRESS": stranger},
           {**good, "POLY_API_KEY": "00000000-0000-4000-8000-000000000000"}, wrong_secret,
           {k: v for k, v in good.items() if k != "POLY_SIGNATURE"}, {**good, "POLY_SIGNATURE": other_path["POLY_SIGNATURE"]},
           {**good, "POLY_SIGNATURE": b"\xff\xfe"}, {**good, "POLY_PASSPHRASE": "é".encode()},
           {**good, "POLY_TIMESTAMP": b"\xff"}]
    for headers in bad:
        answer = HTTP.request(method, sim.urls["clob_url"] + path, content=text.encode() if text else None,
                              headers={**headers, "Content-Type": "application/json"})
        assert (answer.status_code, answer.json()) == (401, {"error": "Unauthorized/Invalid api key"}), headers.keys()
    signed_ok = HTTP.request(method, sim.urls["clob_url"] + path, content=text.encode() if text else None,
                             headers={**good, "Content-Type": "application/json"})
    assert signed_ok.status_code != 401  # the same request, correctly signed, gets past the auth check


def test_deeply_nested_json_and_overlong_urls_get_4xx_without_a_traceback(sim):
    client, _ = trader(sim)
    deep = '{"a":' * 20000 + "1" + "}" * 20000
    for method, path in [("POST", "/order"), ("POST", "/orders"), ("DELETE", "/order"), ("DELETE", "/orders"),
                         ("DELETE", "/cancel-market-orders"), ("POST", "/v1/heartbeats")]:
        headers = create_level_2_headers(client.signer, client.creds,
                                         RequestArgs(method=method, request_path=path, body=deep, serialized_body=deep))
        answer = HTTP.request(method, sim.urls["clob_url"] + path, content=deep.encode(), headers=headers)
        assert answer.status_code == 400 and "error" in answer.json(), (method, path, answer.text)
    for path in ("/books", "/_sim/fund"):
        answer = HTTP.post(sim.urls["clob_url"] + path, content=deep.encode())
        assert answer.status_code == 400 and "error" in answer.json(), (path, answer.text)
    m = market_ahead(sim)
    listener = market_listener(sim, m)
    try:
        listener.next_text()
        listener.ws.send(deep)
        assert listener.next_text() == "INVALID OPERATION"
        listener.synced()  # the socket lives on
    finally:
        listener.close()
    assert HTTP.get(sim.urls["clob_url"] + "/book", params={"token_id": "1" * 20000}).status_code in (400, 414)
    assert HTTP.get(sim.urls["clob_url"] + "/ok").status_code == 200
    assert "Traceback" not in sim.log_tail(2000)


def test_admin_reports_unknown_faults_and_bad_parameters(sim):
    with pytest.raises(SimError, match="unknown fault"):
        sim.admin.fault("meteor")
    with pytest.raises(SimError, match="post_status must be one of"):
        sim.admin.fault("post_status", status=418)


def test_proxy_wallet_trades_from_its_funder_balance(sim):
    pk, address = new_wallet()
    _, proxy = new_wallet()
    client = sim.clob_client(pk, signature_type=1, funder=proxy)
    m = market_ahead(sim)
    sim.admin.fund(proxy, 250)
    placed = post(client, m["up_token"], 0.2, 5, post_only=True)
    (order,) = client.get_open_orders()
    assert (order["id"], order["maker_address"]) == (placed["orderID"], proxy)
    assert usd(client) == Decimal(1250)  # the funder's pUSD (new account 1000 + 250), not the EOA's
    client.cancel_all()


def test_ready_file_names_every_base_url_and_each_one_serves(tmp_path):
    with run_sim(tmp_path, seed=4, window_s=60) as running:
        (ready,) = tmp_path.glob("*.ready.json")
        urls = json.loads(ready.read_text())
        assert set(urls) == {"gamma_url", "clob_url", "ws_market_url", "ws_user_url", "ws_rtds_url", "admin_url",
                             "data_url", "relayer_url", "rpc_url", "geoblock_url"}
        live = running.admin.live_market()
        assert HTTP.get(f"{urls['gamma_url']}/events/slug/{live['slug']}").status_code == 200
        assert HTTP.get(f"{urls['clob_url']}/time").json() > 0
        assert HTTP.get(f"{urls['admin_url']}/state").status_code == 200
        assert HTTP.get(f"{urls['data_url']}/positions", params={"user": "0x" + "11" * 20}).json() == []
        assert HTTP.get(f"{urls['relayer_url']}/deployed", params={"address": "0x" + "11" * 20}).json() == {
            "deployed": True}
        assert HTTP.post(urls["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).json()[
            "result"] == "0x89"
        assert HTTP.get(urls["geoblock_url"]).json()["blocked"] is False
        for key in ("ws_market_url", "ws_user_url"):
            listener = Listener(urls[key], None)
            try:
                listener.synced()
            finally:
                listener.close()


def test_sigterm_stops_the_sim_cleanly(tmp_path):
    with run_sim(tmp_path, seed=3, window_s=60) as running:
        listener = market_listener(running, running.admin.live_market())
        listener.next_text()
    assert running.process.returncode == 0
    assert listener.closed.wait(20)
    assert not list(tmp_path.glob("*.ready.json"))  # the ready file goes with the process
    assert "Traceback" not in running.log_tail(200)


def test_market_orders_from_the_sdk_fill_fok_buy_and_fak_sell(sim):
    from py_clob_client_v2.clob_types import MarketOrderArgs, OrderType

    client, _ = trader(sim)
    m = market_ahead(sim)
    bought = client.create_and_post_market_order(MarketOrderArgs(token_id=m["up_token"], amount=10, side="BUY"),
                                                 order_type=OrderType.FOK, defer_exec=True)
    assert bought["status"] == "matched" and Decimal(bought["makingAmount"]) <= 10
    sold = client.create_and_post_market_order(MarketOrderArgs(token_id=m["up_token"], amount=5, side="SELL"),
                                               order_type=OrderType.FAK, defer_exec=True)
    assert sold["status"] == "matched" and sold["makingAmount"] == "5"
    held = client.get_balance_allowance(BalanceAllowanceParams(asset_type="CONDITIONAL", token_id=m["up_token"]))
    assert Decimal(held["balance"]) == (Decimal(bought["takingAmount"]) - 5) * 10**6


def test_junk_on_every_route_gets_json_4xx_never_a_5xx_or_a_traceback(sim):
    import random

    rng = random.Random(7)
    client, _ = trader(sim)
    routes = [("GET", "/book"), ("GET", "/tick-size"), ("POST", "/order"), ("POST", "/orders"), ("DELETE", "/order"),
              ("DELETE", "/orders"), ("DELETE", "/cancel-market-orders"), ("GET", "/data/orders"),
              ("GET", "/data/order/0x12"), ("GET", "/data/trades"), ("GET", "/balance-allowance"),
              ("POST", "/v1/heartbeats"), ("POST", "/books"), ("GET", "/price"), ("GET", "/events"),
              ("GET", "/markets/0x12"), ("GET", "/auth/derive-api-key"), ("POST", "/auth/api-key"),
              ("GET", "/_sim/balance"), ("POST", "/_sim/fund")]
    bodies = [b"", b"{", b"null", b"[]", b"[1,2]", b'{"a":1}', b"\x00\xff", b'{"order":{"salt":-1},"owner":""}',
              b'"text"', b"1e999", b'{"heartbeat_id": 5}', b'{"orderID": 5}', b'{"address":"0x1","amount":"NaN"}',
              b'{"condition_id":5}', json.dumps([{"token_id": "1"}] * 3).encode()]
    params = [None, {"token_id": "1"}, {"token_id": "9" * 90}, {"next_cursor": "LTE="}, {"side": "SELL", "token_id": "x"},
              {"slug": "btc-updown-15m-0"}, {"address": "0xzz"}, {"asset_type": "CONDITIONAL"},
              {"signature_type": "abc"}, {"after": "nan"}]
    for _ in range(250):
        method, path = rng.choice(routes)
        body = rng.choice(bodies)
        headers = {}
        if rng.random() < 0.6:  # correctly signed junk reaches the handlers behind the auth check
            text = body.decode("utf-8", "replace")
            headers = create_level_2_headers(client.signer, client.creds,
                                             RequestArgs(method=method, request_path=path, body=text,
                                                         serialized_body=text))
        answer = HTTP.request(method, sim.urls["clob_url"] + path, content=body, params=rng.choice(params),
                              headers=headers)
        assert answer.status_code < 500, (method, path, body, answer.text)
        answer.json()  # always JSON
    assert "Traceback" not in sim.log_tail(2000)
