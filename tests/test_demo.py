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
    shm = re.search(r"POLYMM_SHM=(\S+)", output).group(1)
    workdir = re.search(r"files in (\S+)", output).group(1)
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
    check_clean_stop(out)


def test_demo_stops_cleanly_on_sigterm():
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "| running |" in line:
            break
    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "stopping: trader" in out and "trader exit code 0" in out
    check_clean_stop(out)


def test_demo_stops_cleanly_on_ctrl_c_to_the_whole_terminal_group():
    """Ctrl-C at a terminal sends SIGINT to every process of the foreground group, not just the demo."""
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "| running |" in line:
            break
    os.killpg(demo.pid, signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    out = "".join(lines) + rest
    assert demo.returncode == 0, out
    assert "trader exit code 0" in out
    check_clean_stop(out)
