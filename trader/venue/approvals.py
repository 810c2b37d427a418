"""Token approvals: which ones each order version needs, how to read them, the calls that set them.

Without its approvals a wallet's orders are refused as "not enough balance / allowance" although the pUSD is
there: the exchange settles on chain, spending the wallet's pUSD (an ERC-20 allowance to the exchange) and
moving its outcome tokens (an ERC-1155 approval for all). Sources (docs/venue.md, "Approvals"):

* Order version 2: pUSD -> Exchange V2 (buys), CTF -> Exchange V2 (sells); neg-risk markets the same with the
  Neg-risk Exchange V2 (Polymarket/py-sdk `_internal/actions/relayer/approvals.py` `_required_trading_approvals`,
  `_internal/actions/orders/context.py` `resolve_exchange_address`). The BTC Up/Down markets are not neg-risk.
* Order version 3: pUSD -> Exchange V3 (buys), the position manager -> Exchange V3 (sells): V3 trades the
  position manager's positions (`resolve_order_exchange_address`: V2 position ids go to exchange_v3; the same
  `_required_trading_approvals` list). The issue 21 audit: after the move to V3 orders are refused until both
  are set.
* Redemption: CTF -> the collateral adapter (docs.polymarket.com/trading/ctf/redeem, "approve the adapter once").
  Not needed to trade; polymm's redeemer sends it itself in front of every batch, so its absence is a warning.

Reading, in order of preference: the exchange's own GET /balance-allowance (py-clob-client-v2
`get_balance_allowance`; `allowances` keyed by spender, base units: COLLATERAL for pUSD, CONDITIONAL with a
token id for the CTF's approvals), then a configured Polygon JSON-RPC endpoint (eth_call `allowance`,
`isApprovedForAll`) for what the exchange does not report (the position manager's approval of Exchange V3 is not
documented as reported). Without either, an approval is UNKNOWN: said, never guessed.

Everything here but `read_approvals` is pure.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from eth_abi import encode
from eth_hash.auto import keccak

from polymm import env
from polymm.trader.venue.contracts import (CTF, CTF_COLLATERAL_ADAPTER, EXCHANGE_V2, EXCHANGE_V3, NEG_RISK_EXCHANGE_V2,
                                           POSITION_MANAGER, PUSD, name, short)

MAX_UINT256 = 2**256 - 1
UNLIMITED = 2**255  # "approve max": wallets set MAX_UINT256; anything this large never runs out


@dataclass(frozen=True)
class Approval:
    token: str  # the contract the approval is set on (pUSD, the CTF or the position manager)
    spender: str  # who may spend (an exchange, the collateral adapter)
    erc20: bool  # True: pUSD allowance; False: ERC-1155 setApprovalForAll
    purpose: str  # "buys", "sells", "redemption"

    @property
    def key(self) -> str:
        """A stable id: "pusd-exchange-v2", "position-manager-exchange-v3", "ctf-adapter"."""
        return f"{short(self.token)}-{short(self.spender)}"

    @property
    def label(self) -> str:
        return f"{name(self.token)} → {name(self.spender)} ({self.purpose})"

    def call(self) -> tuple[str, str]:
        """(to, 0x calldata) of the transaction that sets it: approve(spender, max) / setApprovalForAll(op, true)."""
        if self.erc20:
            return self.token, "0x" + (keccak(b"approve(address,uint256)")[:4]
                                       + encode(["address", "uint256"], [self.spender, MAX_UINT256])).hex()
        return self.token, "0x" + (keccak(b"setApprovalForAll(address,bool)")[:4]
                                   + encode(["address", "bool"], [self.spender, True])).hex()


def trading_approvals(version: int, neg_risk: bool = False) -> tuple[Approval, ...]:
    """What orders of `version` need to settle (ValueError for a version polymm does not know)."""
    if version == 2:
        exchange = NEG_RISK_EXCHANGE_V2 if neg_risk else EXCHANGE_V2
        return Approval(PUSD, exchange, True, "buys"), Approval(CTF, exchange, False, "sells")
    if version == 3:
        return Approval(PUSD, EXCHANGE_V3, True, "buys"), Approval(POSITION_MANAGER, EXCHANGE_V3, False, "sells")
    raise ValueError(f"no approvals known for order version {version!r}")


REDEMPTION = (Approval(CTF, CTF_COLLATERAL_ADAPTER, False, "redemption"),)
KNOWN_VERSIONS = (2, 3)


class State(str, enum.Enum):
    APPROVED = "approved"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reading:
    approval: Approval
    state: State
    source: str  # "exchange" | "chain" | "" (unknown)
    detail: str = ""


def _units(value) -> int | None:
    try:
        return int(str(value).split(".")[0])
    except (TypeError, ValueError):
        return None


def from_exchange(approval: Approval, allowances: dict | None, balance_units: int | None) -> Reading | None:
    """The reading the exchange's `allowances` (GET /balance-allowance) gives, None when it does not name the
    spender. A pUSD allowance counts as set when it is unlimited or covers the balance; an ERC-1155 one when
    non-zero (the exchange reports an approval-for-all as a large amount)."""
    if not isinstance(allowances, dict):
        return None
    found = next((v for k, v in allowances.items() if isinstance(k, str) and k.lower() == approval.spender.lower()),
                 None)
    units = _units(found) if found is not None else None
    if units is None:
        return None
    if not approval.erc20:
        return Reading(approval, State.APPROVED if units > 0 else State.MISSING, "exchange")
    if units >= UNLIMITED or (units > 0 and balance_units is not None and units >= balance_units):
        return Reading(approval, State.APPROVED, "exchange")
    if units == 0:
        return Reading(approval, State.MISSING, "exchange")
    return Reading(approval, State.MISSING, "exchange",
                   f"only {units / 1e6:.2f} pUSD approved, below the balance: larger buys are refused")


def read_approvals(approvals: tuple[Approval, ...] | list[Approval], wallet: str, *,
                   collateral: Callable[[], dict] | None, conditional: Callable[[], dict] | None,
                   rpc=None) -> list[Reading]:
    """Each approval's state. `collateral()` / `conditional()` answer GET /balance-allowance (COLLATERAL, and
    CONDITIONAL for a token of the market) or raise; `rpc` is a trader.venue.chain.ChainRpc or None. A failing
    source is skipped (the reading says UNKNOWN with the reason when nothing else knows)."""
    from polymm.trader.venue.chain import ChainError

    answers: dict[str, dict | None] = {}
    errors: list[str] = []

    def answer(kind: str, fetch) -> dict | None:
        if kind not in answers:
            answers[kind] = None
            if fetch is not None:
                try:
                    got = fetch()
                    answers[kind] = got if isinstance(got, dict) else None
                except Exception as exc:  # noqa: BLE001 - any failure: fall back to the chain, say why
                    errors.append(f"the exchange's {kind.lower()} balance-allowance: {exc}")
        return answers[kind]

    out = []
    for approval in approvals:
        reading = None
        if approval.erc20:
            got = answer("COLLATERAL", collateral)
            if got is not None:
                reading = from_exchange(approval, got.get("allowances"), _units(got.get("balance")))
        elif approval.token.lower() == CTF.lower():
            got = answer("CONDITIONAL", conditional)
            if got is not None:
                reading = from_exchange(approval, got.get("allowances"), None)
        if reading is None and rpc is not None:
            try:
                if approval.erc20:
                    units = rpc.erc20_allowance(approval.token, wallet, approval.spender)
                    balance = _units((answers.get("COLLATERAL") or {}).get("balance"))
                    ok = units >= UNLIMITED or (units > 0 and (balance is None or units >= balance))
                else:
                    ok = rpc.erc1155_approved(approval.token, wallet, approval.spender)
                reading = Reading(approval, State.APPROVED if ok else State.MISSING, "chain")
            except ChainError as exc:
                errors.append(str(exc))
        if reading is None:
            why = "; ".join(errors) if errors else (
                f"the exchange does not report it and no Polygon RPC is configured (redeem.rpc_url or {env.RPC_URL})")
            reading = Reading(approval, State.UNKNOWN, "", why)
        out.append(reading)
    return out


def missing(readings: list[Reading]) -> list[Approval]:
    return [r.approval for r in readings if r.state is State.MISSING]


def summary(readings: list[Reading]) -> str:
    """One line: what is missing, by name."""
    gone = [r.approval.label for r in readings if r.state is State.MISSING]
    return ", ".join(gone)
