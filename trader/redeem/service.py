"""Building the redeemer for the trader service from its configuration and environment (I/O at start).

Whatever prevents redemption (no builder credentials, redeem.enabled = false, a wallet type polymm cannot
serve, a funder that is not the key's Safe / proxy) does not stop the trader: the redeemer still watches the
positions for `mmctl status` and says in words why nothing is redeemed while something is redeemable.
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
    """`section`: the config's `redeem` table (enabled, delay_s, batch, merge, poll_s)."""
    settings = RedeemSettings(delay_s=section.delay_s, batch=section.batch, merge=section.merge,
                              poll_s=getattr(section, "poll_s", RedeemSettings.poll_s))
    data_url = get(env.DATA_URL) or env.PROD_DATA_URL
    relayer_url = get(env.RELAYER_URL) or env.PROD_RELAYER_URL
    relayer, reason = None, None
    try:
        creds = Credentials.from_env(get)
        if not section.enabled:
            reason = "redemption is off (redeem.enabled = false); redeem in Polymarket's UI"
        elif unsupported_reason(signature_type):
            reason = f"{unsupported_reason(signature_type)}; redeem in Polymarket's UI"
        elif creds is not None:
            relayer = Relayer(relayer_url, get(env.PK) or "", signature_type, funder, creds)
    except RedeemSetupError as exc:
        reason = f"{exc}; redeem in Polymarket's UI"
    if relayer is not None:
        log.info("redeemer on: %s wallet %s through %s (batch %d, delay %.0f s, merge %s)", relayer.kind, funder,
                 relayer_url, settings.batch, settings.delay_s, "on" if settings.merge else "off")
    else:
        log.warning("redeemer off: %s", reason or "no builder credentials (BUILDER_API_KEY, BUILDER_SECRET, "
                                                  "BUILDER_PASS_PHRASE; see README, Redemption)")
    return Redeemer(settings, lambda: positions.fetch(data_url, funder), Journal.open(state_dir), relayer, reason,
                    ledger=ledger)
