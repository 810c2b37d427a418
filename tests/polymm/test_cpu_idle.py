"""polymm/cpu_idle.py (`polymm-cpu-idle`): the decision loop's CPU held in the polling idle state through its PM QoS
resume latency, released after, and every refusal in words. On a fake sysfs tree: tests must not change how this
host idles (the real files are only read, in the last test)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from polymm import cpu_idle, env, realtime


@pytest.fixture
def sysfs(tmp_path, monkeypatch) -> Path:
    """/sys/devices/system/cpu of a 2-CPU machine with the haltpoll driver, every CPU without a constraint; this
    process allowed CPUs 0 and 1."""
    root = tmp_path / "cpu"
    for cpu in (0, 1):
        (root / f"cpu{cpu}" / "power").mkdir(parents=True)
        cpu_idle.qos_file(cpu, root).write_text("0\n")
    (root / "cpuidle").mkdir()
    (root / "cpuidle" / "current_driver").write_text("haltpoll\n")
    monkeypatch.setattr(realtime, "allowed_cpus", lambda: {0, 1})
    for name in (env.LOOP_CPU, env.LOOP_CPU_IDLE, env.JOURNAL_STREAM):
        monkeypatch.delenv(name, raising=False)
    return root


def qos(root: Path, cpu: int) -> str:
    return cpu_idle.qos_file(cpu, root).read_text().strip()


def test_hold_makes_the_loops_cpu_alone_poll_and_release_lets_it_sleep(sysfs, monkeypatch, capsys):
    monkeypatch.setenv(env.LOOP_CPU, "auto")
    monkeypatch.setenv(env.LOOP_CPU_IDLE, "poll")
    assert cpu_idle.main(["hold"], sysfs) == 0
    assert qos(sysfs, 1) == "n/a" and qos(sysfs, 0) == "0"  # the last CPU, as the trader picks it; not the others
    out = capsys.readouterr().out
    assert out == ("polymm-cpu-idle: CPU 1 polls while idle from now on (cpuidle driver haltpoll; "
                   "`polymm-cpu-idle release` undoes it)\n")
    assert cpu_idle.polls(1, sysfs) is True and cpu_idle.describe(1, sysfs) == "CPU 1 polls while idle"
    assert cpu_idle.main(["show"], sysfs) == 0
    assert capsys.readouterr().out == "polymm-cpu-idle: CPU 1 polls while idle\n"
    assert cpu_idle.main(["release"], sysfs) == 0
    assert qos(sysfs, 1) == "0" and capsys.readouterr().out == "polymm-cpu-idle: CPU 1 may sleep while idle again\n"
    assert cpu_idle.polls(1, sysfs) is False and "may sleep while idle" in cpu_idle.describe(1, sysfs)
    monkeypatch.setenv(env.LOOP_CPU, "0")  # a CPU named: that one
    assert cpu_idle.main(["hold"], sysfs) == 0 and qos(sysfs, 0) == "n/a" and qos(sysfs, 1) == "0"


@pytest.mark.parametrize("loop_cpu,idle,words", [
    (None, "poll", "the decision loop is not pinned (POLYMM_LOOP_CPU=off): no CPU to keep awake"),
    ("off", "poll", "the decision loop is not pinned (POLYMM_LOOP_CPU=off): no CPU to keep awake"),
    ("auto", None, "POLYMM_LOOP_CPU_IDLE is off: CPU 1 idles as the kernel decides; nothing changed"),
    ("auto", "off", "POLYMM_LOOP_CPU_IDLE is off: CPU 1 idles as the kernel decides; nothing changed"),
])
def test_nothing_is_touched_unless_the_loop_is_pinned_and_polling_is_asked(sysfs, monkeypatch, capsys, loop_cpu,
                                                                          idle, words):
    """The series template (POLYMM_LOOP_CPU=off) and a drop-in turning it off (a burstable instance)."""
    if loop_cpu is not None:
        monkeypatch.setenv(env.LOOP_CPU, loop_cpu)
    if idle is not None:
        monkeypatch.setenv(env.LOOP_CPU_IDLE, idle)
    for action in ("hold", "release"):
        assert cpu_idle.main([action], sysfs) == 0
        assert capsys.readouterr().out == f"polymm-cpu-idle: {words}\n"
    assert qos(sysfs, 0) == qos(sysfs, 1) == "0"


@pytest.mark.parametrize("name,raw,words", [
    (env.LOOP_CPU, "7", "POLYMM_LOOP_CPU='7': CPU 7 is not one this process may use (CPUs 0,1)"),
    (env.LOOP_CPU, "fast", "POLYMM_LOOP_CPU='fast': 'fast' is not a CPU number"),
    (env.LOOP_CPU_IDLE, "always", "POLYMM_LOOP_CPU_IDLE='always' is not 'poll' or 'off'"),
])
def test_bad_settings_are_refused_in_words_and_change_nothing(sysfs, monkeypatch, capsys, name, raw, words):
    monkeypatch.setenv(env.LOOP_CPU, "auto")
    monkeypatch.setenv(env.LOOP_CPU_IDLE, "poll")
    monkeypatch.setenv(name, raw)
    assert cpu_idle.main(["hold"], sysfs) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"polymm-cpu-idle: {words}"), err
    assert qos(sysfs, 0) == qos(sysfs, 1) == "0"


def test_a_kernel_that_refuses_or_has_no_cpuidle_driver_is_told_not_hidden(sysfs, monkeypatch, capsys):
    """A read-only /sys (a container) and a kernel that idles with HLT whatever the QoS: exit 1 with the reason (the
    unit's "-" keeps the trader starting), nothing changed."""
    monkeypatch.setenv(env.LOOP_CPU, "auto")
    monkeypatch.setenv(env.LOOP_CPU_IDLE, "poll")
    target = cpu_idle.qos_file(1, sysfs)
    target.unlink()
    target.mkdir()  # writing it fails like a read-only file system does: an OSError with its reason
    assert cpu_idle.main(["hold"], sysfs) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"polymm-cpu-idle: cannot write 'n/a' to {target}: "), err
    assert cpu_idle.polls(1, sysfs) is None and "idle state unknown" in cpu_idle.describe(1, sysfs)
    target.rmdir()
    target.write_text("0\n")
    (sysfs / "cpuidle" / "current_driver").write_text("none\n")
    assert cpu_idle.main(["hold"], sysfs) == 1
    assert "this kernel has no cpuidle driver" in capsys.readouterr().err and qos(sysfs, 1) == "0"
    monkeypatch.setenv(env.JOURNAL_STREAM, "8:1234")  # under the unit: syslog priorities, a refusal a warning
    assert cpu_idle.main(["hold"], sysfs) == 1 and capsys.readouterr().err.startswith("<4>polymm-cpu-idle: CPU 1: ")
    assert cpu_idle.main(["show"], sysfs) == 0 and capsys.readouterr().out.startswith("<6>polymm-cpu-idle: CPU 1 ")


def test_this_hosts_files_read_back_without_being_changed():
    """The real sysfs, only read: describe() never raises, whatever the host (a container, no cpuidle, no file)."""
    cpu = max(realtime.allowed_cpus() or {0})
    path = cpu_idle.qos_file(cpu)
    before = path.read_text() if path.exists() else None
    words = cpu_idle.describe(cpu)
    assert words.startswith(f"CPU {cpu}")
    assert (path.read_text() if path.exists() else None) == before
    assert os.access(cpu_idle.SYSFS_CPU, os.F_OK) or "unknown" in words
