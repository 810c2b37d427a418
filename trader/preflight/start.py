"""The cheap critical subset of polymm-preflight that the trader runs when it starts live (trader/service.py):
the funder is the key's wallet for its signature type (pure), and the wallet holds the approvals the served order
version needs (a few reads). Either failing is something only the operator can fix: the trader refuses to start in
one line and exits 2, which the unit's RestartPreventExitStatus=2 keeps systemd from retrying.

After start the same approvals check runs again when the exchange moves to another order version
(`Gateway.approvals_check`), before the first order is signed for it: missing approvals block new orders with a
status warning instead of a stream of "not enough balance / allowance" refusals.
"""
from __future__ import annotations

import logging
from typing import Callable

from polymm.trader.venue.approvals import KNOWN_VERSIONS, State, read_approvals, summary, trading_approvals
from polymm.trader.venue.wallets import funder_problem

log = logging.getLogger("polymm.trader")


def funder_refusal(gateway) -> str | None:
    """Words for a funder that is not this key's wallet for its signature type; None when it is."""
    return funder_problem(gateway.address, gateway.signature_type, gateway.funder)


def approvals_problem(gateway, version, token_id: str | None, rpc=None, neg_risk: bool = False) -> str | None:
    """Words naming the approvals `version` needs that the wallet lacks (None: all set, or unknowable; an approval
    that cannot be read is logged as a warning, never a reason to refuse)."""
    if version not in KNOWN_VERSIONS or isinstance(version, bool):
        return None  # a version polymm cannot sign: the gateway's version_problem already stops orders
    conditional = None
    if token_id:
        conditional = lambda: gateway.balance_allowance("CONDITIONAL", token_id=token_id)  # noqa: E731
    readings = read_approvals(trading_approvals(version, neg_risk), gateway.funder,
                              collateral=lambda: gateway.balance_allowance("COLLATERAL"), conditional=conditional,
                              rpc=rpc)
    for r in readings:
        if r.state is State.UNKNOWN:
            log.warning("approval %s of %s cannot be checked: %s", r.approval.label, gateway.funder, r.detail)
    return summary(readings) or None


def approvals_check(gateway, token_id: Callable[[], str | None], rpc=None) -> Callable[[int], str | None]:
    """The `Gateway.approvals_check` of a running trader: the market it trades gives the conditional token."""
    def check(version: int) -> str | None:
        try:
            return approvals_problem(gateway, version, token_id(), rpc)
        except Exception:  # noqa: BLE001 - a failing check must not stop the version switch; say so
            log.exception("checking the approvals of order version %s failed", version)
            return None
    return check
