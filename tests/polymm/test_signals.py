"""The services' signal flags: safe to set from a signal handler while the main thread waits on them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

from polymm.signals import SignalFlag


def test_flag_wait_returns_true_once_set_from_another_thread_and_false_on_timeout():
    flag = SignalFlag()
    assert flag.wait(0.01) is False
    threading.Timer(0.05, flag.set).start()
    assert flag.wait(30) is True and flag.is_set()
    flag.clear()
    assert not flag.is_set()


def test_a_storm_of_signals_while_the_main_thread_waits_never_hangs_it():
    """threading.Event.set() from a handler can deadlock on the lock Event.wait() holds; the flag cannot.
    A child waits on the flag in a loop while this test sends it thousands of SIGHUPs, then SIGTERM:
    it must exit by itself (the timeout below only turns a hang into a failure)."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from polymm.signals import Signals
        s = Signals(reload=True)
        print("ready", flush=True)
        while not s.stop.wait(0.001):
            s.reload.clear()
        print("stopped by", s.received, flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    for _ in range(3000):
        os.kill(child.pid, signal.SIGHUP)
    os.kill(child.pid, signal.SIGTERM)
    try:
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0 and "stopped by SIGTERM" in out
