"""Polymarket's gasless relayer (relayer-v2.polymarket.com) as the sim serves it under `/relayer`.

    GET  /relayer/nonce?address=&type=SAFE|WALLET  {"nonce": "N"}
    GET  /relayer/relay-payload?address=&type=PROXY {"address": relay, "nonce": "N"}
    GET  /relayer/deployed?address=                 {"deployed": true}
    POST /relayer/submit                            builder-authenticated; {"transactionID", "transactionHash", "state"}
    GET  /relayer/transaction?id=                   [transaction]
    GET  /relayer/transactions                      builder-authenticated; this builder's transactions

Endpoints and shapes are those py-builder-relayer-client 0.0.3 uses (endpoints.py, client.py) and the
TypeScript client's RelayerTransaction type. `/submit` is authenticated with the builder API key's HMAC
headers (POLY_BUILDER_API_KEY / _PASSPHRASE / _TIMESTAMP / _SIGNATURE over timestamp + method + path +
body, py-builder-signing-sdk); the signed request inside is checked by sim/relayer_requests.py (wrong
signer, tampered field -> 400). The client signs the path without our `/relayer` prefix, as production
serves the relayer at its own host's root.

What the calls do is the chain's business (sim/chain.py: approvals, redeem and merge through the collateral
adapter; all calls of one transaction or none, like a reverting tx). Gas: a PROXY transaction may use the gas
limit its owner signed, at most the relay hub's ~650k budget; SAFE and WALLET batches --relayer-gas-cap; a batch
needing more reverts (STATE_FAILED, "out of gas"), as a too-large batch does on chain. Anything that reverts
leaves the reason in the transaction's `error`.

States: STATE_NEW at submit, executed after --relayer-execute-after-s (STATE_MINED or STATE_FAILED), then
STATE_CONFIRMED --relayer-confirm-after-s later. Faults (admin): answer the next n submits with an HTTP
status (congestion), or accept them and let them fail.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from polymm.sim import relayer_requests as rr
from polymm.sim.auth import hmac_signature, same_secret
from polymm.sim.chain import PROXY_OVERHEAD_GAS, Reverted
from polymm.sim.engine import CtfError

if TYPE_CHECKING:
    from polymm.sim.server import Sim

log = logging.getLogger("polymm.sim.relayer")

PREFIX = "/relayer"
RELAY_HUB_GAS_BUDGET = 650_000  # "the relay hub's gas budget (~650k total)" (py-builder-relayer-client gas.py)
RELAY_ADDRESS = "0x" + keccak(b"polymm-sim relay")[12:].hex()  # the relay node the sim pretends to be

UNAUTHORIZED = "invalid builder api key or signature"


@dataclass
class Tx:
    id: str
    hash: str
    builder: str
    verified: rr.Verified
    request: rr.SubmitRequest
    created_at: float
    execute_at: float
    fail: bool = False  # injected fault: revert whatever the calls are
    state: str = "STATE_NEW"
    executed_at: float | None = None
    error: str = ""
    effects: list[dict] = field(default_factory=list)

    def json(self, now: float, confirm_after_s: float) -> dict:
        state = self.state
        if state == "STATE_MINED" and self.executed_at is not None and now >= self.executed_at + confirm_after_s:
            state = "STATE_CONFIRMED"
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        out = {"transactionID": self.id, "transactionHash": self.hash, "from": self.request.from_,
               "to": self.request.to, "proxyAddress": to_checksum_address(self.verified.wallet),
               "data": self.request.data or "", "nonce": str(self.verified.nonce), "value": self.request.value or "",
               "signature": self.request.signature, "state": state, "type": self.request.type,
               "owner": self.builder, "metadata": self.request.metadata or "",
               "createdAt": stamp(self.created_at), "updatedAt": stamp(self.executed_at or self.created_at)}
        if self.error:
            out["error"] = self.error
        return out


class Relayer:
    """Transactions, nonces, approvals and faults. Owned by the sim's event loop, like the engine."""

    def __init__(self, sim: "Sim", secret: bytes, execute_after_s: float = 0.0, confirm_after_s: float = 1.0,
                 gas_cap: int = 10_000_000) -> None:
        self.sim = sim
        digest = hashlib.sha256(secret + b"builder").digest()
        # One builder API key per sim (a seed gives the same one), shown by GET /_sim/relayer.
        self.creds = {"key": str(uuid.UUID(bytes=digest[:16])),
                      "secret": base64.urlsafe_b64encode(digest).decode(),
                      "passphrase": digest[16:].hex()}
        self.execute_after_s = execute_after_s
        self.confirm_after_s = confirm_after_s
        self.nonces: dict[tuple[str, str], int] = {}  # (signer, type) -> next nonce
        self.gas_cap = gas_cap  # what a SAFE / WALLET transaction may use (--relayer-gas-cap)
        self.txs: dict[str, Tx] = {}
        self.faults: list[dict] = []  # {"status": int, "count": n} or {"fail": n}
        self.stats = {"submitted": 0, "refused": 0, "redemptions": 0, "merges": 0}

    # ---- periodic work (Sim.tick) ----------------------------------------------------------------
    def tick(self, now: float) -> None:
        for tx in self.txs.values():
            if tx.state == "STATE_NEW" and now >= tx.execute_at:
                self._execute(tx, now)

    def _execute(self, tx: Tx, now: float) -> None:
        tx.executed_at = now
        chain = self.sim.chain
        try:
            if tx.fail:
                raise Reverted("transaction reverted (injected fault)")
            plan = [chain.decode(call.to, call.data) for call in tx.verified.calls]
            self._check_gas(tx, plan)
            tx.effects = chain.run(tx.verified.wallet, plan)
        except (Reverted, CtfError) as exc:
            tx.state, tx.error = "STATE_FAILED", str(exc)
            log.info("relayer tx %s from %s failed: %s", tx.id, tx.verified.wallet, exc)
            return
        self.stats["redemptions"] += sum(1 for e in tx.effects if "redeem" in e)
        self.stats["merges"] += sum(1 for e in tx.effects if "merge" in e)
        tx.state = "STATE_MINED"
        log.info("relayer tx %s from %s mined: %s", tx.id, tx.verified.wallet, tx.effects)

    def prune(self, before: float) -> None:
        """Forget transactions that reached their outcome before `before` (bounded memory over days)."""
        for tx_id in [i for i, tx in self.txs.items() if tx.executed_at is not None and tx.executed_at < before]:
            del self.txs[tx_id]

    def _check_gas(self, tx: Tx, plan: list[tuple]) -> None:
        """A transaction whose calls need more gas than it may use reverts (out of gas), as on chain: a PROXY
        transaction is bounded by the gas limit its owner signed and by the relay hub's budget (~650k,
        py-builder-relayer-client gas.py); SAFE and WALLET batches by --relayer-gas-cap (what the relayer's
        own estimate would allow; the official clients leave the gas to it)."""
        gas = self.sim.chain.gas(plan)
        if tx.verified.kind == "PROXY":
            gas += PROXY_OVERHEAD_GAS
            budget = min(tx.verified.gas_limit or 0, RELAY_HUB_GAS_BUDGET)
        else:
            budget = self.gas_cap
        if gas > budget:
            raise Reverted(f"out of gas: the calls need {gas} gas, the transaction may use {budget}")

    # ---- HTTP ------------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PREFIX + "/nonce", self.get_nonce),
            web.get(PREFIX + "/relay-payload", self.get_relay_payload),
            web.get(PREFIX + "/deployed", self.get_deployed),
            web.post(PREFIX + "/submit", self.submit),
            web.get(PREFIX + "/transaction", self.get_transaction),
            web.get(PREFIX + "/transactions", self.get_transactions),
        ]

    def admin_routes(self) -> list[web.RouteDef]:
        return [web.get("/_sim/relayer", self.admin_state), web.post("/_sim/relayer_fault", self.admin_fault)]

    def _signer_query(self, request: web.Request, kinds: tuple[str, ...]) -> tuple[str, str] | web.Response:
        address, kind = request.query.get("address", ""), request.query.get("type", "")
        try:
            address = rr._address(address, "address")
        except rr.RelayerRejected as exc:
            return _error(400, str(exc))
        if kind not in kinds:
            return _error(400, f"type must be one of {', '.join(kinds)}")
        return address, kind

    async def get_nonce(self, request: web.Request) -> web.Response:
        got = self._signer_query(request, ("SAFE", "PROXY", "WALLET"))
        if isinstance(got, web.Response):
            return got
        return web.json_response({"nonce": str(self.nonces.get(got, 0))})

    async def get_relay_payload(self, request: web.Request) -> web.Response:
        got = self._signer_query(request, ("PROXY",))
        if isinstance(got, web.Response):
            return got
        return web.json_response({"address": to_checksum_address(RELAY_ADDRESS), "nonce": str(self.nonces.get(got, 0))})

    async def get_deployed(self, request: web.Request) -> web.Response:
        try:
            rr._address(request.query.get("address", ""), "address")
        except rr.RelayerRejected as exc:
            return _error(400, str(exc))
        return web.json_response({"deployed": True})  # every wallet counts as deployed in the sim

    def _builder(self, request: web.Request, body: str) -> str | None:
        h = request.headers
        timestamp, signature = h.get("POLY_BUILDER_TIMESTAMP", ""), h.get("POLY_BUILDER_SIGNATURE", "")
        if not same_secret(h.get("POLY_BUILDER_API_KEY", ""), self.creds["key"]) or not timestamp or not signature:
            return None
        if not same_secret(h.get("POLY_BUILDER_PASSPHRASE", ""), self.creds["passphrase"]):
            return None
        path = request.path[len(PREFIX):]
        expected = hmac_signature(self.creds["secret"], timestamp, request.method, path, body)
        return self.creds["key"] if same_secret(signature, expected) else None

    async def submit(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = raw.decode("utf-8", "surrogateescape")
        builder = self._builder(request, body)
        if builder is None:
            self.stats["refused"] += 1
            return _error(401, UNAUTHORIZED)
        fault = self._take_fault()
        if fault is not None and "status" in fault:
            return _error(fault["status"], "relayer is busy, try again later")
        try:
            req = rr.decode_submit(raw)
            verified = rr.verify(req, time.time())
            expected = self.nonces.get((verified.signer, verified.kind), 0)
            if verified.nonce != expected:
                raise rr.RelayerRejected(f"invalid nonce {verified.nonce}, expected {expected}")
        except rr.RelayerRejected as exc:
            self.stats["refused"] += 1
            log.info("relayer refused a %s request: %s", request.remote, exc)
            return _error(400, str(exc))
        self.nonces[(verified.signer, verified.kind)] = expected + 1
        now = time.time()
        tx_id = str(uuid.uuid4())
        tx = Tx(id=tx_id, hash="0x" + keccak(tx_id.encode() + raw).hex(), builder=builder, verified=verified,
                request=req, created_at=now, execute_at=now + self.execute_after_s,
                fail=fault is not None and "fail" in fault)
        self.txs[tx_id] = tx
        self.stats["submitted"] += 1
        if self.execute_after_s <= 0:
            self._execute(tx, now)
        return web.json_response({"transactionID": tx.id, "transactionHash": tx.hash, "state": "STATE_NEW"})

    async def get_transaction(self, request: web.Request) -> web.Response:
        tx = self.txs.get(request.query.get("id", ""))
        return web.json_response([tx.json(time.time(), self.confirm_after_s)] if tx else [])

    async def get_transactions(self, request: web.Request) -> web.Response:
        if self._builder(request, "") is None:
            return _error(401, UNAUTHORIZED)
        now = time.time()
        return web.json_response([tx.json(now, self.confirm_after_s) for tx in self.txs.values()])

    def _take_fault(self) -> dict | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        fault["count"] -= 1
        if fault["count"] <= 0:
            self.faults.pop(0)
        return fault

    # ---- admin -----------------------------------------------------------------------------------
    async def admin_state(self, request: web.Request) -> web.Response:
        now = time.time()
        return web.json_response({"builder_creds": self.creds, "relayer_url_path": PREFIX, "stats": dict(self.stats),
                                  "faults": list(self.faults),
                                  "transactions": [dict(tx.json(now, self.confirm_after_s), effects=tx.effects)
                                                   for tx in self.txs.values()]})

    async def admin_fault(self, request: web.Request) -> web.Response:
        """{"status": 429|500|503, "count": n}: answer the next n submits with that status (congestion);
        {"fail": true, "count": n}: accept the next n and let them revert; {"gas_cap": n}: the gas a SAFE or
        WALLET transaction may use from now on; {"clear": true}."""
        try:
            params = await request.json()
        except Exception:
            return _error(400, "body must be a JSON object")
        if not isinstance(params, dict):
            return _error(400, "body must be a JSON object")
        if params.get("clear"):
            self.faults.clear()
            return web.json_response({"faults": []})
        if "gas_cap" in params:
            cap = params["gas_cap"]
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 21_000:
                return _error(400, "gas_cap must be an integer >= 21000")
            self.gas_cap = cap
            return web.json_response({"faults": list(self.faults), "gas_cap": cap})
        count = params.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return _error(400, "count must be a positive integer")
        if params.get("fail") is True:
            self.faults.append({"fail": True, "count": count})
        elif isinstance(params.get("status"), int) and 400 <= params["status"] <= 599:
            self.faults.append({"status": params["status"], "count": count})
        else:
            return _error(400, 'give {"status": 4xx|5xx} or {"fail": true}, with an optional "count"')
        return web.json_response({"faults": list(self.faults)})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
