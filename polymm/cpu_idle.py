"""Keeping the decision loop's CPU awake while it idles (POLYMM_LOOP_CPU_IDLE=poll; `polymm-cpu-idle`).

Why: between ticks the loop's thread blocks in the kernel and its CPU goes idle. An idle CPU halts (a virtual one
exits to the hypervisor, which runs something else on the core); the feed's wake-up must then bring it back, and the
decision that follows finds the CPU's caches cold. Measured on the project's 2-core VM (cpuidle driver haltpoll, the
host's guest_halt_poll_ns=0): a pipe wake-up of a process on a halted CPU took median 90 us / p99 170 us, on a
polling one 30 / 67 us; the tick-to-decision bench's median dropped by ~30 us (README "Figures").

How: the kernel's per-CPU PM QoS resume latency, `/sys/devices/system/cpu/cpuN/power/pm_qos_resume_latency_us`.
Writing "n/a" there (no resume latency accepted: the sysfs ABI's own spelling) makes every cpuidle governor (menu,
teo, haltpoll, ladder) pick the polling idle state for that CPU alone; "0" (the kernel's default) lifts the
constraint. Only that CPU polls; the others sleep as before. Not `/dev/cpu_dma_latency`, which holds every CPU
awake, and only as long as a file descriptor stays open.

The cost: the CPU spins while it idles. Inside the machine nothing changes (the poll loop gives way at once to any
thread that becomes runnable there, and the time still counts as idle), but a hypervisor sees that vCPU always busy:
on a burstable cloud instance (credits) turn it off (POLYMM_LOOP_CPU_IDLE=off). On a kernel without a cpuidle driver
the CPU idles with HLT whatever the QoS says; `hold` then says so and changes nothing.

Who: only root writes the file, and the trader runs unprivileged behind ProtectKernelTunables=, so
polymm-trader.service runs `polymm-cpu-idle hold` as root before the trader starts (ExecStartPre=+) and `release`
after it stops (ExecStopPost=+). The CPU is the one the trader pins its loop to: the same POLYMM_LOOP_CPU among the
CPUs the unit may use, read by the same function (polymm/realtime.py `loop_cpu_setting`). The trader reads the file
back and says in its journal line whether its CPU polls. A failure here never stops the trader: the unit ignores the
command's exit status, and the command says what went wrong in words.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polymm import env, logs, realtime

SYSFS_CPU = Path("/sys/devices/system/cpu")
# POLYMM_LOOP_CPU_IDLE's words: poll while idle, or leave the CPU to the kernel (unset is off).
POLL = "poll"
OFF = ("", "off")
# The file's words (drivers/base/power/sysfs.c): "n/a" = no resume latency accepted; "0" = no constraint.
NO_LATENCY = "n/a"
NO_CONSTRAINT = "0"


def qos_file(cpu: int, root: Path = SYSFS_CPU) -> Path:
    return root / f"cpu{cpu}" / "power" / "pm_qos_resume_latency_us"


def idle_driver(root: Path = SYSFS_CPU) -> str | None:
    """The kernel's cpuidle driver ("haltpoll", "intel_idle", "acpi_idle"...); None where there is none."""
    try:
        name = (root / "cpuidle" / "current_driver").read_text().strip()
    except OSError:
        return None
    return name if name and name != "none" else None


def polls(cpu: int, root: Path = SYSFS_CPU) -> bool | None:
    """Whether `cpu` is held in the polling idle state (its QoS file says "n/a"); None when it cannot be read."""
    try:
        return qos_file(cpu, root).read_text().strip() == NO_LATENCY
    except OSError:
        return None


def describe(cpu: int, root: Path = SYSFS_CPU) -> str:
    """How `cpu` idles, in words for the trader's journal line."""
    held = polls(cpu, root)
    if held is None:
        return f"CPU {cpu}'s idle state unknown ({qos_file(cpu, root)} cannot be read)"
    if held and idle_driver(root) is not None:
        return f"CPU {cpu} polls while idle"
    return f"CPU {cpu} may sleep while idle (not held awake: {env.LOOP_CPU_IDLE}=poll and polymm-cpu-idle do that)"


def hold(cpu: int, root: Path = SYSFS_CPU) -> str:
    """Make `cpu` poll while idle. Returns what happened; OSError (in words) when the kernel refuses."""
    driver = idle_driver(root)
    if driver is None:
        raise OSError(f"CPU {cpu}: this kernel has no cpuidle driver, so the CPU halts when idle whatever its PM QoS "
                      "says (the kernel's idle=poll is the way there); nothing changed")
    _write(qos_file(cpu, root), NO_LATENCY)
    return f"CPU {cpu} polls while idle from now on (cpuidle driver {driver}; `polymm-cpu-idle release` undoes it)"


def release(cpu: int, root: Path = SYSFS_CPU) -> str:
    """Let `cpu` sleep while idle again (the kernel's default: no constraint)."""
    _write(qos_file(cpu, root), NO_CONSTRAINT)
    return f"CPU {cpu} may sleep while idle again"


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise OSError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from None


def wanted(setting: str | None) -> bool:
    """POLYMM_LOOP_CPU_IDLE as a yes/no; ValueError, in words, for anything but poll, off or nothing."""
    word = (setting or "").strip().lower()
    if word == POLL:
        return True
    if word in OFF:
        return False
    raise ValueError(f"{env.LOOP_CPU_IDLE}={setting!r} is not {POLL!r} or 'off'")


def main(argv: list[str] | None = None, root: Path = SYSFS_CPU) -> int:
    ap = argparse.ArgumentParser(
        prog="polymm-cpu-idle",
        description=f"Hold the trader's decision-loop CPU ({env.LOOP_CPU}) in the polling idle state while "
                    f"{env.LOOP_CPU_IDLE}=poll, or let it sleep again. polymm-trader.service runs it as root around "
                    "the trader; exit 0 also when there is nothing to do.")
    ap.add_argument("action", choices=("hold", "release", "show"))
    args = ap.parse_args(argv)
    try:
        cpu = realtime.loop_cpu_setting()  # the CPU the trader pins its loop to (the unit's CPUs, the same variable)
        poll = wanted(env.get(env.LOOP_CPU_IDLE))
    except ValueError as exc:
        _say(3, str(exc))
        return 2
    if cpu is None:
        _say(6, f"the decision loop is not pinned ({env.LOOP_CPU}={env.get(env.LOOP_CPU) or 'off'}): "
                "no CPU to keep awake")
        return 0
    if args.action == "show":
        _say(6, describe(cpu, root))
        return 0
    if not poll:
        _say(6, f"{env.LOOP_CPU_IDLE} is off: CPU {cpu} idles as the kernel decides; nothing changed")
        return 0
    try:
        words = hold(cpu, root) if args.action == "hold" else release(cpu, root)
    except OSError as exc:
        _say(4, str(exc))
        return 1
    _say(6, words)
    return 0


def _say(priority: int, text: str) -> None:
    """One line: stdout for what happened, stderr for a refusal; under journald with its syslog priority prefix
    (polymm/logs.py), so `journalctl -p warning -u polymm-trader` shows a refusal and not the routine lines."""
    prefix = f"<{priority}>" if logs.under_journald() else ""
    print(f"{prefix}polymm-cpu-idle: {text}", file=sys.stdout if priority >= 6 else sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
