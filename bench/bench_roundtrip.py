"""Place-and-cancel round trip against a local polymm-sim (started here on a free port).

Two figures, each over --n orders (median and p99, milliseconds):
- gateway: sign + POST /order (post-only, resting) answered, then DELETE /order answered - the raw
  exchange round trip from this process, one after the other; on httpx (the gateway's L2 client before issue
  26) and on the keep-alive client it uses now, with this thread's CPU for each;
- core: ExecutionCore.place() -> the order is LIVE in the core's view, then cancel() -> CANCELED,
  i.e. including the worker hand-off, the state machine and the user channel running alongside (the sim
  fans each order event out to our user socket before answering, which the gateway-only run does not
  pay); plus what the decision loop itself pays: the place() and cancel() calls return at once.

    .venv/bin/python bench/bench_roundtrip.py [--n 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from polymm.sim.testing import new_wallet, run_sim
from polymm.trader.execution.core import ExecutionCore, MarketIdentity
from polymm.trader.venue.gateway import Gateway
from polymm.trader.model import Leg, OrderState, OrderType, Role, Side, Want


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def report(name: str, samples: list[float]) -> None:
    print(f"{name:52s} {statistics.median(samples):8.2f} {pct(samples, 0.99):8.2f} {statistics.fmean(samples):8.2f}")


def market_of(sim) -> MarketIdentity:
    m = sim.admin.live_market()
    return MarketIdentity(m["condition_id"], m["up_token"], m["down_token"], int(m["window_start"]),
                          int(m["window_end"]), float(m["tick_size"]), 5.0, 0.07)


def state(core: ExecutionCore, client_id: str) -> OrderState:
    for o in core.orders(working_only=False):
        if o.client_id == client_id:
            return o.state
    raise KeyError(client_id)


def wait_state(core: ExecutionCore, client_id: str, wanted: OrderState, timeout_s: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while state(core, client_id) is not wanted:
        core.wake.wait(0.001)
        core.wake.clear()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{client_id} not {wanted.value} after {timeout_s} s")


def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, run_sim(Path(tmp), seed=11, window_s=3600,
                                                       extra_args=("--log-level", "WARNING")) as sim:
        m = market_of(sim)
        price = 0.20  # far below the book: rests, never fills
        # Baseline: a bare keep-alive GET /time against the same server (no auth, no order work).
        import httpx

        baseline_ms = []
        with httpx.Client(timeout=10) as http:
            for _ in range(n):
                t0 = time.perf_counter()
                http.get(sim.urls["clob_url"] + "/time")
                baseline_ms.append((time.perf_counter() - t0) * 1000)
        # The gateway's L2 client, side by side in this run: httpx (before issue 26) and the keep-alive client
        # (http_keepalive.py). Wall time and this thread's CPU: the CPU is what the decision loop waits for
        # under the GIL while an order worker posts.
        lanes: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for lane in ("httpx", "keep-alive"):
            gw = Gateway(sim.urls["clob_url"], new_wallet()[0])
            if lane == "httpx":
                gw._l2 = gw._http  # noqa: SLF001 - the transport the gateway used before
            gw.connect()
            place_ms, cancel_ms, cpu_us = [], [], []
            for _ in range(n):
                c0 = time.thread_time_ns()
                t0 = time.perf_counter()
                order = gw.signer.build(m.up_token, Side.BUY, price, 5, m.tick_size)
                gw.post_order(order, "GTC", True)
                t1 = time.perf_counter()
                gw.cancel_order(order.order_hash)
                t2 = time.perf_counter()
                cpu_us.append((time.thread_time_ns() - c0) / 1000)
                place_ms.append((t1 - t0) * 1000)
                cancel_ms.append((t2 - t1) * 1000)
            gw.close()
            lanes[lane] = (place_ms, cancel_ms, cpu_us)
        place_ms, cancel_ms, _ = lanes["keep-alive"]

        core = ExecutionCore(Gateway(sim.urls["clob_url"], new_wallet()[0]), ws_user_url=sim.urls["ws_user_url"],
                             state_dir=Path(tmp) / "state")
        core.start(m)
        live_ms, canceled_ms, place_call_ms, cancel_call_ms = [], [], [], []
        for _ in range(n):
            t0 = time.perf_counter()
            cid = core.place(Want("s1", Leg.UP, Side.BUY, price, 5, Role.ENTRY, OrderType.GTC, True, "bench"))
            place_call_ms.append((time.perf_counter() - t0) * 1000)
            wait_state(core, cid, OrderState.LIVE)
            t1 = time.perf_counter()
            core.cancel(cid, "bench")
            cancel_call_ms.append((time.perf_counter() - t1) * 1000)
            wait_state(core, cid, OrderState.CANCELED)
            t2 = time.perf_counter()
            live_ms.append((t1 - t0) * 1000)
            canceled_ms.append((t2 - t1) * 1000)
            core.poll_events()
        core.stop()

    print(f"place-and-cancel round trip against a local polymm-sim, {n} orders each (milliseconds)")
    print(f"{'step':52s} {'median':>8s} {'p99':>8s} {'mean':>8s}")
    report("baseline: GET /time answered", baseline_ms)
    for lane, (p_ms, c_ms, _) in lanes.items():
        report(f"gateway ({lane}): sign + POST /order answered", p_ms)
        report(f"gateway ({lane}): DELETE /order answered", c_ms)
        report(f"gateway ({lane}): place + cancel", [a + b for a, b in zip(p_ms, c_ms)])
    report("core: place() -> LIVE", live_ms)
    report("core: cancel() -> CANCELED", canceled_ms)
    report("core: place + cancel", [a + b for a, b in zip(live_ms, canceled_ms)])
    report("core: the place() call itself (loop's cost)", place_call_ms)
    report("core: the cancel() call itself (loop's cost)", cancel_call_ms)
    cpu = {lane: statistics.median(v[2]) for lane, v in lanes.items()}
    print(f"this thread's CPU per place + cancel (median, us; the GIL time an order worker takes from the decision "
          f"loop): httpx {cpu['httpx']:.0f}, keep-alive {cpu['keep-alive']:.0f} "
          f"({cpu['keep-alive'] / cpu['httpx']:.2f}x)")
    base = 2 * statistics.median(baseline_ms)
    print(f"ratios (median) against two bare GET /time: gateway place+cancel "
          f"{statistics.median([a + b for a, b in zip(place_ms, cancel_ms)]) / base:.1f}x, core place+cancel "
          f"{statistics.median([a + b for a, b in zip(live_ms, canceled_ms)]) / base:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    run(parser.parse_args().n)
    sys.exit(0)
