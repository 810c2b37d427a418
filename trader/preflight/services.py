"""Checks of the services trading leans on besides the exchange (warnings: trading works without them, something
else does not): RTDS with a live Chainlink stream (the BTC reference price the fair-value guards read), the Data
API (positions, redemption), the relayer's builder credentials (redemption, --fix-approvals), POL for a type-0
wallet's own redemption transactions."""
from __future__ import annotations

import time

from polymm import env
from polymm.trader.preflight.context import Context
from polymm.trader.preflight.local import signer_address
from polymm.trader.preflight.report import Check, failed, passed, skipped

RTDS_WAITS = 2  # wait this many request timeouts (--timeout) for a fresh Chainlink price
FRESH_PRICE_S = 60.0  # a Chainlink price whose own timestamp is older than this is not a live stream
# A type-0 redemption is one transaction per market (about 150k gas); ten of them at the current gas price is the
# least POL a wallet should hold so a morning's winnings can come back.
REDEMPTIONS_FUNDED = 10
REDEEM_TX_GAS = 200_000


def rtds(ctx: Context) -> Check:
    import websocket

    from polymm.feed.rtds import wire

    url = ctx.url(env.RTDS_URL)
    decoder = wire.Decoder()
    wait_s = RTDS_WAITS * ctx.timeout_s
    deadline = time.monotonic() + wait_s
    try:
        ws = websocket.create_connection(url, timeout=ctx.timeout_s)
    except Exception as exc:  # noqa: BLE001 - websocket-client raises many kinds; all mean "not reachable"
        return failed("rtds", f"RTDS at {url} is not reachable ({type(exc).__name__})",
                      f"check the network and {env.RTDS_URL}; without it the feed has no BTC reference price and "
                      "fair-value-guarded entries stop", critical=False)
    try:
        ws.send(wire.subscription())
        while time.monotonic() < deadline:
            ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                break
            for price in decoder.decode(frame) if frame else []:
                age = time.time() - price.source_ts
                if price.source == wire.CHAINLINK and age <= FRESH_PRICE_S:
                    return passed("rtds", f"RTDS streams Chainlink BTC/USD live ({price.price:,.2f}, {age:.1f} s "
                                          f"old)", critical=False)
    except Exception as exc:  # noqa: BLE001 - a dropped socket mid-check
        return failed("rtds", f"RTDS at {url} dropped the connection ({type(exc).__name__})",
                      "retry; check the network", critical=False)
    finally:
        try:
            ws.close()
        except Exception:  # noqa: BLE001
            pass
    return failed("rtds", f"RTDS at {url} sent no fresh Chainlink BTC/USD price within {wait_s:.0f} s",
                  "retry; if it persists the reference price is stale and fair-value-guarded entries stop",
                  critical=False)


def _funder(ctx: Context) -> str | None:
    if ctx.gateway is not None:
        return ctx.gateway.funder
    owner = signer_address(ctx)
    return ctx.get(env.BROWSER_ADDRESS) or owner


def data_api(ctx: Context) -> Check:
    from polymm.trader.redeem import positions

    wallet = _funder(ctx)
    if wallet is None:
        return skipped("data_api", "needs a valid PK", critical=False)
    url = ctx.url(env.DATA_URL)
    try:
        rows = positions.fetch(url, wallet, timeout_s=ctx.timeout_s)
    except positions.PositionsError as exc:
        return failed("data_api", str(exc), f"check the network and {env.DATA_URL}: the redeemer and the wallet's "
                                            "accounting read positions there", critical=False)
    return passed("data_api", f"the Data API answers: {len(rows)} position row(s) for {wallet}", critical=False)


def relayer(ctx: Context) -> Check:
    from polymm.trader.redeem.relayer import (Credentials, RedeemSetupError, RelayerBusy, RelayerRefused,
                                              check_credentials)

    if ctx.signature_type == 0:
        return passed("relayer", "not used: a signature type 0 wallet redeems with its own transactions",
                      critical=False)
    try:
        creds = Credentials.from_env(ctx.get)
    except RedeemSetupError as exc:
        return failed("relayer", str(exc), "set all three builder credentials or none", critical=False)
    if creds is None:
        return failed("relayer", "no builder credentials (BUILDER_API_KEY, BUILDER_SECRET, BUILDER_PASS_PHRASE): "
                                 "winnings are not redeemed automatically and --fix-approvals cannot send",
                      "create a builder API key on polymarket.com (Settings > Builder) and add the three "
                      "variables to the secrets file", critical=False)
    url = ctx.url(env.RELAYER_URL)
    try:
        check_credentials(url, creds, timeout_s=ctx.timeout_s)
    except RelayerRefused as exc:
        return failed("relayer", str(exc), "copy BUILDER_API_KEY, BUILDER_SECRET and BUILDER_PASS_PHRASE again",
                      critical=False)
    except (RelayerBusy, RedeemSetupError) as exc:
        return failed("relayer", str(exc), f"retry; check the network and {env.RELAYER_URL}", critical=False)
    return passed("relayer", f"the relayer at {url} accepts the builder credentials", critical=False)


def pol_for_gas(ctx: Context) -> Check:
    from polymm.trader.venue.chain import ChainError

    if ctx.signature_type != 0:
        return passed("pol", "not needed: the gasless relayer pays for this wallet type", critical=False)
    rpc = ctx.rpc()
    owner = signer_address(ctx)
    if rpc is None:
        return failed("pol", "no Polygon RPC configured: a type-0 wallet's winnings are reported, not redeemed",
                      f"set redeem.rpc_url (or {env.RPC_URL}) and hold POL for gas, or redeem in Polymarket's UI",
                      critical=False)
    if owner is None:
        return skipped("pol", "needs a valid PK", critical=False)
    try:
        if rpc.chain_id() != 137:
            return failed("pol", f"the RPC at {rpc.where} is not Polygon mainnet (chain id {rpc.chain_id()})",
                          "point redeem.rpc_url at a Polygon (chain 137) endpoint", critical=False)
        wei, price = rpc.balance_wei(owner), rpc.gas_price()
    except ChainError as exc:
        return failed("pol", str(exc), f"check redeem.rpc_url / {env.RPC_URL}", critical=False)
    need = REDEMPTIONS_FUNDED * REDEEM_TX_GAS * price
    if wei < need:
        return failed("pol", f"{owner} holds {wei / 1e18:.4f} POL, less than {REDEMPTIONS_FUNDED} redemptions' gas "
                             f"({need / 1e18:.4f} POL at {price / 1e9:.0f} gwei)",
                      f"send POL to {owner}", critical=False)
    return passed("pol", f"{owner} holds {wei / 1e18:.4f} POL for redemption gas (RPC {rpc.where})", critical=False)


def run(ctx: Context) -> list[Check]:
    return [rtds(ctx), data_api(ctx), relayer(ctx), pol_for_gas(ctx)]
