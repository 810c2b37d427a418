"""A synthetic recording for backtest tests and benchmarks: the tick file `polymm-feed --record --depth 10` writes
(trader/backtest/ticks_file.py), with a market S1 trades in. Deterministic for a seed."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

WINDOW_START = 1_800_000_000  # a multiple of 900


def synthetic_recording(path: Path, windows: int = 2, lines_per_s: float = 5.0, window_s: int = 900, depth: int = 10,
                        seed: int = 1, start: int = WINDOW_START) -> int:
    """Write `windows` windows of lines (exponential gaps of mean 1/lines_per_s): P(Up) a random walk in log-odds
    from 0.5, the Up book 1-3 ticks wide around it with `depth` levels a side of 5-200 shares, Down its mirror, the
    market's fee schedule and minimum size on every line. Returns the number of lines."""
    rng = random.Random(seed)
    n = 0
    with open(path, "w") as f:
        for w in range(windows):
            ws = start + w * window_s
            x, t = 0.0, 0.0
            while True:
                t += rng.expovariate(lines_per_s)
                if t >= window_s:
                    break
                x += rng.gauss(0.0, 0.03)
                fair = min(max(1.0 / (1.0 + math.exp(-x)), 0.03), 0.97)
                bid = max(math.floor((fair - 0.005) * 100) / 100, 0.01)
                ask = min(round(bid + 0.01 * rng.choice((1, 2, 2, 3)), 2), 0.99)
                bids = [[round(bid - i * 0.01, 2), float(rng.randint(5, 200))] for i in range(depth)
                        if bid - i * 0.01 > 0.005]
                asks = [[round(ask + i * 0.01, 2), float(rng.randint(5, 200))] for i in range(depth)
                        if ask + i * 0.01 < 0.995]
                line = {"ts": round(ws + t, 3), "window_start": ws, "window_end": ws + window_s,
                        "up_bid": bids[0][0], "up_ask": asks[0][0], "up_bid_size": bids[0][1],
                        "up_ask_size": asks[0][1], "down_bid": round(1 - asks[0][0], 2),
                        "down_ask": round(1 - bids[0][0], 2), "down_bid_size": asks[0][1],
                        "down_ask_size": bids[0][1], "up_bids": bids, "up_asks": asks,
                        "down_bids": [[round(1 - p, 2), q] for p, q in asks],
                        "down_asks": [[round(1 - p, 2), q] for p, q in bids],
                        "tick_size": 0.01, "min_order_size": 5, "fee_rate": 0.07}
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
                n += 1
    return n
