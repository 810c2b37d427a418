"""polymm-web as a process: the token file (0600, generated, refused when others can read it), the listen address
(loopback unless explicitly allowed), and a real `polymm-web` answering with the token."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polymm.web import bearer
from polymm.web.service import listen_address, parse_args
from tests.support.ctl import FakeHandler, serve
from tests.support.web import TOKEN, WebProcess

POLYMM_WEB = str(Path(sys.executable).with_name("polymm-web"))


def test_generate_writes_a_private_token_and_never_overwrites(tmp_path):
    path = tmp_path / "web.token"
    token = bearer.generate(path)
    assert (os.stat(path).st_mode & 0o777) == 0o600 and bearer.load(path) == token and len(token) >= 40
    with pytest.raises(bearer.TokenError, match="exists"):
        bearer.generate(path)
    assert bearer.load(path) == token
    assert bearer.generate(path, force=True) != token
    assert [p.name for p in tmp_path.iterdir()] == ["web.token"]  # no temporary file left behind


@pytest.mark.parametrize("mode, text, words", [
    (0o644, TOKEN, "mode 0644"),
    (0o640, TOKEN, "mode 0640"),
    (0o600, "short", "not a token"),
    (0o600, "has a space " + "x" * 40, "not a token"),
])
def test_a_token_file_others_can_read_or_that_holds_no_token_is_refused(tmp_path, mode, text, words):
    path = tmp_path / "web.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    with pytest.raises(bearer.TokenError, match=words):
        bearer.load(path)
    with pytest.raises(bearer.TokenError, match="no token file"):
        bearer.load(tmp_path / "missing")


def test_the_token_is_compared_as_a_bearer_token_only():
    assert bearer.matches(f"Bearer {TOKEN}", TOKEN) and bearer.matches(f"bearer  {TOKEN} ", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", "Bearer", f"Bearer {TOKEN}é"):
        assert not bearer.matches(header, TOKEN)


def args(*argv: str) -> argparse.Namespace:
    return parse_args(list(argv))


def test_only_loopback_unless_remote_is_allowed_explicitly():
    assert listen_address(args("--listen", "127.0.0.1:8780")) == ("127.0.0.1", 8780)
    assert listen_address(args("--listen", "[::1]:8780")) == ("::1", 8780)
    for address in ("0.0.0.0:8780", "192.0.2.7:8780", "[::]:8780", "example.com:8780"):
        with pytest.raises(ValueError, match="not a loopback address.*--allow-remote"):
            listen_address(args("--listen", address))
    assert listen_address(args("--listen", "0.0.0.0:8780", "--allow-remote")) == ("0.0.0.0", 8780)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        listen_address(args("--listen", "8780"))


def test_the_service_refuses_to_start_without_a_usable_token_and_says_why(tmp_path):
    token = tmp_path / "web.token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    for extra, words in ((["--token-file", str(tmp_path / "none")], "no token file"),
                         (["--token-file", str(token)], "chmod 0600"),
                         (["--token-file", str(token), "--listen", "0.0.0.0:1"], "--allow-remote")):
        # (a later --listen wins over the first)
        proc = subprocess.run([POLYMM_WEB, "--listen", "127.0.0.1:1", *extra], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_generate_token_from_the_command_line(tmp_path):
    path = tmp_path / "web.token"
    proc = subprocess.run([POLYMM_WEB, "--generate-token", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "mode 0600" in proc.stdout
    assert bearer.load(path) not in proc.stdout + proc.stderr  # the token is in the file, never on the screen
    again = subprocess.run([POLYMM_WEB, "--generate-token", str(path)], capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "exists" in again.stderr


def test_the_real_process_serves_with_the_token_and_stops_on_sigterm(tmp_path):
    with serve(tmp_path / "trader.sock", FakeHandler()):
        web = WebProcess(tmp_path / "web", tmp_path / "trader.sock", systemctl=tmp_path / "no-systemctl")
        try:
            assert web.request("GET", "/mm-bot/status", token=None).status == 401
            status = web.request("GET", "/mm-bot/status").json
            assert status["trader"]["state"] == "running" and status["systemd"] is False
            assert any("not found" in w for w in status["warnings"])
        finally:
            assert web.close() == 0
    log = web.log_path.read_text()
    assert "serving http://127.0.0.1:" in log and TOKEN not in log
