"""Fast build + sign of CLOB orders (exchange order versions 2 and 3), byte-identical to py-clob-client-v2.

Why our own: the SDK builds a generic EIP-712 typed-data dict and runs `eth_account.encode_typed_data`
for every order (type-string parsing, ABI encoding through eth_abi, several hex round trips), which
costs milliseconds of pure Python on the hot path. Here the domain separator and type hash are computed
once per exchange contract, the struct is ABI-encoded by hand (all fields are static 32-byte words),
and the digest is signed with coincurve (libsecp256k1, RFC 6979 deterministic nonces - the same backend
eth_account uses when coincurve is installed, so the signatures are the same bytes).

Amount rounding deliberately repeats the SDK's float arithmetic step by step (round_down / round_up /
decimal_places on `str(float)`): the exchange recomputes amounts and rejects a mismatch, and the
equality test (tests/trader/venue/test_signing.py) proves identity against the SDK over random inputs.

Order versions (what `GET /version` answers): 2 signs for the CTF exchange V2 contracts (standard or
neg-risk) with EIP-712 domain version "2"; 3 signs the same 11-field struct for the single Exchange V3
contract with domain version "3" (the SDK's OrderBuilder.build_order: `exchange_v3` whatever neg_risk says).
Version 1 (the pre-2026-04-28 struct with nonce/feeRateBps) is gone from production and not signed here:
UnsupportedOrderVersion says so and the trader stops placing orders rather than sending what will be refused.

Nothing here imports py_clob_client_v2 (only trader/venue/gateway.py does).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from math import ceil, floor

import coincurve
from Crypto.Hash import keccak as _keccak_mod

from polymm.trader.model import Side
from polymm.trader.venue.contracts import EXCHANGE_V2, EXCHANGE_V3, NEG_RISK_EXCHANGE_V2

CHAIN_ID_POLYGON = 137
# The exchange contracts per order version: trader/venue/contracts.py (Exchange V3 has no neg-risk twin).
DOMAIN_NAME = "Polymarket CTF Exchange"
DOMAIN_VERSION = "2"
# order version -> (EIP-712 domain version, exchange, neg-risk exchange), as the SDK's build_order picks them
ORDER_VERSIONS: dict[int, tuple[str, str, str]] = {
    2: ("2", EXCHANGE_V2, NEG_RISK_EXCHANGE_V2),
    3: ("3", EXCHANGE_V3, EXCHANGE_V3),
}
SIGNABLE_VERSIONS = tuple(ORDER_VERSIONS)


class UnsupportedOrderVersion(ValueError):
    """The exchange asks for an order version this signer cannot produce."""

    def __init__(self, version: object) -> None:
        known = " or ".join(str(v) for v in SIGNABLE_VERSIONS)
        super().__init__(f"the exchange asks for order version {version!r}; polymm signs version {known} only")
        self.version = version
BYTES32_ZERO = "0x" + "00" * 32

EOA, POLY_PROXY, POLY_GNOSIS_SAFE, POLY_1271 = 0, 1, 2, 3

ORDER_TYPE_STRING = (
    "Order(uint256 salt,address maker,address signer,uint256 tokenId,"
    "uint256 makerAmount,uint256 takerAmount,uint8 side,uint8 signatureType,"
    "uint256 timestamp,bytes32 metadata,bytes32 builder)"
)
DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
# ERC-7739 wrapper used for deposit wallets (signature type 3), as the SDK builds it.
TYPED_DATA_SIGN_STRING = (
    "TypedDataSign(Order contents,string name,string version,uint256 chainId,"
    "address verifyingContract,bytes32 salt)" + ORDER_TYPE_STRING
)


def keccak256(data: bytes) -> bytes:
    return _keccak_mod.new(digest_bits=256, data=data).digest()


ORDER_TYPE_HASH = keccak256(ORDER_TYPE_STRING.encode())
DOMAIN_TYPE_HASH = keccak256(DOMAIN_TYPE_STRING.encode())
TYPED_DATA_SIGN_TYPE_HASH = keccak256(TYPED_DATA_SIGN_STRING.encode())
_DEPOSIT_WALLET_NAME_HASH = keccak256(b"DepositWallet")
_DEPOSIT_WALLET_VERSION_HASH = keccak256(b"1")
_ORDER_TYPE_TAIL = ORDER_TYPE_STRING.encode().hex() + len(ORDER_TYPE_STRING).to_bytes(2, "big").hex()


@dataclass(frozen=True)
class RoundConfig:
    price: int
    size: int
    amount: int


# Decimal places per tick size, as the SDK (and the exchange's amount check) use them.
ROUNDING = {
    "0.1": RoundConfig(1, 2, 3),
    "0.01": RoundConfig(2, 2, 4),
    "0.005": RoundConfig(3, 2, 5),
    "0.0025": RoundConfig(4, 2, 6),
    "0.001": RoundConfig(3, 2, 5),
    "0.0001": RoundConfig(4, 2, 6),
}


def tick_key(tick: float | str) -> str:
    """0.01 -> "0.01" (the SDK's TickSize literal); refuses ticks the exchange does not have."""
    key = tick if isinstance(tick, str) else format(Decimal(repr(float(tick))).normalize(), "f")
    if key not in ROUNDING:
        raise ValueError(f"unsupported tick size {tick!r}; the exchange uses {', '.join(ROUNDING)}")
    return key


# ---- amounts: the SDK's float arithmetic, step for step ------------------------------------------
def _round_down(x: float, digits: int) -> float:
    return floor(x * (10**digits)) / (10**digits)


def _round_normal(x: float, digits: int) -> float:
    return round(x * (10**digits)) / (10**digits)


def _round_up(x: float, digits: int) -> float:
    return ceil(x * (10**digits)) / (10**digits)


def _decimal_places(x: float) -> int:
    return abs(Decimal(x.__str__()).as_tuple().exponent)


def _to_token_decimals(x: float) -> int:
    f = (10**6) * x
    if _decimal_places(f) > 0:
        f = _round_normal(f, 0)
    return int(f)


def order_amounts(side: Side, size: float, price: float, rc: RoundConfig) -> tuple[int, int]:
    """(maker_amount, taker_amount) in 6-decimal base units for a limit order.

    BUY: maker gives pUSD (price*size), takes shares; SELL: maker gives shares, takes pUSD.
    """
    # The SDK rounds the price twice (client.create_order, then the builder); idempotent, kept as is.
    raw_price = _round_normal(_round_normal(price, rc.price), rc.price)
    shares = _round_down(size, rc.size)
    notional = shares * raw_price
    if _decimal_places(notional) > rc.amount:
        notional = _round_up(notional, rc.amount + 4)
        if _decimal_places(notional) > rc.amount:
            notional = _round_down(notional, rc.amount)
    if side is Side.BUY or side == "BUY":
        return _to_token_decimals(notional), _to_token_decimals(shares)
    return _to_token_decimals(shares), _to_token_decimals(notional)


def price_valid(price: float, tick: str) -> bool:
    t = float(tick)
    return t <= price <= 1 - t


# ---- the signed order ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedOrder:
    """An order as the SDK's SignedOrderV2 holds it (strings where the SDK has strings; V3 orders have the
    same fields), plus its hash and the order version it was signed for.

    `order_hash` is the EIP-712 digest: the exchange's order id (`orderID`), known before sending.
    """

    salt: str
    maker: str
    signer: str
    tokenId: str
    makerAmount: str
    takerAmount: str
    side: int  # 0 BUY, 1 SELL
    signatureType: int
    timestamp: str  # unix ms
    metadata: str
    builder: str
    expiration: str
    signature: str
    order_hash: str
    version: int = 2  # exchange order version signed for (not sent: the domain is in the signature)

    def to_json(self, owner: str, order_type: str, post_only: bool = False, defer_exec: bool = False) -> dict:
        """The POST /order body, key for key and type for type as the SDK's order_to_json_v2."""
        return {
            "order": {
                "salt": int(self.salt),
                "maker": self.maker,
                "signer": self.signer,
                "tokenId": self.tokenId,
                "makerAmount": self.makerAmount,
                "takerAmount": self.takerAmount,
                "side": "BUY" if self.side == 0 else "SELL",
                "expiration": self.expiration,
                "signatureType": int(self.signatureType),
                "timestamp": self.timestamp,
                "metadata": self.metadata,
                "builder": self.builder,
                "signature": self.signature,
            },
            "owner": owner,
            "orderType": order_type,
            "deferExec": defer_exec,
            "postOnly": post_only,
        }


def _word_int(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)


def _word_bytes32(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str.replace("0x", "").zfill(64))


def domain_separator(contract: str, chain_id: int = CHAIN_ID_POLYGON, version: str = DOMAIN_VERSION) -> bytes:
    return keccak256(
        DOMAIN_TYPE_HASH
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(version.encode())
        + _word_int(chain_id)
        + _word_address(contract)
    )


def default_salt() -> int:
    """Same distribution as the SDK's generate_order_salt: random below the current unix ms."""
    return int(random.random() * (time.time_ns() // 1_000_000))


class OrderSigner:
    """Builds and signs V2/V3 limit orders for one key/funder. Thread-safe (no mutable state)."""

    def __init__(
        self,
        private_key: str,
        *,
        signature_type: int = EOA,
        funder: str | None = None,
        chain_id: int = CHAIN_ID_POLYGON,
    ) -> None:
        if signature_type not in (EOA, POLY_PROXY, POLY_GNOSIS_SAFE, POLY_1271):
            raise ValueError(f"signature type must be 0, 1, 2 or 3, got {signature_type!r}")
        key_hex = private_key[2:] if private_key.startswith(("0x", "0X")) else private_key
        try:
            self._key = coincurve.PrivateKey(bytes.fromhex(key_hex))
        except Exception:
            # Never echo the key: say only what is wrong with its shape.
            raise ValueError("private key is not 32 bytes of hex") from None
        pub = self._key.public_key.format(compressed=False)[1:]
        self.address = _checksum(keccak256(pub)[-20:].hex())
        self.signature_type = signature_type
        self.funder = funder if funder else self.address
        # Type 3 (deposit wallet): the wallet is both maker and signer; otherwise the EOA signs.
        self.order_signer = self.funder if signature_type == POLY_1271 else self.address
        self.chain_id = chain_id
        # (order version, neg_risk) -> domain separator, computed once
        self._separators = {
            (version, neg): domain_separator(neg_ex if neg else ex, chain_id, domain_version)
            for version, (domain_version, ex, neg_ex) in ORDER_VERSIONS.items() for neg in (False, True)
        }
        self._maker_word = _word_address(self.funder)
        self._signer_word = _word_address(self.order_signer)

    def build(
        self,
        token_id: str,
        side: Side,
        price: float,
        size: float,
        tick: float | str,
        *,
        neg_risk: bool = False,
        expiration: int = 0,
        salt: int | None = None,
        timestamp_ms: int | None = None,
        metadata: str = BYTES32_ZERO,
        builder: str = BYTES32_ZERO,
        version: int = 2,
    ) -> SignedOrder:
        """A signed order for `size` shares at `price` (already on the tick), for exchange order `version`.
        Raises ValueError on an invalid price or tick, as the SDK does before signing, and
        UnsupportedOrderVersion (a ValueError) for a version other than 2 or 3."""
        if version not in ORDER_VERSIONS:
            raise UnsupportedOrderVersion(version)
        tk = tick_key(tick)
        if not price_valid(price, tk):
            raise ValueError(f"invalid price ({price}), min: {float(tk)} - max: {1 - float(tk)}")
        side = Side(side)
        maker_amount, taker_amount = order_amounts(side, size, price, ROUNDING[tk])
        salt = default_salt() if salt is None else salt
        ts = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        side_int = 0 if side is Side.BUY else 1
        struct_hash = keccak256(
            ORDER_TYPE_HASH
            + _word_int(salt)
            + self._maker_word
            + self._signer_word
            + _word_int(int(token_id))
            + _word_int(maker_amount)
            + _word_int(taker_amount)
            + _word_int(side_int)
            + _word_int(self.signature_type)
            + _word_int(ts)
            + _word_bytes32(metadata)
            + _word_bytes32(builder)
        )
        separator = self._separators[(version, bool(neg_risk))]
        digest = keccak256(b"\x19\x01" + separator + struct_hash)
        if self.signature_type == POLY_1271:
            signature = self._sign_7739(separator, struct_hash)
        else:
            signature = "0x" + self._sign_digest(digest).hex()
        return SignedOrder(
            salt=str(salt),
            maker=self.funder,
            signer=self.order_signer,
            tokenId=token_id,
            makerAmount=str(maker_amount),
            takerAmount=str(taker_amount),
            side=side_int,
            signatureType=self.signature_type,
            timestamp=str(ts),
            metadata=metadata or BYTES32_ZERO,
            builder=builder or BYTES32_ZERO,
            expiration=str(expiration) if expiration else "0",
            signature=signature,
            order_hash="0x" + digest.hex(),
            version=version,
        )

    def _sign_digest(self, digest: bytes) -> bytes:
        """r || s || v with v = 27 + recovery id (Ethereum convention)."""
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + bytes((sig[64] + 27,))

    def _sign_7739(self, app_separator: bytes, contents_hash: bytes) -> str:
        """Deposit-wallet (ERC-1271 via ERC-7739) blob exactly as the SDK emits it:
        innerSig || appDomainSeparator || contentsHash || ORDER_TYPE_STRING || uint16 length."""
        typed_data_sign_hash = keccak256(
            TYPED_DATA_SIGN_TYPE_HASH
            + contents_hash
            + _DEPOSIT_WALLET_NAME_HASH
            + _DEPOSIT_WALLET_VERSION_HASH
            + _word_int(self.chain_id)
            + self._signer_word
            + bytes(32)
        )
        inner = self._sign_digest(keccak256(b"\x19\x01" + app_separator + typed_data_sign_hash))
        return "0x" + inner.hex() + app_separator.hex() + contents_hash.hex() + _ORDER_TYPE_TAIL


def _checksum(addr_hex: str) -> str:
    """EIP-55 mixed-case address."""
    addr = addr_hex.lower().removeprefix("0x")
    h = keccak256(addr.encode()).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(h[i], 16) >= 8 else c for i, c in enumerate(addr))


def address_of(private_key: str) -> str:
    """Checksummed address of a private key (hex)."""
    return OrderSigner(private_key).address


def exchange_safe_size(side: Side, price: float, size: float, tick: float | str, marketable: bool) -> float:
    """The largest size <= `size` (2 decimals) whose notional price*size the exchange accepts.

    The exchange checks amount precision beyond what the SDK rounds to: a marketable BUY (FOK/FAK) is
    refused unless its pUSD amount has at most 2 decimals ("the market buy orders maker amount supports
    a max accuracy of 2 decimals, taker amount a max of 4 decimals"), and other orders need the pUSD
    amount within 4 decimals - which a 0.001-tick price times a 2-decimal size can exceed
    (py-clob-client-v2 issue #99, py-clob-client #305). Signing stays byte-identical to the SDK; this
    only chooses the size handed to it.
    """
    rc = ROUNDING[tick_key(tick)]
    side = Side(side)
    max_dp = 2 if (marketable and side is Side.BUY) else 4
    modulus = 10 ** (6 - max_dp)  # pUSD base units per allowed decimal
    size_units = int(Decimal(repr(size)) * 100)  # floor to 2 decimals
    # Judge each candidate by the amounts that will really be signed (the SDK's float rounding can shave
    # a cent off a size, e.g. 574.3 -> 574.29), so what passes here is exactly what the exchange gets.
    price_dp = tick_decimals_of(tick)
    price_units = round(price * 10**price_dp)
    # price_units * units is the notional in 10^-(price_dp+2) pUSD; it must be a multiple of this:
    step = 10 ** max(0, price_dp + 2 - max_dp)
    # Valid sizes are exactly the multiples of q size units; take the largest, falling back a multiple
    # when the SDK's float rounding would sign something else for it.
    q = step // math.gcd(price_units, step) if price_units > 0 else 1
    units = size_units // q * q
    for _ in range(4):
        if units <= 0:
            break
        maker, taker = order_amounts(side, units / 100, price, rc)
        shares, pusd = (taker, maker) if side is Side.BUY else (maker, taker)
        if shares == units * 10_000 and pusd % modulus == 0:
            return units / 100
        units -= q
    return 0.0


def tick_decimals_of(tick: float | str) -> int:
    return max(0, -Decimal(tick_key(tick)).as_tuple().exponent)
