"""polymm/memory.py: the glibc calls that keep a long-running service's native heap flat answer, and never raise."""
from __future__ import annotations

import subprocess
import sys

from polymm import memory


def test_trim_answers_and_never_raises():
    assert memory.trim() in (True, False)


def test_arenas_are_limited_in_a_fresh_process_before_any_thread():
    code = "from polymm import memory; print(memory.limit_arenas())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() in ("True", "False")
    if memory._glibc() is not None:  # on glibc the call is accepted
        assert out.stdout.strip() == "True"
