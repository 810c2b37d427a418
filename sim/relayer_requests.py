"""What Polymarket's relayer checks in a submitted transaction, with no I/O (used by sim/relayer.py).

A gasless transaction is signed by the wallet's owner key (the EOA) and executed by the relayer from the
wallet that key controls. Two wallet kinds are relayed here, exactly as the official client
`py-builder-relayer-client` 0.0.3 builds them (builder/safe.py, builder/proxy.py, encode/*.py):

* SAFE (signature type 2, a Gnosis Safe): `proxyWallet` must be the CREATE2 Safe of `from` under the
  Safe factory; the signature is an eth_sign (EIP-191) of the Safe's EIP-712 `SafeTx` digest, packed
  r||s||v with v + 4 (31/32), as Safe expects for eth_sign signatures. Several calls go through the
  MultiSend contract as one DELEGATECALL.
* PROXY (signature type 1, Polymarket's proxy wallet): `proxyWallet` must be the CREATE2 proxy of `from`
  under the proxy factory; the signature is an eth_sign of keccak("rlx:" + from + to + data + fee +
  gasPrice + gasLimit + nonce + relayHub + relay), and `data` is `proxy((uint8,address,uint256,bytes)[])`.

* WALLET (signature type 3, a deposit wallet): an EIP-712 `Batch(wallet, nonce, deadline, calls)` in the
  `DepositWallet` v1 domain of the wallet, signed by `from`; the wallet must be `from`'s deposit wallet
  (CREATE2 under the deposit-wallet factory: the ERC-1967 beacon proxy, or the older UUPS one) and the
  deadline not passed (builder/deposit_wallet.py, builder/derive.py; the TypeScript client fetches the
  nonce with type WALLET).

A request that fails any check is refused with the reason in words (RelayerRejected). The calls inside
are returned decoded; what they do to balances is sim/relayer.py's business.
"""
from __future__ import annotations

from dataclasses import dataclass

import msgspec
from eth_abi import decode as abi_decode
from eth_hash.auto import keccak

from polymm.sim.auth import _address_word, _word, domain_separator, recover_address, same_address, typed_digest

CHAIN_ID = 137
# Polygon mainnet addresses as the official clients carry them (py-builder-relayer-client config.py,
# Polymarket/py-sdk src/polymarket/environments.py).
SAFE_FACTORY = "0xaacfeea03eb1561c4e67d661e40682bd20e3541b"
SAFE_MULTISEND = "0xa238cbeb142c10ef7ad8442c6d1f9e89e07e7761"
SAFE_INIT_CODE_HASH = bytes.fromhex("2bce2127ff07fb632d16c8347c4ebf501f4841168bed00d9e6ef715ddb6fcecf")
PROXY_FACTORY = "0xab45c5a4b0c941a2f231c04c3f49182e1a254052"
PROXY_INIT_CODE_HASH = bytes.fromhex("d21df8dc65880a8606f09fe0ce3df9b8869287ab0b058be05aa9e8af6330a00b")
RELAY_HUB = "0xd216153c06e857cd7f72665e0af1d7d82172f494"
DEPOSIT_WALLET_FACTORY = "0x00000000000fb5c9adea0298d729a0cb3823cc07"
DEPOSIT_WALLET_IMPLEMENTATION = "0x58ca52ebe0dadfdf531cde7062e76746de4db1eb"
DEPOSIT_WALLET_BEACON = "0x7a18edfe055488a3128f01f563e5b479d92ffc3a"  # Polymarket/py-sdk environments.py
ZERO_ADDRESS = "0x" + "00" * 20

_SAFE_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(uint256 chainId,address verifyingContract)")
_SAFE_TX_TYPEHASH = keccak(b"SafeTx(address to,uint256 value,bytes data,uint8 operation,uint256 safeTxGas,"
                           b"uint256 baseGas,uint256 gasPrice,address gasToken,address refundReceiver,uint256 nonce)")
_CALL_TYPEHASH = keccak(b"Call(address target,uint256 value,bytes data)")
_BATCH_TYPEHASH = keccak(b"Batch(address wallet,uint256 nonce,uint256 deadline,Call[] calls)"
                         b"Call(address target,uint256 value,bytes data)")
_MULTISEND_SELECTOR = keccak(b"multiSend(bytes)")[:4]
_PROXY_SELECTOR = keccak(b"proxy((uint8,address,uint256,bytes)[])")[:4]
_CALL, _DELEGATECALL = 0, 1


class RelayerRejected(Exception):
    """The relayer refuses the request (HTTP 400 with this text)."""


@dataclass(frozen=True)
class Call:
    to: str  # lower-case 0x address
    data: bytes
    value: int = 0


@dataclass(frozen=True)
class Verified:
    kind: str  # "SAFE" | "PROXY" | "WALLET"
    signer: str  # the owner EOA, lower-case
    wallet: str  # the Safe / proxy the calls run from, lower-case
    nonce: int
    calls: tuple[Call, ...]
    gas_limit: int | None = None  # PROXY: the gas limit the owner signed (the relayer may not spend more)


class SignatureParams(msgspec.Struct, rename="camel"):
    gas_price: str | None = None
    operation: str | None = None
    safe_txn_gas: str | None = None
    base_gas: str | None = None
    gas_token: str | None = None
    refund_receiver: str | None = None
    relayer_fee: str | None = None
    gas_limit: str | None = None
    relay_hub: str | None = None
    relay: str | None = None


class WalletCall(msgspec.Struct):
    target: str
    value: str
    data: str


class DepositWalletParams(msgspec.Struct):
    depositWallet: str
    deadline: str
    calls: list[WalletCall]


class SubmitRequest(msgspec.Struct):
    """The body of POST /submit as py-builder-relayer-client writes it (TransactionRequest.to_dict(), or
    DepositWalletBatchRequest.to_dict() for WALLET)."""
    type: str
    from_: str = msgspec.field(name="from")
    to: str
    signature: str
    data: str | None = None
    proxyWallet: str | None = None
    nonce: str | None = None
    value: str | None = None
    signatureParams: SignatureParams | None = None
    metadata: str | None = None
    depositWalletParams: DepositWalletParams | None = None


def decode_submit(body: bytes) -> SubmitRequest:
    try:
        return msgspec.json.decode(body, type=SubmitRequest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RelayerRejected(f"invalid request body: {exc}") from None


# ---- wallet addresses -----------------------------------------------------------------------------
def _create2(factory: str, salt: bytes, init_code_hash: bytes) -> str:
    return "0x" + keccak(b"\xff" + _hex(factory) + salt + init_code_hash)[12:].hex()


def safe_of(owner: str) -> str:
    """The Safe a Polymarket owner key controls (lower-case)."""
    return _create2(SAFE_FACTORY, keccak(_address_word(owner)), SAFE_INIT_CODE_HASH)


def proxy_of(owner: str) -> str:
    """The Polymarket proxy wallet an owner key controls (lower-case)."""
    return _create2(PROXY_FACTORY, keccak(_hex(owner)), PROXY_INIT_CODE_HASH)


# ERC-1967 proxies as the deposit-wallet factory deploys them (Solady LibClone layouts): creation code =
# a 10-byte head carrying the length of the immutable args, the implementation or beacon, fixed runtime
# code, then the args (factory, wallet id = the owner's address as bytes32).
_UUPS_HEAD, _BEACON_HEAD = 0x61003D3D8160233D3973, 0x6100523D8160233D3973
_UUPS_CODE = bytes.fromhex("6009" "5155f3363d3d373d3d363d7f360894a13ba1a3210667c828492db98dca3e2076"
                           "cc3735a920a3ca505d382bbc545af43d6000803e6038573d6000fd5b3d6000f3")
_BEACON_CODE = bytes.fromhex("60195155f3363d3d373d3d363d602036600436635c60da"
                             "1b60e01b36527fa3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6c"
                             "b3582b35133d50545afa5036515af43d6000803e604d573d6000fd5b3d6000f3")


def beacon_deposit_wallet_of(owner: str) -> str:
    """The current (beacon proxy) deposit wallet of an owner key (lower-case)."""
    args = _address_word(DEPOSIT_WALLET_FACTORY) + _address_word(owner)
    init = (_BEACON_HEAD + (len(args) << 56)).to_bytes(10, "big") + _hex(DEPOSIT_WALLET_BEACON) + _BEACON_CODE + args
    return _create2(DEPOSIT_WALLET_FACTORY, keccak(args), keccak(init))


def deposit_wallets_of(owner: str) -> set[str]:
    """The deposit wallet an owner key controls: the beacon proxy (current) or the UUPS proxy (older)."""
    args = _address_word(DEPOSIT_WALLET_FACTORY) + _address_word(owner)
    salt = keccak(args)
    out = set()
    for head, target, code in ((_UUPS_HEAD, DEPOSIT_WALLET_IMPLEMENTATION, _UUPS_CODE),
                               (_BEACON_HEAD, DEPOSIT_WALLET_BEACON, _BEACON_CODE)):
        init = (head + (len(args) << 56)).to_bytes(10, "big") + _hex(target) + code + args
        out.add(_create2(DEPOSIT_WALLET_FACTORY, salt, keccak(init)))
    return out


# ---- verification ---------------------------------------------------------------------------------
def verify(req: SubmitRequest, now: float) -> Verified:
    if req.type == "SAFE":
        return _verify_safe(req)
    if req.type == "PROXY":
        return _verify_proxy(req)
    if req.type == "WALLET":
        return _verify_wallet(req, now)
    raise RelayerRejected(f"unsupported transaction type {req.type!r} (this relayer runs SAFE, PROXY and WALLET)")


def _verify_safe(req: SubmitRequest) -> Verified:
    params = req.signatureParams or SignatureParams()
    nonce = _uint(req.nonce, "nonce")
    to = _address(req.to, "to")
    wallet = safe_of(_address(req.from_, "from"))
    if req.proxyWallet is None or not same_address(req.proxyWallet, wallet):
        raise RelayerRejected(f"proxyWallet {req.proxyWallet} is not the Safe of {req.from_}")
    operation = _uint(params.operation, "signatureParams.operation")
    gas = [_uint(x, "signatureParams gas field") for x in (params.safe_txn_gas, params.base_gas, params.gas_price)]
    if any(gas) or not all(same_address(a or "", ZERO_ADDRESS) for a in (params.gas_token, params.refund_receiver)):
        raise RelayerRejected("gasless Safe transactions carry zero gas fields and zero gas token/refund receiver")
    data = _bytes(req.data or "", "data")
    value = _uint(req.value or "0", "value")
    struct_hash = keccak(_SAFE_TX_TYPEHASH + _address_word(to) + _word(value) + keccak(data) + _word(operation)
                         + _word(0) + _word(0) + _word(0) + _address_word(ZERO_ADDRESS)
                         + _address_word(ZERO_ADDRESS) + _word(nonce))
    domain = keccak(_SAFE_DOMAIN_TYPEHASH + _word(CHAIN_ID) + _address_word(wallet))
    digest = typed_digest(domain, struct_hash)
    signature = _bytes(req.signature, "signature")
    if len(signature) != 65 or signature[64] not in (31, 32):
        raise RelayerRejected("invalid Safe signature: expected r||s||v with v 31/32 (eth_sign)")
    signer = recover_address(_eth_sign_hash(digest), "0x" + (signature[:64] + bytes([signature[64] - 4])).hex())
    if signer is None or not same_address(signer, req.from_):
        raise RelayerRejected("invalid signature: not signed by the Safe's owner")
    if operation == _CALL:
        calls = (Call(to, data, value),)
    elif operation == _DELEGATECALL and same_address(to, SAFE_MULTISEND):
        calls = _multisend_calls(data)
    else:
        raise RelayerRejected("a DELEGATECALL is only relayed to the MultiSend contract")
    return Verified("SAFE", signer, wallet, nonce, calls)


def _verify_proxy(req: SubmitRequest) -> Verified:
    params = req.signatureParams or SignatureParams()
    owner = _address(req.from_, "from")
    wallet = proxy_of(owner)
    if req.proxyWallet is None or not same_address(req.proxyWallet, wallet):
        raise RelayerRejected(f"proxyWallet {req.proxyWallet} is not the proxy wallet of {req.from_}")
    if not same_address(_address(req.to, "to"), PROXY_FACTORY):
        raise RelayerRejected("PROXY transactions go to the proxy factory")
    if not same_address(params.relay_hub or "", RELAY_HUB):
        raise RelayerRejected("signatureParams.relayHub is not the relay hub")
    nonce = _uint(req.nonce, "nonce")
    data = _bytes(req.data or "", "data")
    message = (b"rlx:" + _hex(owner) + _hex(req.to) + data
               + _word(_uint(params.relayer_fee, "signatureParams.relayerFee"))
               + _word(_uint(params.gas_price, "signatureParams.gasPrice"))
               + _word(_uint(params.gas_limit, "signatureParams.gasLimit"))
               + _word(nonce) + _hex(params.relay_hub or "") + _hex(_address(params.relay, "signatureParams.relay")))
    signer = recover_address(_eth_sign_hash(keccak(message)), req.signature)
    if signer is None or not same_address(signer, owner):
        raise RelayerRejected("invalid signature: not signed by the proxy wallet's owner")
    return Verified("PROXY", signer, wallet, nonce, _proxy_calls(data),
                    gas_limit=_uint(params.gas_limit, "signatureParams.gasLimit"))


def _verify_wallet(req: SubmitRequest, now: float) -> Verified:
    params = req.depositWalletParams
    if params is None:
        raise RelayerRejected("WALLET transactions carry depositWalletParams")
    owner = _address(req.from_, "from")
    wallet = _address(params.depositWallet, "depositWalletParams.depositWallet")
    if wallet not in deposit_wallets_of(owner):
        raise RelayerRejected(f"depositWallet {params.depositWallet} is not the deposit wallet of {req.from_}")
    if not same_address(_address(req.to, "to"), DEPOSIT_WALLET_FACTORY):
        raise RelayerRejected("WALLET transactions go to the deposit-wallet factory")
    nonce = _uint(req.nonce, "nonce")
    deadline = _uint(params.deadline, "depositWalletParams.deadline")
    if deadline <= now:
        raise RelayerRejected("the batch's deadline has passed")
    calls = tuple(Call(_address(c.target, "call target"), _bytes(c.data, "call data"), _uint(c.value, "call value"))
                  for c in params.calls)
    if not calls:
        raise RelayerRejected("WALLET batch carries no call")
    calls_hash = keccak(b"".join(keccak(_CALL_TYPEHASH + _address_word(c.to) + _word(c.value) + keccak(c.data))
                                 for c in calls))
    struct_hash = keccak(_BATCH_TYPEHASH + _address_word(wallet) + _word(nonce) + _word(deadline) + calls_hash)
    digest = typed_digest(domain_separator("DepositWallet", "1", CHAIN_ID, wallet), struct_hash)
    signer = recover_address(digest, req.signature)
    if signer is None or not same_address(signer, owner):
        raise RelayerRejected("invalid signature: not signed by the deposit wallet's owner")
    return Verified("WALLET", signer, wallet, nonce, calls)


def _multisend_calls(data: bytes) -> tuple[Call, ...]:
    if data[:4] != _MULTISEND_SELECTOR:
        raise RelayerRejected("MultiSend data is not multiSend(bytes)")
    try:
        (packed,) = abi_decode(["bytes"], data[4:])
    except Exception:
        raise RelayerRejected("MultiSend data does not decode") from None
    calls, i = [], 0
    while i < len(packed):  # each: uint8 operation, address to, uint256 value, uint256 length, bytes data
        if i + 85 > len(packed):
            raise RelayerRejected("MultiSend data is truncated")
        operation, to = packed[i], "0x" + packed[i + 1:i + 21].hex()
        value = int.from_bytes(packed[i + 21:i + 53], "big")
        length = int.from_bytes(packed[i + 53:i + 85], "big")
        body = packed[i + 85:i + 85 + length]
        if len(body) != length:
            raise RelayerRejected("MultiSend data is truncated")
        if operation != _CALL:
            raise RelayerRejected("MultiSend entries must be plain calls")
        calls.append(Call(to, body, value))
        i += 85 + length
    if not calls:
        raise RelayerRejected("MultiSend carries no call")
    return tuple(calls)


def _proxy_calls(data: bytes) -> tuple[Call, ...]:
    if data[:4] != _PROXY_SELECTOR:
        raise RelayerRejected("PROXY data is not proxy((uint8,address,uint256,bytes)[])")
    try:
        (entries,) = abi_decode(["(uint8,address,uint256,bytes)[]"], data[4:])
    except Exception:
        raise RelayerRejected("PROXY data does not decode") from None
    calls = []
    for type_code, to, value, body in entries:
        if type_code != 1:  # CallType.Call
            raise RelayerRejected("PROXY entries must be plain calls")
        calls.append(Call(to.lower(), bytes(body), value))
    if not calls:
        raise RelayerRejected("PROXY transaction carries no call")
    return tuple(calls)


# ---- small parsers --------------------------------------------------------------------------------
def _eth_sign_hash(digest: bytes) -> bytes:
    return keccak(b"\x19Ethereum Signed Message:\n32" + digest)


def _hex(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def _address(text: str | None, what: str) -> str:
    if not isinstance(text, str) or len(text) != 42 or not text.startswith("0x"):
        raise RelayerRejected(f"{what} is not an address: {text!r}")
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        raise RelayerRejected(f"{what} is not an address: {text!r}") from None
    return text.lower()


def _uint(text: str | None, what: str) -> int:
    if text is None or not str(text).isdigit():
        raise RelayerRejected(f"{what} must be a decimal integer, got {text!r}")
    return int(text)


def _bytes(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except (ValueError, AttributeError):
        raise RelayerRejected(f"{what} is not hex") from None
