"""GET /version as the gateway reads it (no sockets: httpx's mock transport answers)."""
from __future__ import annotations

import httpx
import pytest

from polymm.trader.execution.exchange_state import ExchangeError
from polymm.trader.venue.gateway import TAKER_DELAY_S, MarketRules, FeeDetails, Gateway
from polymm.trader.model import Side
from polymm.trader.venue.signing import UnsupportedOrderVersion


def gateway_answering(status: int, body) -> Gateway:
    gw = Gateway("http://clob.invalid", "0x" + "5a" * 32)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/version"
        return httpx.Response(status, content=body if isinstance(body, bytes) else None,
                              json=None if isinstance(body, bytes) else body)

    gw._http = httpx.Client(transport=httpx.MockTransport(handler))
    return gw


@pytest.mark.parametrize("status,body,expected", [
    (200, {"version": 3}, 3),
    (200, {"version": "3"}, 3),  # quoted: still 3
    (200, {"version": 2}, 2),
    (500, {"error": "boom"}, 2),  # unreadable: the last known version stays (at start the SDK's 2)
    (200, b"not json", 2),
    (200, ["version", 3], 2),
    (200, {}, 2),
])
def test_refresh_version_reads_what_the_exchange_names(status, body, expected):
    gw = gateway_answering(status, body)
    try:
        assert gw.refresh_version() == expected and gw.order_version == expected and gw.version_problem is None
        assert gw.sign("1", Side.BUY, 0.5, 5, 0.01).version == expected
    finally:
        gw.close()


@pytest.mark.parametrize("version", [4, 1, "v3", True])
def test_a_version_we_cannot_sign_is_a_problem_in_words_and_no_signature(version):
    gw = gateway_answering(200, {"version": version})
    try:
        gw.refresh_version()
        assert gw.version_problem.startswith(f"exchange order version {version!r} is not one polymm can sign")
        with pytest.raises(UnsupportedOrderVersion):
            gw.sign("1", Side.BUY, 0.5, 5, 0.01)
    finally:
        gw.close()


def gateway_with_market_info(status: int, body) -> Gateway:
    gw = Gateway("http://clob.invalid", "0x" + "5a" * 32)
    gw._http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(status, content=body if isinstance(body, bytes) else None,
                                       json=None if isinstance(body, bytes) else body)))
    return gw


def test_fee_details_of_the_documented_market_info():
    # docs "Get CLOB market info" example: fd {"r": 0.02, "e": 2, "to": true}
    gw = gateway_with_market_info(200, {"t": [{"t": "1", "o": "Yes"}], "mts": 0.01, "fd": {"r": 0.02, "e": 2, "to": True}})
    try:
        assert gw.fee_details("0xc") == FeeDetails(0.02, 2.0, True)
    finally:
        gw.close()


def test_the_minimum_order_age_and_taker_delay_come_with_the_fee_schedule_in_one_read():
    # docs "Get CLOB market info" example: "itode": true ("whether taker order delay is enabled"), "oas": 123
    # ("minimum order age in seconds"); the delay's length is not in the info: 250 ms (docs/venue.md, Order timing).
    doc = {"t": [{"t": "1", "o": "Yes"}], "mts": 0.01, "rfqe": True, "itode": True, "ibce": True,
           "fd": {"r": 0.02, "e": 2, "to": True}, "oas": 123}
    gw = gateway_with_market_info(200, doc)
    try:
        assert gw.market_rules("0xc") == MarketRules(FeeDetails(0.02, 2.0, True), 123.0, TAKER_DELAY_S, False)
        assert TAKER_DELAY_S == 0.25
    finally:
        gw.close()
    gw = gateway_with_market_info(200, {"fd": {"r": 0.07, "e": 1}, "oas": None, "itode": None})
    try:  # absent or null: no minimum age, no delay
        assert gw.market_rules("0xc") == MarketRules(FeeDetails(0.07, 1.0), 0.0, 0.0, False)
    finally:
        gw.close()


@pytest.mark.parametrize("status,body,words", [
    (200, {"mts": 0.01}, "no fee details"),
    (200, {"fd": {"r": "x", "e": 1}}, "unreadable"),
    (200, {"fd": {"r": 0.07}}, "unreadable"),
    (200, b"<html>", "not market info"),
])
def test_unreadable_fee_details_are_a_value_error_in_words(status, body, words):
    gw = gateway_with_market_info(status, body)
    try:
        with pytest.raises(ValueError, match=words):
            gw.fee_details("0xc")
    finally:
        gw.close()


def test_market_info_refused_is_an_exchange_error():
    gw = gateway_with_market_info(404, {"error": "market not found"})
    try:
        with pytest.raises(ExchangeError, match="market not found"):
            gw.fee_details("0xc")
    finally:
        gw.close()
