"""polymm-trader as a service (real processes on the sim): sd_notify through a fake NOTIFY_SOCKET, SIGHUP reload,
SIGTERM cancelling our orders, one trader per wallet, start-up refusals, the watchdog test hook, no secret in logs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.live_trader import WINDOW_S, live_config, order_lines, wait_for
from polymm.ctl import protocol as p
from polymm.demo import Stack, _python_main


class NotifySocket:
    """A fake systemd notify socket: collects (monotonic time, message) datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str = "") -> list[str]:
        return [m for _, m in list(self.messages) if m.startswith(prefix)]

    def wait(self, message: str, timeout_s: float, after: int = 0) -> int:
        """Index of the first `message` (exact line) at or after index `after`."""
        def find():
            for i, (_, m) in enumerate(list(self.messages)[after:], start=after):
                if m == message:
                    return i + 1
            return 0
        return wait_for(find, timeout_s, every_s=0.05, what=f"sd_notify {message}") - 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """sim + feed; each test starts its own trader."""
    stack = Stack(tmp_path_factory.mktemp("svc"), window_s=WINDOW_S, seed=11, config_text=live_config(WINDOW_S))
    try:
        stack.start(trader=False)
        yield stack
    finally:
        stack.close()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def start_trader(stack: Stack, notify: NotifySocket, **extra_env) -> subprocess.Popen:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000", **extra_env}
    return stack.start_trader(wait_s=60, extra_env=env)


pytestmark = pytest.mark.slow


def test_ready_only_after_reconciliation_then_watchdog_and_status(stack, notify):
    trader = start_trader(stack, notify)
    try:
        ready = notify.wait("READY=1", 30)
        log = (stack.workdir / "trader.log").read_text()
        assert "reconcile (start)" in log and log.index("reconcile (start)") < log.index("ready:")
        before_ready = [m for _, m in notify.messages[:ready]]
        assert "STATUS=connecting to the exchange and reconciling" in before_ready
        time.sleep(1.5)
        assert len(notify.lines("WATCHDOG=1")) >= 2
        status = notify.lines("STATUS=")[-1]
        assert "window" in status and "exposure" in status and "pnl" in status
    finally:
        stack.stop_trader()


def test_sighup_reloads_the_file_and_keeps_the_old_config_when_it_is_broken(stack, notify):
    trader = start_trader(stack, notify)
    original = stack.config_path.read_text()
    try:
        ready = notify.wait("READY=1", 30)
        stack.config_path.write_text(original.replace("[s1]\n", "[s1]\ntp_increment = 0.02\n"))
        trader.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING=1", 10, after=ready + 1)
        notify.wait("READY=1", 10, after=reloading + 1)
        entry = stack.ask(p.ConfigRequest(key="s1.tp_increment")).entries[0]
        assert entry.value == 0.02

        stack.config_path.write_text(original.replace("[s1]\n", "[s1]\ntp_increment = 2\n"))
        n = len(notify.messages)
        trader.send_signal(signal.SIGHUP)
        reloading = notify.wait("RELOADING=1", 10, after=n)
        notify.wait("READY=1", 10, after=reloading + 1)
        assert stack.ask(p.ConfigRequest(key="s1.tp_increment")).entries[0].value == 0.02
        log = (stack.workdir / "trader.log").read_text()
        assert "reload failed, old config kept" in log and "s1.tp_increment" in log
    finally:
        stack.config_path.write_text(original)
        stack.stop_trader()


def test_sigterm_cancels_our_open_orders_before_exit(stack, notify):
    trader = start_trader(stack, notify)
    wait_for(lambda: stack.open_orders_on_sim(), timeout_s=4 * WINDOW_S, every_s=0.1, what="an open order on the sim")
    trader.send_signal(signal.SIGTERM)
    assert trader.wait(30) == 0
    assert "STOPPING=1" in notify.lines("STOPPING")
    assert stack.open_orders_on_sim() == []


def _second_trader(stack: Stack, tmp_path: Path, **env) -> tuple[int, str]:
    second_log = tmp_path / "second.log"
    with open(second_log, "wb") as out:
        second = subprocess.run(
            _python_main("polymm.trader.service"), env=stack.env(POLYMM_SOCKET=str(tmp_path / "second.sock"), **env),
            stdout=out, stderr=subprocess.STDOUT, timeout=60)
    return second.returncode, second_log.read_text()


def test_a_second_trader_on_the_same_wallet_refuses_to_start(stack, notify, tmp_path):
    first = start_trader(stack, notify)
    try:
        code, text = _second_trader(stack, tmp_path)
        assert code == 2
        assert "another trader" in text and "refusing" in text and f"pid {first.pid}" in text
        assert stack.status().state in ("running", "stale_feed")  # the first one is untouched
    finally:
        stack.stop_trader()


def test_a_second_trader_with_another_state_dir_on_the_same_wallet_still_refuses(stack, notify, tmp_path):
    """The wallet lock is machine-wide (an abstract socket named after the funder), not per state directory."""
    first = start_trader(stack, notify)
    try:
        code, text = _second_trader(stack, tmp_path, POLYMM_STATE_DIR=str(tmp_path / "other-state"))
        assert code == 2, text
        assert f"another trader (pid {first.pid}) already trades series btc-15m of wallet {stack.address.lower()}" in text
        assert "Traceback" not in text
        assert stack.status().state in ("running", "stale_feed")
        assert stack.status().pid == first.pid
    finally:
        stack.stop_trader()


def test_test_hook_sigusr2_hangs_the_loop_so_the_watchdog_stops(stack, notify):
    trader = start_trader(stack, notify, POLYMM_TEST_HOOKS="1")
    try:
        notify.wait("READY=1", 30)
        trader.send_signal(signal.SIGUSR2)
        time.sleep(1.0)  # let the last pet in flight arrive
        pets = len(notify.lines("WATCHDOG=1"))
        time.sleep(2.5)
        assert len(notify.lines("WATCHDOG=1")) == pets
        status = stack.status()  # the control thread still answers, and says so
        assert any("decision loop silent" in w for w in status.warnings)
    finally:
        trader.kill()
        trader.wait(10)
        stack.trader = None


def test_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[s1]\nentry_threshold = 1.5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMM_")}
    env.update(POLYMM_CONFIG=str(cfg), POLYMM_STATE_DIR=str(tmp_path / "state"), PK="0x" + "11" * 32)
    run = subprocess.run(_python_main("polymm.trader.service"), env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "s1.entry_threshold" in run.stderr and "Traceback" not in run.stderr


def test_missing_key_exits_2_and_no_secret_is_ever_printed(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMM_") and k != "PK"}
    env.update(POLYMM_STATE_DIR=str(tmp_path / "state"), POLYMM_CONFIG=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    run = subprocess.run(_python_main("polymm.trader.service"), env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "PK is not set" in run.stderr

    secret = "0x" + "5e" * 31 + "zz"  # not a valid key: the error must not echo it
    env["PK"] = secret
    run = subprocess.run(_python_main("polymm.trader.service"), env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert secret not in run.stderr and secret[2:] not in run.stderr


def test_the_trader_log_never_contains_the_private_key(stack):
    """Run after the others in this module: every trader started here logged to the same file."""
    text = (stack.workdir / "trader.log").read_text()
    assert text and stack.pk not in text and stack.pk[2:] not in text
    assert order_lines(stack.workdir / "trader.log"), "no order line was logged at all"


def test_no_feed_exits_1_so_systemd_retries_with_the_reason_in_words(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMM_")}
    env.update(POLYMM_STATE_DIR=str(tmp_path / "state"), POLYMM_CONFIG=str(tmp_path / "c.toml"),
               POLYMM_SHM=f"polymm_test_missing_{os.getpid()}", PK="0x" + "11" * 32)
    (tmp_path / "c.toml").write_text("")
    run = subprocess.run(_python_main("polymm.trader.service") + ["--feed-wait-s", "1"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "is polymm-feed running?" in run.stderr and "Traceback" not in run.stderr


def test_risk_heartbeat_false_sends_no_heartbeat_and_mmctl_status_says_so(stack, notify, tmp_path):
    from tests.support.ctl import mmctl
    from polymm.trader.execution.core import DEAD_MAN_SWITCH_OFF

    config = tmp_path / "no-heartbeat.toml"
    config.write_text(live_config(WINDOW_S) + "heartbeat = false\n")  # the last section is [risk]
    started = stack.sim.admin.state()["now"]
    start_trader(stack, notify, POLYMM_CONFIG=str(config))
    try:
        assert stack.ask(p.ConfigRequest(key="risk.heartbeat")).entries[0].value is False
        assert DEAD_MAN_SWITCH_OFF in stack.status().warnings
        status = mmctl(stack.socket, "status", shm=stack.shm)
        assert DEAD_MAN_SWITCH_OFF in " ".join(status.stdout.split()), status.stdout
        assert status.exit_code != 0  # orders without a dead-man switch are not a healthy state
        wait_for(lambda: order_lines(stack.workdir / "trader.log", since=time.time() - 60) and
                 stack.sim.admin.state()["now"] > started + 6, timeout_s=4 * WINDOW_S, what="trading for > 6 s")
        # The sim's last heartbeat from this wallet (earlier traders in this module sent some) is older than
        # this trader: it never sent one, although the interval is 5 s.
        ages = stack.sim.admin.state()["heartbeats_age_s"]
        now = stack.sim.admin.state()["now"]
        assert all(now - age < started for age in ages.values()), ages
    finally:
        stack.stop_trader()
