"""Names every part agrees on (architecture.md, "Names every part agrees on").

One place for the environment variables and their defaults, so the feed, the trader, mmctl and the
unit files cannot drift apart. Production endpoints are defaults here and nowhere else.
"""
from __future__ import annotations

import os
from pathlib import Path

# Polymarket production. Every one of these is overridable (env var, option or config value).
PROD_GAMMA_URL = "https://gamma-api.polymarket.com"
PROD_CLOB_URL = "https://clob.polymarket.com"
PROD_WS_MARKET_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/market"
PROD_WS_USER_URL = "wss://ws-subscriptions-clob.polymarket.com/ws/user"
# Real-Time Data Socket: the Chainlink and Binance BTC prices (docs.polymarket.com, market-data/websocket/rtds).
PROD_RTDS_URL = "wss://ws-live-data.polymarket.com"
PROD_DATA_URL = "https://data-api.polymarket.com"
PROD_RELAYER_URL = "https://relayer-v2.polymarket.com"
# Is this host's IP allowed to place orders (docs.polymarket.com/api-reference/geoblock; on polymarket.com).
PROD_GEOBLOCK_URL = "https://polymarket.com/api/geoblock"

DEFAULT_CONFIG = "/etc/polymm/config.toml"
DEFAULT_SHM = "poly_tob_shm"
DEFAULT_SOCKET = "/run/polymm/trader.sock"
DEFAULT_WINDOW_S = 900
# Where systemd puts the trader's state (StateDirectory=polymm): mmctl, run from an operator's shell without
# $STATE_DIRECTORY, looks here when the state directory it would compute has no ledger.
SYSTEMD_STATE_DIR = "/var/lib/polymm"

# Environment variable names.
CONFIG = "POLYMM_CONFIG"
SHM = "POLYMM_SHM"
SOCKET = "POLYMM_SOCKET"
WINDOW_S = "POLYMM_WINDOW_S"
# The market series a feed or trader follows (polymm/series.py): `btc-15m` (the default), `eth-5m`, `sol-1h`, ...
# The template units pass their instance name (polymm-trader@eth-5m); for the sim, a comma-separated list.
SERIES = "POLYMM_SERIES"
STATE_DIR = "POLYMM_STATE_DIR"
GAMMA_URL = "POLYMM_GAMMA_URL"
CLOB_URL = "POLYMM_CLOB_URL"
WS_MARKET_URL = "POLYMM_WS_MARKET_URL"
WS_USER_URL = "POLYMM_WS_USER_URL"
RTDS_URL = "POLYMM_RTDS_URL"
DATA_URL = "POLYMM_DATA_URL"
RELAYER_URL = "POLYMM_RELAYER_URL"
GEOBLOCK_URL = "POLYMM_GEOBLOCK_URL"
# A Polygon JSON-RPC endpoint (no production default: the operator's own, or a provider's with a key in its URL).
# Overrides redeem.rpc_url of the config: approvals the exchange does not report, type-0 redemption.
RPC_URL = "POLYMM_RPC_URL"
# Log levels: POLYMM_LOG_LEVEL for both services; POLYMM_FEED_LOG_LEVEL for the feed alone (wins over the shared
# one), so the environment file can turn the feed's debug on without a drop-in overriding ExecStart.
LOG_LEVEL = "POLYMM_LOG_LEVEL"
FEED_LOG_LEVEL = "POLYMM_FEED_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Prometheus endpoints (HOST:PORT or off; polymm/listen.py): the feed's, and the trader's (wins over metrics.listen).
FEED_METRICS = "POLYMM_FEED_METRICS"
TRADER_METRICS = "POLYMM_TRADER_METRICS"
# The trader's decision loop re-runs its tick path on the quiet book every N milliseconds (0 or unset: never), keeping
# the CPU's caches warm for the next tick at some CPU cost (trader/engine.py WARM_EVERY_S; polymm-trader.service sets it).
WARM_EVERY_MS = "POLYMM_WARM_EVERY_MS"
# The trader's decision loop runs on this CPU only: a number, "auto" (the last CPU the process may use, when it may
# use two or more) or "off"/unset (the kernel places it). polymm-trader.service sets "auto" (polymm/realtime.py).
LOOP_CPU = "POLYMM_LOOP_CPU"
# "poll": that CPU polls instead of sleeping while idle (its PM QoS resume latency, set as root by polymm-cpu-idle, which
# polymm-trader.service runs around the trader); "off"/unset: it idles as the kernel decides (polymm/cpu_idle.py).
LOOP_CPU_IDLE = "POLYMM_LOOP_CPU_IDLE"
# Test-only: "1" lets SIGUSR2 block the trader's decision loop (the systemd watchdog test; trader/service.py).
TEST_HOOKS = "POLYMM_TEST_HOOKS"
# Every name above starts with this: a child process started with a clean slate drops the caller's (demo/).
PREFIX = "POLYMM_"

# Set by systemd for the services (read, never set, by us): the state directory (StateDirectory=), the notify
# socket and watchdog period (Type=notify, WatchdogSec=), and the journal stream (StandardOutput=journal).
SYSTEMD_STATE_DIRECTORY = "STATE_DIRECTORY"
NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
JOURNAL_STREAM = "JOURNAL_STREAM"
# polymm-web's token arrives as a credential (LoadCredential=): a file in this directory.
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
SYSTEMD_NAMES = (NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM)

# Secrets: read from the environment only, never logged, never written by us.
PK = "PK"
BROWSER_ADDRESS = "BROWSER_ADDRESS"
SIGNATURE_TYPE = "SIGNATURE_TYPE"
POLY_API_KEY = "POLY_API_KEY"
POLY_API_SECRET = "POLY_API_SECRET"
POLY_PASSPHRASE = "POLY_PASSPHRASE"
# Builder API credentials for Polymarket's gasless relayer (redemption); names as py-builder-relayer-client's
# README spells them.
BUILDER_API_KEY = "BUILDER_API_KEY"
BUILDER_SECRET = "BUILDER_SECRET"
BUILDER_PASS_PHRASE = "BUILDER_PASS_PHRASE"
SECRET_NAMES = (PK, POLY_API_KEY, POLY_API_SECRET, POLY_PASSPHRASE, BUILDER_API_KEY, BUILDER_SECRET,
                BUILDER_PASS_PHRASE)

ENDPOINT_DEFAULTS = {
    GAMMA_URL: PROD_GAMMA_URL,
    CLOB_URL: PROD_CLOB_URL,
    WS_MARKET_URL: PROD_WS_MARKET_URL,
    WS_USER_URL: PROD_WS_USER_URL,
    RTDS_URL: PROD_RTDS_URL,
    DATA_URL: PROD_DATA_URL,
    RELAYER_URL: PROD_RELAYER_URL,
    GEOBLOCK_URL: PROD_GEOBLOCK_URL,
}


def get(name: str, default: str | None = None) -> str | None:
    """An environment value, treating an empty string as unset (systemd EnvironmentFile= writes those)."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def state_dir() -> Path:
    """POLYMM_STATE_DIR, else systemd's $STATE_DIRECTORY (first entry), else ~/.local/state/polymm."""
    explicit = get(STATE_DIR)
    if explicit:
        return Path(explicit)
    systemd = get(SYSTEMD_STATE_DIRECTORY)
    if systemd:
        return Path(systemd.split(":")[0])
    return Path.home() / ".local" / "state" / "polymm"


def log_level_from_env(*names: str, default: str = "INFO") -> tuple[str, str | None]:
    """(level, the variable it came from or None for the default): the first of `names` that is set.
    Not validated here: the service's argument parser refuses an unknown level in words."""
    for name in names:
        value = get(name)
        if value is not None:
            return value.strip().upper(), name
    return default, None


# polymm-web (the optional extra `polymm[web]`): where it listens (loopback unless the operator allows another
# address with --allow-remote) and the file holding its bearer token (generated by deploy/install.sh; under systemd
# the unit passes it as a credential instead).
WEB_LISTEN = "POLYMM_WEB_LISTEN"
WEB_TOKEN_FILE = "POLYMM_WEB_TOKEN_FILE"
DEFAULT_WEB_LISTEN = "127.0.0.1:8780"
DEFAULT_WEB_TOKEN_FILE = "/etc/polymm/web.token"
