"""A stand-in for `systemctl` in polymm-web's tests: the command lines polymm-web runs (`--no-ask-password show -p
... UNIT...`, `--no-ask-password start|stop|restart UNIT...`), answered from a JSON state file, every call recorded.

The state file (FAKE_SYSTEMCTL_STATE): {"units": {name: {"active": "active", "pid": 123}}, "calls": [[args...]],
"delay_s": 0 (an action takes this long, as a Type=notify start does), "deny": false (answer as systemd does when polkit refuses), "no_systemd": false, "fail": {verb: message}}.
`write_fake_systemctl(dir)` makes the executable wrapper to pass as `polymm-web --systemctl`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path

UNITS = ("polymm-feed.service", "polymm-trader.service")


def initial_state(active: bool = True) -> dict:
    return {"units": {u: {"active": "active" if active else "inactive", "pid": 4000 + i if active else 0,
                          "exit": None} for i, u in enumerate(UNITS)},
            "calls": [], "deny": False, "no_systemd": False, "fail": {}}


def write_fake_systemctl(directory: Path, state: dict | None = None) -> tuple[Path, Path]:
    """(the executable to pass as --systemctl, its state file)."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / "systemctl-state.json"
    state_path.write_text(json.dumps(state or initial_state()))
    exe = directory / "systemctl"
    exe.write_text(f"#!/bin/sh\nFAKE_SYSTEMCTL_STATE={state_path} exec {sys.executable} {Path(__file__).resolve()} \"$@\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, state_path


def read_state(path: Path) -> dict:
    return json.loads(path.read_text())


def change_state(path: Path, **changes) -> None:
    """Set top-level keys of the state (delay_s, deny, fail, ...) the way the fake itself writes: locked, atomic."""
    with _locked_state(path) as state:
        state.update(changes)


def _write_atomically(path: Path, state: dict) -> None:
    # Readers (the test, the web service's status poller running `show` every second) must never see a half-written
    # file: write beside it and rename over it.
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked_state(path: Path):
    """The state, read and written back under an exclusive lock: several fake systemctls run at once (a slow
    restart and the poller's `show`s), and none may lose another's recorded call."""
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = read_state(path)
        yield state
        _write_atomically(path, state)


def main(argv: list[str]) -> int:
    path = Path(os.environ["FAKE_SYSTEMCTL_STATE"])
    args = [a for a in argv if a != "--no-ask-password"]
    with _locked_state(path) as state:
        state["calls"].append(args)  # the call is visible at once, while a slow action still runs
    if state.get("no_systemd"):
        print("System has not been booted with systemd as init system (PID 1). Can't operate.", file=sys.stderr)
        print("Failed to connect to bus: Host is down", file=sys.stderr)
        return 1
    verb, units = args[0], [a for a in args[1:] if a.endswith(".service")]
    if verb == "show":
        print("\n\n".join(_show(state, unit) for unit in units))
        return 0
    if verb in ("start", "stop", "restart"):
        if state.get("delay_s"):
            time.sleep(state["delay_s"])
        return _act(path, verb, units)
    print(f"fake systemctl: unknown verb {verb}", file=sys.stderr)
    return 1


def _show(state: dict, unit: str) -> str:
    u = state["units"].get(unit)
    if u is None:
        return f"Id={unit}\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0"
    running = u["active"] == "active"
    return "\n".join([
        f"Id={unit}", "LoadState=loaded", f"ActiveState={u['active']}",
        f"SubState={'running' if running else ('failed' if u['active'] == 'failed' else 'dead')}",
        f"MainPID={u['pid'] if running else 0}",
        f"ExecMainCode={1 if u.get('exit') is not None else 0}", f"ExecMainStatus={u.get('exit') or 0}",
        f"Result={'exit-code' if u['active'] == 'failed' else 'success'}",
        f"StatusText={'trading' if running else ''}", "ActiveEnterTimestamp=Mon 2026-11-23 21:00:00 UTC",
        "UnitFileState=enabled", "NRestarts=0"])


def _act(path: Path, verb: str, units: list[str]) -> int:
    # The outcome is applied to the state as it is after the (slow) action, so changes made meanwhile are kept.
    with _locked_state(path) as state:
        if state.get("deny"):
            print(f"Failed to {verb} {units[0]}: Interactive authentication required.", file=sys.stderr)
            print(f"See system logs and 'systemctl status {units[0]}' for details.", file=sys.stderr)
            return 1
        if verb in state.get("fail", {}):
            print(state["fail"][verb], file=sys.stderr)
            return 1
        for unit in units:
            u = state["units"][unit]
            if verb == "stop":
                u.update(active="inactive", pid=0, exit=0)
            else:
                u.update(active="active", pid=u["pid"] + 100 if u["pid"] else 5000, exit=None)
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
