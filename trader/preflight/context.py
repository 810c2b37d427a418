"""What the preflight checks share: the trader's config, its secrets and endpoints, and the things built from
them once (the exchange gateway, the live market, the Polygon RPC).

The secrets: the process environment, over the trader's environment file (`--env-file`, default
/etc/polymm/polymm.env when it exists: the file the systemd unit reads as root). The environment wins, as an
explicit value wins over a default. The file is parsed as systemd reads an EnvironmentFile: KEY=VALUE lines,
`#`/`;` comments, optional single or double quotes.
"""
from __future__ import annotations

import argparse
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from polymm import env

DEFAULT_ENV_FILE = "/etc/polymm/polymm.env"


class EnvFileError(Exception):
    """The environment file cannot be read or parsed; the message says which line or why."""


def read_env_file(path: str | Path) -> dict[str, str]:
    try:
        text = Path(path).read_text()
    except PermissionError:
        raise EnvFileError(f"{path} is not readable by this user (it is the trader's root-only secrets file: "
                           "run polymm-preflight with sudo, or export the variables)") from None
    except OSError as exc:
        raise EnvFileError(f"{path}: {exc.strerror or exc}") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise EnvFileError(f"{path} line {number}: expected KEY=VALUE")
        value = value.strip()
        if value[:1] in ("'", '"'):
            try:
                parts = shlex.split(value)
            except ValueError:
                raise EnvFileError(f"{path} line {number}: unbalanced quotes") from None
            value = parts[0] if parts else ""
        out[key] = value
    return out


@dataclass
class Context:
    environ: dict[str, str]
    timeout_s: float = 5.0
    config_path: Path | None = None
    cfg: object | None = None  # trader.config.Config
    config_error: str | None = None
    env_file: str | None = None
    env_file_error: str | None = None
    state_dir: Path = Path(".")
    socket: str = env.DEFAULT_SOCKET
    rpc_url: str = ""
    # built lazily by the checks
    gateway: object | None = None  # trader.venue.gateway.Gateway (built from the secrets)
    gateway_error: str | None = None
    connected: bool = False
    market: object | None = None  # feed.discovery.MarketInfo of the live window
    market_error: str | None = None
    rules: object | None = None  # trader.venue.gateway.MarketRules
    balance_units: int | None = None
    collateral_answer: dict | None = None
    approval_readings: list = field(default_factory=list)  # trader.venue.approvals.Reading, every one checked
    _rpc: object | None = field(default=None, repr=False)

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value if value not in (None, "") else None

    def url(self, name: str) -> str:
        """An endpoint: the environment's override, else the config's (for the CLOB), else production."""
        if name == env.CLOB_URL and self.get(name) is None and self.cfg is not None:
            return self.cfg.endpoints.clob_url
        if name == env.GAMMA_URL and self.get(name) is None and self.cfg is not None:
            return self.cfg.endpoints.gamma_url
        return (self.get(name) or env.ENDPOINT_DEFAULTS[name]).rstrip("/")

    @property
    def signature_type(self) -> int | None:
        raw = self.get(env.SIGNATURE_TYPE) or "0"
        return int(raw) if raw.isdigit() and int(raw) in (0, 1, 2, 3) else None

    @property
    def window_s(self) -> int:
        return self.cfg.market.window_s if self.cfg is not None else env.DEFAULT_WINDOW_S

    def rpc(self):
        """The Polygon RPC (trader.venue.chain.ChainRpc), or None when none is configured."""
        if self._rpc is None and self.rpc_url:
            from polymm.trader.venue.chain import ChainRpc

            self._rpc = ChainRpc(self.rpc_url, timeout_s=self.timeout_s)
        return self._rpc

    def live_market(self):
        """The market of the window live now (Gamma), else of the next one; None with `market_error` set."""
        if self.market is None and self.market_error is None:
            from polymm.feed.discovery import DiscoveryError, GammaClient, window_start_for

            gamma = GammaClient(self.url(env.GAMMA_URL), self.window_s, timeout_s=self.timeout_s)
            start = window_start_for(time.time(), self.window_s)
            for window in (start, start + self.window_s):
                try:
                    self.market = gamma.fetch(window)
                    break
                except DiscoveryError as exc:
                    self.market_error = str(exc)
            if self.market is not None:
                self.market_error = None
        return self.market

    def close(self) -> None:
        for thing in (self.gateway, self._rpc):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing is best effort on the way out
                    pass


def build(args: argparse.Namespace) -> Context:
    """The context of one run from the command line (secrets and config are read; nothing is sent yet)."""
    from polymm.trader.config import ConfigError
    from polymm.trader.control.handler import ConfigStore
    from polymm.trader.service import config_path, endpoint_settings

    environ: dict[str, str] = {}
    env_file, env_file_error = args.env_file, None
    if env_file is None and Path(DEFAULT_ENV_FILE).exists():
        env_file = DEFAULT_ENV_FILE
    if env_file:
        try:
            environ.update(read_env_file(env_file))
        except EnvFileError as exc:
            env_file_error = str(exc)
    environ.update({k: v for k, v in os.environ.items() if v != ""})
    ctx = Context(environ=environ, timeout_s=args.timeout, env_file=env_file, env_file_error=env_file_error)

    if args.state_dir:
        ctx.state_dir = Path(args.state_dir)
    elif ctx.get(env.STATE_DIR) or ctx.get(env.SYSTEMD_STATE_DIRECTORY) or not Path(env.SYSTEMD_STATE_DIR).exists():
        saved = dict(os.environ)
        try:
            os.environ.update(ctx.environ)
            ctx.state_dir = env.state_dir()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    else:
        ctx.state_dir = Path(env.SYSTEMD_STATE_DIR)  # the installed service's (StateDirectory=polymm)
    ctx.socket = args.socket or ctx.get(env.SOCKET) or env.DEFAULT_SOCKET

    ctx.config_path = config_path(args.config or ctx.get(env.CONFIG))
    window = ctx.get(env.WINDOW_S)
    settings = argparse.Namespace(gamma_url=ctx.get(env.GAMMA_URL), clob_url=ctx.get(env.CLOB_URL),
                                  ws_market_url=ctx.get(env.WS_MARKET_URL), ws_user_url=ctx.get(env.WS_USER_URL),
                                  window_s=int(window) if window and window.isdigit() else None, paper=False,
                                  metrics=None)
    store = ConfigStore(ctx.config_path, ctx.state_dir / "overrides.json", base=endpoint_settings(settings))
    try:
        store.load()
        ctx.cfg = store.current
    except ConfigError as exc:
        ctx.config_error = str(exc)
    except OSError as exc:
        ctx.config_error = f"cannot read the configuration: {exc.strerror or exc}"
    ctx.rpc_url = args.rpc_url or ctx.get(env.RPC_URL) or (ctx.cfg.redeem.rpc_url if ctx.cfg is not None else "")
    return ctx
