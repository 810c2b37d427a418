"""RTDS messages (feed/rtds/wire.py): the recorded messages parse; the subscription is the documented one."""
from __future__ import annotations

import json

from tests.support.recorded import FIXTURES

from polymm.feed.rtds import wire

RECORDED = FIXTURES / "nautilus-rust" / "test_data"


def test_recorded_binance_history_dump_parses_into_its_points_oldest_first():
    prices = wire.Decoder().decode((RECORDED / "rtds_crypto_prices_subscribe.json").read_bytes())
    assert [(p.source, p.price, p.source_ts) for p in prices] == [
        ("binance", 61164.12, 1780726209.0), ("binance", 61161.07, 1780726210.0), ("binance", 61150.89, 1780726211.0),
    ]


def test_recorded_binance_update_parses_with_its_source_timestamp():
    assert wire.Decoder().decode((RECORDED / "rtds_crypto_prices_update.json").read_bytes()) == [
        wire.Price("binance", 61035.86, 1780730269.0)
    ]


def test_chainlink_update_as_documented_parses():
    frame = {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": 1753314064237, "connection_id": "x",
             "payload": {"symbol": "btc/usd", "timestamp": 1753314064213, "value": 64321.12}}
    assert wire.Decoder().decode(json.dumps(frame)) == [wire.Price("chainlink", 64321.12, 1753314064.213)]


def test_other_symbols_topics_and_equities_are_skipped_and_counted():
    d = wire.Decoder()
    eth = {"topic": "crypto_prices", "type": "update", "timestamp": 1, "payload": {"symbol": "ethusdt", "timestamp": 1, "value": 3000.0}}
    assert d.decode(json.dumps(eth)) == []
    assert d.decode((RECORDED / "rtds_equity_prices_update.json").read_bytes()) == []
    assert d.decode(json.dumps({"topic": "comments", "type": "comment_created", "payload": {"body": "hi"}})) == []
    assert d.skipped == 3 and d.malformed == 0


def test_malformed_frames_and_bad_prices_are_counted_never_raised():
    d = wire.Decoder()
    assert d.decode(b"{not json") == []
    assert d.decode(b'{"topic": 5}') == []
    bad = {"topic": "crypto_prices_chainlink", "type": "update", "payload": {"symbol": "btc/usd", "timestamp": 5, "value": -1}}
    assert d.decode(json.dumps(bad)) == []
    assert d.malformed == 3 and "not positive" in d.last_error


def test_subscription_names_both_topics_with_their_documented_filters():
    sub = json.loads(wire.subscription())
    assert sub["action"] == "subscribe"
    binance, chainlink = sub["subscriptions"]
    assert binance == {"topic": "crypto_prices", "type": "update", "filters": "btcusdt"}
    assert chainlink["topic"] == "crypto_prices_chainlink" and chainlink["type"] == "*"
    # the Chainlink filter is a JSON object encoded as a string
    assert isinstance(chainlink["filters"], str) and json.loads(chainlink["filters"]) == {"symbol": "btc/usd"}


def test_another_assets_symbols_select_its_prices_and_skip_bitcoin():
    syms = wire.symbols("eth/usd", "ethusdt")
    d = wire.Decoder(syms)
    eth = {"topic": "crypto_prices_chainlink", "type": "update", "timestamp": 1,
           "payload": {"symbol": "eth/usd", "timestamp": 1753314064213, "value": 1860.74}}
    btc = {"topic": "crypto_prices", "type": "update", "timestamp": 1,
           "payload": {"symbol": "btcusdt", "timestamp": 1753314064213, "value": 64321.0}}
    assert d.decode(json.dumps(eth)) == [wire.Price("chainlink", 1860.74, 1753314064.213)]
    assert d.decode(json.dumps(btc)) == [] and d.skipped == 1
    binance, chainlink = json.loads(wire.subscription(syms))["subscriptions"]
    assert binance["filters"] == "ethusdt" and json.loads(chainlink["filters"]) == {"symbol": "eth/usd"}
