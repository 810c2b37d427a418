"""What mmctl talks to: the ControlHandler (trader/control/server.py) backed by the decision loop.

Handlers run on the control server's worker threads, never the trading thread. Reads use what the loop
publishes (`Engine.status`, an immutable object swapped whole) and the execution core's thread-safe
getters; changes are handed to the loop as commands (`Engine.submit`) and take effect at its next decision,
so an operator command never lands half-way through a decision.

Config changes go through `ConfigStore`: validated as a whole by the schema (`apply_settings`), persisted
atomically as overrides in the state directory (never the operator's file), then handed to the loop.
Nothing is persisted or applied unless everything validated.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from polymm.ctl import protocol as p
from polymm.trader.model import Leg, Side

log = logging.getLogger("polymm.trader.control")

# How long a control request waits for the loop to apply a command (it decides every few ms; this only
# matters when the loop is stuck, and then the operator should hear it rather than wait forever).
APPLY_WAIT_S = 5.0
RESTART_WAIT_S = 25.0
# The loop decides at least every 50 ms; silence for this long is worth a warning in status.
LOOP_SILENT_WARN_S = 2.0


def _cfgmod():
    from polymm.trader import config

    return config


# ---- config store ----------------------------------------------------------------------------------


class ConfigStore:
    """The operator's file + persisted overrides (+ endpoints from the environment/options), and the
    effective config built from them.

    `overrides.json` in the state directory holds {"s1.entry_threshold": "0.42", ...} as the operator typed
    them; it is written atomically (temp file, fsync, rename) so a crash never leaves half a file.
    Mutations are serialised by a lock (the control server already runs them one at a time; SIGHUP reloads
    come from the loop thread).
    """

    def __init__(self, path: str | Path | None, overrides_path: str | Path, base: dict[str, str] | None = None,
                 series=None) -> None:
        self.path = Path(path) if path else None
        # The series this trader trades (polymm/series.py; None: as before series existed): its effective config is
        # the base sections stretched to its window plus its own [series.<name>.*] table (trader/config/series.py).
        self.series = series
        self.series_keys: frozenset[str] = frozenset()  # keys its own table sets (mmctl config: "series")
        self.stretched_keys: frozenset[str] = frozenset()  # base keys stretched to its window ("stretched")
        self.overrides_path = Path(overrides_path)
        self.base = dict(base or {})  # endpoints from env/options: not persisted, not shown as overrides
        self.overrides: dict[str, str] = {}
        self.current = None  # effective Config
        self.pending_restart: dict[str, Any] = {}  # key -> value waiting for a restart
        self.file_keys: frozenset[str] = frozenset()  # keys the config file sets (mmctl config's source column)
        self._lock = threading.RLock()
        # Does the file (+ overrides) still load? Checked again only when either file changes (`load_problem`).
        self._checked: tuple | None = None
        self._problem: str | None = None

    # -- reading -------------------------------------------------------------------------------------

    def _read_overrides(self) -> dict[str, str]:
        try:
            text = self.overrides_path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise _cfgmod().ConfigError("", f"cannot read overrides: {exc.strerror or exc}", str(self.overrides_path)) from None
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise _cfgmod().ConfigError("", f"overrides file is not valid JSON: {exc}", str(self.overrides_path)) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise _cfgmod().ConfigError("", "overrides file must be a JSON object of key -> value", str(self.overrides_path))
        return {k: str(v) for k, v in data.items()}

    def _build(self, overrides: dict[str, str]):
        return _cfgmod().load_config(self.path, {**self.base, **overrides}, series=self.series)

    def _learn_sources(self) -> None:
        from polymm.trader.config.load import series_sources

        self.file_keys = _cfgmod().keys_in_file(self.path)
        self.series_keys, self.stretched_keys = series_sources(self.path, self.series, dict(self.base))

    def load(self):
        """At start: file + overrides. ConfigError (key and reason) when either is bad."""
        with self._lock:
            overrides = self._read_overrides()
            cfg = self._build(overrides)
            self.overrides, self.current, self.pending_restart = overrides, cfg, {}
            self._learn_sources()
            return cfg

    def _stamp(self) -> tuple:
        """What tells that the file or the overrides changed: (inode, size, mtime) of each, None when absent."""
        out = []
        for path in (self.path, self.overrides_path):
            try:
                st = path.stat() if path is not None else None
            except OSError:
                st = None
            out.append(None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def load_problem(self) -> str | None:
        """Why the config file with the overrides would not load now, in words (the running config is the last one
        that did, and a service restart would fail), or None when it loads. Parsed again only after either file
        changed on disk, so status and metrics may ask every time."""
        stamp = self._stamp()
        with self._lock:
            if stamp != self._checked:
                cfg = _cfgmod()
                try:
                    self._build(self._read_overrides())
                    problem = None
                except cfg.ConfigError as exc:
                    problem = str(exc)
                self._checked, self._problem = stamp, problem
            return self._problem

    # -- writing -------------------------------------------------------------------------------------

    def _persist(self, overrides: dict[str, str]) -> None:
        self.overrides_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".overrides.", suffix=".tmp", dir=self.overrides_path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(overrides, out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.overrides_path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def key_problem(self, key: str) -> p.KeyProblem | None:
        """Why `key` cannot be set live (unknown, with the nearest valid one; or restart-only), or None."""
        cfg = _cfgmod()
        if key not in cfg.flatten(self.current):
            suggestion = cfg.suggest_key(key)
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            return p.KeyProblem(key=key, code=p.E_UNKNOWN_KEY, message=f"unknown config key {key!r}{hint}",
                                suggestion=suggestion)
        if key not in cfg.live_keys():
            why = next((k.why_not_live for k in cfg.schema() if k.key == key), "") or "restart the trader"
            return p.KeyProblem(key=key, code=p.E_NOT_LIVE, message=f"{key} cannot change while the trader runs: {why}")
        return None

    def check_keys(self, keys) -> None:
        """Unknown keys (with the nearest valid one) and keys that cannot change live: ControlError."""
        for key in keys:
            problem = self.key_problem(key)
            if problem is not None:
                raise _refusal([problem])

    def _problems(self, settings: dict[str, str], combined) -> list[p.KeyProblem]:
        """Every refused key of a `set` whose settings together do not validate (`combined`, the ConfigError):
        each key judged alone against the running config. When every key is fine alone, the combination is
        what breaks a rule: that one error."""
        cfg = _cfgmod()
        problems = []
        for key, value in settings.items():
            problem = self.key_problem(key)
            if problem is None:
                try:
                    cfg.apply_settings(self.current, {key: value})
                except cfg.ConfigError as exc:
                    problem = p.KeyProblem(key=exc.key or key, code=p.E_INVALID, message=str(exc))
            if problem is not None:
                problems.append(problem)
        return problems or [p.KeyProblem(key=combined.key, code=p.E_INVALID, message=str(combined))]

    def set(self, settings: dict[str, str]):
        """Validate all settings together, persist, return (old, new, warnings). Nothing changes on error: the
        refusal lists every refused key (ControlError.problems), so an operator fixes them all at once."""
        with self._lock:
            cfg = _cfgmod()
            try:
                new, warnings = cfg.apply_settings(self.current, dict(settings))
            except cfg.ConfigError as exc:
                raise _refusal(self._problems(settings, exc)) from None
            overrides = {**self.overrides, **{k: str(v) for k, v in settings.items()}}
            self._persist(overrides)
            old = self.current
            self.overrides, self.current = overrides, new
            return old, new, list(warnings)

    def unset(self, key: str):
        """Drop one override: the file's value (or the default) applies again. (old, new, warnings)."""
        with self._lock:
            if key not in self.overrides:
                self.check_keys([key])
                raise p.ControlError(p.E_BAD_REQUEST, f"{key} is not overridden (nothing to unset)", key=key)
            remaining = {k: v for k, v in self.overrides.items() if k != key}
            return self._rebuild(remaining, persist=True)

    def reload(self):
        """Re-read file + overrides. On any error the old config stays (ConfigError propagates)."""
        with self._lock:
            return self._rebuild(self._read_overrides(), persist=False)

    def _rebuild(self, overrides: dict[str, str], *, persist: bool):
        cfg = _cfgmod()
        try:
            loaded = self._build(overrides)
        except cfg.ConfigError as exc:
            raise p.ControlError(p.E_INVALID, f"old config kept: {exc}", key=exc.key or None) from None
        # Keys that cannot change live keep their running value until a restart; say so rather than pretend.
        new, pending = keep_not_live(self.current, loaded)
        if persist:
            self._persist(overrides)
        old = self.current
        self.overrides, self.current, self.pending_restart = overrides, new, pending
        self._learn_sources()
        return old, new, cfg.warnings(new)

    def source_of(self, key: str) -> str:
        """Where the value of `key` comes from, in the order they override each other."""
        if key in self.overrides:
            return "override"
        if key in self.base:
            return "env"
        if key in self.series_keys:
            return "series"
        if key in self.stretched_keys:
            return "stretched"
        return "file" if key in self.file_keys else "default"


def _refusal(problems: list[p.KeyProblem]) -> p.ControlError:
    """One refusal for a `set`'s refused keys: one problem keeps the words it always had; several are said in
    one line ("nothing changed: A; B") and listed one by one in `problems`."""
    first = problems[0]
    if len(problems) == 1:
        message = first.message if first.code != p.E_INVALID else f"nothing changed: {first.message}"
        return p.ControlError(first.code, message, key=first.key or None, suggestion=first.suggestion,
                              problems=problems)
    codes = {q.code for q in problems}
    return p.ControlError(codes.pop() if len(codes) == 1 else p.E_INVALID,
                          f"nothing changed, {len(problems)} settings refused: " + "; ".join(q.message for q in problems),
                          key=first.key or None, suggestion=first.suggestion, problems=problems)


def _replace_key(cfg, key: str, value):
    head, _, rest = key.partition(".")
    child = getattr(cfg, head)
    if not rest:
        return msgspec.structs.replace(cfg, **{head: value})
    return msgspec.structs.replace(cfg, **{head: _replace_key(child, rest, value)})


def keep_not_live(running, loaded):
    """`loaded` with every non-live key that differs from `running` put back to the running value.

    Returns (config, {key: new value waiting for a restart})."""
    cfg = _cfgmod()
    if running is None:
        return loaded, {}
    live = cfg.live_keys()
    before, after = cfg.flatten(running), cfg.flatten(loaded)
    pending = {k: v for k, v in after.items() if k not in live and before.get(k) != v}
    result = loaded
    for key in pending:
        result = _replace_key(result, key, cfg.get_key(running, key))
    return result, pending


def changes_between(old, new) -> list[p.Change]:
    cfg = _cfgmod()
    a, b = cfg.flatten(old), cfg.flatten(new)
    return [p.Change(key=k, old=p.redact(k, _plain(a.get(k))), new=p.redact(k, _plain(b[k])))
            for k in b if a.get(k) != b[k]]


def _plain(value):
    """Config values as the wire can carry them (tuples, enums, Structs → builtins), with any credentials
    embedded in an endpoint URL (https://user:token@host) redacted."""
    value = msgspec.to_builtins(value)
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = value.split("://", 1)
        host = rest.split("@", 1)[1]
        return f"{scheme}://{p.REDACTED}@{host}"
    return value


# ---- the handler ----------------------------------------------------------------------------------


class TraderControlHandler:
    """ControlHandler (trader/control/server.py) for one running trader."""

    def __init__(self, engine, core, store: ConfigStore, *, started_at: float | None = None,
                 clock=time.time, balance=None, ledger=None, redeemer=None, mode: str = "live", wallet=None,
                 series: str = "btc-15m") -> None:
        self.engine = engine
        self.wallet = wallet  # trader/wallet/ WalletCoordinator, or None
        self.series = series
        self.ledger = ledger  # trader/ledger.LedgerWriter: config changes are recorded there
        self.mode = mode  # live | paper: fixed for the life of the process
        self.balance = balance  # trader/balance.BalanceWatcher, or None
        self.redeemer = redeemer  # trader/redeem/worker.Redeemer, or None
        self.core = core
        self.store = store
        self.started_at = started_at if started_at is not None else time.time()
        self.clock = clock
        self.stopping = False

    # -- helpers ---------------------------------------------------------------------------------------

    def _command(self, kind: str, payload: Any = None, wait_s: float = APPLY_WAIT_S):
        if self.stopping:
            raise p.ControlError(p.E_UNAVAILABLE, "the trader is shutting down")
        cmd = self.engine.submit(kind, payload, wait_s=wait_s)
        if not cmd.done.is_set():
            raise p.ControlError(
                p.E_UNAVAILABLE,
                f"the decision loop did not take the {kind.replace('_', '-')} within {wait_s:.0f} s; "
                "it is queued and will apply at the next decision",
            )
        if cmd.error:
            raise p.ControlError(p.E_INTERNAL, f"{kind.replace('_', '-')} failed: {cmd.error}")
        return cmd

    def _book(self):
        return self.engine.status.market_view

    def _leg_books(self, view) -> list[p.LegBook]:
        """Per leg, the displayed top and the top without our orders, from the last decision's view."""
        if view is None:
            return []
        books = []
        for leg in (Leg.UP, Leg.DOWN):
            raw, net = view.raw(leg), view.net(leg)
            books.append(p.LegBook(
                leg=_s(leg), bid=_num_or_none(raw.bid), bid_size=_num_or_none(raw.bid_size),
                ask=_num_or_none(raw.ask), ask_size=_num_or_none(raw.ask_size), net_bid=_num_or_none(net.bid),
                net_bid_size=_num_or_none(net.bid_size), net_ask=_num_or_none(net.ask),
                net_ask_size=_num_or_none(net.ask_size), net_bid_known=view.known(leg, Side.BUY),
                net_ask_known=view.known(leg, Side.SELL),
            ))
        return books

    def _order_info(self, order, view, now: float) -> p.OrderInfo:
        distance = None
        if view is not None:
            # "behind" counts our own orders: the queue as the exchange displays it (view.raw).
            raw = view.raw(order.leg)
            if order.side is Side.BUY:
                best = raw.bid
                distance = None if not _finite(best) else round(best - order.price, 6)
            else:
                best = raw.ask
                distance = None if not _finite(best) else round(order.price - best, 6)
        return p.OrderInfo(
            client_id=order.client_id, order_id=order.order_id, strategy=order.strategy, leg=_s(order.leg),
            side=_s(order.side), price=order.price, size=order.size, filled=order.filled, state=_s(order.state),
            role=_s(order.role), order_type=_s(order.order_type), post_only=order.post_only,
            created_at=order.created_at, age_s=round(max(0.0, now - order.created_at), 3), distance=distance,
            reason=order.reason,
        )

    def _position_infos(self, view) -> list[p.PositionInfo]:
        """The current window's positions (marked at the best bid), then every earlier window's positions
        still awaiting resolution (no book any more: no mark; paid 1 or 0 at resolution)."""
        market = self.engine.status.market
        window = int(market.window_start) if market is not None else None
        infos = []
        for (strategy, leg), pos in _sorted_positions(self.core.positions()):
            if pos.shares == 0 and pos.realised_pnl == 0 and pos.fees == 0:
                continue
            mark = view.bid(leg) if view is not None else None
            mark = mark if _finite(mark) else None
            unrealised = round(pos.shares * (mark - pos.avg_price), 6) if mark is not None and pos.shares else 0.0
            infos.append(_position_info(strategy, leg, pos, mark=mark, unrealised=unrealised, window_start=window))
        pending = getattr(self.core, "pending_resolution", None)
        awaiting = _safe(pending, []) if pending is not None else []
        for old, positions in sorted(awaiting, key=lambda mp: int(mp[0].window_start)):
            for (strategy, leg), pos in _sorted_positions(positions):
                infos.append(_position_info(strategy, leg, pos, mark=None, unrealised=0.0,
                                            window_start=int(old.window_start), awaiting_resolution=True))
        return infos

    def _realised_total(self) -> float:
        """Realised P&L net of fees across every market we traded, resolution payouts included
        (ExecutionCore.pnl()["total"]["realised"])."""
        return float(self.core.pnl()["total"]["realised"])

    def _exposure(self, view, orders, positions, cfg, now: float) -> list[p.Exposure]:
        """Total against risk.max_exposure_usd, and each (strategy, leg) against its cap now: S1's cap
        schedule at the current second of the window, S2's target_usd. One computation: risk.exposure."""
        if view is None or cfg is None:  # starting: no book or no config yet (status is asked every second)
            return []
        from polymm.trader import config as config_mod
        from polymm.trader.decision import risk

        unresolved = float(getattr(self.engine, "_unresolved_usd", 0.0))
        exposure = risk.exposure(view, orders, positions, unresolved)
        rows = [p.Exposure(scope="total", usd=round(exposure.total_usd, 4), cap_usd=cfg.risk.max_exposure_usd)]
        s1_cap = config_mod.cap_at(cfg.s1.cap_schedule, now - view.market.window_start)
        caps = {"s1": s1_cap if cfg.s1.enabled else None, "s2": cfg.s2.target_usd if cfg.s2.enabled else None}
        for strategy in ("s1", "s2"):
            for leg in (Leg.UP, Leg.DOWN):
                usd = exposure.by_leg.get((strategy, leg), 0.0)
                if usd or caps[strategy] is not None:
                    rows.append(p.Exposure(scope=f"{strategy}.{leg.value}", usd=round(usd, 4), cap_usd=caps[strategy]))
        if unresolved:
            rows.append(p.Exposure(scope="awaiting resolution", usd=round(unresolved, 4)))
        return rows

    # -- read-only --------------------------------------------------------------------------------------

    def status(self, request: p.StatusRequest) -> p.StatusReply:
        now = self.clock()
        es = self.engine.status
        view = es.market_view
        exchange = _safe(self.core.state, None)
        orders = _safe(lambda: self.core.orders(working_only=True), [])
        positions = _safe(self.core.positions, {})
        infos = self._position_infos(view)
        state = self._state_word(es, exchange, now)
        warnings = self._warnings(es, exchange, now)
        cfg = _cfgmod()
        blocked = {_s(k): str(v) for k, v in (getattr(exchange, "blocked_legs", None) or {}).items()}
        market = es.market
        return p.StatusReply(
            state=state,
            healthy=state in ("running", "rotating") and not warnings,
            notes=[rotation_note(es, now)] if state == "rotating" else [],
            paused=es.paused,
            pid=os.getpid(),
            started_at=self.started_at,
            now=now,
            condition_id=getattr(market, "condition_id", "") or "",
            window_start=int(getattr(market, "window_start", 0) or 0),
            window_end=int(getattr(market, "window_end", 0) or 0),
            feed_age_ms=None if view is None else round(view.age_ms, 1),
            last_decision_at=es.last_decision_at or None,
            heartbeat_ok=bool(getattr(exchange, "heartbeat_ok", True)),
            balance_usd=getattr(self.balance, "balance_usd", None),
            **self._wallet_figures(infos),
            positions=infos,
            orders=[self._order_info(o, view, now) for o in orders],
            exposure=_safe(lambda: self._exposure(view, orders, positions, es.config, now), []),
            realised_pnl=_safe(self._realised_total, 0.0),
            unrealised_pnl=round(sum(i.unrealised_pnl for i in infos), 6),
            blocked_legs=blocked,
            warnings=warnings,
            config_warnings=list(cfg.warnings(self.store.current)),
            pending_restart=sorted(self.store.pending_restart),
            config_error=_safe(self.store.load_problem, None),
            decisions=es.decisions,
            fair_up=None if view is None or view.fair_up != view.fair_up else round(view.fair_up, 4),
            mode=self.mode,
            book=_safe(lambda: self._leg_books(view), []),
            series=self.series,
            wallet=_safe(lambda: self._wallet_info(now), None),
        )

    def _wallet_info(self, now: float):
        """The wallet's series from the shared record (trader/wallet/), for status and metrics."""
        if self.wallet is None:
            return None
        state = self.wallet.state(now)
        hb = self.wallet.leader_info()
        hook = getattr(self.engine, "wallet", None)
        return p.WalletInfo(
            leader_series=hb.leader_series, leader_pid=hb.leader_pid, leader=self.wallet.leader,
            cap_usd=state.cap_usd, loss_limit_usd=state.loss_limit_usd,
            exposure_usd=round(sum(r.exposure_usd for r in state.rows), 6), pnl_today_usd=round(state.pnl_today_usd, 6),
            halt=state.halt, held_back=getattr(hook, "held_back", 0),
            series=[p.WalletSeries(series=r.series, pid=r.pid, running=r.running, exposure_usd=round(r.exposure_usd, 6),
                                   pnl_today_usd=round(r.pnl_today_usd, 6), note=r.note) for r in state.rows])

    def _wallet_figures(self, infos: list[p.PositionInfo]) -> dict:
        """Open value from our own positions, at once with our fills (the current window's at the best bid, earlier
        windows' awaiting resolution at cost: what risk counts them); the redeemer's Data API figures for what is
        won and not yet redeemed, and what came back today."""
        snap = self.redeemer.snapshot() if self.redeemer is not None else {}
        keys = ("awaiting_redemption_usd", "redeemed_today_usd", "merged_today_usd")
        return {"open_value_usd": open_value(infos), **{k: snap.get(k) for k in keys}}

    def _state_word(self, es, exchange, now: float | None = None) -> str:
        if self.stopping:
            return "stopping"
        if es.restarting:
            return "restarting"
        if es.state == "starting":
            return "starting"
        word = _exchange_word(exchange)
        if es.flattening or es.paused:
            return "paused"
        if word in ("exchange_restarting", "cancel_only", "post_only", "rate_limited", "closed_only"):
            return word
        if in_rollover(es, self.clock() if now is None else now):
            return "rotating"
        if es.state in ("stale_feed", "crossed_book", "waiting_for_feed"):
            return "stale_feed"
        return "running"

    def _warnings(self, es, exchange, now: float) -> list[str]:
        out: list[str] = []
        if es.problem and not in_rollover(es, now):
            since = f" for {now - es.problem_since:.1f} s" if es.problem_since else ""
            out.append(f"not trading{since}: {es.problem}")
        if es.last_decision_at and now - es.last_decision_at > LOOP_SILENT_WARN_S:
            out.append(f"decision loop silent for {now - es.last_decision_at:.1f} s")
        # Exchange-side problems (heartbeats failing, dead-man switch off, modes, blocked legs) in the execution
        # core's words only: one condition, one wording (ExchangeStatus.warnings).
        for w in getattr(exchange, "warnings", None) or []:
            if w not in out:
                out.append(str(w))
        cash_warning = getattr(self.balance, "warning", None) if self.balance is not None else None
        if cash_warning:
            out.append(cash_warning)
        if self.balance is not None and es.config is not None:
            from polymm.trader.execution.balance import balance_warnings

            out += balance_warnings(self.balance.balance_usd, self.balance.allowance_ok, es.config.risk.max_exposure_usd)
        if self.redeemer is not None:
            snap = self.redeemer.snapshot()
            if snap.get("warning"):
                out.append(snap["warning"])
        if self.store.pending_restart:
            out.append("config change pending restart: " + ", ".join(sorted(self.store.pending_restart)))
        broken = _safe(self.store.load_problem, None)
        if broken:
            out.append(config_error_warning(broken))
        market, cfg = es.market, es.config
        if market is not None and cfg is not None:
            length = int(market.window_end) - int(market.window_start)
            if length != cfg.market.window_s:
                out.append(f"the feed's window is {length} s but market.window_s is {cfg.market.window_s} s: "
                           "time rules (cap schedule, late window) assume the wrong length")
        if es.flattening:
            out.append("flattening: selling every position; trader paused")
        if self.wallet is not None:
            state = _safe(lambda: self.wallet.state(now), None)
            if state is not None and state.halt:
                out.append(state.halt)
            if self.wallet.warning:
                out.append(self.wallet.warning)
        return out

    def config(self, request: p.ConfigRequest) -> p.ConfigReply:
        cfg = _cfgmod()
        current = self.store.current
        values = cfg.flatten(current)
        defaults = cfg.flatten(_default_config())
        live = cfg.live_keys()
        keys = list(values)
        if request.key is not None:
            if request.key not in values:
                suggestion = cfg.suggest_key(request.key)
                hint = f"; did you mean {suggestion}?" if suggestion else ""
                raise p.ControlError(p.E_UNKNOWN_KEY, f"unknown config key {request.key!r}{hint}",
                                     key=request.key, suggestion=suggestion)
            keys = [request.key]
        entries = [
            p.ConfigEntry(
                key=k, value=p.redact(k, _plain(values[k])), default=p.redact(k, _plain(defaults.get(k))),
                override=k in self.store.overrides, live=k in live, pending_restart=k in self.store.pending_restart,
                source=self.store.source_of(k),
            )
            for k in keys
        ]
        return p.ConfigReply(
            entries=entries, source=str(self.store.path) if self.store.path else None,
            overrides_path=str(self.store.overrides_path), warnings=list(cfg.warnings(current)),
        )

    def orders(self, request: p.OrdersRequest) -> p.OrdersReply:
        now = self.clock()
        view = self._book()
        orders = self.core.orders(working_only=not request.include_done)
        return p.OrdersReply(orders=[self._order_info(o, view, now) for o in orders], now=now,
                             book=self._leg_books(view))

    def positions(self, request: p.PositionsRequest) -> p.PositionsReply:
        infos = self._position_infos(self._book())
        return p.PositionsReply(
            positions=infos, realised_pnl=_safe(self._realised_total, 0.0),
            unrealised_pnl=round(sum(i.unrealised_pnl for i in infos), 6), now=self.clock(),
        )

    def fills(self, request: p.FillsRequest) -> p.FillsReply:
        if request.since is not None and not _finite(request.since):
            raise p.ControlError(p.E_BAD_REQUEST, "since must be a unix time in seconds")
        if request.limit is not None and request.limit < 0:
            raise p.ControlError(p.E_BAD_REQUEST, "limit must be >= 0")
        fills = self.core.fills(since=request.since)  # in causal order (execution/fills.py), never re-sorted by id
        if request.limit is not None:
            fills = fills[-request.limit:] if request.limit else []
        return p.FillsReply(fills=[
            p.FillInfo(trade_id=f.trade_id, order_id=f.order_id, client_id=f.client_id, strategy=f.strategy,
                       leg=_s(f.leg), side=_s(f.side), price=f.price, size=f.size, fee=f.fee, role=f.role,
                       status=f.status, ts=f.ts)
            for f in fills
        ], now=self.clock())

    # -- changes --------------------------------------------------------------------------------------

    def _hand_over(self, old, new, warnings, message: str, who: str) -> p.ChangeReply:
        changes = changes_between(old, new)
        if changes:
            self._command("set_config", new)
            if self.ledger is not None:
                from polymm.trader.control.server import current_peer

                peer = current_peer()
                who = f"{who} by {peer.describe()}" if peer is not None else who
                for c in changes:
                    self.ledger.config_change(c.key, c.old, c.new, who)
        return p.ChangeReply(
            changes=changes, warnings=list(warnings), pending_restart=sorted(self.store.pending_restart),
            message=message if changes else "no change",
        )

    def set(self, request: p.SetRequest) -> p.ChangeReply:
        if not request.settings:
            raise p.ControlError(p.E_BAD_REQUEST, "nothing to set: give KEY=VALUE")
        old, new, warnings = self.store.set(request.settings)
        log.info("config set: %s", ", ".join(f"{c.key}: {c.old} -> {c.new}" for c in changes_between(old, new)) or "no change")
        return self._hand_over(old, new, warnings,
                               f"applied at the next decision; persisted to {self.store.overrides_path}", "mmctl set")

    def unset(self, request: p.UnsetRequest) -> p.ChangeReply:
        old, new, warnings = self.store.unset(request.key)
        return self._hand_over(old, new, warnings,
                               f"override of {request.key} removed from {self.store.overrides_path}; applied at the next decision",
                               "mmctl unset")

    def reload(self, request: p.ReloadRequest) -> p.ChangeReply:
        try:
            old, new, warnings = self.store.reload()
        except p.ControlError as err:
            log.error("reload failed, old config kept: %s", err.message)
            raise
        return self._hand_over(old, new, warnings, "file and overrides re-read; applied at the next decision",
                               "mmctl reload")

    @staticmethod
    def _done(cmd) -> p.DoneReply:
        """What the loop did: its words, the number of orders cancelled (pause, cancel-all, flatten) and the
        pause state after the command (flatten leaves the trader paused)."""
        warnings = list(getattr(cmd, "warnings", None) or [])
        return p.DoneReply(message=cmd.result, count=getattr(cmd, "count", None), paused=getattr(cmd, "paused", None),
                           warnings=warnings, complete=not warnings)

    def pause(self, request: p.PauseRequest) -> p.DoneReply:
        return self._done(self._command("pause"))

    def resume(self, request: p.ResumeRequest) -> p.DoneReply:
        return self._done(self._command("resume"))

    def cancel_all(self, request: p.CancelAllRequest) -> p.DoneReply:
        return self._done(self._command("cancel_all"))

    def flatten(self, request: p.FlattenRequest) -> p.DoneReply:
        return self._done(self._command("flatten"))

    def restart(self, request: p.RestartRequest) -> p.DoneReply:
        # Cancels (up to 5 s for unanswered submits), reconnects the user channel (up to 5 s) and reconciles.
        try:
            return self._done(self._command("restart", wait_s=RESTART_WAIT_S))
        except p.ControlError as err:
            if err.code != p.E_INTERNAL:
                raise
            # The core could not reach the exchange and keeps retrying start() in the background
            # (ExecutionCore.restart): say that, not just the exception.
            exchange = _safe(self.core.state, None)
            retrying = [w for w in (getattr(exchange, "warnings", None) or []) if "retrying" in str(w)]
            if not retrying:
                raise
            raise p.ControlError(
                p.E_UNAVAILABLE,
                f"{err.message}; the execution core retries the restart every few seconds in the background and "
                "places no orders until it succeeds (watch `mmctl status`)",
            ) from None


# ---- small helpers ---------------------------------------------------------------------------------


def in_rollover(es, now: float) -> bool:
    """A rollover in progress (the old window over, the next one's first book not published yet) for at most the
    engine's grace: a note in status, not a warning."""
    from polymm.trader.engine import ROTATION_GRACE_S

    since = getattr(es, "rotating_since", None)
    return since is not None and 0 <= now - since <= ROTATION_GRACE_S


def rotation_note(es, now: float) -> str:
    from polymm.ctl import render

    return f"new window: first book pending ({render.duration(max(0.0, now - es.rotating_since))} into it)"


def open_value(infos: list[p.PositionInfo]) -> float:
    """What our positions are worth: the current window's shares at their mark (the best bid; at cost while there
    is none), earlier windows' shares awaiting resolution at cost (no book any more)."""
    total = 0.0
    for info in infos:
        price = info.mark if info.mark is not None and not info.awaiting_resolution else info.avg_price
        if info.shares and price == price:
            total += info.shares * price
    return round(total, 6)


def config_error_warning(problem: str) -> str:
    """The status warning for a config file that does not load (one wording: status, log, metric's help)."""
    return (f"config does not load: {problem}; the trader runs on the config it last loaded, and a restart would "
            "fail until the file is fixed")


def _sorted_positions(positions: dict) -> list:
    return sorted(positions.items(), key=lambda kv: (kv[0][0], _s(kv[0][1])))


def _position_info(strategy: str, leg, pos, *, mark, unrealised: float, window_start: int | None,
                   awaiting_resolution: bool = False) -> p.PositionInfo:
    return p.PositionInfo(
        strategy=strategy, leg=_s(leg), shares=pos.shares, avg_price=pos.avg_price, mark=mark,
        realised_pnl=pos.realised_pnl, unrealised_pnl=unrealised, fees=pos.fees,
        first_fill_at=pos.first_fill_at, last_fill_at=pos.last_fill_at, window_start=window_start,
        awaiting_resolution=awaiting_resolution,
    )


def _default_config():
    return _cfgmod().load_config(None, {})


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num_or_none(x) -> float | None:
    return float(x) if _finite(x) else None


def _s(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


def _safe(fn, default):
    try:
        return fn()
    except Exception:  # status must answer even when one part of the trader cannot
        log.exception("control: %s failed", getattr(fn, "__name__", "call"))
        return default


def _exchange_word(exchange) -> str:
    if exchange is None:
        return "normal"
    word = getattr(exchange, "state", None) or getattr(exchange, "kind", None) or getattr(exchange, "mode", None)
    word = _s(word) if word is not None else "normal"
    return {"engine_restarting": "exchange_restarting"}.get(word, word)


def summary_line(handler: TraderControlHandler) -> str:
    """STATUS= for systemd: window, state, exposure, P&L on one line."""
    reply = handler.status(p.StatusRequest())
    t = lambda s: time.strftime("%H:%M", time.gmtime(s))  # noqa: E731
    window = f"window {t(reply.window_start)}-{t(reply.window_end)}" if reply.window_start else "no window"
    total = next((e for e in reply.exposure if e.scope == "total"), None)
    exposure = f"exposure ${total.usd:.2f}/{total.cap_usd:g}" if total and total.cap_usd else (
        f"exposure ${total.usd:.2f}" if total else "exposure ?")
    line = f"{reply.state} {window} {exposure} pnl {reply.realised_pnl + reply.unrealised_pnl:+.2f}"
    if reply.mode == "paper":
        line = "PAPER " + line
    if reply.fair_up is not None:
        line += f" fair up {reply.fair_up:.2f}"
    if reply.warnings:
        line += f" | {reply.warnings[0]}"
    return line
