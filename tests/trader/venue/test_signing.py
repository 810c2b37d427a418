"""Our fast order signer must produce exactly the SDK's signed orders (and the same POST body)."""
from __future__ import annotations

import math
import random
from unittest import mock

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OrderArgsV2, PartialCreateOrderOptions
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.signer import Signer

from polymm.trader.model import Side
from polymm.trader.venue.signing import (
    EXCHANGE_V2, EXCHANGE_V3, NEG_RISK_EXCHANGE_V2, ROUNDING, OrderSigner, UnsupportedOrderVersion, order_amounts,
)

TICKS = list(ROUNDING)  # every tick the exchange has


def sdk_client(pk: str, signature_type: int, funder: str | None, token: str, tick: str) -> ClobClient:
    client = ClobClient("http://127.0.0.1:9", 137, key=pk, signature_type=signature_type, funder=funder)
    # The SDK would GET /tick-size; seed its cache so the comparison never touches the network.
    client._ClobClient__tick_sizes[token] = tick
    return client


def sdk_signed(client: ClobClient, token: str, side: str, price: float, size: float, tick: str, neg_risk: bool,
               salt: int, ts_ms: int, version: int = 2):
    """The SDK's default create_order path with the salt and timestamp pinned."""
    # salt = int(random() * now_ms) in the SDK; choose random() so that it yields exactly `salt`.
    now_ns = ts_ms * 1_000_000
    rnd = salt / ts_ms
    assert int(rnd * ts_ms) == salt
    with mock.patch("time.time_ns", return_value=now_ns), mock.patch("random.random", return_value=rnd):
        return client.create_order(
            OrderArgsV2(token_id=token, price=price, size=size, side=side),
            PartialCreateOrderOptions(tick_size=tick, neg_risk=neg_risk, version=version),
        )


def random_case(rng: random.Random):
    tick = rng.choice(TICKS)
    step = float(tick)
    n = round(1 / step)
    price = round(rng.randint(1, n - 1) * step, 6)
    size = rng.choice([rng.randint(5, 5000) / 100, rng.randint(500, 10**6) / 10**rng.randint(0, 4), float(rng.randint(5, 200))])
    side = rng.choice(["BUY", "SELL"])
    token = str(rng.getrandbits(rng.choice([64, 160, 255])))
    ts_ms = rng.randint(1_700_000_000_000, 1_900_000_000_000)
    salt = rng.randint(0, ts_ms - 1)
    while int((salt / ts_ms) * ts_ms) != salt:  # keep salts the SDK's formula can produce
        salt = rng.randint(0, ts_ms - 1)
    return tick, price, size, side, token, ts_ms, salt, rng.random() < 0.3


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("signature_type", [0, 1, 2, 3])
def test_fast_signer_is_byte_identical_to_sdk_over_random_orders(signature_type, version):
    rng = random.Random(1000 + signature_type + 10 * version)
    pk = "0x" + rng.randbytes(32).hex()
    funder = None if signature_type == 0 else Account.create().address
    ours = OrderSigner(pk, signature_type=signature_type, funder=funder)
    for _ in range(150):
        tick, price, size, side, token, ts_ms, salt, neg_risk = random_case(rng)
        client = sdk_client(pk, signature_type, funder, token, tick)
        theirs = sdk_signed(client, token, side, price, size, tick, neg_risk, salt, ts_ms, version)
        mine = ours.build(token, Side(side), price, size, float(tick), neg_risk=neg_risk, salt=salt, timestamp_ms=ts_ms,
                          version=version)
        case = (tick, price, size, side, neg_risk, version)
        assert mine.version == version
        assert mine.signature == theirs.signature, case
        for name in ("salt", "maker", "signer", "tokenId", "makerAmount", "takerAmount", "timestamp",
                     "metadata", "builder", "expiration"):
            assert getattr(mine, name) == getattr(theirs, name), (name, case)
        assert mine.side == int(theirs.side) and mine.signatureType == int(theirs.signatureType)
        for order_type, post_only in (("GTC", True), ("FAK", False)):
            assert mine.to_json("key-1", order_type, post_only, True) == order_to_json_v2(
                theirs, "key-1", order_type, post_only, True)


@pytest.mark.parametrize("version,neg_risk,contract", [
    (2, False, EXCHANGE_V2), (2, True, NEG_RISK_EXCHANGE_V2),
    # V3 has one exchange: the SDK signs for it whatever neg_risk says
    (3, False, EXCHANGE_V3), (3, True, EXCHANGE_V3),
])
def test_order_hash_is_the_sdk_eip712_digest_and_recovers_to_signer(version, neg_risk, contract):
    rng = random.Random(7)
    pk = "0x" + rng.randbytes(32).hex()
    ours = OrderSigner(pk)
    mine = ours.build("123456789", Side.BUY, 0.52, 10, 0.01, neg_risk=neg_risk, salt=15244991435,
                      timestamp_ms=1795466684137, version=version)
    sdk_builder = ExchangeOrderBuilderV2(contract, 137, Signer(pk, 137), domain_version=str(version))
    from py_clob_client_v2.order_utils.model.order_data_v2 import OrderV2
    typed = sdk_builder.build_order_typed_data(OrderV2(
        salt=mine.salt, maker=mine.maker, signer=mine.signer, tokenId=mine.tokenId, makerAmount=mine.makerAmount,
        takerAmount=mine.takerAmount, side=mine.side, signatureType=mine.signatureType, timestamp=mine.timestamp,
        metadata=mine.metadata, builder=mine.builder))
    assert sdk_builder.build_order_hash(typed) == mine.order_hash
    recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=mine.signature)
    assert recovered == ours.address == Account.from_key(pk).address


def test_v3_contract_is_the_sdks():
    from py_clob_client_v2.config import get_contract_config
    assert EXCHANGE_V3 == get_contract_config(137).exchange_v3


def test_versions_sign_different_digests_and_unknown_versions_are_refused():
    ours = OrderSigner("0x" + "22" * 32)
    args = ("1", Side.BUY, 0.5, 5, 0.01)
    v2 = ours.build(*args, salt=1, timestamp_ms=1)
    v3 = ours.build(*args, salt=1, timestamp_ms=1, version=3)
    assert v2.order_hash != v3.order_hash and v2.to_json("k", "GTC") != v3.to_json("k", "GTC")
    for version in (1, 4, "3"):
        with pytest.raises(UnsupportedOrderVersion, match="polymm signs version 2 or 3 only"):
            ours.build(*args, version=version)


def test_documented_amount_examples():
    rc = ROUNDING["0.01"]
    assert order_amounts(Side.BUY, 10, 0.52, rc) == (5_200_000, 10_000_000)
    assert order_amounts(Side.SELL, 7.5, 0.47, rc) == (7_500_000, 3_525_000)


def test_invalid_price_and_unknown_tick_are_refused_before_signing():
    ours = OrderSigner("0x" + "11" * 32)
    with pytest.raises(ValueError, match="invalid price"):
        ours.build("1", Side.BUY, 0.995, 5, 0.01)
    with pytest.raises(ValueError, match="unsupported tick size"):
        ours.build("1", Side.BUY, 0.5, 5, 0.02)


def test_bad_private_key_error_does_not_echo_the_key():
    with pytest.raises(ValueError) as err:
        OrderSigner("0xnothexnothexsecret")
    assert "secret" not in str(err.value)


def test_exchange_safe_size_keeps_marketable_buy_notional_to_cents_and_others_to_4_decimals():
    from polymm.trader.venue.signing import exchange_safe_size
    assert exchange_safe_size(Side.BUY, 0.51, 6.55, 0.01, marketable=True) == 6.0  # 3.06 pUSD
    assert exchange_safe_size(Side.BUY, 0.51, 6.55, 0.01, marketable=False) == 6.55  # 3.3405: fine for a limit
    assert exchange_safe_size(Side.BUY, 0.962, 5.51, 0.001, marketable=False) == 5.5  # 5.291
    assert exchange_safe_size(Side.SELL, 0.5, 7.777, 0.01, marketable=True) == 7.77
    rng = random.Random(3)
    for _ in range(500):
        tick = rng.choice(TICKS)
        dp = {"0.1": 1, "0.01": 2, "0.005": 3, "0.0025": 4, "0.001": 3, "0.0001": 4}[tick]
        price = round(rng.randint(1, round(1 / float(tick)) - 1) * float(tick), dp)
        size = rng.randint(500, 100000) / 100
        for side, marketable, max_dp in ((Side.BUY, True, 2), (Side.BUY, False, 4), (Side.SELL, True, 4)):
            safe = exchange_safe_size(side, price, size, tick, marketable)
            assert 0 <= safe <= size
            maker, taker = order_amounts(side, safe, price, ROUNDING[tick])
            shares, pusd = (taker, maker) if side is Side.BUY else (maker, taker)
            assert pusd % 10 ** (6 - max_dp) == 0 and shares == round(safe * 1e6), (tick, price, size, safe)
            step = 10 ** max(0, dp + 2 - max_dp)
            smallest = step // math.gcd(round(price * 10**dp), step)  # size units of the smallest valid size
            assert (safe > 0) == (round(size * 100) >= smallest), (tick, price, size, side, marketable)
