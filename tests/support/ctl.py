"""Helpers for control-plane tests: a fake trader handler, a real server on a real socket, mmctl runs.

Reusable by the live tests against a real trader: `mmctl(...)` and `mmctl_process(...)` take any socket
path and shm name; `serve(...)` works with any ControlHandler.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from click.testing import CliRunner

from polymm.ctl import protocol as p
from polymm.ctl.cli import cli
from polymm.trader.control.server import ControlServer

# Things that must never appear in any output (the fake config holds them under secret-looking keys, the
# way a handler bug might leak them).
SECRET_PK = "0x" + "ab" * 32
SECRET_API = "s3cr3t-api-secret-value"

NOW = 1_795_000_000.0  # a fixed "trader clock" for replies


def order(**kw) -> p.OrderInfo:
    base = dict(client_id="c-1", order_id="0x" + "1f" * 32, strategy="s1", leg="up", side="BUY", price=0.61,
                size=6.55, filled=0.0, state="live", role="entry", order_type="GTC", post_only=True,
                created_at=NOW - 12.0, age_s=12.0, distance=0.01, reason="entry bid>=0.60")
    base.update(kw)
    return p.OrderInfo(**base)


def position(**kw) -> p.PositionInfo:
    base = dict(strategy="s1", leg="up", shares=6.55, avg_price=0.6, mark=0.62, realised_pnl=1.25,
                unrealised_pnl=0.131, fees=0.0, first_fill_at=NOW - 60, last_fill_at=NOW - 30)
    base.update(kw)
    return p.PositionInfo(**base)


def fill(**kw) -> p.FillInfo:
    base = dict(trade_id="t-" + "9" * 20, order_id="0x" + "1f" * 32, client_id="c-1", strategy="s1", leg="up",
                side="BUY", price=0.6, size=6.55, fee=0.0, role="maker", status="CONFIRMED", ts=NOW - 30)
    base.update(kw)
    return p.FillInfo(**base)


def status_reply(**kw) -> p.StatusReply:
    base = dict(
        state="running", healthy=True, pid=4242, started_at=NOW - 3600, now=NOW,
        condition_id="0x" + "c0" * 32, window_start=int(NOW) - 300, window_end=int(NOW) + 600,
        feed_age_ms=42.0, last_decision_at=NOW - 0.05, heartbeat_ok=True, balance_usd=812.4,
        positions=[position(), position(strategy="s2", leg="down", shares=10.0, avg_price=0.35, mark=0.33,
                                        realised_pnl=-0.5, unrealised_pnl=-0.2)],
        orders=[order(), order(client_id="c-2", leg="down", side="SELL", price=0.4, role="take_profit",
                               distance=0.02, reason="tp avg+0.05")],
        exposure=[p.Exposure(scope="total", usd=7.43, cap_usd=100.0), p.Exposure(scope="s1", usd=3.93, cap_usd=50.0)],
        realised_pnl=0.75, unrealised_pnl=-0.069,
    )
    base.update(kw)
    return p.StatusReply(**base)


@dataclass
class FakeConfig:
    values: dict
    defaults: dict
    live: frozenset
    overrides: set
    file_keys: set = None  # keys the (fake) config file sets; None: a trader too old to say where values come from


class FakeHandler:
    """A ControlHandler with plausible state and real validation rules, recording every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.paused = False
        self.status_now = status_reply()
        self.fills_list = [fill(ts=NOW - 3600, trade_id="t-old"), fill(ts=NOW - 30, trade_id="t-new")]
        defaults = {"s1.entry_threshold": 0.6, "s1.size_usd": 4.0, "risk.max_exposure_usd": 100.0,
                    "endpoints.clob_url": "https://clob.polymarket.com", "auth.api_secret": SECRET_API,
                    "pk": SECRET_PK}
        self.cfg = FakeConfig(values=dict(defaults), defaults=dict(defaults),
                                 live=frozenset({"s1.entry_threshold", "s1.size_usd", "risk.max_exposure_usd"}),
                                 overrides=set())
        self.block = threading.Event()  # when set, `flatten` blocks until released (slow-handler tests)
        self.release = threading.Event()

    def _record(self, op: str) -> None:
        with self.lock:
            self.calls.append(op)

    def status(self, request: p.StatusRequest) -> p.StatusReply:
        self._record("status")
        return self.status_now

    def config(self, request: p.ConfigRequest) -> p.ConfigReply:
        self._record("config")
        keys = sorted(self.cfg.values)
        if request.key is not None:
            self._known(request.key)
            keys = [request.key]
        # Deliberately NOT redacting: mmctl must redact on its own (defence in depth).
        entries = [p.ConfigEntry(key=k, value=self.cfg.values[k], default=self.cfg.defaults[k],
                                 override=k in self.cfg.overrides, live=k in self.cfg.live,
                                 source=self._source(k)) for k in keys]
        return p.ConfigReply(entries=entries, source="/etc/polymm/config.toml", overrides_path="/var/lib/polymm/overrides.toml")

    def _source(self, key: str) -> str:
        if self.cfg.file_keys is None:
            return ""
        if key in self.cfg.overrides:
            return "override"
        return "file" if key in self.cfg.file_keys else "default"

    def _known(self, key: str) -> None:
        if key not in self.cfg.values:
            near = min(self.cfg.values, key=lambda k: _distance(k, key))
            raise p.ControlError(p.E_UNKNOWN_KEY, f"unknown config key {key!r}", key=key, suggestion=near)

    def set(self, request: p.SetRequest) -> p.ChangeReply:
        self._record("set")
        new = dict(self.cfg.values)
        for key, text in request.settings.items():
            self._known(key)
            if key not in self.cfg.live:
                raise p.ControlError(p.E_NOT_LIVE, f"{key} cannot change while trading (endpoint); edit the file and restart", key=key)
            try:
                new[key] = float(text)
            except ValueError:
                raise p.ControlError(p.E_INVALID, f"Expected `float`, got `str` - at `$.{key}`", key=key) from None
        if new["s1.size_usd"] > new["risk.max_exposure_usd"]:
            raise p.ControlError(p.E_INVALID, "s1.size_usd must not exceed risk.max_exposure_usd")
        changes = [p.Change(key=k, old=self.cfg.values[k], new=new[k]) for k in request.settings if new[k] != self.cfg.values[k]]
        self.cfg.values = new
        self.cfg.overrides |= set(request.settings)
        return p.ChangeReply(changes=changes, message="applied at the next decision; persisted to /var/lib/polymm/overrides.toml")

    def unset(self, request: p.UnsetRequest) -> p.ChangeReply:
        self._record("unset")
        self._known(request.key)
        old = self.cfg.values[request.key]
        self.cfg.values[request.key] = self.cfg.defaults[request.key]
        self.cfg.overrides.discard(request.key)
        return p.ChangeReply(changes=[p.Change(key=request.key, old=old, new=self.cfg.defaults[request.key])])

    def reload(self, request: p.ReloadRequest) -> p.ChangeReply:
        self._record("reload")
        return p.ChangeReply(message="config reloaded from /etc/polymm/config.toml")

    def pause(self, request: p.PauseRequest) -> p.DoneReply:
        self._record("pause")
        self.paused = True
        return p.DoneReply(message="paused: 2 orders cancelled; no new orders until resume", count=2)

    def resume(self, request: p.ResumeRequest) -> p.DoneReply:
        self._record("resume")
        self.paused = False
        return p.DoneReply(message="resumed")

    def cancel_all(self, request: p.CancelAllRequest) -> p.DoneReply:
        self._record("cancel_all")
        return p.DoneReply(message="cancelled 2 orders", count=2)

    def flatten(self, request: p.FlattenRequest) -> p.DoneReply:
        self._record("flatten")
        if self.block.is_set():
            self.release.wait(10)
        return p.DoneReply(message="flatten: cancelled 2 orders, sent 2 sell orders", count=2)

    def restart(self, request: p.RestartRequest) -> p.DoneReply:
        self._record("restart")
        raise RuntimeError("engine exploded")  # an unexpected handler failure

    def orders(self, request: p.OrdersRequest) -> p.OrdersReply:
        self._record("orders")
        orders = list(self.status_now.orders)
        if request.include_done:
            orders.append(order(client_id="c-0", state="filled", filled=6.55))
        return p.OrdersReply(orders=orders, now=NOW, book=list(self.status_now.book))

    def positions(self, request: p.PositionsRequest) -> p.PositionsReply:
        self._record("positions")
        return p.PositionsReply(positions=self.status_now.positions, realised_pnl=0.75, unrealised_pnl=-0.069, now=NOW)

    def fills(self, request: p.FillsRequest) -> p.FillsReply:
        self._record("fills")
        chosen = [f for f in self.fills_list if request.since is None or f.ts >= request.since]
        if request.limit:
            chosen = chosen[-request.limit:]
        return p.FillsReply(fills=chosen, now=NOW)


def _distance(a: str, b: str) -> int:
    """Levenshtein distance: the fake's 'did you mean'."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@contextlib.contextmanager
def serve(path: Path, handler=None, **kw) -> Iterator[ControlServer]:
    """A real ControlServer on `path` for the duration of the block."""
    server = ControlServer(path, handler if handler is not None else FakeHandler(), **kw)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


def mmctl(socket_path: Path | str, *args: str, shm: str = "polymm_test_no_such_segment", input: str | None = None) -> Run:
    """Run mmctl in-process (click's CliRunner), as a user would: global options first."""
    runner = CliRunner()
    result = runner.invoke(cli, ["--socket", str(socket_path), "--shm", shm, *args], input=input,
                           catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"mmctl raised {result.exception!r}") from result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


def mmctl_process(socket_path: Path | str, *args: str, shm: str = "polymm_test_no_such_segment",
                  env: dict | None = None, timeout: float = 30.0, preexec_fn=None) -> Run:
    """Run the real `mmctl` console script in a subprocess."""
    exe = Path(sys.executable).with_name("mmctl")
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(exe), "--socket", str(socket_path), "--shm", shm, *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, preexec_fn=preexec_fn)
    return Run(proc.returncode, proc.stdout, proc.stderr)


class TradingThread:
    """Stands in for the trading loop: ticks every millisecond; the tests check it never stalls."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.monotonic()
            self.max_gap_s = max(self.max_gap_s, now - last)
            last = now
            self.ticks += 1

    def __enter__(self) -> "TradingThread":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(2)


# ---------------------------------------------------------------------------------------------------------
# Raw socket access (for misbehaving-client tests) and running code as another user.


def raw_client(path: Path | str, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_reply(sock: socket.socket) -> p.Reply | None:
    """The next reply on a raw socket, or None when the server closed it."""
    reader = p.FrameReader()
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        payloads = reader.feed(data)
        if payloads:
            return p.decode_reply(payloads[0])


def run_as(uid: int, gid: int, groups: list[int], fn) -> object:
    """Run `fn()` in a forked child with these credentials; returns its JSON-able result (or raises its error).

    Tests run as root here; the child drops to the given uid so the server sees a stranger's SO_PEERCRED.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery, no logging (a lock held by another thread could deadlock)
        os.close(read_fd)
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            result = {"ok": fn()}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(result))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        text = inp.read()
    os.waitpid(pid, 0)
    result = json.loads(text)
    if "error" in result:
        raise AssertionError(f"child failed: {result['error']}")
    return result["ok"]


# ---------------------------------------------------------------------------------------------------------
# A real feed segment (contract 1), written the way polymm-feed writes it.

UP_TOKEN = "1" * 70
DOWN_TOKEN = "2" * 70
CONDITION_ID = "0x" + "c0" * 32


def link_facts(now: float, *, frame_age_s: float | None = 0.5, data_age_s: float = 0.05) -> tuple:
    """The LINK block's values (feed/liveness.py LinkLiveness.facts order): connected, serving since, last frame,
    last data, last PONG, last PING, ping interval 10 s, PONG timeout 5 s, stale after 15 s, frames.
    `frame_age_s` None: not connected."""
    if frame_age_s is None:
        return (0,) + (float("nan"),) * 5 + (10.0, 5.0, 15.0, 0)
    frame = now - min(frame_age_s, data_age_s)
    return (1, now - 600, frame, now - data_age_s, now - frame_age_s, now - frame_age_s - 0.01, 10.0, 5.0, 15.0, 500)


@contextlib.contextmanager
def feed_segment(name: str, *, window_s: int = 900, book_age_s: float = 0.05, heartbeat_age_s: float = 0.1,
                 status: str = "connected", crossed: bool = False, updates_per_s: float = 12.5,
                 socket_age_s: float | None = 0.5, data_age_s: float | None = None) -> Iterator[object]:
    """A live-looking feed segment: current window, a book `book_age_s` old, heartbeat `heartbeat_age_s` old, its
    market socket's last frame `socket_age_s` old (None: not connected) and last market data `data_age_s` old
    (default: the book's age).

    Yields the Writer; the segment is closed and unlinked afterwards.
    """
    from polymm.feed import shm

    now = time.time()
    window_start = int(now // window_s * window_s)
    writer = shm.Writer(name)
    try:
        writer.set_market(window_start=window_start, window_end=window_start + window_s, condition_id=CONDITION_ID,
                          up_token=UP_TOKEN, down_token=DOWN_TOKEN, tick_size=0.01, min_order_size=5.0, fee_rate=0.07)
        recv = now - book_age_s
        writer.publish(window_start, up=(0.52, 120.0, 0.54, 80.0, 0.53, recv, recv),
                       down=(0.46, 90.0, 0.48, 50.0, 0.47, recv, recv), crossed=crossed, updates_total=1234,
                       status=status)
        writer.heartbeat(now - heartbeat_age_s, updates_per_s=updates_per_s, reconnects=1,
                         link=link_facts(now, frame_age_s=socket_age_s,
                                         data_age_s=book_age_s if data_age_s is None else data_age_s))
        yield writer
    finally:
        writer.close()
        writer.unlink()


def refusal_as_child(path):
    """For run_as(): ask for status; the permission-denied message, or "served"."""
    from polymm.ctl.client import ControlClient, PermissionDenied

    def ask():
        try:
            with ControlClient(path, timeout=5) as client:
                client.request(p.StatusRequest())
        except PermissionDenied as exc:
            return str(exc)
        return "served"
    return ask
