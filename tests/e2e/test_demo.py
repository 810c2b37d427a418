"""`make demo` (python -m polymm.demo): one command starts sim, feed and trader, says how to run mmctl against
them, shows them trading, and stops everything cleanly: orders cancelled, no process left, shared memory gone."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEMO = [sys.executable, "-m", "polymm.demo", "--window-s", "30", "--every", "1"]


def processes_with(marker: str) -> list[int]:
    """Pids whose environment holds `marker` (our own processes only; others' environ is unreadable)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def check_clean_stop(output: str) -> None:
    shm = re.search(r"POLYMM_SHM=([^\s;]+)", output).group(1)  # the export line ends it with ";"
    workdir = re.search(r"files in (\S+)", output).group(1)
    assert shm.startswith("polymm_demo_") and Path(workdir).name.startswith("polymm-demo-"), (shm, workdir)
    assert "open orders left on the sim: 0" in output
    assert not Path("/dev/shm", shm).exists()
    assert not Path(workdir).exists()
    assert processes_with(f"POLYMM_SHM={shm}") == []


def test_demo_runs_bounded_shows_trading_and_cleans_up():
    run = subprocess.run(DEMO + ["--duration", "12"], capture_output=True, text=True, timeout=180)
    out = run.stdout
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"mmctl --socket \S+ --shm \S+ status", out)
    status_lines = [line for line in out.splitlines() if "| running |" in line or "| paused |" in line]
    assert len(status_lines) >= 5 and all("window" in line and "pnl" in line for line in status_lines)
    assert any("orders B" in line or "pos s1" in line for line in status_lines), "never saw an order or position"
    # Between the status lines, what the orders did, with the strategy's reason.
    assert re.search(r"^  \d\d:\d\d:\d\d  order placed +s1 (up|down) +BUY .*: entry bid", out, re.M), out
    check_clean_stop(out)


def read_until_trading(demo: subprocess.Popen) -> list[str]:
    """The demo's lines up to its first status line that shows the trader running (2 minutes at most)."""
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "| running |" in line:
            break
    return lines


def test_demo_stops_cleanly_on_sigterm():
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = read_until_trading(demo)
    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "stopping: trader" in out and "trader exit code 0" in out
    check_clean_stop(out)


def test_demo_stops_cleanly_on_ctrl_c_to_the_whole_terminal_group():
    """Ctrl-C at a terminal sends SIGINT to every process of the foreground group, not just the demo."""
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = read_until_trading(demo)
    os.killpg(demo.pid, signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "trader exit code 0" in out
    check_clean_stop(out)


HOLDER = """
import sys, time
from pathlib import Path
from polymm.demo import Stack, demo_config
stack = Stack(Path(sys.argv[1]), window_s=30, seed=3, config_text=demo_config(30))
stack.start()
print(stack.sim.process.pid, stack.feed.pid, stack.trader.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init to reap it (it runs nothing any more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def test_children_die_with_a_launcher_killed_by_sigkill(tmp_path):
    """A test killed by pytest-timeout (or a demo killed with -9) runs no cleanup at all: the feed and the
    trader must still go (PR_SET_PDEATHSIG), not retry a vanished sim for hours."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "stack")], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    sim_pid = None
    try:
        line = holder.stdout.readline()
        assert line, f"the stack did not start; see {tmp_path / 'stack'}"
        sim_pid, feed_pid, trader_pid = map(int, line.split())
        assert not _gone(feed_pid) and not _gone(trader_pid)
        holder.kill()
        holder.wait(10)
        deadline = time.monotonic() + 40  # the trader cancels its orders on SIGTERM first
        while time.monotonic() < deadline and not (_gone(feed_pid) and _gone(trader_pid)):
            time.sleep(0.1)
        assert _gone(feed_pid), "polymm-feed outlived its launcher"
        assert _gone(trader_pid), "polymm-trader outlived its launcher"
        assert "SIGTERM received" in (tmp_path / "stack" / "trader.log").read_text()  # the orderly way out
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdout.close()
        # close() never ran (SIGKILL), so nothing removed the segment; it is named after the holder's pid.
        for leftover in Path("/dev/shm").glob(f"polymm_demo_{holder.pid}_*"):
            leftover.unlink(missing_ok=True)
        # The sim is started by polymm.sim.testing.run_sim (its owner was asked to add the same death
        # signal); until then it is stopped here.
        if sim_pid is not None and not _gone(sim_pid):
            os.kill(sim_pid, signal.SIGTERM)


def test_order_events_show_what_each_order_did_from_the_trader_log(tmp_path):
    from polymm.demo import OrderEvents

    log = tmp_path / "trader.log"
    prefix = "2026-11-23 22:36:10.003 INFO    polymm.trader.execution: order"
    order = "strategy=s1 leg=down side=SELL price=0.65 size=6.25 type=GTC post_only=1"
    log.write_text(f"{prefix} submit id=0xab {order} reason=tp avg 0.64+0.01\n"
                   "2026-11-23 22:36:10.004 INFO    polymm.trader.engine: decision 12\n"
                   f"{prefix} filled id=0xab {order} reason=user channel UPDATE\n"
                   f"{prefix} cancel id=0xab {order} reason=stop: bid")  # still being written: not shown yet
    events = OrderEvents(log)
    assert events.new_lines() == [
        "  22:36:10  order placed      s1 down SELL 6.25 @ 0.65 GTC: tp avg 0.64+0.01",
        "  22:36:10  order filled      s1 down SELL 6.25 @ 0.65 GTC",
    ]
    with log.open("a") as f:
        f.write(" 0.49 < trigger 0.5\n")
    assert events.new_lines() == ["  22:36:10  order cancel      s1 down SELL 6.25 @ 0.65 GTC: stop: bid 0.49 < trigger 0.5"]
    assert events.new_lines() == []


def test_a_launcher_that_exits_without_close_still_stops_its_children(tmp_path):
    """sys.exit / an exception / a forgotten close(): the Stack stops trader, feed and sim at interpreter exit."""
    script = HOLDER.replace("time.sleep(600)", "raise SystemExit(0)  # no close()")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "stack")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    pids = [int(x) for x in run.stdout.split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids), [pid for pid in pids if not _gone(pid)]
    assert "SIGTERM received" in (tmp_path / "stack" / "trader.log").read_text()
