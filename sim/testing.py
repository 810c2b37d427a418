"""Test harness: a real `polymm-sim` subprocess in a few lines (contract 7 in the team's contracts).

    from polymm.sim.testing import run_sim, new_wallet

    def test_something(tmp_path):
        with run_sim(tmp_path, seed=1, window_s=60) as sim:
            sim.urls["clob_url"]                      # also gamma_url, ws_market_url, ws_user_url, ws_rtds_url
            env = {**os.environ, **sim.env()}         # POLYMM_*_URL for launching feed/trader
            pk, address = new_wallet()
            client = sim.clob_client(pk)              # real py-clob-client-v2 with derived creds
            sim.admin.fault("post_status", status=503)
            sim.admin.state()["markets"]

The sim runs as `python -m polymm.sim.server` with `--port 0`; its log goes to `<tmp_path>/polymm-sim-*.log`
and is quoted in the error when it fails to start.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from polymm import env as polymm_env

START_TIMEOUT_S = 30.0
# A market that holds still (run_sim(script=STEADY)): P(Up) 0.5 all window, the book 0.49/0.51, no random takers. For
# tests whose orders must rest until the test itself trades (a random taker filling them would be a flake).
STEADY = {"fair": [[0, 0.5]]}


class SimError(RuntimeError):
    pass


def new_wallet() -> tuple[str, str]:
    """A throw-away key: (private key as 0x-hex, checksum address)."""
    from eth_account import Account

    private_key = "0x" + secrets.token_hex(32)
    return private_key, Account.from_key(private_key).address


class AdminClient:
    """The `/_sim` admin endpoint. Every method returns the decoded JSON answer; a 4xx raises SimError
    with the sim's reason."""

    def __init__(self, admin_url: str, timeout_s: float = 10.0) -> None:
        self.base = admin_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> Any:
        url = f"{self.base}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise SimError(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None

    def state(self) -> dict:
        return self._call("GET", "/state")

    def fault(self, name: str, **params: Any) -> dict:
        """drop_ws(channel=all|market|user|rtds), freeze_market_ws(on=True), freeze_rtds(on=True), ws_delay(seconds), duplicate(count),
        reorder(count), wrap_in_list(on), post_status(status=425|429|500|503, count=1, retry_after_s=1),
        fail_next_trade(count=1, address=None), stop_accepting(on=True), post_only_mode(seconds),
        closed_only(address, on=True), tick_size(tick=0.001, condition_id=None -> live market),
        order_version(version=3), fee_schedule(rate=0.25, exponent=2), clear()."""
        return self._call("POST", "/fault", {"name": name, **params})

    def fund(self, address: str, amount: float) -> dict:
        return self._call("POST", "/fund", {"address": address, "amount": amount})

    def balance(self, address: str) -> dict:
        return self._call("GET", "/balance", query={"address": address})

    def open_orders(self, address: str) -> list[dict]:
        return self._call("GET", "/orders", query={"address": address})["orders"]

    def trades(self, address: str) -> list[dict]:
        return self._call("GET", "/trades", query={"address": address})["trades"]

    @staticmethod
    def _which(body: dict, condition_id: str | None, series: str | None) -> dict:
        if condition_id is not None:
            body["condition_id"] = condition_id
        if series is not None:
            body["series"] = series
        return body

    def book(self, bids: list, asks: list, condition_id: str | None = None, series: str | None = None) -> dict:
        """Script the (live) window's book: exactly these Up levels [[price, size], ...] rest, nothing else moves.
        `series`: the live window of that series (a sim serving several)."""
        return self._call("POST", "/book", self._which({"bids": bids, "asks": asks}, condition_id, series))

    def take(self, side: str, price: float, size: float, condition_id: str | None = None,
             series: str | None = None) -> dict:
        return self._call("POST", "/take", self._which({"side": side, "price": price, "size": size}, condition_id,
                                                       series))

    def resolve_now(self, condition_id: str | None = None, winner: str | None = None,
                    series: str | None = None) -> dict:
        body: dict[str, Any] = self._which({}, condition_id, series)
        if winner is not None:
            body["winner"] = winner
        return self._call("POST", "/resolve_now", body)

    def set_order_version(self, version: int) -> dict:
        """Switch the exchange's order version now (GET /version; other versions' orders are refused)."""
        return self.fault("order_version", version=version)

    def set_fee_schedule(self, rate: float, exponent: float = 1.0) -> dict:
        """Set the taker fee schedule of every listed market and of those listed later."""
        return self.fault("fee_schedule", rate=rate, exponent=exponent)

    def relayer(self) -> dict:
        """Builder credentials, stats, faults and every relayed transaction (with what it did)."""
        return self._call("GET", "/relayer")

    def relayer_fault(self, **params: Any) -> dict:
        """status=429|500|503 (answer the next `count` submits with it), fail=True (let them revert), clear=True."""
        return self._call("POST", "/relayer_fault", params)

    def chain(self, address: str | None = None) -> dict:
        """The sim's chain: stats, receipts, failing conditions; with `address`, its approvals and POL."""
        return self._call("GET", "/chain", query={"address": address} if address else None)

    def set_chain(self, **params: Any) -> dict:
        """address=, only="none"|"v2"|"v3"|"all"; address=, token="pusd"|"ctf"|"position_manager", spender=,
        approved=; address=, pol=; fail_condition=; clear_failures=True (sim/chain.py admin_set)."""
        return self._call("POST", "/chain", params)

    def live_market(self, series: str | None = None) -> dict:
        """The listed market whose window is live now (state()["markets"] entry), of `series` (else the first
        series the sim serves)."""
        state = self.state()
        name = series or next(iter(state["series"]))
        live = state["series"][name]["live_window_start"]
        for market in state["markets"]:
            if market["window_start"] == live and market["series"] == name:
                return market
        raise SimError(f"no live market of {name} in sim state: {state['markets']}")


class RunningSim:
    def __init__(self, process: subprocess.Popen, urls: dict[str, str], log_path: Path) -> None:
        self.process = process
        self.urls = {k: urls[k] for k in ("gamma_url", "clob_url", "ws_market_url", "ws_user_url", "ws_rtds_url",
                                          "data_url", "relayer_url", "rpc_url", "geoblock_url")}
        self.admin_url = urls["admin_url"]
        self.admin = AdminClient(urls["admin_url"])
        self.log_path = log_path

    def env(self) -> dict[str, str]:
        return {
            polymm_env.GAMMA_URL: self.urls["gamma_url"],
            polymm_env.CLOB_URL: self.urls["clob_url"],
            polymm_env.WS_MARKET_URL: self.urls["ws_market_url"],
            polymm_env.WS_USER_URL: self.urls["ws_user_url"],
            polymm_env.RTDS_URL: self.urls["ws_rtds_url"],
            polymm_env.DATA_URL: self.urls["data_url"],
            polymm_env.RELAYER_URL: self.urls["relayer_url"],
            polymm_env.GEOBLOCK_URL: self.urls["geoblock_url"],
        }

    def builder_env(self) -> dict[str, str]:
        """The sim relayer's builder API credentials as the trader reads them from its environment."""
        creds = self.admin.relayer()["builder_creds"]
        return {polymm_env.BUILDER_API_KEY: creds["key"], polymm_env.BUILDER_SECRET: creds["secret"],
                polymm_env.BUILDER_PASS_PHRASE: creds["passphrase"]}

    def clob_client(self, private_key: str, signature_type: int | None = None, funder: str | None = None):
        """The real py-clob-client-v2 pointed at the sim, with API credentials derived over L1."""
        from py_clob_client_v2 import ClobClient

        client = ClobClient(self.urls["clob_url"], 137, key=private_key, signature_type=signature_type,
                            funder=funder)
        client.set_api_creds(client.create_or_derive_api_key())
        return client

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def run_sim(tmp_path: Path | str, seed: int = 1, window_s: int = 60, fund: float = 1000,
            extra_args: tuple[str, ...] | list[str] = (), script: dict | None = None,
            series: str | tuple[str, ...] = "btc-15m") -> Iterator[RunningSim]:
    """Start polymm-sim on a free port, yield it once it serves, stop it (SIGTERM, then kill) on exit.
    `script`: every window follows it (sim/script.py's JSON form; e.g. STEADY), written to a file for --script.
    `series`: the series served ("btc-15m,eth-5m" or a tuple); every one on `window_s`-second windows."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    ready_file = tmp_path / f"polymm-sim-{tag}.ready.json"
    log_path = tmp_path / f"polymm-sim-{tag}.log"
    if script is not None:
        script_file = tmp_path / f"polymm-sim-{tag}.script.json"
        script_file.write_text(json.dumps(script))
        extra_args = (*extra_args, "--script", str(script_file))
    command = [sys.executable, "-m", "polymm.sim.server", "--host", "127.0.0.1", "--port", "0",
               "--seed", str(seed), "--window-s", str(window_s), "--fund", str(fund),
               "--series", series if isinstance(series, str) else ",".join(series),
               "--ready-file", str(ready_file), *extra_args]
    log_file = open(log_path, "wb")
    # Its own session: a terminal's Ctrl-C (SIGINT to the foreground group) must not kill the sim before the
    # processes using it have cleaned up (cancelled orders); the finally below stops it with SIGTERM.
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log_file.close()  # the child holds its own descriptor
    try:
        urls = _wait_ready(process, ready_file, log_path)
        yield RunningSim(process, urls, log_path)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, ready_file: Path, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_file.exists():
            return json.loads(ready_file.read_text())
        if process.poll() is not None:
            raise SimError(f"polymm-sim exited with {process.returncode} before it was ready:\n"
                           f"{_tail(log_path)}")
        time.sleep(0.05)
    raise SimError(f"polymm-sim not ready after {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---- comparing message shapes with recorded production messages ------------------------------------------
def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shape_diff(ours: Any, recorded: Any, path: str = "$", allow_extra: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Differences in keys and JSON value types between one of our messages and a recorded real one.

    Objects must have the same keys (ours may add names in `allow_extra`, at any depth); values must have
    the same JSON type (int and float are different types, as a typed decoder sees them). A recorded
    null says nothing about the type, so any value matches it. Lists are compared by their first
    elements when both have one. Returns [] when the shapes agree."""
    if recorded is None:
        return []
    ours_type, recorded_type = _json_type(ours), _json_type(recorded)
    if ours_type != recorded_type:
        return [f"{path}: ours is {ours_type} ({ours!r:.60}), recorded is {recorded_type} ({recorded!r:.60})"]
    problems: list[str] = []
    if isinstance(recorded, dict):
        missing = sorted(set(recorded) - set(ours))
        extra = sorted(set(ours) - set(recorded) - set(allow_extra))
        problems += [f"{path}.{k}: missing (recorded has it)" for k in missing]
        problems += [f"{path}.{k}: extra (recorded lacks it)" for k in extra]
        for k in sorted(set(recorded) & set(ours)):
            problems += shape_diff(ours[k], recorded[k], f"{path}.{k}", allow_extra)
    elif isinstance(recorded, list) and recorded and ours:
        problems += shape_diff(ours[0], recorded[0], f"{path}[0]", allow_extra)
    return problems
