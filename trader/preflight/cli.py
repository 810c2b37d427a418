"""`polymm-preflight`: the command (trader/preflight/__init__.py says what it checks).

    sudo /opt/polymm/bin/polymm-preflight                 every check, one line each
    sudo /opt/polymm/bin/polymm-preflight --json          the same for machines
    sudo /opt/polymm/bin/polymm-preflight --fix-approvals set missing approvals (asks first; --yes does not)

Exit codes: 0 every critical check passed; 1 a critical check failed or could not run; 2 a bad command line.
"""
from __future__ import annotations

import argparse
import logging
import sys

from polymm import env
from polymm.trader.preflight import context, exchange, fix, local, report, services


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="polymm-preflight",
        description="Check this host and the trading account before real money moves: one line per check, "
                    "✔ or ✘ with the fix; exit 0 only when every critical check passes. The trader need not run.")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--fix-approvals", action="store_true",
                    help="send the missing approvals through the gasless relayer (signature types 1-3, after a "
                         "question; --yes skips it), or print what a type 0 wallet must send itself")
    ap.add_argument("--yes", action="store_true", help="with --fix-approvals: send without asking")
    ap.add_argument("--config", default=None, help=f"the trader's config file (env {env.CONFIG}; default "
                                                   f"{env.DEFAULT_CONFIG} when it exists)")
    ap.add_argument("--env-file", default=None,
                    help=f"the trader's secrets file, read as systemd reads it (default {context.DEFAULT_ENV_FILE} "
                         "when it exists); the environment wins over it")
    ap.add_argument("--state-dir", default=None, help=f"the trader's state directory (env {env.STATE_DIR}; default: "
                                                      f"{env.SYSTEMD_STATE_DIR} when it exists)")
    ap.add_argument("--socket", default=None, help=f"the control socket path (env {env.SOCKET}; default "
                                                   f"{env.DEFAULT_SOCKET})")
    ap.add_argument("--rpc-url", default=None, help=f"a Polygon JSON-RPC endpoint (env {env.RPC_URL}, config "
                                                    "redeem.rpc_url): approvals the exchange does not report")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per network request (default 5)")
    args = ap.parse_args(argv)
    if not 0 < args.timeout <= 120:
        ap.error("--timeout must be between 0 and 120 seconds")
    if args.yes and not args.fix_approvals:
        ap.error("--yes goes with --fix-approvals")
    if args.fix_approvals and args.json:
        ap.error("--fix-approvals asks and reports in words: run it without --json")
    return args


def run_checks(ctx: context.Context) -> list[report.Check]:
    return local.run(ctx) + exchange.run(ctx) + services.run(ctx)


def heading(ctx: context.Context) -> str:
    from polymm.trader.venue.wallets import WALLET_KINDS

    kind = WALLET_KINDS.get(ctx.signature_type, "unknown wallet kind") if ctx.signature_type is not None else "?"
    return f"polymm-preflight: {kind} (SIGNATURE_TYPE={ctx.get(env.SIGNATURE_TYPE) or '0'}) against " \
           f"{ctx.url(env.CLOB_URL)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The libraries' own loggers stay quiet: every finding is a check line, never a log line or a traceback.
    logging.basicConfig(level=logging.CRITICAL)
    ctx = context.build(args)
    try:
        checks = run_checks(ctx)
        if args.fix_approvals and not args.json:
            print(report.render_text(checks, heading(ctx)))
            print()
            if ctx.connected and fix.fix(ctx, fix.wanted(ctx), yes=args.yes):
                # Read them again, from the exchange and the chain, and show the result.
                first = next(i for i, c in enumerate(checks) if c.name.startswith("approval"))
                rest = [c for c in checks if not c.name.startswith("approval")]
                checks = rest[:first] + exchange.approvals(ctx) + rest[first:]
                print()
                print(report.render_text(checks, heading(ctx) + " (after --fix-approvals)"))
            elif not ctx.connected:
                print("--fix-approvals: the exchange could not be reached with these credentials; fix the critical "
                      "checks above first.")
            return report.exit_code(checks)
        if args.json:
            print(report.render_json(checks, heading=heading(ctx)))
        else:
            print(report.render_text(checks, heading(ctx)))
        return report.exit_code(checks)
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
