"""Signed orders (exchange order versions 2 and 3): the POST /order JSON, its EIP-712 hash (= orderID),
signer recovery, and the price/size the signed amounts imply.

Versions: the sim serves one order version at a time (GET /version; switchable through the admin API). V2
orders are signed for the CTF exchange V2 contracts with domain version "2", V3 orders for the single
Exchange V3 contract with domain version "3" (py_clob_client_v2 OrderBuilder.build_order). An order whose
signature verifies for a version other than the one served is refused with production's
`order_version_mismatch` (polymarket-cli issues #69 and #73 show it as HTTP 400 {"error": ...}).

Wire format and rules: polymarket-protocol.md section 1.4. The body is decoded once, here, into msgspec
Structs; unknown fields are refused the way production refuses a malformed payload ("Invalid order
payload"), except `taker`, which the TypeScript SDK sends and the Python one does not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

import msgspec
from eth_hash.auto import keccak

from polymm.sim.auth import CHAIN_ID, _address_word, _word, domain_separator, recover_address, same_address, typed_digest

EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"
EXCHANGE_V3 = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"
ZERO_BYTES32 = "0x" + "0" * 64

# Production messages (polymarket-protocol.md section 6).
INVALID_PAYLOAD = "Invalid order payload"
OWNER_MISMATCH = "the order owner has to be the owner of the API KEY"
SIGNER_MISMATCH = "the order signer address has to be the address of the API KEY"
# The exact production text for a signature that does not verify is not documented anywhere we could read;
# "invalid signature" is the wording third-party clients report. Tests assert on this constant.
INVALID_SIGNATURE = "invalid signature"
INVALID_EXPIRATION = "invalid expiration"
ORDER_VERSION_MISMATCH = "order_version_mismatch"

ORDER_TYPE_STRING = ("Order(uint256 salt,address maker,address signer,uint256 tokenId,uint256 makerAmount,"
                     "uint256 takerAmount,uint8 side,uint8 signatureType,uint256 timestamp,bytes32 metadata,"
                     "bytes32 builder)")
_ORDER_TYPEHASH = keccak(ORDER_TYPE_STRING.encode())
_TYPED_DATA_SIGN_TYPEHASH = keccak(("TypedDataSign(Order contents,string name,string version,uint256 chainId,"
                                    "address verifyingContract,bytes32 salt)" + ORDER_TYPE_STRING).encode())
DOMAIN_STANDARD = domain_separator("Polymarket CTF Exchange", "2", CHAIN_ID, EXCHANGE_V2)
DOMAIN_NEG_RISK = domain_separator("Polymarket CTF Exchange", "2", CHAIN_ID, NEG_RISK_EXCHANGE_V2)
DOMAIN_V3 = domain_separator("Polymarket CTF Exchange", "3", CHAIN_ID, EXCHANGE_V3)
# order version -> neg_risk -> domain separator (V3 has one exchange for both)
DOMAINS = {2: {False: DOMAIN_STANDARD, True: DOMAIN_NEG_RISK}, 3: {False: DOMAIN_V3, True: DOMAIN_V3}}
VERSIONS = tuple(DOMAINS)

# Decimal places of price and of amounts per tick (the SDK's ROUNDING_CONFIG).
PRICE_DECIMALS = {"0.1": 1, "0.01": 2, "0.005": 3, "0.0025": 4, "0.001": 3, "0.0001": 4}
AMOUNT_DECIMALS = {"0.1": 3, "0.01": 4, "0.005": 5, "0.0025": 6, "0.001": 5, "0.0001": 6}

_UINT = re.compile(r"^[0-9]{1,78}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
ONE_E6 = Decimal(1_000_000)
MAX_AMOUNT_UNITS = 10**18  # a trillion pUSD or shares in 6-decimal units: more than exists
NOT_ENOUGH_BALANCE = "not enough balance / allowance"
# What decoding untrusted JSON can raise: msgspec recurses per nesting level, so a deeply nested body
# (`{"a":{"a":...}}` thousands deep) raises RecursionError rather than DecodeError.
JSON_ERRORS = (msgspec.DecodeError, RecursionError)


class OrderRejected(Exception):
    """The order fails before reaching the book; `message` is production's text."""

    def __init__(self, message: str, http_status: int = 400, *, order_id: str = "",
                 headers: dict[str, str] | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.order_id = order_id  # known once the signature is checked (batch answers carry it)
        self.headers = headers or {}
        self.extra = extra  # more JSON fields of the error body (post-only mode has some)


class SignedOrder(msgspec.Struct, forbid_unknown_fields=True):
    salt: int
    maker: str
    signer: str
    tokenId: str
    makerAmount: str
    takerAmount: str
    side: Literal["BUY", "SELL"]
    signatureType: int
    timestamp: str  # ms, signed
    metadata: str
    builder: str
    signature: str
    expiration: str = "0"  # NOT signed in V2
    taker: str | None = None  # TS SDK only; not signed in V2


class OrderPayload(msgspec.Struct, forbid_unknown_fields=True):
    order: SignedOrder
    owner: str
    orderType: Literal["GTC", "GTD", "FOK", "FAK"] = "GTC"
    deferExec: bool = False
    postOnly: bool = False


_single = msgspec.json.Decoder(OrderPayload)
_batch = msgspec.json.Decoder(list[OrderPayload])


def decode_order(body: bytes) -> OrderPayload:
    try:
        payload = _single.decode(body)
    except JSON_ERRORS:
        raise OrderRejected(INVALID_PAYLOAD) from None
    check_fields(payload.order)
    return payload


def decode_orders(body: bytes) -> list[OrderPayload]:
    try:
        payloads = _batch.decode(body)
    except JSON_ERRORS:
        raise OrderRejected(INVALID_PAYLOAD) from None
    for payload in payloads:
        check_fields(payload.order)
    return payloads


def check_fields(order: SignedOrder) -> None:
    ok = (0 <= order.salt < 2**256 and _ADDRESS.match(order.maker) and _ADDRESS.match(order.signer)
          and _UINT.match(order.tokenId) and _UINT.match(order.makerAmount) and _UINT.match(order.takerAmount)
          and order.signatureType in (0, 1, 2, 3) and _UINT.match(order.timestamp)
          and _BYTES32.match(order.metadata) and _BYTES32.match(order.builder) and _HEX.match(order.signature)
          and all(int(v) < 2**256 for v in (order.tokenId, order.makerAmount, order.takerAmount, order.timestamp)))
    if not ok:
        raise OrderRejected(INVALID_PAYLOAD)
    if not _UINT.match(order.expiration):
        raise OrderRejected(INVALID_EXPIRATION)


# ---- hashing and signatures ----------------------------------------------------------------------
def struct_hash(order: SignedOrder) -> bytes:
    return keccak(
        _ORDER_TYPEHASH + _word(order.salt) + _address_word(order.maker) + _address_word(order.signer)
        + _word(int(order.tokenId)) + _word(int(order.makerAmount)) + _word(int(order.takerAmount))
        + _word(0 if order.side == "BUY" else 1) + _word(order.signatureType) + _word(int(order.timestamp))
        + bytes.fromhex(order.metadata[2:]) + bytes.fromhex(order.builder[2:])
    )


def order_digest(order: SignedOrder, neg_risk: bool = False, version: int = 2) -> bytes:
    """The EIP-712 digest the maker signs; production uses it as the orderID."""
    return typed_digest(DOMAINS[version][neg_risk], struct_hash(order))


def order_id(order: SignedOrder, neg_risk: bool = False, version: int = 2) -> str:
    return "0x" + order_digest(order, neg_risk, version).hex()


def verify_order(order: SignedOrder, api_address: str, neg_risk: bool = False, version: int = 2,
                 check_funder: bool = False) -> str:
    """Check who signed the order, for the order `version` served; returns the orderID. Raises
    OrderRejected with production's text: `order_version_mismatch` when the signature is valid for another
    version's domain, `invalid signature` when it is valid for none.

    Types 0/1/2: `signer` must be the API key's address and must have produced `signature`. Type 0 also
    needs maker == signer. Types 1/2 (proxy, Safe): production also checks the maker is the signer's
    proxy/Safe (a CREATE2 address); the sim does with `check_funder` (polymm-sim --strict-funder), and for
    type 3 that the wallet is the EOA's deposit wallet; otherwise any funder is accepted (tests trade from
    made-up funders).
    Type 3 (POLY_1271 deposit wallet): maker == signer == the wallet, and the signature is the SDK's
    ERC-7739 wrapper whose inner signature must come from the API key's EOA. Whether production accepts a
    plain EOA signature for type 3 is not settled (polymarket-protocol.md section 7.1); the sim accepts both.
    """
    order_struct = struct_hash(order)
    if check_funder and order.signatureType in (1, 2, 3):
        from polymm.sim.relayer_requests import deposit_wallets_of, proxy_of, safe_of

        wallets = {1: lambda a: {proxy_of(a)}, 2: lambda a: {safe_of(a)}, 3: deposit_wallets_of}[order.signatureType]
        if order.maker.lower() not in wallets(api_address):
            raise OrderRejected(INVALID_SIGNATURE)
    if order.signatureType == 3:
        if not same_address(order.maker, order.signer):
            raise OrderRejected(INVALID_SIGNATURE)
    else:
        if not same_address(order.signer, api_address):
            raise OrderRejected(SIGNER_MISMATCH)
        if order.signatureType == 0 and not same_address(order.maker, order.signer):
            raise OrderRejected(INVALID_SIGNATURE)
    domain = DOMAINS[version][neg_risk] if version in DOMAINS else None  # a version newer than the sim knows
    if domain is not None and _signed_for(order, domain, order_struct, api_address):
        return "0x" + typed_digest(domain, order_struct).hex()
    if any(_signed_for(order, DOMAINS[v][neg_risk], order_struct, api_address) for v in VERSIONS if v != version):
        raise OrderRejected(ORDER_VERSION_MISMATCH)
    raise OrderRejected(INVALID_SIGNATURE)


def _signed_for(order: SignedOrder, domain: bytes, order_struct: bytes, eoa: str) -> bool:
    digest = typed_digest(domain, order_struct)
    if order.signatureType == 3:
        return _verify_poly_1271(order, domain, order_struct, digest, eoa)
    recovered = recover_address(digest, order.signature)
    return recovered is not None and same_address(recovered, order.signer)


def _verify_poly_1271(order: SignedOrder, domain: bytes, order_struct: bytes, digest: bytes, eoa: str) -> bool:
    raw = bytes.fromhex(order.signature[2:])
    if len(raw) == 65:
        recovered = recover_address(digest, order.signature)
        return recovered is not None and same_address(recovered, eoa)
    # ERC-7739 nested typed data: inner(65) | appDomainSeparator(32) | contentsHash(32) | contentsType | len(2)
    if len(raw) < 65 + 64 + 2:
        return False
    inner, app_domain, contents_hash = raw[:65], raw[65:97], raw[97:129]
    if app_domain != domain or contents_hash != order_struct:
        return False
    wallet_struct = keccak(_TYPED_DATA_SIGN_TYPEHASH + contents_hash + keccak(b"DepositWallet") + keccak(b"1")
                           + _word(CHAIN_ID) + _address_word(order.signer) + bytes(32))
    recovered = recover_address(keccak(b"\x19\x01" + app_domain + wallet_struct), "0x" + inner.hex())
    return recovered is not None and same_address(recovered, eoa)


# ---- what the amounts mean ----------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    price: Decimal  # per share, in the order's own token
    size: Decimal  # shares


def terms(order: SignedOrder, order_type: str, tick: Decimal) -> Terms:
    """Price and size from the signed amounts (the JSON carries no price).

    Limit orders (GTC/GTD) built by the SDK have amounts that are exact multiples: pUSD = shares x price.
    A ratio with a few decimals (like 0.525) is an honest price that may break the tick rule (the engine
    says so); a ratio with a long tail means the amounts disagree, which production rejects with
    `invalid amounts, the taker amount for a $0.22 order of size 19.69 should be '4.3318'`.
    Market orders (FOK/FAK) are built from a dollar amount, so shares are rounded and the ratio is the
    worst acceptable price rounded to the tick's decimals.
    """
    maker, taker = int(order.makerAmount), int(order.takerAmount)
    if maker <= 0 or taker <= 0:
        raise OrderRejected(INVALID_PAYLOAD)
    if max(maker, taker) > MAX_AMOUNT_UNITS:
        # A validly signed order can name any uint256; amounts beyond what any account could hold fail the
        # balance check in production, and here they would overflow Decimal's 28-digit arithmetic.
        raise OrderRejected(NOT_ENOUGH_BALANCE)
    shares_units, pusd_units = (taker, maker) if order.side == "BUY" else (maker, taker)
    size = Decimal(shares_units) / ONE_E6
    ratio = Decimal(pusd_units) / Decimal(shares_units)
    key = format(tick.normalize(), "f")
    places = Decimal(1).scaleb(-PRICE_DECIMALS.get(key, 4))
    if order_type in ("FOK", "FAK"):
        return Terms(price=ratio.quantize(places, rounding=ROUND_HALF_UP), size=size)
    if ratio == ratio.quantize(Decimal("0.000001")):
        return Terms(price=ratio.normalize(), size=size)
    price = ratio.quantize(places, rounding=ROUND_HALF_UP)
    amount_places = Decimal(1).scaleb(-AMOUNT_DECIMALS.get(key, 6))
    expected = (size * price).quantize(amount_places)
    which = "maker" if order.side == "BUY" else "taker"
    raise OrderRejected(f"invalid amounts, the {which} amount for a ${price.normalize()} order of size "
                        f"{size.normalize()} should be '{expected.normalize()}'")
