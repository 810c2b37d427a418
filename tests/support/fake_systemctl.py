"""A stand-in for `systemctl` in polymm-web's tests: the command lines polymm-web runs (`--no-ask-password show -p
... UNIT...`, `--no-ask-password start|stop|restart UNIT...`), answered from a JSON state file, every call recorded.

The state file (FAKE_SYSTEMCTL_STATE): {"units": {name: {"active": "active", "pid": 123}}, "calls": [[args...]],
"delay_s": 0 (an action takes this long, as a Type=notify start does), "deny": false (answer as systemd does when polkit refuses), "no_systemd": false, "fail": {verb: message}}.
`write_fake_systemctl(dir)` makes the executable wrapper to pass as `polymm-web --systemctl`.
"""
from __future__ import annotations

import json
import os
import stat
import sys
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


def main(argv: list[str]) -> int:
    path = Path(os.environ["FAKE_SYSTEMCTL_STATE"])
    state = json.loads(path.read_text())
    args = [a for a in argv if a != "--no-ask-password"]
    state["calls"].append(args)
    path.write_text(json.dumps(state))  # the call is visible at once, while a slow action still runs
    try:
        if state.get("no_systemd"):
            print("System has not been booted with systemd as init system (PID 1). Can't operate.", file=sys.stderr)
            print("Failed to connect to bus: Host is down", file=sys.stderr)
            return 1
        verb, units = args[0], [a for a in args[1:] if a.endswith(".service")]
        if verb == "show":
            blocks = []
            for unit in units:
                u = state["units"].get(unit)
                if u is None:
                    blocks.append(f"Id={unit}\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0")
                    continue
                running = u["active"] == "active"
                blocks.append("\n".join([
                    f"Id={unit}", "LoadState=loaded", f"ActiveState={u['active']}",
                    f"SubState={'running' if running else ('failed' if u['active'] == 'failed' else 'dead')}",
                    f"MainPID={u['pid'] if running else 0}",
                    f"ExecMainCode={1 if u.get('exit') is not None else 0}", f"ExecMainStatus={u.get('exit') or 0}",
                    f"Result={'exit-code' if u['active'] == 'failed' else 'success'}",
                    f"StatusText={'trading' if running else ''}", "ActiveEnterTimestamp=Mon 2026-11-23 21:00:00 UTC",
                    "UnitFileState=enabled", "NRestarts=0"]))
            print("\n\n".join(blocks))
            return 0
        if verb in ("start", "stop", "restart"):
            if state.get("delay_s"):
                import time
                time.sleep(state["delay_s"])
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
        print(f"fake systemctl: unknown verb {verb}", file=sys.stderr)
        return 1
    finally:
        path.write_text(json.dumps(state))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
