"""How many redeem / merge calls one transaction may carry, per wallet type, from the official clients' gas figures.

* PROXY (signature type 1): py-builder-relayer-client 0.0.3 signs a gas limit of 500,000 when it has no RPC URL to
  estimate with (`gas.py` DEFAULT_GAS_LIMIT, "must fit within the relay hub's gas budget (~650k total)"); polymm
  gives it none, so a proxy transaction's calls must fit 500k. (The official TypeScript client falls back to 10M
  and the unified py-sdk to 200k when estimation fails: the sources disagree; polymm uses the Python relayer
  client's figure, the one whose requests it sends.)
* SAFE and WALLET (types 2 and 3): the signed request carries no gas limit (the Safe's safeTxGas is 0, a
  deposit-wallet batch has none); the relayer estimates the whole transaction. No client-side bound: the
  configured `redeem.batch` applies.
* EOA (type 0): one call per transaction (a plain key cannot batch calls), each estimated over the RPC.

No official source gives the gas of one redemption through the collateral adapter. Third-party figures for a plain
CTF `redeemPositions` are 80-120k (predtools.com, "Redeeming resolved positions on-chain"); the adapter also
wraps the payout into pUSD, so polymm budgets 150k per redeem or merge, 50k for the adapter approval each
transaction starts with and 50k for the proxy's own overhead: 2 redemptions per proxy transaction. Should a batch
still revert, the worker splits it (trader/redeem/worker.py), so a wrong estimate costs time, never winnings.
"""
from __future__ import annotations

PROXY_GAS_LIMIT = 500_000
CALL_GAS = 150_000  # one redeemPositions / mergePositions through the collateral adapter (estimate, see above)
APPROVE_GAS = 50_000  # CTF.setApprovalForAll(adapter, true), at the head of every relayed transaction
PROXY_OVERHEAD_GAS = 50_000  # the proxy factory's dispatch to the wallet


def batch_limit(kind: str, configured: int) -> int:
    """Calls per transaction for a wallet of `kind` (PROXY, SAFE, WALLET, EOA) with `redeem.batch` = configured."""
    if kind == "EOA":
        return 1
    if kind == "PROXY":
        fits = (PROXY_GAS_LIMIT - PROXY_OVERHEAD_GAS - APPROVE_GAS) // CALL_GAS
        return max(1, min(configured, fits))
    return max(1, configured)
