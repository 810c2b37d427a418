"""A minimal Polygon JSON-RPC client: what polymm reads on chain (approvals the exchange does not report, POL for
gas) and what a type-0 wallet sends itself (a signed transaction and its receipt). Blocking, httpx.

Why not web3.py: polymm needs eight calls and already has eth-account (signing, through py-clob-client-v2) and
eth-abi; web3 would add a large dependency tree for a request/response loop this small. The endpoint comes
from `redeem.rpc_url` (env POLYMM_RPC_URL overrides it). A provider's URL often carries an API key in its path, so
it is never printed whole: `where` shows its host only.
"""
from __future__ import annotations

import itertools
import time
from urllib.parse import urlsplit

import httpx
from eth_abi import decode as abi_decode, encode as abi_encode
from eth_hash.auto import keccak

_ids = itertools.count(1)


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


ALLOWANCE = _selector("allowance(address,address)")
IS_APPROVED_FOR_ALL = _selector("isApprovedForAll(address,address)")
BALANCE_OF = _selector("balanceOf(address)")


class ChainError(Exception):
    """The RPC endpoint did not answer, or answered an error (the message says which, in words)."""


class Reverted(ChainError):
    """The node says the call or transaction would revert (eth_call / eth_estimateGas)."""


def where(url: str) -> str:
    """The endpoint's host, for messages: never the path (a provider key may live there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


class ChainRpc:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.where = where(url)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)))

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, *params):
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": list(params)}
        try:
            answer = self._http.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise ChainError(f"the Polygon RPC at {self.where} did not answer {method} ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise ChainError(f"the Polygon RPC at {self.where} answered {method} with HTTP {answer.status_code}")
        try:
            data = answer.json()
        except ValueError:
            raise ChainError(f"the Polygon RPC at {self.where} answered {method} with something not JSON") from None
        if not isinstance(data, dict):
            raise ChainError(f"the Polygon RPC at {self.where} answered {method} with {str(data)[:80]!r}")
        error = data.get("error")
        if error is not None:
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            if "revert" in message.lower():
                raise Reverted(message[:300])
            raise ChainError(f"the Polygon RPC at {self.where} refused {method}: {message[:300]}")
        if "result" not in data:
            raise ChainError(f"the Polygon RPC at {self.where} answered {method} without a result")
        return data["result"]

    # ---- reads -----------------------------------------------------------------------------------------
    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def eth_call(self, to: str, data: bytes) -> bytes:
        result = self.call("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")
        return bytes.fromhex(result[2:] if isinstance(result, str) and result.startswith("0x") else str(result))

    def erc20_allowance(self, token: str, owner: str, spender: str) -> int:
        raw = self.eth_call(token, ALLOWANCE + abi_encode(["address", "address"], [owner, spender]))
        return abi_decode(["uint256"], raw)[0]

    def erc1155_approved(self, token: str, owner: str, operator: str) -> bool:
        raw = self.eth_call(token, IS_APPROVED_FOR_ALL + abi_encode(["address", "address"], [owner, operator]))
        return bool(abi_decode(["bool"], raw)[0])

    def erc20_balance(self, token: str, owner: str) -> int:
        return abi_decode(["uint256"], self.eth_call(token, BALANCE_OF + abi_encode(["address"], [owner])))[0]

    def balance_wei(self, address: str) -> int:
        return int(self.call("eth_getBalance", address, "latest"), 16)

    def nonce(self, address: str) -> int:
        return int(self.call("eth_getTransactionCount", address, "pending"), 16)

    def gas_price(self) -> int:
        return int(self.call("eth_gasPrice"), 16)

    def estimate_gas(self, sender: str, to: str, data: str) -> int:
        return int(self.call("eth_estimateGas", {"from": sender, "to": to, "data": data}), 16)

    # ---- writes ----------------------------------------------------------------------------------------
    def send_raw(self, raw: bytes) -> str:
        return str(self.call("eth_sendRawTransaction", "0x" + raw.hex()))

    def receipt(self, tx_hash: str) -> dict | None:
        found = self.call("eth_getTransactionReceipt", tx_hash)
        return found if isinstance(found, dict) else None

    def wait_receipt(self, tx_hash: str, timeout_s: float = 120.0, every_s: float = 2.0) -> dict | None:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.receipt(tx_hash)
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(every_s)
