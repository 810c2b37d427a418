"""The chain as far as polymm reads or writes it: token approvals, POL for gas, what the calls of a relayed or
plain transaction do, and a minimal Polygon JSON-RPC endpoint (`POST /rpc`).

State (owned by the sim's event loop, like the engine):
* ERC-20 allowances of pUSD by (owner, spender) and ERC-1155 approvals on the CTF and the position manager by
  (token, owner, operator). With `--approvals all` (the default) every wallet starts with every approval
  Polymarket's onboarding sets (V2 and neg-risk V2 exchanges, Exchange V3, the collateral adapter), as a
  polymarket.com account has them; `--approvals none` starts with none. `POST /_sim/chain` changes a wallet's.
* POL balances (wei) for type-0 wallets that pay their own gas: `--pol` each, `POST /_sim/chain {"pol": ...}`.

Calls (from a relayed wallet transaction, sim/relayer.py, or a plain signed transaction, eth_sendRawTransaction):
  pUSD.approve(spender, amount)                      CTF / position manager .setApprovalForAll(operator, ok)
  CtfCollateralAdapter.redeemPositions(pUSD, 0, conditionId, [1, 2])   -> Engine.redeem_positions
  CtfCollateralAdapter.mergePositions(pUSD, 0, conditionId, [1, 2], n) -> Engine.merge_positions
The adapter needs the wallet's CTF approval (docs.polymarket.com/trading/ctf/redeem); anything else reverts with
the reason, and a transaction's calls apply all or none. Gas: each call costs what CALL_GAS says (the sim's
stand-in figures, deliberately its own and not polymm's: tests/sim pin that a batch over its budget reverts).

JSON-RPC (what polymm's trader/venue/chain.py sends): eth_chainId, eth_blockNumber, eth_call (pUSD allowance /
balanceOf, isApprovedForAll, CTF balanceOf), eth_getBalance, eth_getTransactionCount, eth_gasPrice,
eth_maxPriorityFeePerGas, eth_estimateGas, eth_sendRawTransaction (EIP-1559 or legacy, chain 137, signed by the
sender; gas paid in POL; mined at once), eth_getTransactionReceipt. Errors are JSON-RPC errors with the words a
node gives (-32000 "execution reverted: ...", "nonce too low", "insufficient funds for gas * price + value").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web
from eth_abi import decode as abi_decode, encode as abi_encode
from eth_hash.auto import keccak

from polymm.sim.engine import CtfError

if TYPE_CHECKING:
    from polymm.sim.server import Sim

log = logging.getLogger("polymm.sim.chain")

CHAIN_ID = 137
# Polygon mainnet (Polymarket/py-sdk src/polymarket/environments.py, py-clob-client-v2 config.py), lower-case.
PUSD = "0xc011a7e12a19f7b1f670d46f03b03f3342e82dfb"
CTF = "0x4d97dcd97ec945f40cf65f87097ace5ea0476045"
POSITION_MANAGER = "0x006f54f7f9a22e0000cc2ab60031000000ae9fef"
EXCHANGE_V2 = "0xe111180000d2663c0091e4f400237545b87b996b"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310f59"
NEG_RISK_ADAPTER = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"
EXCHANGE_V3 = "0xe3333700ca9d93003f00f0f71f8515005f6c00aa"
CTF_COLLATERAL_ADAPTER = "0xada100db00ca00073811820692005400218fce1f"
MAX_UINT256 = 2**256 - 1
UNITS = Decimal(10) ** 6  # pUSD and outcome tokens have 6 decimals

# What onboarding approves, by group (the `--approvals` / POST /_sim/chain {"only": ...} vocabulary).
V2_ERC20 = (EXCHANGE_V2, NEG_RISK_EXCHANGE_V2, NEG_RISK_ADAPTER, CTF_COLLATERAL_ADAPTER)
V2_ERC1155 = ((CTF, EXCHANGE_V2), (CTF, NEG_RISK_EXCHANGE_V2), (CTF, NEG_RISK_ADAPTER), (CTF, CTF_COLLATERAL_ADAPTER))
V3_ERC20 = (EXCHANGE_V3,)
V3_ERC1155 = ((POSITION_MANAGER, EXCHANGE_V3),)
GROUPS = {"none": ((), ()), "v2": (V2_ERC20, V2_ERC1155), "v3": (V3_ERC20, V3_ERC1155),
          "all": (V2_ERC20 + V3_ERC20, V2_ERC1155 + V3_ERC1155)}

# The sim's gas figures (its own stand-ins, not polymm's estimates): a plain transaction costs TX_GAS plus its
# calls; a relayed proxy transaction adds PROXY_OVERHEAD_GAS inside the signed gas limit.
TX_GAS = 21_000
PROXY_OVERHEAD_GAS = 40_000
CALL_GAS = {"approve": 46_000, "erc20_approve": 46_000, "redeem": 130_000, "merge": 130_000}
GAS_PRICE_WEI = 30 * 10**9

_SEL = {name: keccak(sig.encode())[:4] for name, sig in {
    "approve": "approve(address,uint256)",
    "allowance": "allowance(address,address)",
    "balanceOf": "balanceOf(address)",
    "balanceOf1155": "balanceOf(address,uint256)",
    "setApprovalForAll": "setApprovalForAll(address,bool)",
    "isApprovedForAll": "isApprovedForAll(address,address)",
    "redeem": "redeemPositions(address,bytes32,bytes32,uint256[])",
    "merge": "mergePositions(address,bytes32,bytes32,uint256[],uint256)",
}.items()}


class Reverted(Exception):
    """A call that reverts; the message is the revert reason."""


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Receipt:
    tx_hash: str
    sender: str
    status: int
    gas_used: int
    block: int
    error: str = ""
    effects: list = field(default_factory=list)


class Chain:
    def __init__(self, sim: "Sim", approvals: str = "all", pol_wei: int = 5 * 10**18) -> None:
        self.sim = sim
        self.default_group = approvals
        self.default_pol_wei = pol_wei
        self._erc20: dict[tuple[str, str], int] = {}  # (owner, spender) -> allowance, once set explicitly
        self._erc1155: dict[tuple[str, str, str], bool] = {}  # (token, owner, operator) -> approved
        self._explicit: set[str] = set()  # owners whose approvals were set (no longer the default group)
        self._pol: dict[str, int] = {}
        self._nonces: dict[str, int] = {}
        self.receipts: dict[str, Receipt] = {}
        self.block = 50_000_000
        self.failing_conditions: set[str] = set()  # redeem/merge of these revert (fault injection)
        self.stats = {"rpc_calls": 0, "transactions": 0, "reverted": 0}

    # ---- approvals -------------------------------------------------------------------------------
    def _group_erc20(self, owner: str, spender: str) -> int:
        erc20, _ = GROUPS[self.default_group]
        return MAX_UINT256 if spender in erc20 else 0

    def allowance(self, owner: str, spender: str) -> int:
        owner, spender = owner.lower(), spender.lower()
        if (owner, spender) in self._erc20:
            return self._erc20[(owner, spender)]
        return 0 if owner in self._explicit else self._group_erc20(owner, spender)

    def approved_for_all(self, token: str, owner: str, operator: str) -> bool:
        key = (token.lower(), owner.lower(), operator.lower())
        if key in self._erc1155:
            return self._erc1155[key]
        return False if key[1] in self._explicit else key[0::2] in GROUPS[self.default_group][1]

    def _materialise(self, owner: str) -> None:
        """Before the first explicit change to a wallet, its default group becomes explicit state."""
        if owner in self._explicit:
            return
        erc20, erc1155 = GROUPS[self.default_group]
        for spender in erc20:
            self._erc20.setdefault((owner, spender), MAX_UINT256)
        for token, operator in erc1155:
            self._erc1155.setdefault((token, owner, operator), True)
        self._explicit.add(owner)

    def set_allowance(self, owner: str, spender: str, amount: int) -> None:
        owner = owner.lower()
        self._materialise(owner)
        self._erc20[(owner, spender.lower())] = amount

    def set_approval(self, token: str, owner: str, operator: str, approved: bool) -> None:
        owner = owner.lower()
        self._materialise(owner)
        self._erc1155[(token.lower(), owner, operator.lower())] = approved

    def set_group(self, owner: str, group: str) -> None:
        owner = owner.lower()
        for key in [k for k in self._erc20 if k[0] == owner]:
            del self._erc20[key]
        for key in [k for k in self._erc1155 if k[1] == owner]:
            del self._erc1155[key]
        self._explicit.add(owner)
        erc20, erc1155 = GROUPS[group]
        for spender in erc20:
            self._erc20[(owner, spender)] = MAX_UINT256
        for token, operator in erc1155:
            self._erc1155[(token, owner, operator)] = True

    def trading_refusal(self, owner: str, side: str, version: int) -> str | None:
        """Why the exchange of `version` cannot settle this order for lack of an approval (None when it can).
        BUYs spend pUSD (ERC-20 allowance to the exchange); SELLs hand over outcome tokens (the CTF's approval for
        the V2 exchange, the position manager's for Exchange V3)."""
        exchange = EXCHANGE_V3 if version == 3 else EXCHANGE_V2
        if side == "BUY":
            return None if self.allowance(owner, exchange) > 0 else f"pUSD allowance for {exchange} is 0"
        token = POSITION_MANAGER if version == 3 else CTF
        return None if self.approved_for_all(token, owner, exchange) else f"{token} not approved for {exchange}"

    # ---- POL ---------------------------------------------------------------------------------------
    def pol(self, address: str) -> int:
        return self._pol.get(address.lower(), self.default_pol_wei)

    def set_pol(self, address: str, wei: int) -> None:
        self._pol[address.lower()] = wei

    # ---- what calls do ------------------------------------------------------------------------------
    def decode(self, to: str, data: bytes) -> tuple:
        """One call -> a step; Reverted (with the reason) for anything the sim does not model."""
        to = to.lower()
        selector, args = data[:4], data[4:]
        try:
            if to == PUSD and selector == _SEL["approve"]:
                spender, amount = abi_decode(["address", "uint256"], args)
                return ("erc20_approve", spender.lower(), amount)
            if to in (CTF, POSITION_MANAGER) and selector == _SEL["setApprovalForAll"]:
                operator, approved = abi_decode(["address", "bool"], args)
                return ("approve", to, operator.lower(), approved)
            if to == CTF_COLLATERAL_ADAPTER and selector == _SEL["redeem"]:
                collateral, parent, condition, index_sets = abi_decode(
                    ["address", "bytes32", "bytes32", "uint256[]"], args)
                _check_partition(collateral, parent, index_sets)
                return ("redeem", "0x" + condition.hex())
            if to == CTF_COLLATERAL_ADAPTER and selector == _SEL["merge"]:
                collateral, parent, condition, partition, amount = abi_decode(
                    ["address", "bytes32", "bytes32", "uint256[]", "uint256"], args)
                _check_partition(collateral, parent, partition)
                if amount <= 0:
                    raise Reverted("merge amount must be positive")
                return ("merge", "0x" + condition.hex(), Decimal(amount) / UNITS)
        except Reverted:
            raise
        except Exception:
            raise Reverted(f"call to {to} does not decode") from None
        raise Reverted(f"call to {to} (selector 0x{selector.hex()}) is not supported by the sim")

    @staticmethod
    def gas(steps: list[tuple]) -> int:
        return sum(CALL_GAS[step[0]] for step in steps)

    def check(self, owner: str, steps: list[tuple]) -> None:
        """Revert the whole transaction before touching state if any step would revert."""
        owner = owner.lower()
        adapter_ok = self.approved_for_all(CTF, owner, CTF_COLLATERAL_ADAPTER)
        merging: dict[str, Decimal] = {}
        engine = self.sim.engine
        holder = _checksum(owner)
        for step in steps:
            if step[0] == "approve":
                if step[1] == CTF and step[2] == CTF_COLLATERAL_ADAPTER:
                    adapter_ok = step[3]
                continue
            if step[0] == "erc20_approve":
                continue
            if not adapter_ok:
                raise Reverted("ERC1155: caller is not owner nor approved (approve the collateral adapter first)")
            if step[1] in self.failing_conditions:
                raise Reverted(f"the adapter reverted for condition {step[1]} (injected fault)")
            spec = engine.condition(step[1])
            if spec is None:
                raise Reverted(f"condition {step[1]} is not prepared")
            if step[0] == "redeem" and spec.winning_token is None:
                raise Reverted("result for condition not received yet")
            if step[0] == "merge":
                merging[step[1]] = merging.get(step[1], Decimal(0)) + step[2]
                for token in (spec.up_token, spec.down_token):
                    if engine.free_position(holder, token) < merging[step[1]]:
                        raise Reverted("ERC1155: burn amount exceeds balance")

    def apply(self, owner: str, step: tuple) -> dict:
        holder = _checksum(owner)
        if step[0] == "approve":
            self.set_approval(step[1], owner, step[2], step[3])
            return {"approve": step[2], "token": step[1], "approved": step[3]}
        if step[0] == "erc20_approve":
            self.set_allowance(owner, step[1], step[2])
            return {"erc20_approve": step[1], "amount": str(step[2])}
        if step[0] == "redeem":
            payout = self.sim.engine.redeem_positions(holder, step[1])
            return {"redeem": step[1], "payout": str(payout)}
        self.sim.engine.merge_positions(holder, step[1], step[2])
        return {"merge": step[1], "amount": str(step[2])}

    def run(self, owner: str, steps: list[tuple]) -> list[dict]:
        """All steps or none: Reverted / CtfError before anything changed."""
        self.check(owner, steps)
        return [self.apply(owner, step) for step in steps]

    # ---- JSON-RPC ------------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.post("/rpc", self.rpc)]

    def admin_routes(self) -> list[web.RouteDef]:
        return [web.get("/_sim/chain", self.admin_state), web.post("/_sim/chain", self.admin_set)]

    async def rpc(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        if isinstance(body, list):
            return web.json_response([self._one(item) for item in body])
        return web.json_response(self._one(body))

    def _one(self, item: Any) -> dict:
        if not isinstance(item, dict) or not isinstance(item.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        self.stats["rpc_calls"] += 1
        rid, params = item.get("id"), item.get("params") or []
        try:
            handler = getattr(self, "_rpc_" + item["method"], None)
            if handler is None:
                raise RpcError(-32601, f"the method {item['method']} does not exist/is not available")
            return {"jsonrpc": "2.0", "id": rid, "result": handler(*params)}
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": exc.code, "message": exc.message}}
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"invalid params: {exc}"}}

    def _rpc_eth_chainId(self) -> str:
        return hex(CHAIN_ID)

    def _rpc_eth_blockNumber(self) -> str:
        return hex(self.block)

    def _rpc_eth_gasPrice(self) -> str:
        return hex(GAS_PRICE_WEI)

    def _rpc_eth_maxPriorityFeePerGas(self) -> str:
        return hex(GAS_PRICE_WEI // 2)

    def _rpc_eth_getBalance(self, address: str, _tag: str = "latest") -> str:
        return hex(self.pol(address))

    def _rpc_eth_getTransactionCount(self, address: str, _tag: str = "latest") -> str:
        return hex(self._nonces.get(address.lower(), 0))

    def _rpc_eth_call(self, tx: dict, _tag: str = "latest") -> str:
        to, data = tx["to"].lower(), _hex(tx.get("data") or tx.get("input") or "0x")
        selector, args = data[:4], data[4:]
        if to == PUSD and selector == _SEL["allowance"]:
            owner, spender = abi_decode(["address", "address"], args)
            return "0x" + abi_encode(["uint256"], [self.allowance(owner, spender)]).hex()
        if to == PUSD and selector == _SEL["balanceOf"]:
            (owner,) = abi_decode(["address"], args)
            units = int(self.sim.engine.balance(_checksum(owner)) * UNITS)
            return "0x" + abi_encode(["uint256"], [units]).hex()
        if to in (CTF, POSITION_MANAGER) and selector == _SEL["isApprovedForAll"]:
            owner, operator = abi_decode(["address", "address"], args)
            return "0x" + abi_encode(["bool"], [self.approved_for_all(to, owner, operator)]).hex()
        if to == CTF and selector == _SEL["balanceOf1155"]:
            owner, token_id = abi_decode(["address", "uint256"], args)
            units = int(self.sim.engine.position(_checksum(owner), str(token_id)) * UNITS)
            return "0x" + abi_encode(["uint256"], [units]).hex()
        raise RpcError(-32000, "execution reverted")

    def _rpc_eth_estimateGas(self, tx: dict, _tag: str = "latest") -> str:
        sender = tx.get("from") or "0x" + "00" * 20
        try:
            steps = [self.decode(tx["to"], _hex(tx.get("data") or tx.get("input") or "0x"))]
            self.check(sender, steps)
        except (Reverted, CtfError) as exc:
            raise RpcError(3, f"execution reverted: {exc}") from None
        return hex(TX_GAS + self.gas(steps))

    def _rpc_eth_sendRawTransaction(self, raw_hex: str) -> str:
        from eth_account import Account
        from eth_account.typed_transactions import TypedTransaction

        raw = _hex(raw_hex)
        try:
            sender = Account.recover_transaction(raw).lower()
            if raw[0] < 0x7f:
                from hexbytes import HexBytes

                fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
                price = int(fields["maxFeePerGas"])
            else:
                fields = _legacy_fields(raw)
                price = int(fields["gasPrice"])
        except Exception as exc:
            raise RpcError(-32000, f"invalid transaction: {exc}") from None
        if int(fields.get("chainId") or CHAIN_ID) != CHAIN_ID:
            raise RpcError(-32000, "invalid chain id")
        expected = self._nonces.get(sender, 0)
        if int(fields["nonce"]) < expected:
            raise RpcError(-32000, "nonce too low")
        if int(fields["nonce"]) > expected:
            raise RpcError(-32000, f"nonce too high: expected {expected}")
        gas_limit = int(fields["gas"])
        if self.pol(sender) < gas_limit * price + int(fields.get("value") or 0):
            raise RpcError(-32000, "insufficient funds for gas * price + value")
        self._nonces[sender] = expected + 1
        self.block += 1
        tx_hash = "0x" + keccak(raw).hex()
        receipt = Receipt(tx_hash, sender, 1, TX_GAS, self.block)
        to, data = fields.get("to"), fields.get("data") or b""
        to = ("0x" + bytes(to).hex()) if isinstance(to, (bytes, bytearray)) else str(to or "")
        data = bytes(data) if isinstance(data, (bytes, bytearray)) else _hex(str(data))
        try:
            steps = [self.decode(to, data)]
            receipt.gas_used = TX_GAS + self.gas(steps)
            if receipt.gas_used > gas_limit:
                raise Reverted(f"out of gas: needs {receipt.gas_used}, limit {gas_limit}")
            receipt.effects = self.run(sender, steps)
        except (Reverted, CtfError) as exc:
            receipt.status, receipt.error = 0, str(exc)
            receipt.gas_used = min(gas_limit, receipt.gas_used)
            self.stats["reverted"] += 1
        effective = min(price, GAS_PRICE_WEI)
        self._pol[sender] = self.pol(sender) - receipt.gas_used * effective
        self.receipts[tx_hash] = receipt
        self.stats["transactions"] += 1
        log.info("chain tx %s from %s: %s", tx_hash[:12], sender, receipt.effects or receipt.error)
        return tx_hash

    def _rpc_eth_getTransactionReceipt(self, tx_hash: str) -> dict | None:
        r = self.receipts.get(tx_hash.lower())
        if r is None:
            return None
        return {"transactionHash": r.tx_hash, "status": hex(r.status), "gasUsed": hex(r.gas_used),
                "blockNumber": hex(r.block), "from": r.sender, "logs": []}

    # ---- admin -----------------------------------------------------------------------------------------
    async def admin_state(self, request: web.Request) -> web.Response:
        address = request.query.get("address", "").lower()
        out: dict[str, Any] = {"stats": dict(self.stats), "default_approvals": self.default_group,
                               "failing_conditions": sorted(self.failing_conditions)}
        if address:
            erc20, erc1155 = GROUPS["all"]
            out["allowances"] = {s: str(self.allowance(address, s)) for s in erc20}
            out["approvals"] = {f"{t}:{o}": self.approved_for_all(t, address, o) for t, o in erc1155}
            out["pol_wei"] = str(self.pol(address))
        out["receipts"] = [{"hash": r.tx_hash, "from": r.sender, "status": r.status, "gas_used": r.gas_used,
                            "error": r.error, "effects": r.effects} for r in self.receipts.values()]
        return web.json_response(out)

    async def admin_set(self, request: web.Request) -> web.Response:
        """{"address", "only": "none"|"v2"|"v3"|"all"}: exactly that group of approvals;
        {"address", "token": "pusd"|"ctf"|"position_manager", "spender", "approved": bool}: one approval;
        {"address", "pol": POL as a number}: the wallet's POL for gas;
        {"fail_condition": "0x..."}: redeeming or merging it reverts; {"clear_failures": true}."""
        try:
            params = await request.json()
            if not isinstance(params, dict):
                raise ValueError("body must be a JSON object")
            if params.get("clear_failures"):
                self.failing_conditions.clear()
            if "fail_condition" in params:
                self.failing_conditions.add(str(params["fail_condition"]).lower())
            address = params.get("address")
            if address is not None:
                if not isinstance(address, str) or len(address) != 42:
                    raise ValueError("address must be a 0x address")
                if "only" in params:
                    if params["only"] not in GROUPS:
                        raise ValueError(f"only must be one of {', '.join(GROUPS)}")
                    self.set_group(address, params["only"])
                if "token" in params:
                    token = {"pusd": PUSD, "ctf": CTF, "position_manager": POSITION_MANAGER}[params["token"]]
                    spender, approved = str(params["spender"]), bool(params.get("approved", True))
                    if token == PUSD:
                        self.set_allowance(address, spender, MAX_UINT256 if approved else 0)
                    else:
                        self.set_approval(token, address, spender, approved)
                if "pol" in params:
                    self.set_pol(address, int(Decimal(str(params["pol"])) * 10**18))
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": f"bad chain request: {exc}"}, status=400)
        return web.json_response({"ok": True, "failing_conditions": sorted(self.failing_conditions)})


def _check_partition(collateral: str, parent: bytes, index_sets) -> None:
    if collateral.lower() != PUSD:
        raise Reverted(f"collateral {collateral} is not pUSD (the adapter settles in pUSD)")
    if any(parent):
        raise Reverted("parentCollectionId must be zero on Polymarket")
    if list(index_sets) != [1, 2]:
        raise Reverted("index sets must be [1, 2] (both outcomes of a binary market)")


def _hex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def _legacy_fields(raw: bytes) -> dict:
    import rlp

    nonce, gas_price, gas, to, value, data, v, _r, _s = rlp.decode(raw)
    v = int.from_bytes(v, "big")
    return {"nonce": int.from_bytes(nonce, "big"), "gasPrice": int.from_bytes(gas_price, "big"),
            "gas": int.from_bytes(gas, "big"), "to": "0x" + to.hex(), "value": int.from_bytes(value, "big"),
            "data": "0x" + data.hex(), "chainId": (v - 35) // 2 if v >= 35 else None}
