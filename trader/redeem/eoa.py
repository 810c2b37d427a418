"""Redemption for a signature type 0 wallet (a plain key, EOA): its own Polygon transactions, paid in POL, over the
configured RPC (`redeem.rpc_url`, env POLYMM_RPC_URL). Same interface as relayer.Relayer (`kind`, `wallet`,
`submit`, `state`), so the worker cannot tell them apart.

Why polymm does it (docs/redemption.md, section 3): Polymarket's gasless relayer does not serve EOA wallets
(Polymarket/py-sdk `_internal/actions/relayer/gasless.py`: "EOA wallets do not use the relayer"; its direct EOA
broadcasting is "planned but not yet supported"), and winnings left unredeemed are cash the risk limits cannot use.
The calls are the same as the relayer's (calls.py: the collateral adapter, pUSD); the transaction is an EIP-1559
transaction signed with eth-account (already installed with py-clob-client-v2) and sent with eth_sendRawTransaction.

Before anything is sent: the POL balance must cover the transaction's gas at the current price (else the worker
backs off with the words "send POL to ..."), and the node's eth_estimateGas must not predict a revert (a revert
predicted is the position's failure: split / backed off like a relayer refusal). An EOA cannot batch calls, so
each action is its own transaction (gas.py: batch 1); the adapter's approval, when missing, goes first.
"""
from __future__ import annotations

import logging

from polymm.trader.redeem.calls import Call
from polymm.trader.redeem.relayer import RelayerBusy, RelayerRefused
from polymm.trader.venue.chain import ChainError, ChainRpc, Reverted
from polymm.trader.venue.contracts import CHAIN_ID, CTF, CTF_COLLATERAL_ADAPTER

log = logging.getLogger("polymm.trader.redeem")

GAS_MARGIN = 1.25  # the estimate is padded: state may change between estimate and inclusion
FEE_MULTIPLIER = 2  # maxFeePerGas = 2 x the current gas price: room for the base fee to rise meanwhile
APPROVAL_WAIT_S = 90.0


class EoaSender:
    kind = "EOA"

    def __init__(self, rpc_url: str, private_key: str) -> None:
        from eth_account import Account

        self._account = Account.from_key(private_key)  # never logged; only its address is
        self.wallet = self._account.address
        self.rpc = ChainRpc(rpc_url)

    def submit(self, calls: list[Call], metadata: str = "") -> str:
        """Send the calls as this key's own transactions; returns the hash of the last (the one to follow)."""
        try:
            if self.rpc.chain_id() != CHAIN_ID:
                raise RelayerBusy(f"the RPC at {self.rpc.where} is not Polygon mainnet: point redeem.rpc_url at a "
                                  "chain 137 endpoint")
            work = [c for c in calls if not self._is_adapter_approval(c)]
            if len(work) != len(calls) and not self.rpc.erc1155_approved(CTF, self.wallet, CTF_COLLATERAL_ADAPTER):
                approval = next(c for c in calls if self._is_adapter_approval(c))
                tx_hash = self._send(approval)
                receipt = self.rpc.wait_receipt(tx_hash, timeout_s=APPROVAL_WAIT_S)
                if receipt is None or int(str(receipt.get("status", "0x0")), 16) != 1:
                    raise RelayerBusy(f"the collateral adapter's approval (tx {tx_hash}) was not mined; trying again")
            last = ""
            for call in work:
                last = self._send(call)
            return last
        except Reverted as exc:
            raise RelayerRefused(f"the node predicts a revert: {exc}") from None
        except ChainError as exc:
            raise RelayerBusy(str(exc)) from None

    def _send(self, call: Call) -> str:
        gas = int(self.rpc.estimate_gas(self.wallet, call.to, call.data) * GAS_MARGIN)
        price = self.rpc.gas_price()
        need = gas * price * FEE_MULTIPLIER
        have = self.rpc.balance_wei(self.wallet)
        if have < need:
            raise RelayerBusy(f"wallet {self.wallet} holds {have / 1e18:.4f} POL; a redemption needs up to "
                              f"{need / 1e18:.4f} POL for gas: send POL to it")
        signed = self._account.sign_transaction({
            "type": 2, "chainId": CHAIN_ID, "nonce": self.rpc.nonce(self.wallet), "to": call.to, "value": 0,
            "data": call.data, "gas": gas, "maxFeePerGas": price * FEE_MULTIPLIER,
            "maxPriorityFeePerGas": min(price, 30 * 10**9)})
        tx_hash = self.rpc.send_raw(bytes(signed.raw_transaction))
        log.info("sent transaction %s from %s to %s (gas %d)", tx_hash, self.wallet, call.to, gas)
        return tx_hash

    @staticmethod
    def _is_adapter_approval(call: Call) -> bool:
        from polymm.trader.redeem.calls import approve_adapter

        return call == approve_adapter()

    def state(self, tx_id: str) -> tuple[str | None, str]:
        """(relayer-style state, error): STATE_MINED / STATE_FAILED from the receipt, None while pending."""
        try:
            receipt = self.rpc.receipt(tx_id)
        except ChainError as exc:
            raise RelayerBusy(str(exc)) from None
        if receipt is None:
            return None, ""
        if int(str(receipt.get("status", "0x0")), 16) == 1:
            return "STATE_MINED", ""
        return "STATE_FAILED", f"transaction {tx_id} reverted on chain"
