"""The kill switch always gets through: with more chatty clients than the control socket admits, `mmctl pause`,
`flatten` and `cancel-all` are still served (a connection over the limit is admitted on probation: it may ask for
those three only), and the chatty clients over the limit are told so in words."""
from __future__ import annotations

import json

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.ctl import FakeHandler, feed_segment, mmctl, serve
from polymm.ctl import protocol as p
from polymm.ctl.client import ControlClient, CtlError, RemoteError

LIMIT = 32


@pytest.fixture
def sock_path(tmp_path) -> Path:
    return tmp_path / "trader.sock"


class Dashboards:
    """`count` clients asking for status back to back, each holding its connection (a dashboard; never idle, so
    never evicted to make room). `one_shot` clients connect for every request instead (`mmctl status` in a loop)."""

    def __init__(self, path: Path, count: int, one_shot: int = 0) -> None:
        self.path = path
        self.stop = threading.Event()
        self.outcomes: Counter = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i >= one_shot,), daemon=True) for i in range(count)]

    def _count(self, what: str) -> None:
        with self.lock:
            self.outcomes[what] += 1

    def _run(self, persistent: bool) -> None:
        while not self.stop.is_set():
            try:
                with ControlClient(self.path, 10.0) as client:
                    while not self.stop.is_set():
                        client.request(p.StatusRequest())
                        self._count("status")
                        time.sleep(0.005)
                        if not persistent:
                            break
            except RemoteError as err:
                self._count("busy" if err.code == p.E_BUSY else f"error {err.code}")
                if err.code == p.E_BUSY:
                    with self.lock:
                        self.outcomes["busy words ok"] += "pause, flatten and cancel-all" in err.reply.message
            except CtlError:
                self._count("dropped")
            time.sleep(0.005)

    def __enter__(self) -> "Dashboards":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def wait_until(self, predicate, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.outcomes):
                    return
            time.sleep(0.02)
        raise AssertionError(f"{what} not seen within {timeout_s:g} s: {dict(self.outcomes)}")


def test_pause_flatten_and_cancel_all_get_through_more_chatty_clients_than_the_limit(sock_path):
    handler = FakeHandler()
    with serve(sock_path, handler, max_clients=LIMIT) as server, Dashboards(sock_path, LIMIT + 8, one_shot=4) as load:
        # The limit is really reached: clients over it are being turned away while the commands run.
        load.wait_until(lambda o: o["busy"] >= 5 and o["status"] >= 100, "status served and clients turned away")
        for args in (("pause",), ("cancel-all",), ("flatten", "--yes"), ("pause",), ("pause",)):
            run = mmctl(sock_path, *args)
            assert run.exit_code == 0, f"mmctl {' '.join(args)}: {run.stderr}"
        load.wait_until(lambda o: o["busy"] >= 10, "more clients turned away after the commands")
        assert server.client_count <= 2 * LIMIT
    assert handler.calls.count("pause") == 3
    assert handler.calls.count("cancel_all") == 1 and handler.calls.count("flatten") == 1
    # The turned-away clients were told why and what still works, never cut off without a word.
    assert load.outcomes["busy words ok"] == load.outcomes["busy"]
    assert load.outcomes["dropped"] == 0, dict(load.outcomes)


class SlowReads(FakeHandler):
    """`orders` waits until released: its callers stay busy, so the server cannot evict them as idle."""

    def __init__(self) -> None:
        super().__init__()
        self.readers = 0

    def orders(self, request):
        with self.lock:
            self.readers += 1
        self.release.wait(20)
        return super().orders(request)


def _read_orders(path: Path) -> None:
    with ControlClient(path, 25.0) as client:
        client.request(p.OrdersRequest())


def test_a_client_over_the_limit_is_refused_anything_but_the_kill_switch(sock_path, shm_name):
    handler = SlowReads()
    with serve(sock_path, handler, max_clients=2) as server:
        holders = [threading.Thread(target=_read_orders, args=(sock_path,), daemon=True) for _ in range(2)]
        for t in holders:
            t.start()
        deadline = time.monotonic() + 20
        while handler.readers < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handler.readers == 2 and server.client_count == 2
        try:
            with ControlClient(sock_path, 5.0) as extra:
                with pytest.raises(RemoteError) as err:
                    extra.request(p.StatusRequest())
            assert err.value.code == p.E_BUSY
            assert "too many mmctl clients (2)" in err.value.reply.message
            assert "pause, flatten and cancel-all are always served" in err.value.reply.message
            # mmctl status: the trader runs and serves others, so it is busy (exit 10), never "down" (issue 27)
            with feed_segment(shm_name):
                run = mmctl(sock_path, "status", "--json", shm=shm_name)
                text = mmctl(sock_path, "status", shm=shm_name)
            assert run.exit_code == 10 and json.loads(run.stdout)["verdict"] == "busy", run.stdout
            assert text.exit_code == 10 and "BUSY: TRADER RUNNING, NO CONTROL SLOT FREE" in text.stdout, text.stdout
            assert "TRADER DOWN" not in text.stdout and "trader busy: too many mmctl clients" in text.stdout
            run = mmctl(sock_path, "pause")
            assert run.exit_code == 0, run.stderr
            assert handler.calls[-1] == "pause"
        finally:
            handler.release.set()
            for t in holders:
                t.join(10)
        assert server.stats.refused >= 1


def test_a_connection_on_probation_that_asks_nothing_is_closed(sock_path):
    handler = SlowReads()
    with serve(sock_path, handler, max_clients=1, probation_idle_s=0.2) as server:
        holder = threading.Thread(target=_read_orders, args=(sock_path,), daemon=True)
        holder.start()
        deadline = time.monotonic() + 20
        while handler.readers < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            silent.connect(str(sock_path))
            silent.settimeout(20)
            assert silent.recv(1) == b""  # closed by the server's sweep, without a request ever sent
            silent.close()
            assert server.stats.on_probation >= 1
        finally:
            handler.release.set()
            holder.join(10)
