"""Order build + sign: the SDK's default path (ClobClient.create_order) vs ours (trader/venue/signing.py),
side by side in one run. Prints median and p99 in microseconds. No network: the SDK's tick-size cache
is seeded, as it is after its first order on a token.

    .venv/bin/python bench/bench_signing.py [--n 2000]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import OrderArgsV2, PartialCreateOrderOptions

from polymm.trader.model import Side
from polymm.trader.venue.signing import OrderSigner

TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(n: int) -> None:
    rng = random.Random(1)
    pk = "0x" + rng.randbytes(32).hex()
    client = ClobClient("http://127.0.0.1:9", 137, key=pk)
    client._ClobClient__tick_sizes[TOKEN] = "0.01"
    ours = OrderSigner(pk)
    cases = [(rng.randint(1, 99) / 100, rng.randint(500, 5000) / 100, rng.choice(["BUY", "SELL"])) for _ in range(n)]

    def sdk(price, size, side):
        client.create_order(OrderArgsV2(token_id=TOKEN, price=price, size=size, side=side),
                            PartialCreateOrderOptions(tick_size="0.01", neg_risk=False, version=2))

    def fast(price, size, side):
        ours.build(TOKEN, Side(side), price, size, 0.01)

    def fast_v3(price, size, side):
        ours.build(TOKEN, Side(side), price, size, 0.01, version=3)

    results = {}
    for name, fn in (("sdk create_order", sdk), ("polymm OrderSigner.build", fast),
                     ("polymm OrderSigner.build v3", fast_v3)):
        for case in cases[:50]:  # warm up
            fn(*case)
        samples = []
        for case in cases:
            t0 = time.perf_counter_ns()
            fn(*case)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        results[name] = samples
    print(f"order build+sign, {n} orders each, tick 0.01 (microseconds)")
    print(f"{'path':28s} {'median':>10s} {'p99':>10s} {'mean':>10s}")
    for name, samples in results.items():
        print(f"{name:28s} {statistics.median(samples):10.1f} {percentile(samples, 0.99):10.1f} "
              f"{statistics.fmean(samples):10.1f}")
    speedup = statistics.median(results["sdk create_order"]) / statistics.median(results["polymm OrderSigner.build"])
    print(f"speed-up (median): {speedup:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    run(parser.parse_args().n)
