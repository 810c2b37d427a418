"""`make demo`: the whole system on the local sim, one command, no keys, no systemd.

Starts polymm-sim (a throw-away wallet, fast windows), polymm-feed and polymm-trader as subprocesses with a
temporary state directory, control socket and shared-memory name; prints how to run `mmctl status` against
them; prints a compact status line every few seconds while they trade; and on Ctrl-C, SIGTERM or after
`--duration` stops everything cleanly: the trader cancels its orders, every process exits, the shared-memory
segment and the temporary directory are removed.

`Stack` is the same launcher for the live tests and the tick-to-decision benchmark.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from polymm import env

# A 60 s window: the strategies' time-based rules scaled down from 900 s so a demo shows entries, exits
# and a rotation within a couple of minutes. Thresholds low enough that the synthetic market trades.
DEMO_CONFIG = """\
# polymm demo config ({window_s} s windows on the local sim). Not for real money.
[market]
window_s = {window_s}

[s1]
entry_threshold = {entry_threshold}
cap_schedule = "{cap_schedule}"
late_window_s = {late_window_s}
late_hold_threshold = 0.9
late_sl_trigger = 0.7
exit_delay_s = 1
exit_retry_s = 1
requote_wait_s = 1

[risk]
max_exposure_usd = 50
cancel_before_end_s = {cancel_before_end_s}
"""


def demo_config(window_s: int = 60, entry_threshold: float = 0.55, cancel_before_end_s: float | None = None,
                extra: str = "") -> str:
    third = window_s / 3
    fmt = lambda x: f"{x:g}"  # noqa: E731
    caps = f"0-{fmt(third)}:4,{fmt(third)}-{fmt(2 * third)}:5,{fmt(2 * third)}-{window_s}:6"
    text = DEMO_CONFIG.format(
        window_s=window_s, entry_threshold=entry_threshold, cap_schedule=caps,
        late_window_s=max(1, round(window_s * 120 / 900)),
        cancel_before_end_s=cancel_before_end_s if cancel_before_end_s is not None else max(1, round(window_s * 5 / 900 + 1)),
    )
    return text + extra


_PR_SET_PDEATHSIG = 1
try:  # loaded in the parent: the forked child must only call it (no dlopen between fork and exec)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children then only die through close()/atexit
    _prctl = None


def die_with_launcher(launcher_pid: int) -> None:
    """Run in a forked child before exec (subprocess preexec_fn, see _child_setup): the child gets SIGTERM when
    the launcher dies, even by SIGKILL (a test killed by pytest-timeout, a crashed demo), so no feed or trader
    is ever left running on its own. SIGTERM, not SIGKILL: the trader still cancels its orders on the way out.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits: launch from a thread that lives as
    long as the stack (the main thread, as the demo and the tests do). It survives exec (the children are not
    set-uid). If the launcher already died between fork and prctl, the child was reparented: stop at once."""
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != launcher_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _child_setup():
    """A preexec_fn binding the launcher's pid now (in the parent)."""
    launcher = os.getpid()
    return lambda: die_with_launcher(launcher)


def _python_main(module: str) -> list[str]:
    """Run a service's main() with this interpreter (works without the console scripts on PATH)."""
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launched:
    """What every stack of processes here shares: `with` starts it (and closes it on a failed start), per-process log
    files in `workdir`, and the environment of a child service."""

    workdir: Path
    _logs: list
    funders: frozenset = frozenset()  # wallets of the key other than its own that a trader was given

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _log(self, name: str):
        f = open(self.workdir / f"{name}.log", "ab")
        self._logs.append(f)
        return f

    def child_env(self, names: dict[str, str], metrics_ports: dict | None, extra: dict[str, str]) -> dict[str, str]:
        """The sim's endpoints, `names` (segment, socket, state, config, ...), the throw-away wallet, metrics on free
        ports or off; none of the caller's own POLYMM_* or secrets."""
        out = {k: v for k, v in os.environ.items() if not k.startswith(env.PREFIX) and k not in env.SECRET_NAMES
               and k not in (*env.SYSTEMD_NAMES, env.BROWSER_ADDRESS, env.SIGNATURE_TYPE)}
        out.update(self.sim.env())
        out.update(names)
        out.update({
            env.PK: self.pk, env.SIGNATURE_TYPE: "0",
            env.FEED_METRICS: f"127.0.0.1:{metrics_ports['feed']}" if metrics_ports else "off",
            env.TRADER_METRICS: f"127.0.0.1:{metrics_ports['trader']}" if metrics_ports else "off",
        })
        out.update(extra)
        if extra.get(env.BROWSER_ADDRESS):  # a trader trading another wallet of the key (its record, below)
            self.funders = self.funders | {extra[env.BROWSER_ADDRESS]}
        return out


class Stack(Launched):
    """sim + feed + trader as real processes, with everything in `workdir`.

    `with Stack(...) as stack:` starts all three (or call `start(trader=False)` without `with`, then
    `start_trader()` later); `close()` stops the trader first (it cancels its orders), then the feed, then the
    sim, and removes the shared-memory segment. Starting twice is refused: a second sim with the same seed has
    the same token ids but its own prices, and mixing the two goes unnoticed.
    """

    def __init__(self, workdir: Path, *, window_s: int = 60, seed: int = 1, fund: float = 1000.0,
                 config_text: str | None = None, shm_name: str | None = None, sim_args: tuple = (),
                 log_level: str = "INFO", metrics: bool = False, feed_args: tuple = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.window_s = window_s
        self.seed = seed
        self.fund = fund
        self.sim_args = tuple(sim_args)
        self.feed_args = tuple(feed_args)  # extra polymm-feed options (the soak records: --record FILE)
        self.log_level = log_level
        self.shm = shm_name or f"polymm_demo_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.socket = self.workdir / "trader.sock"
        self.state_dir = self.workdir / "state"
        self.config_path = self.workdir / "config.toml"
        self.config_path.write_text(config_text if config_text is not None else demo_config(window_s))
        self.sim = None
        self.feed: subprocess.Popen | None = None
        self.trader: subprocess.Popen | None = None
        self.pk = self.address = None
        self._exit = contextlib.ExitStack()
        self._logs: list = []
        # Prometheus endpoints: off unless asked for (then free loopback ports), so stacks never fight over the
        # services' default ports with each other or with an installed polymm.
        self.metrics_ports = {"feed": _free_port(), "trader": _free_port()} if metrics else {}

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self, trader: bool = True) -> None:
        if self.sim is not None:
            raise RuntimeError("this Stack is already started")
        self._at_exit()
        self.start_sim()
        self.start_feed()
        if trader:
            self.start_trader()

    def _at_exit(self) -> None:
        """Whatever happens to the caller short of SIGKILL (an exception, sys.exit, the end of a test session
        that forgot close()), the children are stopped at interpreter exit. SIGKILL: die_with_launcher."""
        if not getattr(self, "_atexit_registered", False):
            atexit.register(self.close)
            self._atexit_registered = True

    def start_sim(self) -> None:
        from polymm.sim import testing

        self._at_exit()

        self.sim = self._exit.enter_context(
            testing.run_sim(self.workdir / "sim", seed=self.seed, window_s=self.window_s, fund=self.fund,
                            extra_args=self.sim_args))
        self.pk, self.address = testing.new_wallet()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the feed and trader: sim endpoints, our names, the throw-away wallet."""
        return self.child_env({
            env.SHM: self.shm, env.SOCKET: str(self.socket), env.STATE_DIR: str(self.state_dir),
            env.CONFIG: str(self.config_path), env.WINDOW_S: str(self.window_s), env.LOG_LEVEL: self.log_level,
        }, self.metrics_ports, extra)

    def start_feed(self, wait_s: float = 60.0) -> None:
        log = self._log("feed")
        self.feed = subprocess.Popen(_python_main("polymm.feed.service") + list(self.feed_args), env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_child_setup())
        self.wait_feed(wait_s)

    def wait_feed(self, wait_s: float = 60.0) -> None:
        wait_feed_published(self.feed, self.shm, wait_s, "polymm-feed", self.workdir / "feed.log")

    def trader_command(self, *args: str) -> list[str]:
        return _python_main("polymm.trader.service") + list(args)

    def start_trader(self, wait_s: float = 60.0, extra_env: dict | None = None, args: tuple = ()) -> subprocess.Popen:
        log = self._log("trader")
        # Own session: a Ctrl-C at the terminal reaches the demo only, which then stops the trader first (it must
        # cancel its orders while the sim still answers), then the feed, then the sim.
        self.trader = subprocess.Popen(self.trader_command(*args), env=self.env(**(extra_env or {})), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=_child_setup())
        if wait_s:
            self.wait_trader(wait_s)
        return self.trader

    def wait_trader(self, wait_s: float = 60.0) -> None:
        from polymm.ctl import client, protocol

        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.trader.poll() is not None:
                raise RuntimeError(
                    f"polymm-trader exited with {self.trader.returncode}; see {self.workdir / 'trader.log'}")
            try:
                if client.request(self.socket, protocol.StatusRequest(), timeout=2.0).state != "starting":
                    return
            except client.CtlError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"polymm-trader did not answer on {self.socket} within {wait_s:.0f} s")

    def stop_trader(self, timeout_s: float = 30.0) -> int | None:
        return _stop(self.trader, timeout_s)

    def stop_feed(self, timeout_s: float = 10.0) -> int | None:
        return _stop(self.feed, timeout_s)

    def close(self) -> None:
        if getattr(self, "_atexit_registered", False):
            atexit.unregister(self.close)
            self._atexit_registered = False
        try:
            self.stop_trader()
            self.stop_feed()
        finally:
            self._exit.close()
        for f in self._logs:
            f.close()
        with contextlib.suppress(Exception):
            from polymm.feed import shm

            shm.unlink(self.shm)
        remove_wallet_records(self.address, self.state_dir, self.funders)


    # -- looking at it -------------------------------------------------------------------------------------

    def status(self, timeout: float = 5.0):
        from polymm.ctl import client, protocol

        return client.request(self.socket, protocol.StatusRequest(), timeout=timeout)

    def ask(self, request, timeout: float = 10.0):
        from polymm.ctl import client

        return client.request(self.socket, request, timeout=timeout)

    def open_orders_on_sim(self) -> list:
        return list(self.sim.admin.open_orders(self.address))

    def mmctl_hint(self) -> str:
        return f"{mmctl_exe()} --socket {self.socket} --shm {self.shm} status"


def wait_feed_published(feed: subprocess.Popen, shm_name: str, wait_s: float, what: str, log: Path) -> None:
    """Until the feed process publishes a connected market in its segment; RuntimeError if it exits first,
    TimeoutError after `wait_s`, each naming its log."""
    from polymm.feed import shm

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if feed.poll() is not None:
            raise RuntimeError(f"{what} exited with {feed.returncode}; see {log}")
        try:
            with shm.Reader(shm_name) as reader:
                snap = reader.snapshot()
                if snap.status == "connected" and snap.market.condition_id:
                    return
        except shm.ShmMissing:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not publish a market within {wait_s:.0f} s; see {log}")


def remove_wallet_records(address: str | None, state_dir: Path, funders=()) -> None:
    """The shared wallet record(s) and the series' liveness files a stack's throw-away wallet left in /dev/shm
    (trader/wallet/): a real wallet's outlive its traders on purpose; a test's must not pile up. `funders`: the
    other wallets of the key its traders were given (POLYMM_BROWSER_ADDRESS)."""
    from polymm.trader.wallet.coordinator import wallet_key
    from polymm.trader.wallet.store import path_for

    if not address:
        return
    for funder in {address, *funders}:
        for mode in ("live", "paper"):
            record = path_for(wallet_key(funder, mode, state_dir))
            for path in (record, *record.parent.glob(f"{record.name}.*.alive")):
                with contextlib.suppress(Exception):
                    path.unlink()


def mmctl_exe() -> str:
    """The venv's mmctl by its path: after `make demo` the venv is not activated, so `mmctl` is not on PATH."""
    mmctl = Path(sys.executable).parent / "mmctl"
    return str(mmctl) if mmctl.exists() else "mmctl"


def _stop(proc: subprocess.Popen | None, timeout_s: float) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


# ---- the demo itself --------------------------------------------------------------------------------------


def status_line(stack: Stack) -> str:
    """window, book, positions, orders, P&L on one line."""
    from polymm.ctl.client import CtlError
    from polymm.feed import shm

    try:
        with shm.Reader(stack.shm) as reader:
            snap = reader.snapshot()
        left = snap.market.window_end - time.time()
        book = (f"up {snap.up.bid:.2f}/{snap.up.ask:.2f} down {snap.down.bid:.2f}/{snap.down.ask:.2f}"
                .replace("nan", " -- "))
        feed = f"window {time.strftime('%H:%M:%S', time.gmtime(snap.market.window_start))} ({left:4.0f}s left) {book}"
    except Exception as exc:  # the demo keeps printing even if the feed is restarting
        feed = f"feed: {exc}"
    try:
        st = stack.status(timeout=2.0)
    except CtlError as exc:
        return f"{feed} | trader: {exc}"
    pos = " ".join(f"{p.strategy}.{p.leg} {p.shares:g}@{p.avg_price:.2f}" for p in st.positions if p.shares) or "flat"
    orders = " ".join(f"{o.side[0]}{o.leg} {o.size - o.filled:g}@{o.price:.2f}" for o in st.orders) or "none"
    return (f"{feed} | {st.state} | pos {pos} | orders {orders} | "
            f"pnl realised {st.realised_pnl:+.2f} open {st.unrealised_pnl:+.2f}")


# The trader's order lines as polymm.trader.execution logs them (README, "Logs"). The status line samples the
# state every few seconds; on a fast sim an entry, its take-profit and a stop can all happen between two samples,
# so the demo also prints what the orders did, from the trader's own log.
_ORDER_LINE = re.compile(
    r"^\S+ (?P<time>\d\d:\d\d:\d\d)\S* +\S+ +polymm\.trader\.execution: order (?P<action>\S+) id=\S+ "
    r"strategy=(?P<strategy>\S+) leg=(?P<leg>\S+) side=(?P<side>\S+) price=(?P<price>\S+) size=(?P<size>\S+) "
    r"type=(?P<type>\S+) post_only=\d reason=(?P<reason>.*)$")
# submit carries the strategy's reason (entry / tp / stop); the rest say what became of the order.
_SHOWN_ACTIONS = {"submit": "placed", "cancel": "cancel", "filled": "filled", "partially_filled": "part filled",
                  "rejected": "REJECTED", "refused": "REFUSED"}


class OrderEvents:
    """New order lines of the trader's log since the last call, one short line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line for line in map(order_event, complete) if line]


def order_event(raw: bytes) -> str | None:
    m = _ORDER_LINE.match(raw.decode("utf-8", "replace"))
    if m is None or m["action"] not in _SHOWN_ACTIONS:
        return None
    # A fill's reason is only where the news came from (user channel, submit answer): not worth a column.
    why = f": {m['reason']}" if m["action"] not in ("filled", "partially_filled") else ""
    return (f"  {m['time']}  order {_SHOWN_ACTIONS[m['action']]:<11} {m['strategy']} {m['leg']:<4} {m['side']:<4} "
            f"{m['size']} @ {m['price']} {m['type']}{why}")


class _StopRequested:
    """Set by SIGINT/SIGTERM. A plain attribute, not a threading.Event: Event.set() takes the lock that Event.wait()
    holds for a moment in this same (main) thread, so a Ctrl-C landing there deadlocked the demo for good."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, _signum, _frame) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, seconds: float) -> None:
        # time.sleep is interrupted by the signal, runs the handler, then sleeps on: slices keep Ctrl-C prompt.
        end = time.monotonic() + seconds
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))


def run_demo(duration_s: float | None, window_s: int, every_s: float, keep: bool) -> int:
    stop = _StopRequested()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    workdir = Path(tempfile.mkdtemp(prefix="polymm-demo-"))
    print(f"polymm demo: sim + feed + trader on {window_s} s windows; files in {workdir}", flush=True)
    stack = Stack(workdir, window_s=window_s)
    code = 0
    try:
        print("starting the sim (throw-away wallet) ...", flush=True)
        stack.start_sim()
        print("starting polymm-feed ...", flush=True)
        stack.start_feed()
        print("starting polymm-trader ...", flush=True)
        stack.start_trader()
        print("\nThe trader is up. In another terminal:\n"
              f"    {stack.mmctl_hint()}\n"
              f"or  export {env.SOCKET}={stack.socket} {env.SHM}={stack.shm}; {mmctl_exe()} status\n"
              f"logs: {workdir / 'trader.log'}  {workdir / 'feed.log'}\n"
              "Ctrl-C stops everything (orders are cancelled first).\n", flush=True)
        print("Every few seconds a status line (window, up/down bid/ask, trader state, positions, working orders\n"
              "as B/S<leg> size@price, P&L); between them, indented, what the trader's orders did (entries,\n"
              "take-profits, stops: a stop sells fill-and-kill with a 0.01 limit, so it fills at the bid).\n",
              flush=True)
        events = OrderEvents(workdir / "trader.log")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            for line in events.new_lines():
                print(line)
            print(time.strftime("%H:%M:%S ") + status_line(stack), flush=True)
            if stack.trader.poll() is not None:
                print(f"polymm-trader exited with {stack.trader.returncode}; see {workdir / 'trader.log'}")
                code = 1
                break
            stop.wait(every_s if deadline is None else max(0.0, min(every_s, deadline - time.monotonic())))
        for line in events.new_lines():
            print(line, flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("\nstopping: trader (cancels its orders), feed, sim ...", flush=True)
        trader_rc = stack.stop_trader()
        left = None
        with contextlib.suppress(Exception):
            if stack.sim is not None and stack.address:
                left = len(stack.open_orders_on_sim())
        stack.close()
        print(f"trader exit code {trader_rc}; open orders left on the sim: "
              f"{'unknown' if left is None else left}; shared memory {stack.shm} removed", flush=True)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m polymm.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    ap.add_argument("--window-s", type=int, default=60, help="market window length on the sim (default 60)")
    ap.add_argument("--every", type=float, default=3.0, metavar="S", help="status line interval (default 3 s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, config) at the end")
    args = ap.parse_args(argv)
    return run_demo(args.duration, args.window_s, args.every, args.keep)

