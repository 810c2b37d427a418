"""The failure notice: polymm-notify (what polymm-notify@.service runs) and its wiring into both units.

The unit's behaviour under a real systemd (OnFailure= firing on the trader's exit 2) is in test_systemd_e2e.py;
here the script itself runs under /bin/sh, as the unit runs it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCRIPT = DEPLOY / "polymm-notify"


def notify(tmp_path: Path, command: str | None, unit: str = "polymm-trader.service", **extra: str):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MONITOR_SERVICE_RESULT": "exit-code",
           "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "2", **extra}
    if command is not None:
        env["POLYMM_NOTIFY_COMMAND"] = command
    return subprocess.run(["/bin/sh", str(SCRIPT), unit], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=30)


def test_the_command_gets_the_text_and_a_json_body(tmp_path):
    run = notify(tmp_path, 'printf "%s" "$POLYMM_NOTIFY_JSON" > body.json; printf "%s" "$POLYMM_NOTIFY_UNIT" > unit')
    assert run.returncode == 0, run.stdout + run.stderr
    text = json.loads((tmp_path / "body.json").read_text())["text"]
    assert text.startswith("polymm: polymm-trader.service failed on ")
    assert "(exit-code, exited 2)" in text and "journalctl -u polymm-trader.service" in text
    assert (tmp_path / "unit").read_text() == "polymm-trader.service"
    assert "<3>polymm: polymm-trader.service failed" in run.stdout  # the journal has it at error level too
    assert "<6>notified" in run.stdout


def test_without_a_command_the_journal_says_nobody_was_told(tmp_path):
    run = notify(tmp_path, None)
    assert run.returncode == 0
    assert "<4>no POLYMM_NOTIFY_COMMAND in /etc/polymm/notify.env: nobody was told" in run.stdout


def test_a_failing_command_is_said_and_fails_the_notice_unit(tmp_path):
    run = notify(tmp_path, "exit 7")
    assert run.returncode == 7
    assert "<3>POLYMM_NOTIFY_COMMAND failed with exit code 7" in run.stdout


def test_quotes_from_the_environment_cannot_break_the_json_or_the_command(tmp_path):
    run = notify(tmp_path, 'printf "%s" "$POLYMM_NOTIFY_JSON" > body.json', MONITOR_SERVICE_RESULT='x"; rm -rf $HOME `id`')
    assert run.returncode == 0
    assert json.loads((tmp_path / "body.json").read_text())["text"]


def test_no_unit_is_a_usage_error():
    run = subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "usage: polymm-notify UNIT" in run.stderr


@pytest.mark.parametrize("unit", ["polymm-feed.service", "polymm-trader.service"])
def test_both_services_call_the_notice_on_failure(unit):
    text = (DEPLOY / "systemd" / unit).read_text()
    assert re.search(r"^OnFailure=polymm-notify@%n\.service$", text, re.M)


def test_the_template_runs_the_script_where_install_sh_puts_it_and_never_sees_the_wallet_secrets():
    template = (DEPLOY / "systemd" / "polymm-notify@.service").read_text()
    install = (DEPLOY / "install.sh").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) %i$", template, re.M).group(1)
    assert exec_start == "/opt/polymm/libexec/polymm-notify"
    assert 'NOTIFY_BIN="$PREFIX/libexec/polymm-notify"' in install and "PREFIX=/opt/polymm" in install
    assert "EnvironmentFile=-/etc/polymm/notify.env" in template and "polymm.env" not in template.replace("notify.env", "")
    assert "polymm-notify@.service" in install
