"""Wheels of polymm and all its dependencies, built on the host for installing inside the container.

pip inside the container cannot reach the package registry, so everything it installs comes from this directory
(`install.sh --wheels DIR` -> `pip install --no-index --find-links DIR polymm`). The host's Python and the
container's are both 3.11 on glibc 2.36 (Debian 12), so cp311/manylinux wheels and wheels built here from sdists fit.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# Not part of a build: checkouts of other people's work in progress, caches, the dev venv.
_IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".hypothesis", ".cache", "demo-run", "soak-out", "*.pyc")  # soak-out: bench/soak.py runs (sockets)


def build_wheels(dest: Path, repo: Path = REPO, python: str = sys.executable) -> Path:
    """`pip wheel -w dest` of a clean copy of the repository (pip builds in the source tree; the shared checkout
    must stay untouched). Returns dest; raises RuntimeError with pip's output on failure."""
    # With the web extra: polymm-web.service runs on the deployed host too (its aiohttp wheels go along).
    _pip_wheel(_clean_copy(repo, dest.parent / "polymm-src"), dest, python, extras="[web]")
    if not list(dest.glob("polymm-*.whl")):
        raise RuntimeError(f"pip wheel produced no polymm wheel in {dest}")
    return dest


def build_polymm_wheel(dest: Path, version: str, repo: Path = REPO, python: str = sys.executable) -> Path:
    """Only polymm's own wheel, stamped with another version: what an upgrade delivers. Returns the wheel."""
    src = _clean_copy(repo, dest.parent / "polymm-src-upgrade")
    pyproject = src / "pyproject.toml"
    text, n = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text())
    if n != 1:
        raise RuntimeError("pyproject.toml has no `version = \"...\"` line to stamp")
    pyproject.write_text(text)
    _pip_wheel(src, dest, python, "--no-deps")
    wheels = [w for w in dest.glob("polymm-*.whl") if w.name.startswith(f"polymm-{version.replace('-', '_')}-")]
    if not wheels:
        raise RuntimeError(f"no polymm {version} wheel in {dest}")
    return wheels[0]


def current_version(repo: Path = REPO) -> str:
    m = re.search(r'(?m)^version = "([^"]+)"$', (repo / "pyproject.toml").read_text())
    if not m:
        raise RuntimeError("no version in pyproject.toml")
    return m.group(1)


def _clean_copy(repo: Path, src: Path) -> Path:
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(repo, src, ignore=_IGNORE)
    return src


def _pip_wheel(src: Path, dest: Path, python: str, *extra: str, extras: str = "") -> None:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "-q", *extra,
                           "-w", str(dest), f"{src}{extras}"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
