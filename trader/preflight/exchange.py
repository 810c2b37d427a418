"""Checks against the exchange (the CLOB, Gamma, polymarket.com's geoblock), in the order they depend on each
other: the gateway (secrets) -> clock, order version, credentials -> balance, closed-only, market info -> approvals.
"""
from __future__ import annotations

import time

import httpx

from polymm import env
from polymm.trader.preflight.context import Context
from polymm.trader.preflight.report import Check, failed, passed, skipped

MAX_CLOCK_SKEW_S = 2.0  # GET /time has whole seconds: a synchronised clock reads within about one second of it


def _gateway(ctx: Context):
    if ctx.gateway is None and ctx.gateway_error is None:
        from polymm.trader.venue.gateway import ConfigError, Gateway

        try:
            ctx.gateway = Gateway.from_env(clob_url=ctx.url(env.CLOB_URL), environ=ctx.environ,
                                           timeout_s=ctx.timeout_s)
        except ConfigError as exc:  # names the variable, never its value
            ctx.gateway_error = str(exc)
    return ctx.gateway


def clock(ctx: Context) -> Check:
    from polymm.trader.execution.exchange_state import ExchangeError
    from polymm.trader.venue.gateway import fetch_server_time

    url = ctx.url(env.CLOB_URL)
    try:
        before = time.time()
        server = fetch_server_time(url, ctx.timeout_s)
        after = time.time()
    except (ExchangeError, ValueError) as exc:
        return failed("clock", f"GET {url}/time failed: {exc}", f"check the network and {env.CLOB_URL}")
    skew = server + 0.5 - (before + after) / 2  # the answer is floored to the second: +0.5 centres it
    if abs(skew) > MAX_CLOCK_SKEW_S:
        side = "ahead of" if skew < 0 else "behind"
        return failed("clock", f"this host's clock is {abs(skew):.1f} s {side} the exchange's (GET /time)",
                      "synchronise it (timedatectl set-ntp true; chrony or systemd-timesyncd): windows, staleness "
                      "and signed timestamps are judged by it")
    return passed("clock", f"within {abs(skew):.1f} s of the exchange's clock (GET /time; limit "
                           f"{MAX_CLOCK_SKEW_S:.0f} s)")


def version(ctx: Context) -> Check:
    from polymm.trader.venue.signing import SIGNABLE_VERSIONS

    gw = _gateway(ctx)
    if gw is None:
        return skipped("version", ctx.gateway_error or "no gateway")
    served = gw.refresh_version()
    if gw.version_problem is not None:
        return failed("version", gw.version_problem, "upgrade polymm to a release that signs that version")
    signable = " and ".join(map(str, SIGNABLE_VERSIONS))
    return passed("version", f"the exchange serves order version {served} (GET /version); polymm signs {signable}")


def credentials(ctx: Context) -> Check:
    from polymm.trader.execution.exchange_state import ExchangeError

    gw = _gateway(ctx)
    if gw is None:
        return skipped("credentials", ctx.gateway_error or "no gateway")
    configured = ctx.get(env.POLY_API_KEY) is not None
    how = "the configured POLY_API_KEY/SECRET/PASSPHRASE" if configured else "API credentials derived from PK (L1)"
    try:
        gw.connect()
        ctx.collateral_answer = gw.balance_allowance("COLLATERAL")
    except ExchangeError as exc:
        fix = ("unset POLY_API_KEY, POLY_API_SECRET and POLY_PASSPHRASE to derive them from PK, or copy all three "
               "again" if configured else "check PK and that the exchange is reachable")
        if exc.status is None:
            fix = f"check the network and {env.CLOB_URL}"
        return failed("credentials", f"{how} do not authenticate: {exc}", fix)
    ctx.connected = True
    try:
        ctx.balance_units = int(str(ctx.collateral_answer.get("balance", "0")).split(".")[0])
    except (AttributeError, ValueError):
        ctx.balance_units = None
    return passed("credentials", f"{how} authenticate (L2): api key {gw.api_key[:8]}…")


def closed_only(ctx: Context) -> Check:
    from polymm.trader.execution.exchange_state import ExchangeError

    if not ctx.connected:
        return skipped("closed_only", "needs working credentials")
    try:
        closed = ctx.gateway.closed_only()
    except ExchangeError as exc:
        return failed("closed_only", f"GET /auth/ban-status/closed-only failed: {exc}", "retry; check the network")
    if closed:
        return failed("closed_only", "the exchange has this account in closed-only mode: it may only close positions",
                      "contact Polymarket support; no new positions can be opened meanwhile")
    return passed("closed_only", "the account is not in closed-only mode")


def balance(ctx: Context) -> Check:
    if not ctx.connected:
        return skipped("balance", "needs working credentials")
    if ctx.balance_units is None:
        return failed("balance", f"the balance answer is unreadable: {str(ctx.collateral_answer)[:120]}",
                      "retry; report it if it persists")
    usd = ctx.balance_units / 1e6
    if usd <= 0:
        return failed("balance", f"{ctx.gateway.funder} holds 0 pUSD", "deposit on polymarket.com (pUSD is "
                                                                       "the collateral since CLOB V2)")
    return passed("balance", f"{ctx.gateway.funder} holds {usd:,.2f} pUSD")


def market_info(ctx: Context) -> Check:
    from polymm.trader.execution.exchange_state import ExchangeError
    from polymm.trader.venue.gateway import fetch_market_rules

    market = ctx.live_market()
    if market is None:
        return failed("market", f"no live market found on Gamma: {ctx.market_error}",
                      f"check {env.GAMMA_URL} and market.window_s (the 15-minute markets: 900)")
    try:
        with httpx.Client(timeout=ctx.timeout_s) as http:
            ctx.rules = fetch_market_rules(http, ctx.url(env.CLOB_URL), market.condition_id)
    except (ExchangeError, ValueError) as exc:
        return failed("market", f"market info of {market.slug} unreadable (GET /clob-markets): {exc}",
                      "retry; the trader would charge the conservative default fee schedule meanwhile")
    r = ctx.rules
    delay = f"takers delayed {r.taker_delay_s * 1000:.0f} ms" if r.taker_delay_s else "no taker delay"
    return passed("market", f"{market.slug}: taker fee rate {r.fee.r:g}, exponent {r.fee.e:g}; minimum order age "
                            f"{r.min_order_age_s:g} s; {delay}")


def _readings(ctx: Context, approvals):
    from polymm.trader.venue.approvals import read_approvals

    market = ctx.market
    conditional = None
    if market is not None:
        conditional = lambda: ctx.gateway.balance_allowance("CONDITIONAL", token_id=market.up_token)  # noqa: E731
    readings = read_approvals(approvals, ctx.gateway.funder, collateral=lambda: ctx.collateral_answer,
                              conditional=conditional, rpc=ctx.rpc())
    ctx.approval_readings += readings
    return readings


def _approval_check(reading, critical: bool, why_needed: str) -> Check:
    from polymm.trader.venue.approvals import State

    a = reading.approval
    name = f"approval:{a.key}"
    label = a.label
    if reading.state is State.APPROVED:
        return passed(name, f"{label}: set (read from the {reading.source})", critical)
    if reading.state is State.MISSING:
        extra = f" ({reading.detail})" if reading.detail else ""
        return failed(name, f"{label}: missing{extra}: {why_needed}",
                      "polymm-preflight --fix-approvals (gasless through the relayer; a type-0 wallet is shown "
                      "what to send)", critical)
    return Check(name, critical, None if critical else False, f"{label}: cannot be read ({reading.detail})",
                 f"set redeem.rpc_url or {env.RPC_URL} to a Polygon RPC endpoint so it can be read on chain")


def approvals(ctx: Context) -> list[Check]:
    """The served version's trading approvals (critical), the other version's (a warning: the exchange moves to
    it without notice), the collateral adapter's (a warning: the redeemer sets it itself)."""
    from polymm.trader.venue.approvals import KNOWN_VERSIONS, REDEMPTION, trading_approvals

    ctx.approval_readings = []
    if not ctx.connected:
        return [skipped("approvals", "needs working credentials")]
    served = ctx.gateway.order_version
    if served not in KNOWN_VERSIONS or isinstance(served, bool):
        return [skipped("approvals", f"order version {served!r} is not one polymm knows")]
    neg_risk = bool(ctx.market is not None and ctx.market.neg_risk) or bool(ctx.rules and ctx.rules.neg_risk)
    out = [_approval_check(r, True, f"order version {served} orders cannot settle without it")
           for r in _readings(ctx, trading_approvals(served, neg_risk))]
    for other in KNOWN_VERSIONS:
        if other != served:
            out += [_approval_check(r, False, f"needed the moment the exchange moves to order version {other}")
                    for r in _readings(ctx, trading_approvals(other, neg_risk))]
    out += [_approval_check(r, False, "redemption needs it (the redeemer sends it in front of every batch)")
            for r in _readings(ctx, REDEMPTION)]
    if not neg_risk:
        out.append(passed("approval:neg-risk", "neg-risk exchange approvals not needed: the market is not neg-risk",
                          critical=False))
    return out


def geoblock(ctx: Context) -> Check:
    url = ctx.url(env.GEOBLOCK_URL)
    try:
        with httpx.Client(timeout=ctx.timeout_s) as http:
            answer = http.get(url)
        data = answer.json()
        blocked = data["blocked"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return failed("geoblock", f"{url} did not answer whether this IP may trade ({type(exc).__name__})",
                      "check the network (the endpoint is on polymarket.com, not the API servers)")
    where = "/".join(x for x in (data.get("country"), data.get("region")) if x)
    if blocked:
        return failed("geoblock", f"Polymarket blocks order placement from this host's IP ({data.get('ip')}, "
                                  f"{where})", "run polymm from a host in a permitted region "
                                               "(docs.polymarket.com/api-reference/geoblock)")
    return passed("geoblock", f"this host's IP may place orders ({where})")


def run(ctx: Context) -> list[Check]:
    checks = [clock(ctx), version(ctx), credentials(ctx), closed_only(ctx), balance(ctx), market_info(ctx)]
    return checks + approvals(ctx) + [geoblock(ctx)]
