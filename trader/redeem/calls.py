"""Contract addresses and calldata for redeem / merge on Polymarket's CLOB V2 (pUSD). Pure.

Sources (docs/redemption.md section 1): redeem and merge go to the CtfCollateralAdapter, with pUSD as the
`collateral` argument, parent collection 0 and the binary partition [1, 2]; the adapter must be approved on
the CTF (`setApprovalForAll`). Addresses: Polymarket/py-sdk src/polymarket/environments.py (production).
"""
from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from eth_abi import encode
from eth_hash.auto import keccak

from polymm.trader.venue.contracts import CTF, CTF_COLLATERAL_ADAPTER, PUSD

UNITS = 1_000_000  # pUSD and outcome tokens have 6 decimals
_ZERO32 = b"\x00" * 32
_BINARY = [1, 2]


class Call(NamedTuple):
    to: str
    data: str  # 0x-hex calldata


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def _condition(condition_id: str) -> bytes:
    raw = bytes.fromhex(condition_id[2:] if condition_id.startswith("0x") else condition_id)
    if len(raw) != 32:
        raise ValueError(f"condition id must be 32 bytes, got {condition_id!r}")
    return raw


def approve_adapter() -> Call:
    """CTF.setApprovalForAll(adapter, true): idempotent, so every transaction may start with it."""
    return Call(CTF, "0x" + (_selector("setApprovalForAll(address,bool)")
                             + encode(["address", "bool"], [CTF_COLLATERAL_ADAPTER, True])).hex())


def redeem(condition_id: str) -> Call:
    """Burns the wallet's whole balance of both outcomes; pays 1 pUSD per winning share."""
    return Call(CTF_COLLATERAL_ADAPTER, "0x" + (
        _selector("redeemPositions(address,bytes32,bytes32,uint256[])")
        + encode(["address", "bytes32", "bytes32", "uint256[]"], [PUSD, _ZERO32, _condition(condition_id), _BINARY])
    ).hex())


def merge(condition_id: str, shares: Decimal) -> Call:
    """`shares` Up + `shares` Down become `shares` pUSD. Rounded down to the token's 6 decimals."""
    units = int(Decimal(shares) * UNITS)
    if units <= 0:
        raise ValueError(f"merge amount must be positive, got {shares}")
    return Call(CTF_COLLATERAL_ADAPTER, "0x" + (
        _selector("mergePositions(address,bytes32,bytes32,uint256[],uint256)")
        + encode(["address", "bytes32", "bytes32", "uint256[]", "uint256"],
                 [PUSD, _ZERO32, _condition(condition_id), _BINARY, units])
    ).hex())
