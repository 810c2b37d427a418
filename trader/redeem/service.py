"""Building the redeemer for the trader service from its configuration and environment (I/O at start).

Whatever prevents redemption (no builder credentials, redeem.enabled = false, a type-0 wallet without a Polygon
RPC, a funder that is not the key's Safe / proxy) does not stop the trader: the redeemer still watches the
positions for `mmctl status` and says in words why nothing is redeemed while something is redeemable.
Types 1-3 redeem through the gasless relayer (relayer.py); type 0 with its own transactions over the RPC (eoa.py).
"""
from __future__ import annotations

import logging
from pathlib import Path

from polymm import env
from polymm.trader.redeem import positions
from polymm.trader.redeem.journal import Journal
from polymm.trader.redeem.relayer import Credentials, RedeemSetupError, Relayer, unsupported_reason
from polymm.trader.redeem.worker import Redeemer, RedeemSettings

log = logging.getLogger("polymm.trader.redeem")


def build_redeemer(section, *, funder: str, signature_type: int, state_dir: Path, get=env.get,
                   ledger=None) -> Redeemer:
    """`section`: the config's `redeem` table (enabled, delay_s, batch, merge, poll_s, rpc_url)."""
    settings = RedeemSettings(delay_s=section.delay_s, batch=section.batch, merge=section.merge,
                              poll_s=getattr(section, "poll_s", RedeemSettings.poll_s))
    data_url = get(env.DATA_URL) or env.PROD_DATA_URL
    relayer_url = get(env.RELAYER_URL) or env.PROD_RELAYER_URL
    relayer, reason = None, None
    rpc_url = get(env.RPC_URL) or getattr(section, "rpc_url", "")
    try:
        creds = Credentials.from_env(get)
        if not section.enabled:
            reason = "redemption is off (redeem.enabled = false); redeem in Polymarket's UI"
        elif signature_type == 0 and rpc_url:
            from polymm.trader.redeem.eoa import EoaSender

            relayer = EoaSender(rpc_url, get(env.PK) or "")
        elif unsupported_reason(signature_type):
            reason = f"{unsupported_reason(signature_type)}; redeem in Polymarket's UI"
        elif creds is not None:
            relayer = Relayer(relayer_url, get(env.PK) or "", signature_type, funder, creds)
    except RedeemSetupError as exc:
        reason = f"{exc}; redeem in Polymarket's UI"
    if relayer is not None:
        from polymm.trader.redeem.gas import batch_limit
        from polymm.trader.venue.chain import where

        through = f"its own transactions over {where(rpc_url)}" if relayer.kind == "EOA" else relayer_url
        log.info("redeemer on: %s wallet %s through %s (batch %d, delay %.0f s, merge %s)", relayer.kind, funder,
                 through, batch_limit(relayer.kind, settings.batch), settings.delay_s,
                 "on" if settings.merge else "off")
    else:
        log.warning("redeemer off: %s", reason or "no builder credentials (BUILDER_API_KEY, BUILDER_SECRET, "
                                                  "BUILDER_PASS_PHRASE; see README, Redemption)")
    return Redeemer(settings, lambda: positions.fetch(data_url, funder), Journal.open(state_dir), relayer, reason,
                    ledger=ledger)
