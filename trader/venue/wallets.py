"""Which wallet a signing key trades from, per signature type: the funder (`BROWSER_ADDRESS`) the official clients
derive for that key. Pure (CREATE2 arithmetic, no I/O).

A wrong pairing of key, signature type and funder is the classic first-day failure: every order is refused (the
exchange checks the signer owns the maker wallet) and the relayer runs redemptions from another wallet. polymm
derives the expected wallet the way the official clients do and compares:

* type 0 (EOA): the key's own address.
* type 1 (POLY_PROXY): CREATE2 under the proxy factory, salt keccak(packed(owner)), the proxy init-code hash
  (py-builder-relayer-client `builder/derive.py` `derive_proxy_wallet`, `constants.PROXY_INIT_CODE_HASH`;
  Polymarket/py-sdk `_internal/wallet.py` `derive_proxy_wallet_address`).
* type 2 (GNOSIS_SAFE): CREATE2 under the Safe factory, salt keccak(abi(owner)), the Safe init-code hash
  (`derive`, `derive_safe_wallet_address`).
* type 3 (POLY_1271 deposit wallet): CREATE2 under the deposit-wallet factory of an ERC-1967 proxy whose
  immutable args are (factory, owner as bytes32): the beacon proxy of current wallets, or the UUPS proxy of
  older ones (`derive_beacon_deposit_wallet`, `derive_uups_deposit_wallet`; py-sdk `classify_wallet_type`
  accepts both). The beacon comes from py-sdk `environments.py` (the relayer client only finds it over RPC).

tests/trader/venue/test_wallets.py proves each derivation equal to py-builder-relayer-client's.
"""
from __future__ import annotations

from eth_abi import encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from polymm.trader.venue.contracts import (DEPOSIT_WALLET_BEACON, DEPOSIT_WALLET_FACTORY, DEPOSIT_WALLET_IMPLEMENTATION,
                                           PROXY_FACTORY, SAFE_FACTORY)

# Init-code hashes of the proxy wallet and the Safe (py-builder-relayer-client constants/constants.py;
# py-sdk environments.py safe_init_code_hash).
PROXY_INIT_CODE_HASH = bytes.fromhex("d21df8dc65880a8606f09fe0ce3df9b8869287ab0b058be05aa9e8af6330a00b")
SAFE_INIT_CODE_HASH = bytes.fromhex("2bce2127ff07fb632d16c8347c4ebf501f4841168bed00d9e6ef715ddb6fcecf")
# The ERC-1967 minimal proxies (Solady's LibClone) the deposit-wallet factory deploys: the bytes around the
# implementation / beacon address, as both official clients spell them.
_UUPS_PREFIX, _UUPS_MID = 0x61003D3D8160233D3973, bytes.fromhex("6009")
_UUPS_TAIL = bytes.fromhex("5155f3363d3d373d3d363d7f360894a13ba1a3210667c828492db98dca3e2076"
                           "cc3735a920a3ca505d382bbc545af43d6000803e6038573d6000fd5b3d6000f3")
_BEACON_PREFIX = 0x6100523D8160233D3973
_BEACON_TAIL = bytes.fromhex("60195155f3363d3d373d3d363d602036600436635c60da"
                             "1b60e01b36527fa3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6c"
                             "b3582b35133d50545afa5036515af43d6000803e604d573d6000fd5b3d6000f3")

WALLET_KINDS = {0: "the key's own address (EOA)", 1: "proxy wallet", 2: "Safe", 3: "deposit wallet"}


def _b(address: str) -> bytes:
    return bytes.fromhex(address[2:] if address.lower().startswith("0x") else address)


def _create2(factory: str, salt: bytes, init_code_hash: bytes) -> str:
    return to_checksum_address("0x" + keccak(b"\xff" + _b(factory) + salt + init_code_hash)[12:].hex())


def proxy_wallet(owner: str) -> str:
    return _create2(PROXY_FACTORY, keccak(_b(owner)), PROXY_INIT_CODE_HASH)


def safe_wallet(owner: str) -> str:
    return _create2(SAFE_FACTORY, keccak(encode(["address"], [to_checksum_address(owner)])), SAFE_INIT_CODE_HASH)


def _deposit_args(owner: str) -> bytes:
    return encode(["address", "bytes32"], [DEPOSIT_WALLET_FACTORY, _b(owner).rjust(32, b"\x00")])


def deposit_wallets(owner: str) -> tuple[str, str]:
    """(current beacon-proxy wallet, older UUPS wallet) of `owner`."""
    args = _deposit_args(owner)
    size = len(args) << 56
    beacon_code = (_BEACON_PREFIX + size).to_bytes(10, "big") + _b(DEPOSIT_WALLET_BEACON) + _BEACON_TAIL + args
    uups_code = (_UUPS_PREFIX + size).to_bytes(10, "big") + _b(DEPOSIT_WALLET_IMPLEMENTATION) + _UUPS_MID \
        + _UUPS_TAIL + args
    salt = keccak(args)
    return (_create2(DEPOSIT_WALLET_FACTORY, salt, keccak(beacon_code)),
            _create2(DEPOSIT_WALLET_FACTORY, salt, keccak(uups_code)))


def expected_funders(owner: str, signature_type: int) -> tuple[str, ...]:
    """The wallets a key of `signature_type` may trade from, the one the official clients create first."""
    if signature_type == 0:
        return (to_checksum_address(owner),)
    if signature_type == 1:
        return (proxy_wallet(owner),)
    if signature_type == 2:
        return (safe_wallet(owner),)
    if signature_type == 3:
        return deposit_wallets(owner)
    raise ValueError(f"unknown signature type {signature_type}")


def funder_problem(owner: str, signature_type: int, funder: str | None) -> str | None:
    """Words for a funder that is not the key's wallet for this signature type (None when it is). Names the
    expected wallet and the variables, never the key."""
    if signature_type == 0:
        if funder is None or funder.lower() == owner.lower():
            return None
        return (f"BROWSER_ADDRESS {funder} is not the key's own address {to_checksum_address(owner)}, but "
                f"SIGNATURE_TYPE=0 (EOA) trades from it: unset BROWSER_ADDRESS, or set SIGNATURE_TYPE to the kind "
                f"of wallet {funder} is ({describe_wallet(owner, funder)})")
    wanted = expected_funders(owner, signature_type)
    if funder is not None and funder.lower() in {w.lower() for w in wanted}:
        return None
    what = WALLET_KINDS[signature_type]
    shown = funder if funder is not None else "(unset)"
    return (f"BROWSER_ADDRESS {shown} is not the {what} of this key for SIGNATURE_TYPE={signature_type} "
            f"(expected {wanted[0]}); {describe_wallet(owner, funder) if funder else 'set BROWSER_ADDRESS to it'}")


def describe_wallet(owner: str, funder: str) -> str:
    """What `funder` is to this key, for the fix in words: which signature type would match it."""
    for signature_type in (0, 1, 2, 3):
        if funder.lower() in {w.lower() for w in expected_funders(owner, signature_type)}:
            return f"it is this key's {WALLET_KINDS[signature_type]}: set SIGNATURE_TYPE={signature_type}"
    return ("it is none of this key's wallets: check PK is the key of the polymarket.com account whose address "
            "you copied, or copy the account's address again")
