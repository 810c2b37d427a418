"""How fast polymm-sim is: orders/s it accepts from one client, and WebSocket frames/s it emits.

    .venv/bin/python bench/bench_sim.py [--orders 2000] [--subscribers 4] [--seconds 10]

Prints its figures; asserts nothing. Orders are signed before the clock starts (signing is the client's
cost, measured by bench_signing.py), then posted one after another over one keep-alive connection, the
way the trader's gateway does: post-only GTC orders resting away from the touch, so every one is
verified (HMAC, EIP-712 signature recovery, amounts), booked and announced on the WebSockets.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import websocket
from py_clob_client_v2.clob_types import OrderArgs, PartialCreateOrderOptions, RequestArgs
from py_clob_client_v2.headers.headers import create_level_2_headers
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

from polymm.sim.testing import new_wallet, run_sim


def signed_bodies(client, token: str, count: int) -> list[str]:
    options = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
    bodies = []
    for i in range(count):
        price = 0.05 + (i % 20) / 100  # 0.05 .. 0.24: far below the touch, so every order rests
        order = client.create_order(OrderArgs(token_id=token, price=price, size=5, side="BUY"), options)
        bodies.append(json.dumps(order_to_json_v2(order, client.creds.api_key, "GTC", True), separators=(",", ":")))
    return bodies


def post_all(client, url: str, path: str, bodies: list[str]) -> tuple[float, list[float]]:
    latencies = []
    with httpx.Client(timeout=30) as http:
        started = time.perf_counter()
        for body in bodies:
            headers = create_level_2_headers(client.signer, client.creds,
                                             RequestArgs(method="POST", request_path=path, body=body,
                                                         serialized_body=body))
            t0 = time.perf_counter()
            answer = http.post(url + path, content=body.encode(), headers={**headers, "Content-Type": "application/json"})
            latencies.append(time.perf_counter() - t0)
            if answer.status_code != 200:
                raise SystemExit(f"post failed: {answer.status_code} {answer.text}")
        return time.perf_counter() - started, latencies


class Subscriber:
    def __init__(self, url: str, tokens: list[str]) -> None:
        self.ws = websocket.create_connection(url, timeout=5)
        self.ws.send(json.dumps({"assets_ids": tokens, "type": "market"}))
        self.frames = 0
        self.stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop:
            try:
                self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            self.frames += 1

    def close(self) -> None:
        self.stop = True
        self.ws.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="idle market observation time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_sim(Path(tmp), seed=7, window_s=900,
                                                       fund=10_000_000, extra_args=("--log-level", "WARNING")) as sim:
        pk, _ = new_wallet()
        client = sim.clob_client(pk)
        state = sim.admin.state()
        market = next(m for m in state["markets"] if m["window_start"] == state["live_window_start"])
        tokens = [market["up_token"], market["down_token"]]
        url = sim.urls["clob_url"]

        subscribers = [Subscriber(sim.urls["ws_market_url"], tokens) for _ in range(args.subscribers)]
        time.sleep(1.0)
        base_frames, base_sent = sum(s.frames for s in subscribers), sim.admin.state()["stats"]["ws_messages"]
        time.sleep(args.seconds)
        idle_frames = sum(s.frames for s in subscribers) - base_frames
        idle_sent = sim.admin.state()["stats"]["ws_messages"] - base_sent
        print(f"idle synthetic market: {idle_sent / args.seconds:.0f} frames/s sent to {args.subscribers} "
              f"subscribers ({idle_frames / args.seconds / max(1, args.subscribers):.1f} frames/s each)")

        # Baseline: the same client, connection and server answering GET /ok (no auth, no signature check,
        # no matching, no fan-out): the HTTP floor the order figures are compared with.
        with httpx.Client(timeout=30) as http:
            ok_lat = []
            started = time.perf_counter()
            for _ in range(args.orders):
                t0 = time.perf_counter()
                http.get(url + "/ok")
                ok_lat.append(time.perf_counter() - t0)
            ok_rate = args.orders / (time.perf_counter() - started)
        print(f"baseline: GET /ok, one client, sequential: {ok_rate:.0f} requests/s "
              f"(median {statistics.median(ok_lat) * 1000:.2f} ms)")

        print(f"signing {args.orders} orders (client side, not timed)...", file=sys.stderr)
        bodies = signed_bodies(client, market["up_token"], args.orders)
        sent_before = sim.admin.state()["stats"]["ws_messages"]
        elapsed, latencies = post_all(client, url, "/order", bodies)
        time.sleep(0.5)  # let the fan-out drain
        sent = sim.admin.state()["stats"]["ws_messages"] - sent_before
        latencies.sort()
        print(f"POST /order, one client, sequential: {args.orders / elapsed:.0f} orders/s "
              f"(median {statistics.median(latencies) * 1000:.2f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms)")
        print(f"WebSocket frames sent meanwhile: {sent / elapsed:.0f} frames/s to {args.subscribers} subscribers")
        print(f"ratio: POST /order rate / GET /ok rate = {args.orders / elapsed / ok_rate:.2f} "
              "(the share of the HTTP floor left after auth, EIP-712 recovery, matching and fan-out)")
        client.cancel_all()

        batch_bodies = signed_bodies(client, market["up_token"], 15 * (args.orders // 15))
        batches = ["[" + ",".join(batch_bodies[i:i + 15]) + "]" for i in range(0, len(batch_bodies), 15)]
        elapsed, _ = post_all(client, url, "/orders", batches)
        print(f"POST /orders (15 per batch), one client: {len(batch_bodies) / elapsed:.0f} orders/s")
        client.cancel_all()
        for s in subscribers:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
