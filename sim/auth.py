"""CLOB authentication as production checks it (polymarket-protocol.md section 1.2).

L1: an EIP-712 `ClobAuth` signature over (address, timestamp, nonce, fixed message) proves control of a
wallet; it is what `POST /auth/api-key` and `GET /auth/derive-api-key` require.
L2: an HMAC-SHA256 over `timestamp + METHOD + path + body` with the API secret, on every private call.

API keys are derived deterministically from (sim secret, address, nonce), so `derive-api-key` after
`api-key` (or after a sim restart with the same seed) returns the same credentials, as production's
derive does for an existing key.

Signature recovery is done with coincurve directly on the EIP-712 digest: eth_account's generic typed-data
path costs milliseconds per call, which would cap the orders/s the sim accepts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from coincurve import PublicKey
from eth_hash.auto import keccak

CHAIN_ID = 137
CLOB_AUTH_MESSAGE = "This message attests that I control the given wallet"

# Production's answers (docs error-codes; polymarket-protocol.md section 6).
UNAUTHORIZED = "Unauthorized/Invalid api key"
INVALID_L1 = "Invalid L1 Request headers"


class AuthError(Exception):
    """A request failed authentication; `message` is production's error text (HTTP 401)."""

    def __init__(self, message: str = UNAUTHORIZED) -> None:
        super().__init__(message)
        self.message = message


# ---- EIP-712 primitives ---------------------------------------------------------------------------
def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
    if len(raw) != 20:
        raise ValueError(f"not a 20-byte address: {address!r}")
    return raw.rjust(32, b"\0")


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str | None = None) -> bytes:
    if verifying_contract is None:
        type_hash = keccak(b"EIP712Domain(string name,string version,uint256 chainId)")
        return keccak(type_hash + keccak(name.encode()) + keccak(version.encode()) + _word(chain_id))
    type_hash = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(type_hash + keccak(name.encode()) + keccak(version.encode()) + _word(chain_id)
                  + _address_word(verifying_contract))


def typed_digest(domain_sep: bytes, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain_sep + struct_hash)


def recover_address(digest: bytes, signature: str) -> str | None:
    """The checksum-less lower-case 0x address that produced a 65-byte r||s||v signature, or None."""
    try:
        raw = bytes.fromhex(signature[2:] if signature.startswith("0x") else signature)
    except ValueError:
        return None
    if len(raw) != 65:
        return None
    v = raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        return None
    try:
        public = PublicKey.from_signature_and_message(raw[:64] + bytes([v]), digest, hasher=None)
    except Exception:  # coincurve raises ValueError or its own errors on an invalid point
        return None
    return "0x" + keccak(public.format(compressed=False)[1:])[-20:].hex()


def same_address(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _wire_bytes(text: str) -> bytes:
    # Header values arrive decoded with surrogateescape, so a client can send any bytes; encoding them back
    # the same way never fails.
    return text.encode("utf-8", "surrogateescape")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that also works for non-ASCII junk (hmac.compare_digest refuses non-ASCII
    str and would turn a bad header into a 500)."""
    return hmac.compare_digest(_wire_bytes(given), _wire_bytes(expected))


# ---- L1: ClobAuth ---------------------------------------------------------------------------------
_CLOB_AUTH_DOMAIN = domain_separator("ClobAuthDomain", "1", CHAIN_ID)  # no verifyingContract in this domain
_CLOB_AUTH_TYPEHASH = keccak(b"ClobAuth(address address,string timestamp,uint256 nonce,string message)")


def clob_auth_digest(address: str, timestamp: str, nonce: int) -> bytes:
    struct_hash = keccak(_CLOB_AUTH_TYPEHASH + _address_word(address) + keccak(timestamp.encode())
                         + _word(nonce) + keccak(CLOB_AUTH_MESSAGE.encode()))
    return typed_digest(_CLOB_AUTH_DOMAIN, struct_hash)


def verify_l1(headers) -> tuple[str, int]:
    """(address, nonce) of a valid L1 request, else AuthError(INVALID_L1)."""
    address = headers.get("POLY_ADDRESS", "")
    signature = headers.get("POLY_SIGNATURE", "")
    timestamp = headers.get("POLY_TIMESTAMP", "")
    nonce_text = headers.get("POLY_NONCE", "0") or "0"
    if not (address and signature and timestamp):
        raise AuthError(INVALID_L1)
    try:
        nonce = int(nonce_text)
        if nonce < 0 or nonce >= 2**256:
            raise ValueError
        digest = clob_auth_digest(address, timestamp, nonce)
    except ValueError:
        raise AuthError(INVALID_L1) from None
    recovered = recover_address(digest, signature)
    if recovered is None or not same_address(recovered, address):
        raise AuthError(INVALID_L1)
    return address, nonce


# ---- API keys -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKey:
    key: str  # uuid, the order `owner`
    secret: str  # base64url of 32 bytes
    passphrase: str
    address: str  # the EOA that derived it (POLY_ADDRESS on every L2 call)

    def creds_json(self) -> dict:
        return {"apiKey": self.key, "secret": self.secret, "passphrase": self.passphrase}


class ApiKeys:
    """Registry of derived keys. The sim secret (from --seed) makes derivation repeatable."""

    def __init__(self, sim_secret: bytes) -> None:
        self._secret = sim_secret
        self._by_key: dict[str, ApiKey] = {}

    def derive(self, address: str, nonce: int) -> ApiKey:
        seed = hmac.new(self._secret, f"{address.lower()}:{nonce}".encode(), hashlib.sha256).digest()
        more = hmac.new(self._secret, seed, hashlib.sha256).digest()
        api_key = ApiKey(
            key=str(uuid.UUID(bytes=seed[:16], version=4)),
            secret=base64.urlsafe_b64encode(more).decode(),
            passphrase=seed[16:32].hex(),
            address=address,
        )
        self._by_key[api_key.key] = api_key
        return api_key

    def get(self, key: str) -> ApiKey | None:
        return self._by_key.get(key)

    def by_address(self, address: str) -> list[ApiKey]:
        return [k for k in self._by_key.values() if same_address(k.address, address)]

    def check_ws_auth(self, key: str, secret: str, passphrase: str) -> ApiKey | None:
        """User-channel auth: the subscribe message carries the full triple."""
        found = self._by_key.get(key)
        if found is None:
            return None
        if not (same_secret(secret, found.secret) and same_secret(passphrase, found.passphrase)):
            return None
        return found


# ---- L2: HMAC -------------------------------------------------------------------------------------
def hmac_signature(secret: str, timestamp: str, method: str, path: str, body: str) -> str:
    message = timestamp + method + path + body
    digest = hmac.new(base64.urlsafe_b64decode(secret), _wire_bytes(message), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def verify_l2(keys: ApiKeys, headers, method: str, path: str, body: str) -> ApiKey:
    """The ApiKey of a valid L2 request, else AuthError (401 `Unauthorized/Invalid api key`).

    `path` excludes the query string and `body` is the exact text sent, as the SDK signs them."""
    key = keys.get(headers.get("POLY_API_KEY", ""))
    if key is None:
        raise AuthError()
    timestamp = headers.get("POLY_TIMESTAMP", "")
    signature = headers.get("POLY_SIGNATURE", "")
    if not timestamp or not signature:
        raise AuthError()
    if not same_secret(headers.get("POLY_PASSPHRASE", ""), key.passphrase):
        raise AuthError()
    if not same_address(headers.get("POLY_ADDRESS", ""), key.address):
        raise AuthError()
    expected = hmac_signature(key.secret, timestamp, method, path, body)
    if not same_secret(signature, expected):
        raise AuthError()
    return key
