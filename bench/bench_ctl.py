"""Control-plane figures: the `status` round trip over the socket (µs) and the whole `mmctl status` command.

    .venv/bin/python bench/bench_ctl.py                       # a fake trader handler, in this process
    .venv/bin/python bench/bench_ctl.py --socket /run/polymm/trader.sock --shm poly_tob_shm   # a live trader

Prints figures; asserts nothing. Round trip = client encode + send + server decode + handler + encode +
reply + client decode, on one kept-open connection (what `mmctl watch` does); "connect+status" opens a new
connection each time (what a one-shot mmctl does). The command time is process start to exit of the real
console script, feed segment included.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from polymm.ctl import protocol as p
from polymm.ctl.client import ControlClient


def sample_status(now: float) -> p.StatusReply:
    """A status as large as a busy trader's: 2 strategies x 2 legs, 8 working orders."""
    orders = [
        p.OrderInfo(client_id=f"c-{i}", order_id="0x" + f"{i:02x}" * 32, strategy=("s1", "s2")[i % 2],
                    leg=("up", "down")[i // 2 % 2], side=("BUY", "SELL")[i // 4 % 2], price=0.5 + i / 100,
                    size=6.55, filled=0.0, state="live", role="entry", order_type="GTC", post_only=True,
                    created_at=now - 10, age_s=10.0, distance=0.01, reason="entry bid>=0.60")
        for i in range(8)
    ]
    positions = [
        p.PositionInfo(strategy=s, leg=leg, shares=6.55, avg_price=0.6, mark=0.61, realised_pnl=1.0,
                       unrealised_pnl=0.07, first_fill_at=now - 60, last_fill_at=now - 30)
        for s in ("s1", "s2") for leg in ("up", "down")
    ]
    return p.StatusReply(state="running", healthy=True, pid=os.getpid(), started_at=now - 3600, now=now,
                         condition_id="0x" + "c0" * 32, window_start=int(now) - 300, window_end=int(now) + 600,
                         feed_age_ms=40.0, last_decision_at=now, positions=positions, orders=orders,
                         exposure=[p.Exposure(scope="total", usd=30.0, cap_usd=100.0)], realised_pnl=4.0,
                         unrealised_pnl=0.28)


class BenchHandler:
    def status(self, request: p.StatusRequest) -> p.StatusReply:
        return sample_status(time.time())


def percentiles(samples_us: list[float]) -> str:
    samples_us = sorted(samples_us)
    q = lambda f: samples_us[min(len(samples_us) - 1, int(f * len(samples_us)))]  # noqa: E731
    return (f"p50 {q(0.5):7.1f}  p90 {q(0.9):7.1f}  p99 {q(0.99):7.1f}  max {samples_us[-1]:7.1f}  "
            f"mean {statistics.fmean(samples_us):7.1f}  (n={len(samples_us)})")


def bench_round_trip(path: str, n: int) -> list[float]:
    samples = []
    with ControlClient(path) as client:
        for _ in range(50):  # warm up
            client.request(p.StatusRequest())
        for _ in range(n):
            t0 = time.perf_counter()
            client.request(p.StatusRequest())
            samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def bench_bare_socket(size: int, n: int) -> list[float]:
    """Baseline: the same bytes ping-ponged over a bare AF_UNIX stream to another process (no framing, no
    msgspec, no handler): what any control round trip costs at the least on this machine."""
    import socket

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    payload = b"x" * size
    pid = os.fork()
    if pid == 0:
        parent.close()
        try:
            while True:
                got = child.recv(64)
                if not got:
                    break
                child.sendall(payload)
        finally:
            os._exit(0)
    child.close()
    samples = []
    try:
        for i in range(n + 50):
            t0 = time.perf_counter()
            parent.sendall(b"s")
            left = size
            while left:
                left -= len(parent.recv(left))
            if i >= 50:  # the first 50 warm up
                samples.append((time.perf_counter() - t0) * 1e6)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    return samples


def bench_bare_python(n: int) -> list[float]:
    """Baseline for the command time: starting an interpreter that does nothing."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def bench_connect_and_status(path: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        with ControlClient(path) as client:
            client.request(p.StatusRequest())
        samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def bench_command(path: str, shm: str, n: int) -> list[float]:
    exe = str(Path(sys.executable).with_name("mmctl"))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.run([exe, "--socket", path, "--shm", shm, "status"], capture_output=True)
        samples.append((time.perf_counter() - t0) * 1e3)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"mmctl status failed: {proc.stderr.decode().strip()}")
    return samples


def _serve_fake(path: str, shm_name: str, ready_w: int, stop_r: int) -> None:
    """The fake trader (control server + feed segment), run in a child process: the client's process must
    not share a GIL with the server, as it does not with a real trader."""
    from polymm.feed import shm
    from polymm.trader.control.server import ControlServer

    writer = shm.Writer(shm_name)
    now = time.time()
    start = int(now // 900 * 900)
    writer.set_market(window_start=start, window_end=start + 900, condition_id="0x" + "c0" * 32,
                      up_token="1" * 70, down_token="2" * 70, tick_size=0.01, min_order_size=5, fee_rate=0.07)
    writer.publish(start, up=(0.52, 100, 0.54, 80, 0.53, now, now), down=(0.46, 90, 0.48, 50, 0.47, now, now),
                   status="connected")
    writer.heartbeat()
    server = ControlServer(path, BenchHandler())
    server.start()
    try:
        os.write(ready_w, b"1")
        os.read(stop_r, 1)  # until the parent closes its end
    finally:
        server.stop()
        writer.close()
        writer.unlink()


@contextlib.contextmanager
def fake_trader_and_feed():
    shm_name = f"polymm_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trader.sock")
        ready_r, ready_w = os.pipe()
        stop_r, stop_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(stop_w)
            code = 0
            try:
                _serve_fake(path, shm_name, ready_w, stop_r)
            except BaseException as exc:  # noqa: BLE001 - report and leave
                print(f"fake trader failed: {exc}", file=sys.stderr)
                code = 1
            os._exit(code)
        os.close(ready_w)
        os.close(stop_r)
        try:
            if os.read(ready_r, 1) != b"1":
                raise SystemExit("the fake trader did not start")
            yield path, shm_name
        finally:
            os.close(stop_w)
            os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="a running trader's control socket (default: a fake trader here)")
    parser.add_argument("--shm", default=os.environ.get("POLYMM_SHM", "poly_tob_shm"))
    parser.add_argument("-n", type=int, default=2000, help="round trips")
    parser.add_argument("--commands", type=int, default=10, help="mmctl status runs")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.socket:
            path, shm_name, what = args.socket, args.shm, f"trader at {args.socket}"
        else:
            path, shm_name = stack.enter_context(fake_trader_and_feed())
            what = "fake handler in a child process"
        size = len(p.encode(sample_status(time.time())))
        print(f"control socket bench: {what}; sample status frame {size} B")
        bare = bench_bare_socket(size, args.n)
        trip = bench_round_trip(path, args.n)
        connect = bench_connect_and_status(path, args.n // 4)
        python = bench_bare_python(args.commands)
        command = bench_command(path, shm_name, args.commands)
        print(f"baseline: bare AF_UNIX ping-pong of {size} B (µs): {percentiles(bare)}")
        print(f"status round trip, kept connection (µs):   {percentiles(trip)}")
        print(f"connect + status + close (µs):             {percentiles(connect)}")
        print(f"baseline: `python -c pass` (ms):           {percentiles(python)}")
        print(f"`mmctl status` process start to exit (ms): {percentiles(command)}")
        print(f"ratios (median): round trip / bare socket {median(trip) / median(bare):.1f}x, "
              f"connect+status / bare socket {median(connect) / median(bare):.1f}x, "
              f"mmctl status / bare interpreter {median(command) / median(python):.1f}x")


if __name__ == "__main__":
    main()
