"""`polymm-trader`: the trading service.

Start-up order (systemd Type=notify; READY=1 only when really ready):
  config file + persisted overrides -> exchange gateway built (secrets from the environment only; checked before
  any waiting) -> shared memory attached and a live market published by the feed -> execution core started on
  that market (the exchange answers; our orders and fills are reconciled before any new order) -> first
  decision -> control socket -> READY=1.
Then the decision loop runs on the main thread and pets the watchdog (WATCHDOG=1) itself, so a hung loop gets
the service restarted; STATUS= (window, state, exposure, P&L) is refreshed every few seconds by its own thread.
Background threads besides the execution core's: resolution of ended windows (trader/execution/resolution.py) and the
wallet balance (trader/execution/balance.py), both only for accounting and status. SIGHUP (systemctl reload) re-reads file + overrides (RELOADING=1 ... READY=1; on error
the old config stays). SIGTERM/SIGINT: STOPPING=1, cancel our open orders, stop.

Live start also runs the cheap critical subset of polymm-preflight (trader/preflight/start.py): the funder must be
the key's wallet for its signature type (before anything is waited for), and the wallet must hold the approvals the
served order version needs (once the exchange answers). Either failing refuses the start in one line.

Exit codes: 0 clean stop; 2 a problem the operator must fix (bad config, missing secrets, a wrong funder, missing
approvals, a second trader on the same wallet, socket in use, a shared-memory layout this version does not read) —
systemd does not retry (RestartPreventExitStatus=2); 1 anything that may pass (no feed yet, exchange unreachable,
a crash).

Test-only hook: with POLYMM_TEST_HOOKS=1 in the environment, SIGUSR2 makes the decision loop block forever
so the systemd watchdog test can see the service killed and restarted. Never set it in production.
"""
from __future__ import annotations

import argparse
import faulthandler
import grp
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from polymm import env, logs, memory, realtime
from polymm import series as series_mod
from polymm.notify import Notifier
from polymm.signals import Signals

log = logging.getLogger("polymm.trader")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
STATUS_EVERY_S = 2.0

# Endpoint options/env -> config keys. Set ones override the config file (architecture.md: options and
# POLYMM_* variables override config values); they are not persisted as overrides.
_ENDPOINTS = (
    ("gamma_url", env.GAMMA_URL, "endpoints.gamma_url"),
    ("clob_url", env.CLOB_URL, "endpoints.clob_url"),
    ("ws_market_url", env.WS_MARKET_URL, "endpoints.ws_market_url"),
    ("ws_user_url", env.WS_USER_URL, "endpoints.ws_user_url"),
)


PAPER_USER_URL = "paper://user-channel"  # the paper exchange's in-process user channel


class StartupError(Exception):
    """A reason not to start that the operator must fix; printed as one line, exit code 2."""


class StartupFailure(Exception):
    """Could not start for a reason that may pass (exchange unreachable); one line, exit code 1 (systemd retries)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="polymm-trader",
        description="Trade one series of Polymarket's Up/Down markets from the feed's shared memory (S1, S2, risk). "
        "Secrets (PK, BROWSER_ADDRESS, SIGNATURE_TYPE, optional POLY_API_KEY/SECRET/PASSPHRASE) come from the "
        "environment only.",
    )
    ap.add_argument("--series", default=env.get(env.SERIES, series_mod.DEFAULT_SERIES),
                    help=f"market series ASSET-WINDOW: {', '.join(series_mod.ALL_NAMES)} (env {env.SERIES}; default "
                         f"{series_mod.DEFAULT_SERIES}); its feed's segment, its socket and its config section")
    ap.add_argument("--config", default=env.get(env.CONFIG),
                    help=f"TOML config file (env {env.CONFIG}; default {env.DEFAULT_CONFIG} when it exists)")
    ap.add_argument("--shm", default=env.get(env.SHM),
                    help=f"feed shared-memory name (env {env.SHM}; default {env.DEFAULT_SHM} for "
                         f"{series_mod.DEFAULT_SERIES}, {env.DEFAULT_SHM}_<series> for the others)")
    ap.add_argument("--socket", default=env.get(env.SOCKET),
                    help=f"control socket path (env {env.SOCKET}; default {env.DEFAULT_SOCKET} for "
                         f"{series_mod.DEFAULT_SERIES}, trader-<series>.sock beside it for the others)")
    ap.add_argument("--state-dir", default=None,
                    help=f"where overrides.json lives (env {env.STATE_DIR}, else $STATE_DIRECTORY, else ~/.local/state/polymm)")
    ap.add_argument("--socket-group", default=None,
                    help="group allowed to use the control socket (default: the service's own group)")
    for name, var, _key in _ENDPOINTS:
        ap.add_argument(f"--{name.replace('_', '-')}", default=env.get(var), help=f"endpoint (env {var}; default: config, else production)")
    ap.add_argument("--paper", action="store_true",
                    help="paper trading: fill orders locally against the live book (mode = \"paper\" whatever the "
                    "config says); no keys needed, nothing is sent to the exchange")
    ap.add_argument("--metrics", metavar="HOST:PORT|off", default=None,
                    help=f"Prometheus endpoint (default: metrics.listen of the config, 127.0.0.1:9892 for "
                         f"{series_mod.DEFAULT_SERIES}; env {env.TRADER_METRICS}: for another series its host with the "
                         "series' own port)")
    ap.add_argument("--window-s", type=int, default=_int_env(env.WINDOW_S),
                    help=f"market window length in seconds (env {env.WINDOW_S}; overrides market.window_s of the config)")
    # Below the unit's TimeoutStartSec=120, so the trader says why it gives up before systemd kills it.
    ap.add_argument("--feed-wait-s", type=float, default=90.0,
                    help="how long to wait at start for the feed to publish a live market (default 90)")
    ap.add_argument("--log-level", default=env.get(env.LOG_LEVEL, "INFO"), help="DEBUG, INFO, WARNING (default INFO)")
    args = ap.parse_args(argv)
    series_mod.resolve_args(ap, args, env.DEFAULT_SHM)
    args.socket = args.socket or series_mod.socket_path(args.series, env.DEFAULT_SOCKET)
    if args.metrics is None and env.get(env.TRADER_METRICS) is not None:
        from polymm.listen import DEFAULT_TRADER_LISTEN

        args.metrics = series_mod.metrics_listen(args.series, "trader", env.get(env.TRADER_METRICS),
                                                 int(DEFAULT_TRADER_LISTEN.rsplit(":", 1)[1]))
    return args


def config_path(arg: str | None) -> Path | None:
    """The config file to read: explicit (must exist), else the default path when it exists, else none."""
    if arg:
        return Path(arg)
    default = Path(env.DEFAULT_CONFIG)
    return default if default.exists() else None


def _int_env(name: str) -> int | None:
    value = env.get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None  # load_store reports it with the variable's name


def endpoint_settings(args: argparse.Namespace) -> dict[str, str]:
    """Settings from options/environment that override the file (never persisted as overrides)."""
    out = {key: getattr(args, name) for name, _var, key in _ENDPOINTS if getattr(args, name)}
    if args.window_s:
        out["market.window_s"] = str(args.window_s)
    if getattr(args, "paper", False):
        out["mode"] = "paper"
    if getattr(args, "metrics", None):
        out["metrics.listen"] = args.metrics
    return out


def _socket_gid(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise StartupError(f"--socket-group {name}: no such group") from None


# ---- building the parts (each raises StartupError with words) ------------------------------------------------


def load_store(args: argparse.Namespace):
    from polymm.trader.config import ConfigError
    from polymm.trader.control.handler import ConfigStore

    raw_window = env.get(env.WINDOW_S)
    if raw_window and not args.window_s:
        raise StartupError(f"{env.WINDOW_S}={raw_window!r} is not a whole number of seconds")
    state_dir = Path(args.state_dir) if args.state_dir else env.state_dir()
    path = config_path(args.config)
    series = getattr(args, "series", None)
    # One state directory serves every series of the host (its ledger is shared); each series keeps its own
    # overrides (`mmctl -m eth-5m set ...` changes eth-5m only). The default series keeps its old file name.
    name = "overrides.json" if series is None or series.is_default else f"overrides-{series.name}.json"
    store = ConfigStore(path, state_dir / name, base=endpoint_settings(args), series=series)
    try:
        store.load()
    except ConfigError as exc:
        raise StartupError(f"bad configuration: {exc}") from None
    if path is None:
        log.warning("no config file (%s does not exist): running on defaults + overrides", env.DEFAULT_CONFIG)
    return store


def warm_every_s() -> float | None:
    """POLYMM_WARM_EVERY_MS as the decision loop's rehearsal period in seconds (None: no rehearsals); a value that is
    not a number of milliseconds from 0 to 1000 is refused in words (exit 2)."""
    raw = env.get(env.WARM_EVERY_MS)
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        ms = float("nan")
    if not 0 <= ms <= 1000:
        raise StartupError(f"{env.WARM_EVERY_MS}={raw!r} is not a number of milliseconds from 0 to 1000 (0: off)")
    if ms:
        log.info("decision loop rehearses every %g ms while the book is quiet (%s)", ms, env.WARM_EVERY_MS)
    return ms / 1000.0 or None


def loop_cpu() -> int | None:
    """POLYMM_LOOP_CPU as the CPU the decision loop is pinned to (None: not pinned); a value that names no CPU this
    process may use is refused in words (exit 2)."""
    try:
        return realtime.loop_cpu_setting()
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def attach_feed(name: str, wait_s: float, stop: threading.Event):
    from polymm.feed import shm

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return shm.Reader(name, wait_s=min(1.0, wait_s))
        except shm.LayoutError as exc:
            raise StartupError(str(exc)) from None
        except shm.ShmMissing as exc:
            if stop.is_set() or time.monotonic() >= deadline:
                # Transient (the feed may be starting or restarting): exit 1 so systemd tries again.
                raise StartupFailure(f"{exc} (waited {wait_s:.0f} s)") from None


def open_ledger(state_dir: Path, mode: str = "live", series: str = series_mod.DEFAULT_SERIES):
    """The ledger under the state directory, its writer thread started (never raises for file problems: an
    unwritable ledger is a status warning and refuses new entries). Every series of the host writes the same file,
    each its own rows (tagged with its series)."""
    from importlib.metadata import PackageNotFoundError, version

    from polymm.trader.ledger import LedgerWriter, default_path

    try:
        polymm_version = version("polymm")
    except PackageNotFoundError:
        polymm_version = "unknown"
    ledger = LedgerWriter(default_path(state_dir), mode, series=series)
    ledger.start({"version": polymm_version})
    return ledger


def build_core(cfg, state_dir: Path, shm_name: str | None = None, **kw):
    """The exchange gateway (secrets from the environment) and the execution core over it. The core locks the
    wallet under `state_dir` (one trader per wallet) and journals its orders there. Paper mode: the paper
    exchange stands in for the gateway and the user channel (trader/paper/); the environment's keys are never read."""
    from polymm.trader.execution import core as execution
    from polymm.trader.venue import gateway

    if cfg.mode == "paper":
        from polymm.trader.paper.exchange import PaperExchange, paper_address
        from polymm.trader.paper.gateway import PaperGateway, paper_user_stream

        exchange = PaperExchange(shm_name or env.DEFAULT_SHM, cfg, balance_usd=cfg.paper.balance_usd,
                                 latency_s=cfg.fill_model.latency_ms / 1000.0, address=paper_address(state_dir))
        return execution.ExecutionCore(PaperGateway(exchange, cfg.endpoints.clob_url), ws_user_url=PAPER_USER_URL, state_dir=state_dir,
                                       heartbeat=cfg.risk.heartbeat, user_stream=paper_user_stream(exchange), **kw)

    try:
        gw = gateway.Gateway.from_env(clob_url=cfg.endpoints.clob_url)
    except gateway.ConfigError as exc:  # missing/bad secrets: the message names the variable, never its value
        raise StartupError(str(exc)) from None
    # risk.heartbeat is read here, once: it is not live (turning the switch off under resting orders would
    # leave them unprotected), so a change waits for a restart (shown as pending in mmctl status).
    return execution.ExecutionCore(gw, ws_user_url=cfg.endpoints.ws_user_url, state_dir=state_dir,
                                   heartbeat=cfg.risk.heartbeat, **kw)


# ---- the service ----------------------------------------------------------------------------------------------


class TraderService:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.signals = Signals(reload=True)
        self.notifier = Notifier()
        self.store = None
        self.engine = None
        self.core = None
        self.handler = None
        self.server = None
        self.resolutions = None
        self.paper_resolutions = None
        self.balance = None
        self.ledger = None
        self.redeemer = None
        self.mode = "live"
        self.exporter = None  # the Prometheus endpoint (trader/metrics.py); None when off
        self.metrics_counters = None
        self.wallet = None  # trader/wallet/ WalletCoordinator: the other series of this wallet

    def run(self) -> int:
        try:
            self._start()
        except StartupError as exc:
            log.error("not starting: %s", exc)
            self._shutdown()
            return EXIT_CONFIG
        except StartupFailure as exc:
            self._shutdown()
            if self.signals.stop.is_set():  # told to stop while still starting: not a failure
                return EXIT_OK
            log.error("could not start: %s", exc)
            return EXIT_FAILURE
        except Exception:
            log.exception("start-up failed")
            self._shutdown()
            return EXIT_FAILURE
        if self.signals.stop.is_set():
            self._shutdown()
            return EXIT_OK
        try:
            status_thread = threading.Thread(target=self._status_loop, name="polymm-status", daemon=True)
            status_thread.start()
            self.engine.run(self.signals.stop, self.signals.reload, self._on_reload)
        finally:
            self._shutdown()
        return EXIT_OK

    def _start(self) -> None:
        from polymm.trader.control.server import ControlServer, ControlServerError
        from polymm.trader.control.handler import TraderControlHandler
        from polymm.trader.engine import Engine

        args = self.args
        self.store = self.store or load_store(args)
        self.state_dir = self.store.overrides_path.parent
        cfg = self.store.current
        for warning in __import__("polymm.trader.config", fromlist=["warnings"]).warnings(cfg):
            log.warning("config: %s", warning)
        gid = _socket_gid(args.socket_group)
        warm = warm_every_s()  # refused in words before anything is started
        cpu = loop_cpu()
        self._start_metrics(cfg)
        # The mode is read here, once: a running trader never switches between paper and live.
        self.mode = cfg.mode
        if self.mode == "paper":
            from polymm.trader.paper.logs import tag_paper_logs

            tag_paper_logs()
            log.warning("PAPER TRADING: orders are filled locally against the live book (balance %.2f pUSD, latency "
                        "%g ms); nothing is sent to the exchange, no key is used", cfg.paper.balance_usd,
                        cfg.fill_model.latency_ms)
        # Secrets are checked before waiting for anything, so a missing key fails at once (no network yet).
        series = args.series
        self.ledger = self.ledger or open_ledger(self.state_dir, mode=self.mode,  # paper runs are tagged "paper"
                                                 series=series.name)
        self.core = build_core(cfg, self.state_dir, args.shm, ledger=self.ledger, series=series.name)
        self.core.metrics = self.metrics_counters  # order actions and rejects counted where they are logged
        if self.mode == "live":
            from polymm.trader.preflight.start import funder_refusal

            problem = funder_refusal(self.core.gateway)
            if problem is not None:  # every order would be refused and redemption would run from another wallet
                self.core.gateway.close()
                self.core = None  # it holds nothing yet (the wallet is locked at core.start)
                raise StartupError(f"refusing to start live: {problem}")
        self.wallet = self.core.wallet = self._wallet(series)

        self.notifier.status(self._tag("waiting for the feed's shared memory"), min_interval_s=0.0)
        feed_deadline = time.monotonic() + args.feed_wait_s  # one budget for the segment and a live market
        reader = attach_feed(args.shm, args.feed_wait_s, self.signals.stop)
        self.engine = Engine(
            reader, None, cfg, notifier=self.notifier,
            reconfigure=self._reconfigure_for_restart,
            reconnect_reader=lambda: self._reattach_feed(),
            config_source=lambda: self.store.current,
            on_decision=self.metrics_counters.on_decision if self.metrics_counters is not None else None,
        )
        self.engine.book_shows_our_orders = self.mode != "paper"
        self.engine.warm_every_s = warm
        self.engine.loop_cpu = cpu
        self.engine.reference_source = series.resolution_source
        self.notifier.status(self._tag("waiting for the feed to publish a live market"), min_interval_s=0.0)
        try:
            market = self.engine.attach_market(max(1.0, feed_deadline - time.monotonic()), self.signals.stop)
        except TimeoutError as exc:
            raise StartupFailure(str(exc)) from None
        if self.signals.stop.is_set():
            return
        if market.window_end - market.window_start != cfg.market.window_s:
            log.warning("the feed's window is %d s but market.window_s is %d s: the cap schedule and late window "
                        "assume the wrong length (set %s or market.window_s; is the feed of series %s?)",
                        market.window_end - market.window_start, cfg.market.window_s, env.WINDOW_S, series.name)

        self.notifier.status(self._tag("connecting to the exchange and reconciling"), min_interval_s=0.0)
        if self.mode == "live":
            self._check_approvals(cfg, market)
        self.engine.core = self.core
        self._give_way_to_the_loop()
        try:
            self.engine.start(market)  # reconciles before any new order
        except Exception as exc:
            if _is_wallet_lock_error(exc):
                self.core = None  # it holds nothing: do not cancel the other trader's orders on the way out
                raise StartupError(str(exc)) from None
            if _is_exchange_error(exc):
                raise StartupFailure(f"the exchange at {cfg.endpoints.clob_url} did not answer: {exc}") from None
            raise

        from polymm.trader.execution.resolution import ResolutionWatcher
        from polymm.trader.wallet.decisions import DecisionHook

        self.wallet.start(cfg, market)
        self.wallet.read_ledger(self.ledger.path)
        self.wallet.start_refresher()
        self.engine.wallet = DecisionHook(self.wallet, lambda: self.store.current)
        self.resolutions = ResolutionWatcher(self.core, cfg.endpoints.gamma_url, slugs_of=series.slugs)
        self.resolutions.start()
        if self.mode == "paper":
            # The paper wallet is paid from the market's outcome on Gamma, as the exchange pays a live one.
            self.paper_resolutions = ResolutionWatcher(self.core.gateway.exchange, cfg.endpoints.gamma_url,
                                                       slugs_of=series.slugs)
            self.paper_resolutions.start()
        from polymm.trader.execution.balance import BalanceWatcher

        # Cash moves with our fills at once (the core's cash book); every poll puts it right (the exchange wins).
        # Several series on one wallet: the others' fills and redemptions move the same pUSD; each publishes how
        # many cash moves it counted, and a comparison across one of theirs is in doubt (cash.py).
        self.wallet.cash_moves = self.core.cash_moves
        self.balance = BalanceWatcher(self.core.gateway, book=self.core, others=self.wallet.others_cash_moves)
        self.balance.start()
        if self.mode != "paper":  # the paper exchange pays resolutions itself: there is nothing on-chain to redeem
            from polymm.trader.redeem.service import build_redeemer

            self.redeemer = build_redeemer(cfg.redeem, funder=self.core.gateway.funder,
                                           signature_type=self.core.gateway.signature_type, state_dir=self.state_dir,
                                           ledger=self.ledger)
            self.redeemer.on_cash_moved = self._redeemed  # a redemption paid pUSD: count it, ask the exchange
            self.redeemer.active = lambda: self.wallet.leader  # one redeemer per wallet: the leader's
            self.redeemer.start()
        self.engine.cash = lambda: self.balance.balance_usd  # risk spends no more than the wallet's pUSD

        self.engine.step()  # one decision before the socket and READY: status has a book from the first answer
        self.handler = TraderControlHandler(self.engine, self.core, self.store, balance=self.balance,
                                            ledger=self.ledger, redeemer=self.redeemer, mode=self.mode,
                                            wallet=self.wallet, series=series.name)
        try:
            self.server = ControlServer(args.socket, self.handler, allowed_gid=gid)
            self.server.start()
        except ControlServerError as exc:
            raise StartupError(str(exc)) from None

        if os.environ.get(env.TEST_HOOKS) == "1":
            log.warning("%s=1: SIGUSR2 blocks the decision loop (systemd watchdog test only)", env.TEST_HOOKS)
            signal.signal(signal.SIGUSR2, lambda *_: self.engine.hang_for_test())

        summary = self._summary()
        log.info("ready: %s; control socket %s", summary, args.socket)
        self.notifier.ready(summary)

    def _redeemed(self, usd: float) -> None:
        self.core.cash_external(usd)
        self.balance.poll_soon()

    def _wallet(self, series):
        """The coordinator of this wallet's series (trader/wallet/): opened before the execution core starts, so its
        first heartbeat goes through it; its slot is claimed only once the series lock is ours (engine.start)."""
        from polymm.trader.wallet.coordinator import WalletCoordinator, wallet_key
        from polymm.trader.wallet.store import StoreError

        gateway = self.core.gateway

        def cancel_market(condition_id: str) -> int:
            return len(gateway.cancel_market(market=condition_id).canceled)

        try:
            return WalletCoordinator(wallet_key(gateway.funder, self.mode, self.state_dir), series, gateway.funder,
                                     cancel_market=cancel_market, lead=self.mode != "paper")
        except StoreError as exc:
            raise StartupError(str(exc)) from None

    def _check_approvals(self, cfg, market) -> None:
        """Refuse to start live without the approvals the served order version needs (exit 2: only the wallet's
        owner can set them); then watch for order version switches (Gateway.approvals_check)."""
        from polymm.trader.execution.exchange_state import ExchangeError
        from polymm.trader.preflight.start import approvals_check, approvals_problem

        gateway = self.core.gateway
        try:
            gateway.connect()  # the order version and the API credentials (core.start re-uses them)
        except ExchangeError as exc:
            raise StartupFailure(f"the exchange at {cfg.endpoints.clob_url} did not answer: {exc}") from None
        rpc = None
        url = env.get(env.RPC_URL) or cfg.redeem.rpc_url
        if url:
            from polymm.trader.venue.chain import ChainRpc

            rpc = ChainRpc(url)
        missing = approvals_problem(gateway, gateway.order_version, market.up_token, rpc, market.neg_risk)
        if missing:
            raise StartupError(f"refusing to start live: wallet {gateway.funder} lacks the approvals order version "
                               f"{gateway.order_version} needs ({missing}); run polymm-preflight --fix-approvals")
        gateway.approvals_check = approvals_check(
            gateway, lambda: self.engine.market.up_token if self.engine and self.engine.market else market.up_token,
            rpc)

    def _start_metrics(self, cfg) -> None:
        """The Prometheus endpoint, bound before anything else starts: an address in use is refused in one line
        (exit 2) before the exchange or the feed is touched. Its values are read at scrape time."""
        from polymm import metrics as prom
        from polymm.trader.metrics import TraderCounters

        if prom.parse_listen(cfg.metrics.listen, source="metrics.listen") is None:
            log.info("metrics off (metrics.listen)")
            return
        self.metrics_counters = TraderCounters()
        try:
            self.exporter = prom.serve(cfg.metrics.listen, source="metrics.listen",
                                       collectors=[prom.CallbackCollector("trader", self._metric_families,
                                                                          labels={"series": self.args.series.name})])
        except prom.MetricsError as exc:
            raise StartupError(str(exc)) from None

    def _give_way_to_the_loop(self) -> None:
        """Every thread of ours that gives way to a decision (trader/priority.py) waits on the engine's gate: the
        execution core's (user channel, order workers), the ledger's writer, the wallet's limits refresher and the
        log's writer (polymm/logs.py)."""
        gate = self.engine.gate
        self.core.gate = self.ledger.gate = self.wallet.gate = gate
        logs.give_way(gate.step_aside)

    def _metric_families(self) -> list:
        """One scrape (trader/metrics.py): read when Prometheus asks, never pushed from the loop."""
        from polymm.trader.metrics import families, read_snapshot

        return families(read_snapshot(self.handler, self.core, self.store.current, self.metrics_counters,
                                      ledger=self.ledger, redeemer=self.redeemer))

    def _reattach_feed(self):
        old = self.engine.reader
        reader = attach_feed(self.args.shm, 10.0, self.signals.stop)
        try:
            old.close()
        except Exception:  # the old mapping may already be gone; the new one is what matters
            pass
        return reader

    def _reconfigure_for_restart(self):
        """`mmctl restart` re-reads the config: file + overrides, keeping the old one on error."""
        old, new, _warnings = self.store.reload()
        self._record_config_changes(old, new, "mmctl restart (config re-read)")
        return new

    def _record_config_changes(self, old, new, who: str) -> None:
        from polymm.trader.control.handler import changes_between

        if self.ledger is not None:
            for c in changes_between(old, new):  # values already redacted: no secret reaches the ledger
                self.ledger.config_change(c.key, c.old, c.new, who)

    def _on_reload(self) -> None:
        """SIGHUP / systemctl reload: called on the loop thread between decisions."""
        from polymm.ctl.protocol import ControlError
        from polymm.trader.control.handler import changes_between

        self.notifier.reloading()
        try:
            old, new, warnings = self.store.reload()
        except ControlError as exc:
            log.error("reload failed, old config kept: %s", exc.message)
            self.notifier.reloaded(self._summary())
            return
        changes = changes_between(old, new)  # the loop reads store.current at its next decision
        self._record_config_changes(old, new, "SIGHUP reload")
        log.info("reloaded config: %s", ", ".join(f"{c.key}: {c.old} -> {c.new}" for c in changes) or "no change")
        for warning in warnings:
            log.warning("config: %s", warning)
        if self.store.pending_restart:
            log.warning("config change pending restart: %s", ", ".join(sorted(self.store.pending_restart)))
        self.notifier.reloaded(self._summary())

    def _status_loop(self) -> None:
        """STATUS= every few seconds from its own thread: the summary reads the core and builds a status reply,
        work the decision loop should not do between ticks. (WATCHDOG=1 stays with the loop.)"""
        while not self.signals.stop.wait(STATUS_EVERY_S):
            self.notifier.status(self._summary(), min_interval_s=0.0)

    def _tag(self, text: str) -> str:
        """STATUS= lines of a paper trader say so first."""
        return f"PAPER {text}" if self.mode == "paper" else text

    def _summary(self) -> str:
        from polymm.trader.control.handler import summary_line

        if self.handler is None:
            return self._tag("starting")
        try:
            return summary_line(self.handler)
        except Exception:  # a status line must never take the loop down
            log.exception("status summary failed")
            return "running (status summary failed; see log)"

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.handler is not None:
            self.handler.stopping = True
        if self.signals.received:
            log.info("%s received: cancelling our open orders and stopping", self.signals.received)
        if self.core is not None:
            try:
                self.core.stop(cancel_orders=True)
            except Exception:
                log.exception("stopping the execution core failed; check the exchange for open orders")
            if self.mode == "paper":
                self.core.gateway.close()  # the paper exchange's threads
        if self.wallet is not None:
            # Our orders are cancelled: what we hold still counts for the other series (a clean stop).
            self.wallet.stop()
        for watcher in (self.resolutions, self.paper_resolutions, self.balance, self.redeemer):
            if watcher is not None:
                watcher.stop()
        if self.server is not None:
            self.server.stop()
        if self.engine is not None and self.engine.reader is not None:
            self.engine.reader.close()
        if self.ledger is not None:
            self.ledger.close(f"stopped ({self.signals.received})" if self.signals.received else "stopped")
        if self.exporter is not None:
            self.exporter.stop()
        log.info("stopped")


def _is_wallet_lock_error(exc: Exception) -> bool:
    """The execution core's "another trader already trades this wallet" refusal."""
    from polymm.trader.execution.wallet_lock import WalletLocked

    return isinstance(exc, WalletLocked)


def _is_exchange_error(exc: Exception) -> bool:
    from polymm.trader.execution.exchange_state import ExchangeError

    return isinstance(exc, ExchangeError)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    memory.limit_arenas()  # before any thread: a flat native heap over weeks (polymm/memory.py)
    # Lines written by a thread of their own: an order line costs the decision loop no write (polymm/logs.py).
    logs.setup("polymm.trader", args.log_level, background=True)
    # systemd's watchdog kills a hung trader with SIGABRT: the journal then gets every thread's traceback.
    faulthandler.enable()
    try:
        return TraderService(args).run()
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:
        log.exception("polymm-trader failed")
        return EXIT_FAILURE
    finally:
        logs.stop_background()  # every line written before the process exits


if __name__ == "__main__":
    sys.exit(main())
