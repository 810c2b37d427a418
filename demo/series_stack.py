"""Several series on one wallet, as real processes: one sim serving every series, and per series a feed and a
trader (what the template units polymm-feed@<series> / polymm-trader@<series> run), all with one state directory
and one throw-away wallet. For the live tests of trader/wallet/ and bench/bench_series.py.

    with SeriesStack(tmp_path, ("btc-15m", "eth-5m"), window_s=30, config_text=...) as stack:
        stack.status("eth-5m"); stack.kill_trader("btc-15m"); stack.open_orders_on_sim()

Names are unique per stack (segments, sockets), so two test runs never share one; the wallet's shared record in
/dev/shm is removed at close.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from polymm import env
from polymm import series as series_mod
from polymm.demo import (Launched, _child_setup, _free_port, _python_main, _stop, demo_config, remove_wallet_records,
                         wait_feed_published)


class SeriesStack(Launched):
    def __init__(self, workdir: Path, series: tuple[str, ...], *, window_s: int = 30, seed: int = 1,
                 fund: float = 1000.0, config_text: str | None = None, sim_args: tuple = (),
                 log_level: str = "INFO", metrics: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.series = tuple(series)
        self.window_s = window_s
        self.seed = seed
        self.fund = fund
        self.sim_args = tuple(sim_args)
        self.log_level = log_level
        # Names as the series derive them from one base (polymm/series.py), so `mmctl --socket <socket> --shm <shm>
        # status` finds every series of the stack, as it finds every series of a host.
        self.shm_base = f"polymm_t{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.socket_base = self.workdir / "trader.sock"
        self.shm = {s: series_mod.shm_name(series_mod.parse(s), self.shm_base) for s in self.series}
        self.sockets = {s: Path(series_mod.socket_path(series_mod.parse(s), str(self.socket_base))) for s in self.series}
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "config.toml"
        self.config_path.write_text(config_text if config_text is not None else demo_config(window_s))
        self.sim = None
        self.feeds: dict[str, subprocess.Popen] = {}
        self.traders: dict[str, subprocess.Popen] = {}
        self.pk = self.address = None
        self._exit = contextlib.ExitStack()
        self._logs: list = []
        self.metrics_ports = ({s: {"feed": _free_port(), "trader": _free_port()} for s in self.series}
                              if metrics else {})

    def start(self, traders: bool = True) -> None:
        from polymm.sim import testing

        atexit.register(self.close)
        self.sim = self._exit.enter_context(testing.run_sim(
            self.workdir / "sim", seed=self.seed, window_s=self.window_s, fund=self.fund, extra_args=self.sim_args,
            series=self.series))
        self.pk, self.address = testing.new_wallet()
        for s in self.series:
            self.start_feed(s, wait_s=0)
        for s in self.series:
            self.wait_feed(s)
        if traders:
            for s in self.series:
                self.start_trader(s, wait_s=0)
            for s in self.series:
                self.wait_trader(s)

    def env(self, series: str, **extra: str) -> dict[str, str]:
        return self.child_env({
            env.SERIES: series, env.SHM: self.shm[series], env.SOCKET: str(self.sockets[series]),
            env.STATE_DIR: str(self.state_dir), env.CONFIG: str(self.config_path), env.WINDOW_S: str(self.window_s),
            env.LOG_LEVEL: self.log_level,
        }, self.metrics_ports.get(series), extra)

    def start_feed(self, series: str, wait_s: float = 60.0) -> subprocess.Popen:
        self.feeds[series] = subprocess.Popen(
            _python_main("polymm.feed.service"), env=self.env(series), stdout=self._log(f"feed-{series}"),
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_child_setup())
        if wait_s:
            self.wait_feed(series, wait_s)
        return self.feeds[series]

    def wait_feed(self, series: str, wait_s: float = 60.0) -> None:
        wait_feed_published(self.feeds[series], self.shm[series], wait_s, f"polymm-feed of {series}",
                            self.workdir / f"feed-{series}.log")

    def start_trader(self, series: str, wait_s: float = 60.0, extra_env: dict | None = None) -> subprocess.Popen:
        self.traders[series] = subprocess.Popen(
            _python_main("polymm.trader.service"), env=self.env(series, **(extra_env or {})),
            stdout=self._log(f"trader-{series}"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_child_setup())
        if wait_s:
            self.wait_trader(series, wait_s)
        return self.traders[series]

    def wait_trader(self, series: str, wait_s: float = 60.0) -> None:
        from polymm.ctl import client

        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc = self.traders[series]
            if proc.poll() is not None:
                raise RuntimeError(f"polymm-trader of {series} exited with {proc.returncode}; see "
                                   f"{self.workdir / f'trader-{series}.log'}")
            try:
                if self.status(series, timeout=2.0).state != "starting":
                    return
            except client.CtlError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"polymm-trader of {series} did not answer within {wait_s:.0f} s")

    def status(self, series: str, timeout: float = 5.0):
        from polymm.ctl import client, protocol

        return client.request(self.sockets[series], protocol.StatusRequest(), timeout=timeout)

    def ask(self, series: str, request, timeout: float = 10.0):
        from polymm.ctl import client

        return client.request(self.sockets[series], request, timeout=timeout)

    def kill_trader(self, series: str) -> None:
        """SIGKILL: no clean stop, its orders stay on the book (the leader's reaper's case)."""
        proc = self.traders[series]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_trader(self, series: str, timeout_s: float = 30.0) -> int | None:
        return _stop(self.traders.get(series), timeout_s)

    def mmctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """mmctl against this stack (every series found from its base socket and segment)."""
        from polymm.demo import mmctl_exe

        return subprocess.run([mmctl_exe(), "--socket", str(self.socket_base), "--shm", self.shm_base, *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={k: v for k, v in os.environ.items() if not k.startswith(env.PREFIX)})

    def open_orders_on_sim(self) -> list:
        return list(self.sim.admin.open_orders(self.address))

    def log(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        try:
            for s in self.series:
                _stop(self.traders.get(s), 30.0)
            for s in self.series:
                _stop(self.feeds.get(s), 10.0)
        finally:
            self._exit.close()
        for f in self._logs:
            f.close()
        from polymm.feed import shm

        for name in self.shm.values():
            with contextlib.suppress(Exception):
                shm.unlink(name)
        remove_wallet_records(self.address, self.state_dir, self.funders)
