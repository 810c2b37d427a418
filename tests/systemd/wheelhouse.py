"""Wheels of polymm and all its dependencies, built on the host for installing inside the container.

pip inside the container cannot reach the package registry, so everything it installs comes from this directory
(`install.sh --wheels DIR` -> `pip install --no-index --find-links DIR polymm`). The host's Python and the
container's are both 3.11 on glibc 2.36 (Debian 12), so cp311/manylinux wheels and wheels built here from sdists fit.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Not part of a build: checkouts of other people's work in progress, caches, the dev venv.
_IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".hypothesis", ".cache", "demo-run", "*.pyc")


def build_wheels(dest: Path, repo: Path = REPO, python: str = sys.executable) -> Path:
    """`pip wheel -w dest` of a clean copy of the repository (pip builds in the source tree; the shared checkout
    must stay untouched). Returns dest; raises RuntimeError with pip's output on failure."""
    src = dest.parent / "polymm-src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(repo, src, ignore=_IGNORE)
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "-q",
                           "-w", str(dest), str(src)], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    if not list(dest.glob("polymm-*.whl")):
        raise RuntimeError(f"pip wheel produced no polymm wheel in {dest}")
    return dest
