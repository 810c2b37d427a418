"""Memory of polymm-sim over a long run: `--window-s 60`, a market-WS subscriber following the live
window, and a light trading client. Samples the sim's RSS every minute, then stops everything itself.

    .venv/bin/python bench/soak_sim.py --minutes 60 --out /tmp/sim-soak      # log: /tmp/sim-soak/rss.log

Each log line: UTC time, minutes elapsed, the sim's RSS (kB), frames the subscriber received, orders the
sim accepted, markets the engine holds. The last line starts with "done" and repeats the final RSS.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import websocket
from py_clob_client_v2.clob_types import OrderArgs, PartialCreateOrderOptions

from polymm.sim.testing import new_wallet, run_sim


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


class Follower:
    """A market-channel subscriber that moves to each new live window, PINGs every 10 s and counts frames."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.frames = 0
        self.tokens: list[str] = []
        self.stop = threading.Event()
        self.ws = websocket.create_connection(sim.urls["ws_market_url"], timeout=5)
        self.ws.send(json.dumps({"assets_ids": self._live_tokens(), "type": "market", "custom_feature_enabled": True}))
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._follow, daemon=True).start()

    def _live_tokens(self) -> list[str]:
        market = self.sim.admin.live_market()
        self.tokens = [market["up_token"], market["down_token"]]
        return self.tokens

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                self.ws.recv()
                self.frames += 1
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return

    def _follow(self) -> None:
        last_ping = 0.0
        while not self.stop.wait(1.0):
            try:
                if time.monotonic() - last_ping >= 10:
                    self.ws.send("PING")
                    last_ping = time.monotonic()
                old = self.tokens
                new = self._live_tokens()
                if new != old:
                    self.ws.send(json.dumps({"assets_ids": old, "operation": "unsubscribe"}))
                    self.ws.send(json.dumps({"assets_ids": new, "operation": "subscribe"}))
            except Exception as exc:
                print(f"follower: {exc}", file=sys.stderr)

    def close(self) -> None:
        self.stop.set()
        self.ws.close()


def trade_lightly(sim, stop: threading.Event) -> None:
    """A post-only quote placed and cancelled every 10 s, a small crossing buy every minute."""
    pk, _ = new_wallet()
    client = sim.clob_client(pk)
    options = PartialCreateOrderOptions(tick_size="0.01", neg_risk=False)
    rounds = 0
    while not stop.wait(10.0):
        rounds += 1
        try:
            market = sim.admin.live_market()
            if not market["accepting_orders"] or market["up_best_bid"] is None or market["tick_size"] != "0.01":
                continue
            bid = round(float(market["up_best_bid"]) - 0.02, 2)
            if bid >= 0.02:
                placed = client.create_and_post_order(OrderArgs(token_id=market["up_token"], price=bid, size=5,
                                                                side="BUY"), options, post_only=True)
                client.cancel_all()
                del placed
            if rounds % 6 == 0 and market["up_best_ask"] is not None:
                client.create_and_post_order(OrderArgs(token_id=market["up_token"], price=float(market["up_best_ask"]),
                                                       size=5, side="BUY"), options, defer_exec=True)
        except Exception as exc:  # a window closing between read and post is expected now and then
            print(f"trader: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--out", default="/tmp/sim-soak")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "rss.log"
    # SIGTERM (e.g. from `timeout`) unwinds normally, so run_sim stops the sim; the sim also stops itself
    # a few minutes after the planned end whatever happens to this script.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    guard_s = args.minutes * 60 + 300
    with run_sim(out, seed=21, window_s=60, extra_args=("--log-level", "WARNING", "--exit-after-s", str(guard_s))) as sim, \
            open(log_path, "a", buffering=1) as log:
        pid = sim.process.pid
        follower = Follower(sim)
        stop = threading.Event()
        threading.Thread(target=trade_lightly, args=(sim, stop), daemon=True).start()
        started = time.monotonic()
        log.write(f"# polymm-sim soak pid={pid} window_s=60 minutes={args.minutes} sim_log={sim.log_path}\n")
        deadline = started + args.minutes * 60
        last = rss_kb(pid)
        while True:
            now = time.monotonic()
            stats = sim.admin.state()
            last = rss_kb(pid)
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} minute={(now - started) / 60:.1f} "
                      f"rss_kb={last} frames={follower.frames} orders={stats['stats']['orders_accepted']} "
                      f"markets={len(stats['markets'])} tick_errors={stats['stats']['tick_errors']}\n")
            if now >= deadline:
                break
            time.sleep(min(args.sample_s, max(0.0, deadline - now)))
        stop.set()
        follower.close()
        log.write(f"done rss_kb={last} after {(time.monotonic() - started) / 60:.1f} min\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
