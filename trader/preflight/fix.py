"""`polymm-preflight --fix-approvals`: set the approvals the checks found missing (or could not read).

Types 1-3 send them through Polymarket's gasless relayer, as one transaction from the wallet, with the builder
credentials the redeemer uses (trader/redeem/relayer.py; the official py-sdk's `setup_trading_approvals` sends
the same ERC-20 `approve(spender, max)` and ERC-1155 `setApprovalForAll(operator, true)` calls the same way).
Nothing is sent without a yes: a question on a terminal, or `--yes`. A type-0 wallet (a plain key) pays its own gas,
so polymm prints exactly the transactions it must send instead (to, data), one per approval.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from polymm import env
from polymm.trader.preflight.context import Context
from polymm.trader.venue.approvals import Approval, State

WAIT_S = 120.0


def wanted(ctx: Context) -> list[Approval]:
    """What to set: every approval read as missing or unreadable (setting one that exists is harmless)."""
    seen: dict[str, Approval] = {}
    for reading in ctx.approval_readings:
        if reading.state is not State.APPROVED:
            seen.setdefault(reading.approval.key, reading.approval)
    return list(seen.values())


def fix(ctx: Context, approvals: list[Approval], *, yes: bool, out: TextIO = sys.stdout,
        ask: Callable[[str], str] = input, interactive: bool | None = None) -> bool:
    """True when every approval was sent and mined (types 1-3); False otherwise (said on `out`)."""
    from polymm.trader.redeem.calls import Call
    from polymm.trader.redeem.relayer import (Credentials, RedeemSetupError, Relayer, RelayerBusy, RelayerRefused)

    if not approvals:
        print("--fix-approvals: nothing to set; every approval checked is in place.", file=out)
        return True
    funder = ctx.gateway.funder if ctx.gateway is not None else None
    if ctx.signature_type == 0:
        print(f"A signature type 0 wallet pays its own gas: send these {len(approvals)} transaction(s) from "
              f"{funder} on Polygon (chain 137) with any wallet, e.g. `cast send TO DATA`:", file=out)
        for a in approvals:
            to, data = a.call()
            print(f"  {a.label}\n    to:   {to}\n    data: {data}", file=out)
        print("Then run polymm-preflight again.", file=out)
        return False
    try:
        creds = Credentials.from_env(ctx.get)
        if creds is None:
            raise RedeemSetupError("no builder credentials (BUILDER_API_KEY, BUILDER_SECRET, BUILDER_PASS_PHRASE): "
                                   "the gasless relayer needs them")
        relayer = Relayer(ctx.url(env.RELAYER_URL), ctx.get(env.PK) or "", ctx.signature_type, funder, creds)
    except RedeemSetupError as exc:
        print(f"--fix-approvals: cannot send: {exc}.", file=out)
        return False
    print(f"These approvals will be set on {funder} in one gasless transaction through Polymarket's relayer:",
          file=out)
    for a in approvals:
        print(f"  {a.label}", file=out)
    if not yes:
        interactive = sys.stdin.isatty() if interactive is None else interactive
        if not interactive:
            print("--fix-approvals: not sent: no terminal to ask on; add --yes to send without asking.", file=out)
            return False
        if ask("Send them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("--fix-approvals: not sent.", file=out)
            return False
    try:
        tx_id = relayer.submit([Call(*a.call()) for a in approvals], "polymm approvals")
    except (RelayerBusy, RelayerRefused) as exc:
        print(f"--fix-approvals: the relayer did not take the transaction: {exc}.", file=out)
        return False
    print(f"sent (relayer transaction {tx_id}); waiting for it to be mined...", file=out)
    deadline = time.monotonic() + WAIT_S
    state, error = None, ""
    while time.monotonic() < deadline:
        try:
            state, error = relayer.state(tx_id)
        except RelayerBusy as exc:
            error = str(exc)
        if state in ("STATE_MINED", "STATE_CONFIRMED", "STATE_FAILED", "STATE_INVALID"):
            break
        time.sleep(1.0)
    if state in ("STATE_MINED", "STATE_CONFIRMED"):
        print(f"mined ({state}): the approvals are set.", file=out)
        refresh_exchange_cache(ctx)
        return True
    print(f"--fix-approvals: the transaction did not succeed ({state or 'no outcome yet'}"
          f"{': ' + error if error else ''}); run polymm-preflight again before trading.", file=out)
    return False


def refresh_exchange_cache(ctx: Context) -> None:
    """GET /balance-allowance/update: the exchange caches balances and allowances, and refuses orders on the
    cached view until told to look again (polymarket-protocol.md, "Balances and allowances")."""
    from polymm.trader.execution.exchange_state import ExchangeError

    if ctx.gateway is None or not ctx.connected:
        return
    try:
        ctx.gateway.update_balance_allowance("COLLATERAL")
        if ctx.market is not None:
            ctx.gateway.update_balance_allowance("CONDITIONAL", token_id=ctx.market.up_token)
        ctx.collateral_answer = ctx.gateway.balance_allowance("COLLATERAL")
    except ExchangeError:
        pass  # the next check reads the chain or the exchange again anyway
