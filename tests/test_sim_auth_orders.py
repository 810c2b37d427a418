"""polymm-sim authentication and signed-order checks, against what the real py-clob-client-v2 produces."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from py_clob_client_v2 import ClobClient
from py_clob_client_v2.clob_types import ApiCreds, CreateOrderOptions, MarketOrderArgs, OrderArgs, RequestArgs
from py_clob_client_v2.headers.headers import create_level_1_headers, create_level_2_headers
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

from polymm.sim import auth, orders
from polymm.sim.testing import new_wallet

TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
TICK = Decimal("0.01")


def sdk_client(private_key: str, signature_type: int | None = None, funder: str | None = None) -> ClobClient:
    return ClobClient("http://sim.invalid", 137, key=private_key, signature_type=signature_type, funder=funder)


def signed(client: ClobClient, price: float, size: float, side: str = "BUY", tick: str = "0.01"):
    return client.builder.build_order(OrderArgs(token_id=TOKEN, price=price, size=size, side=side),
                                      CreateOrderOptions(tick_size=tick, neg_risk=False))


def payload_of(order, owner: str = "owner-key", order_type: str = "GTC") -> orders.OrderPayload:
    body = json.dumps(order_to_json_v2(order, owner, order_type), separators=(",", ":")).encode()
    return orders.decode_order(body)


def with_signature_byte_flipped(payload: orders.OrderPayload, index: int) -> orders.SignedOrder:
    raw = bytearray(bytes.fromhex(payload.order.signature[2:]))
    raw[index] ^= 0x01
    return orders.SignedOrder(**{**{f: getattr(payload.order, f) for f in payload.order.__struct_fields__},
                                 "signature": "0x" + raw.hex()})


# ---- L1 -------------------------------------------------------------------------------------------------
def test_l1_headers_from_the_sdk_verify_to_the_signing_address():
    pk, address = new_wallet()
    headers = create_level_1_headers(sdk_client(pk).signer, nonce=7)
    assert auth.verify_l1(headers) == (address, 7)


def test_l1_claiming_another_address_is_refused_with_production_text():
    pk, _ = new_wallet()
    _, other = new_wallet()
    headers = {**create_level_1_headers(sdk_client(pk).signer), "POLY_ADDRESS": other}
    with pytest.raises(auth.AuthError) as caught:
        auth.verify_l1(headers)
    assert caught.value.message == "Invalid L1 Request headers"


def test_l1_signature_over_a_different_timestamp_is_refused():
    pk, _ = new_wallet()
    headers = create_level_1_headers(sdk_client(pk).signer)
    headers["POLY_TIMESTAMP"] = str(int(headers["POLY_TIMESTAMP"]) + 1)
    with pytest.raises(auth.AuthError):
        auth.verify_l1(headers)


def test_api_keys_are_derived_deterministically_per_address_and_nonce():
    keys = auth.ApiKeys(b"secret-of-seed-1")
    again = auth.ApiKeys(b"secret-of-seed-1")
    _, address = new_wallet()
    first = keys.derive(address, 0)
    assert again.derive(address, 0) == first
    assert keys.derive(address, 1).key != first.key
    assert auth.ApiKeys(b"another seed").derive(address, 0).key != first.key


# ---- L2 -------------------------------------------------------------------------------------------------
def l2_headers(pk: str, key: auth.ApiKey, method: str, path: str, body: str | None, secret: str | None = None):
    creds = ApiCreds(api_key=key.key, api_secret=secret or key.secret, api_passphrase=key.passphrase)
    return create_level_2_headers(sdk_client(pk).signer, creds,
                                  RequestArgs(method=method, request_path=path, body=body, serialized_body=body))


def test_l2_hmac_from_the_sdk_verifies_over_method_path_and_exact_body():
    pk, address = new_wallet()
    keys = auth.ApiKeys(b"s")
    key = keys.derive(address, 0)
    body = '{"orderID":"0xabc"}'
    headers = l2_headers(pk, key, "DELETE", "/order", body)
    assert auth.verify_l2(keys, headers, "DELETE", "/order", body) == key
    with pytest.raises(auth.AuthError):
        auth.verify_l2(keys, headers, "DELETE", "/order", body.replace("abc", "abd"))
    with pytest.raises(auth.AuthError):
        auth.verify_l2(keys, headers, "DELETE", "/orders", body)


def test_l2_with_a_wrong_secret_is_unauthorized():
    pk, address = new_wallet()
    keys = auth.ApiKeys(b"s")
    key = keys.derive(address, 0)
    wrong = auth.ApiKeys(b"other").derive(address, 0).secret
    headers = l2_headers(pk, key, "GET", "/data/orders", None, secret=wrong)
    with pytest.raises(auth.AuthError) as caught:
        auth.verify_l2(keys, headers, "GET", "/data/orders", "")
    assert caught.value.message == "Unauthorized/Invalid api key"


def test_l2_with_an_unknown_api_key_is_unauthorized():
    pk, address = new_wallet()
    stranger = auth.ApiKeys(b"other").derive(address, 0)
    with pytest.raises(auth.AuthError):
        auth.verify_l2(auth.ApiKeys(b"s"), l2_headers(pk, stranger, "GET", "/data/orders", None), "GET",
                       "/data/orders", "")


# ---- orders ---------------------------------------------------------------------------------------------
def test_order_id_is_the_sdk_eip712_order_hash():
    pk, _ = new_wallet()
    client = sdk_client(pk)
    order = signed(client, 0.52, 10)
    builder = ExchangeOrderBuilderV2(orders.EXCHANGE_V2, 137, client.signer)
    assert orders.order_id(payload_of(order).order) == builder.build_order_hash(builder.build_order_typed_data(order))


def test_eoa_order_signed_by_the_api_key_address_verifies():
    pk, address = new_wallet()
    payload = payload_of(signed(sdk_client(pk), 0.52, 10))
    assert orders.verify_order(payload.order, address) == orders.order_id(payload.order)


@pytest.mark.parametrize("index", [0, 31, 40, 63])
def test_signature_altered_by_one_byte_is_rejected_as_invalid_signature(index):
    pk, address = new_wallet()
    payload = payload_of(signed(sdk_client(pk), 0.52, 10))
    with pytest.raises(orders.OrderRejected) as caught:
        orders.verify_order(with_signature_byte_flipped(payload, index), address)
    assert caught.value.message == orders.INVALID_SIGNATURE


def test_order_signed_by_another_key_than_the_api_key_is_rejected_with_production_text():
    pk, _ = new_wallet()
    _, api_address = new_wallet()
    payload = payload_of(signed(sdk_client(pk), 0.52, 10))
    with pytest.raises(orders.OrderRejected) as caught:
        orders.verify_order(payload.order, api_address)
    assert caught.value.message == "the order signer address has to be the address of the API KEY"


def test_proxy_wallet_order_has_funder_as_maker_and_eoa_as_signer():
    pk, address = new_wallet()
    _, proxy = new_wallet()
    payload = payload_of(signed(sdk_client(pk, signature_type=1, funder=proxy), 0.4, 6, "SELL"))
    assert payload.order.maker == proxy and payload.order.signer == address
    assert orders.verify_order(payload.order, address).startswith("0x")


def test_deposit_wallet_order_with_the_sdk_erc7739_signature_verifies_against_the_owner_eoa():
    pk, address = new_wallet()
    _, wallet = new_wallet()
    payload = payload_of(signed(sdk_client(pk, signature_type=3, funder=wallet), 0.4, 6))
    assert payload.order.maker == payload.order.signer == wallet
    assert orders.verify_order(payload.order, address) == orders.order_id(payload.order)
    _, stranger = new_wallet()
    with pytest.raises(orders.OrderRejected):
        orders.verify_order(payload.order, stranger)


def test_unknown_field_in_the_order_is_an_invalid_payload():
    pk, _ = new_wallet()
    body = order_to_json_v2(signed(sdk_client(pk), 0.52, 10), "k", "GTC")
    body["order"]["surprise"] = 1
    with pytest.raises(orders.OrderRejected) as caught:
        orders.decode_order(json.dumps(body).encode())
    assert caught.value.message == "Invalid order payload"


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"order": 5, "owner": "k"}', b"\xff\xfe"])
def test_malformed_order_bodies_are_invalid_payloads(body):
    with pytest.raises(orders.OrderRejected) as caught:
        orders.decode_order(body)
    assert caught.value.message == "Invalid order payload"


def test_sdk_limit_order_amounts_give_back_price_and_size():
    pk, _ = new_wallet()
    buy = payload_of(signed(sdk_client(pk), 0.52, 10))
    sell = payload_of(signed(sdk_client(pk), 0.47, 7.5, "SELL"))
    assert orders.terms(buy.order, "GTC", TICK) == orders.Terms(Decimal("0.52"), Decimal("10"))
    assert orders.terms(sell.order, "GTC", TICK) == orders.Terms(Decimal("0.47"), Decimal("7.5"))


def test_price_between_ticks_comes_through_for_the_engine_to_reject():
    pk, _ = new_wallet()
    finer = payload_of(signed(sdk_client(pk), 0.525, 10, tick="0.001"))
    assert orders.terms(finer.order, "GTC", TICK).price == Decimal("0.525")


def test_inconsistent_amounts_are_rejected_with_the_expected_amount():
    pk, _ = new_wallet()
    order = payload_of(signed(sdk_client(pk), 0.22, 19.69, "SELL")).order
    tampered = orders.SignedOrder(**{**{f: getattr(order, f) for f in order.__struct_fields__},
                                     "takerAmount": str(int(order.takerAmount) + 37)})
    with pytest.raises(orders.OrderRejected) as caught:
        orders.terms(tampered, "GTC", TICK)
    assert caught.value.message == "invalid amounts, the taker amount for a $0.22 order of size 19.69 should be '4.3318'"


def test_market_buy_from_a_dollar_amount_keeps_the_limit_price():
    pk, _ = new_wallet()
    client = sdk_client(pk)
    order = client.builder.build_market_order(MarketOrderArgs(token_id=TOKEN, amount=10, side="BUY", price=0.52),
                                              CreateOrderOptions(tick_size="0.01", neg_risk=False))
    terms = orders.terms(payload_of(order, order_type="FOK").order, "FOK", TICK)
    assert terms.price == Decimal("0.52")
    assert terms.size * terms.price <= Decimal("10.0001")
