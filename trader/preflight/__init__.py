"""`polymm-preflight`: is this host and account ready for the first real order? Every check is one line,
✔ or ✘ with the fix in words; `--json` for machines; exit 0 only when every critical check passes.

    report.py    a check's result and how it is shown (text, JSON, exit code); pure
    context.py   what the checks share: config, secrets (from the environment and the trader's environment file),
                 the gateway, the live market, the Polygon RPC
    local.py     config, PK, signature type, funder, state directory, ledger, control socket
    exchange.py  clock, order version, credentials, balance, closed-only, market info, approvals, geoblock
    services.py  RTDS (a live Chainlink stream), Data API, relayer credentials, POL for a type-0 wallet
    fix.py       --fix-approvals: the missing approvals through the gasless relayer (types 1-3), or what a type-0
                 wallet must send itself
    cli.py       the command

Critical checks are what the trader needs to trade (it refuses to start live without the cheap ones: see
trader/service.py `live_start_checks`); warnings are what it needs for everything else (redemption, the BTC
reference price, the next order version). No secret is ever shown: not PK (not even a prefix), not the API or
builder secrets. The trader does not have to run; nothing here talks to it.
"""
