"""polymm-sim authentication and signed-order checks, against what the real py-clob-client-v2 produces."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize("signature_type", [1, 2], ids=["POLY_PROXY", "POLY_GNOSIS_SAFE"])
def test_proxy_and_safe_wallet_orders_have_funder_as_maker_and_eoa_as_signer(signature_type):
    pk, address = new_wallet()
    _, wallet = new_wallet()
    payload = payload_of(signed(sdk_client(pk, signature_type=signature_type, funder=wallet), 0.4, 6, "SELL"))
    assert payload.order.maker == wallet and payload.order.signer == address
    assert payload.order.signatureType == signature_type
    assert orders.verify_order(payload.order, address) == orders.order_id(payload.order)
    with pytest.raises(orders.OrderRejected):
        orders.verify_order(with_signature_byte_flipped(payload, 5), address)


def test_eoa_order_whose_maker_is_not_the_signer_is_rejected():
    # Type 0 trades from the key's own address; a validly signed order naming another maker is refused.
    pk, address = new_wallet()
    _, other = new_wallet()
    payload = payload_of(signed(sdk_client(pk, signature_type=0, funder=other), 0.4, 6))
    assert payload.order.maker == other and payload.order.signer == address
    with pytest.raises(orders.OrderRejected) as caught:
        orders.verify_order(payload.order, address)
    assert caught.value.message == orders.INVALID_SIGNATURE


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


@pytest.mark.parametrize("header", ["POLY_SIGNATURE", "POLY_PASSPHRASE", "POLY_TIMESTAMP", "POLY_ADDRESS"])
@pytest.mark.parametrize("junk", ["é", "\udcff\udcfe"], ids=["non-ascii", "undecodable-bytes"])
def test_l2_header_with_non_ascii_or_undecodable_bytes_is_unauthorized_not_a_crash(header, junk):
    # aiohttp hands header bytes over decoded with surrogateescape; "\udcff" is what a raw 0xff byte becomes.
    pk, address = new_wallet()
    keys = auth.ApiKeys(b"s")
    key = keys.derive(address, 0)
    headers = {**l2_headers(pk, key, "GET", "/data/orders", None), header: junk}
    with pytest.raises(auth.AuthError) as caught:
        auth.verify_l2(keys, headers, "GET", "/data/orders", "")
    assert caught.value.message == "Unauthorized/Invalid api key"


def test_user_channel_credentials_with_non_ascii_junk_are_refused_not_a_crash():
    _, address = new_wallet()
    keys = auth.ApiKeys(b"s")
    key = keys.derive(address, 0)
    assert keys.check_ws_auth(key.key, key.secret, key.passphrase) == key
    assert keys.check_ws_auth(key.key, "é", key.passphrase) is None
    assert keys.check_ws_auth(key.key, key.secret, "\udcff") is None


UNSIGNED = dict(salt=1, maker="0x" + "11" * 20, signer="0x" + "11" * 20, tokenId="1", signatureType=0, timestamp="1",
                metadata=orders.ZERO_BYTES32, builder=orders.ZERO_BYTES32, signature="0x" + "00" * 65)


def test_amounts_beyond_any_balance_are_refused_as_not_enough_balance():
    # A client may sign any uint256 amounts with its own key; they must not reach Decimal arithmetic.
    huge = orders.SignedOrder(**UNSIGNED, side="BUY", makerAmount="5" + "0" * 69, takerAmount="1" + "0" * 70)
    with pytest.raises(orders.OrderRejected) as caught:
        orders.terms(huge, "GTC", TICK)
    assert caught.value.message == "not enough balance / allowance"


@settings(max_examples=300, deadline=None)
@given(maker=st.integers(0, 2**256 - 1) | st.integers(0, 10**19), taker=st.integers(0, 2**256 - 1) | st.integers(0, 10**19),
       side=st.sampled_from(["BUY", "SELL"]), order_type=st.sampled_from(["GTC", "GTD", "FOK", "FAK"]),
       tick=st.sampled_from(["0.1", "0.01", "0.001", "0.0001"]))
def test_any_signed_amounts_give_terms_or_a_production_rejection_never_a_crash(maker, taker, side, order_type, tick):
    order = orders.SignedOrder(**UNSIGNED, side=side, makerAmount=str(maker), takerAmount=str(taker))
    try:
        found = orders.terms(order, order_type, Decimal(tick))
    except orders.OrderRejected as rejected:
        assert rejected.message
        return
    assert found.size > 0 and found.price >= 0


# ---- order versions -----------------------------------------------------------------------------------------
def signed_v(client: ClobClient, version: int):
    return client.builder.build_order(OrderArgs(token_id=TOKEN, price=0.52, size=10, side="BUY"),
                                      CreateOrderOptions(tick_size="0.01", neg_risk=False), version=version)


@pytest.mark.parametrize("signature_type", [0, 3])
def test_the_sdks_v3_order_verifies_when_v3_is_served_and_is_a_version_mismatch_otherwise(signature_type):
    pk, address = new_wallet()
    _, wallet = new_wallet()
    client = sdk_client(pk, signature_type=signature_type, funder=wallet if signature_type == 3 else None)
    sdk_v3 = signed_v(client, 3)
    v3 = payload_of(sdk_v3).order
    builder = ExchangeOrderBuilderV2(orders.EXCHANGE_V3, 137, client.signer, domain_version="3")
    sdk_hash = builder.build_order_hash(builder.build_order_typed_data(sdk_v3))
    assert orders.verify_order(v3, address, version=3) == orders.order_id(v3, version=3) == sdk_hash
    with pytest.raises(orders.OrderRejected) as err:
        orders.verify_order(v3, address, version=2)
    assert err.value.message == orders.ORDER_VERSION_MISMATCH == "order_version_mismatch"
    v2 = payload_of(signed_v(client, 2)).order
    with pytest.raises(orders.OrderRejected, match="order_version_mismatch"):
        orders.verify_order(v2, address, version=3)
    with pytest.raises(orders.OrderRejected, match="order_version_mismatch"):
        orders.verify_order(v2, address, version=4)  # a version the sim cannot verify: every order refused


def test_a_forged_signature_is_invalid_for_every_version():
    pk, address = new_wallet()
    payload = payload_of(signed_v(sdk_client(pk), 3))
    for version in (2, 3, 4):
        with pytest.raises(orders.OrderRejected) as err:
            orders.verify_order(with_signature_byte_flipped(payload, 5), address, version=version)
        assert err.value.message == orders.INVALID_SIGNATURE
