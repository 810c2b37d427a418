"""polymm's systemd units seen and steered through `systemctl`: their state (read-only, any user may ask) and
start / stop / restart (allowed to the web service's user by one polkit rule, for these two units and these three
verbs only: deploy/polkit/50-polymm-web.rules).

`systemctl` rather than a D-Bus library: it is on every systemd host, speaks to systemd over the system bus as
the calling user (so polkit decides), waits for the job's result (a Type=notify unit: READY=1), and words its
failures; tests swap in a fake with the same command line (`--systemctl`).
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

FEED, TRADER = "polymm-feed.service", "polymm-trader.service"
UNITS = (FEED, TRADER)
# Which units each choice of the API's `service` parameter means (mmctl restart --service uses the same words).
SERVICES = {"feed": (FEED,), "trader": (TRADER,), "all": (FEED, TRADER)}
VERBS = ("start", "stop", "restart")
PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "ExecMainCode", "ExecMainStatus", "Result",
              "StatusText", "ActiveEnterTimestamp", "UnitFileState", "NRestarts")
SHOW_TIMEOUT_S = 10.0
# A start returns once the trader is READY (its unit allows 180 s: TimeoutStartSec); a stop once it has cancelled
# its orders (TimeoutStopSec=30). A little more than the units' own limits, so systemd's verdict comes first.
ACTION_TIMEOUT_S = 240.0
POLKIT_RULE = "/etc/polkit-1/rules.d/50-polymm-web.rules"


class UnitError(Exception):
    """A unit action that did not happen, in words. `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UnitState:
    name: str
    load: str  # loaded | not-found | ...
    active: str  # active | inactive | activating | deactivating | failed | reloading
    sub: str  # running | dead | start | ...
    pid: int | None
    result: str  # success | exit-code | signal | watchdog | ...
    exit_status: int | None  # the main process's exit status, once it has exited
    status_text: str  # the service's STATUS= line
    since: str  # ActiveEnterTimestamp, as systemd prints it
    enabled: str  # UnitFileState: enabled | disabled | ...
    restarts: int

    @property
    def running(self) -> bool:
        return self.active in ("active", "reloading")

    def as_dict(self) -> dict:
        return {"unit": self.name, "installed": self.load == "loaded", "running": self.running,
                "active_state": self.active, "sub_state": self.sub, "pid": self.pid, "result": self.result,
                "exit_status": self.exit_status, "status_text": self.status_text, "since": self.since or None,
                "enabled": self.enabled or None, "restarts": self.restarts}


def parse_show(text: str) -> dict[str, UnitState]:
    """`systemctl show -p ... UNIT...` output: one Key=Value block per unit, blank lines between."""
    out = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        name = props.get("Id")
        if not name:
            continue
        pid = _int(props.get("MainPID"))
        code = props.get("ExecMainCode", "0")
        out[name] = UnitState(
            name=name, load=props.get("LoadState", ""), active=props.get("ActiveState", ""),
            sub=props.get("SubState", ""), pid=pid or None, result=props.get("Result", ""),
            # ExecMainCode 0: the main process has not exited since the unit last started (no status to show)
            exit_status=_int(props.get("ExecMainStatus")) if code not in ("", "0") else None,
            status_text=props.get("StatusText", ""), since=props.get("ActiveEnterTimestamp", ""),
            enabled=props.get("UnitFileState", ""), restarts=_int(props.get("NRestarts")) or 0)
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def describe_failure(verb: str, units: tuple[str, ...], stderr: str, code: int) -> UnitError:
    """systemctl's failure as the operator's sentence, and the HTTP status that goes with it."""
    text = " ".join(stderr.split())
    what = f"{verb} of {' and '.join(units)}"
    lowered = text.lower()
    if "interactive authentication required" in lowered or "access denied" in lowered:
        return UnitError(
            f"systemd refused the {what} for this service's user: polkit does not allow it (is polkitd installed "
            f"and {POLKIT_RULE} in place? deploy/install.sh installs the rule; see README, Web page and HTTP API)",
            403)
    if "not been booted with systemd" in lowered or "failed to connect to bus" in lowered:
        return UnitError(f"cannot {verb}: systemd is not running on this host, so it does not manage polymm here; "
                         "start and stop the services yourself", 503)
    if "not found" in lowered and "unit" in lowered:
        return UnitError(f"cannot {verb}: {text} (is polymm installed with deploy/install.sh?)", 404)
    return UnitError(f"systemctl {verb} {' '.join(units)} failed (exit {code}): {text or 'no message'}", 502)


class Systemd:
    """The two units through `systemctl`. One action at a time: a second start/stop/restart while one runs is
    refused (409) rather than queued behind it."""

    def __init__(self, systemctl: str = "systemctl") -> None:
        self.systemctl = systemctl
        self._busy: tuple[str, float] | None = None  # (verb, monotonic start) of the action running now

    async def _run(self, args: list[str], timeout_s: float) -> tuple[int, str, str]:
        env = {**os.environ, "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.systemctl, "--no-ask-password", *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        except FileNotFoundError:
            raise UnitError(f"{self.systemctl} not found: systemd does not manage polymm on this host; start and "
                            "stop the services yourself", 503) from None
        except PermissionError:
            raise UnitError(f"cannot run {self.systemctl}: permission denied", 503) from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise UnitError(f"systemctl {' '.join(args)} did not finish within {timeout_s:.0f} s; systemd may still "
                            "be carrying it out: watch the status", 504) from None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def states(self) -> dict[str, UnitState]:
        """Both units' state. UnitError when systemd cannot be asked (not running here, no systemctl)."""
        code, out, err = await self._run(["show", "-p", ",".join(PROPERTIES), *UNITS], SHOW_TIMEOUT_S)
        if code != 0:
            raise describe_failure("read the state", UNITS, err, code)
        return parse_show(out)

    async def act(self, verb: str, service: str = "all") -> tuple[str, ...]:
        """`systemctl VERB` of the service's units; returns the units acted on. UnitError with the reason."""
        if verb not in VERBS:
            raise UnitError(f"unknown action {verb!r}; one of {', '.join(VERBS)}", 400)
        if service not in SERVICES:
            raise UnitError(f"unknown service {service!r}; one of {', '.join(SERVICES)}", 400)
        if self._busy is not None:
            running, since = self._busy
            raise UnitError(f"a {running} is already running (for {time.monotonic() - since:.0f} s); try again when "
                            "it has finished", 409)
        units = SERVICES[service]
        # The trader first when stopping (its SIGTERM path cancels our orders while the feed still runs); systemd
        # orders the jobs of one call by the units' After= anyway, this only keeps the command readable.
        ordered = tuple(reversed(units)) if verb == "stop" else units
        self._busy = (verb, time.monotonic())
        try:
            code, _out, err = await self._run([verb, *ordered], ACTION_TIMEOUT_S)
        finally:
            self._busy = None
        if code != 0:
            raise describe_failure(verb, ordered, err, code)
        return ordered
