"""mmctl against a real control server (fake trader handler) on a real socket, and a real feed segment."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from polymm.ctl import cli as cli_module
from polymm.ctl import protocol as p
from polymm.ctl import render
from polymm.ctl.cli import parse_since

from ctl_testing import (CONDITION_ID, NOW, SECRET_API, SECRET_PK, FakeHandler, feed_segment, mmctl, mmctl_process,
                         serve, status_reply)


@pytest.fixture
def sock_path(tmp_path) -> Path:
    return tmp_path / "trader.sock"


@pytest.fixture
def handler() -> FakeHandler:
    return FakeHandler()


@pytest.fixture
def trader(sock_path, handler):
    with serve(sock_path, handler) as server:
        yield server


def assert_one_error_line(run, *fragments):
    assert run.exit_code != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("mmctl: ")
    assert "Traceback" not in run.stderr + run.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def assert_no_secrets(*texts):
    for text in texts:
        assert SECRET_PK not in text and SECRET_PK[2:] not in text
        assert SECRET_API not in text


# -- status --------------------------------------------------------------------------------------------------


def test_status_shows_feed_from_shared_memory_and_trader_state_and_is_healthy(trader, sock_path, shm_name):
    with feed_segment(shm_name):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 0, run.stdout + run.stderr
    out = run.stdout
    assert "FEED    connected" in out
    assert "12.5 updates/s" in out
    assert "ends in" in out and "window" in out
    assert "bid 0.52 x 120" in out and "ask 0.48 x 50" in out
    assert "TRADER  running" in out
    assert "POSITIONS" in out and "OPEN ORDERS" in out and "EXPOSURE" in out
    assert "entry bid>=0.60" in out  # an open order with its reason
    assert "realised +0.75" in out
    assert out.rstrip().endswith("HEALTHY")


def test_status_json_has_feed_trader_warnings_and_verdict(trader, sock_path, shm_name):
    with feed_segment(shm_name):
        run = mmctl(sock_path, "status", "--json", shm=shm_name)
    assert run.exit_code == 0
    doc = json.loads(run.stdout)
    assert doc["healthy"] is True and doc["warnings"] == []
    assert doc["feed"]["status"] == "connected" and doc["feed"]["condition_id"] == CONDITION_ID
    assert 0 < doc["feed"]["time_left_s"] <= 900
    assert doc["feed"]["book_age_s"] < 5 and doc["feed"]["updates_per_s"] == 12.5
    assert doc["trader"]["state"] == "running"
    assert {o["client_id"] for o in doc["trader"]["orders"]} == {"c-1", "c-2"}
    assert doc["trader"]["positions"][0]["avg_price"] == 0.6


def test_status_with_trader_down_still_shows_the_feed_and_says_the_trader_is_not_running(sock_path, shm_name):
    with feed_segment(shm_name):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert "FEED    connected" in run.stdout
    assert "TRADER  not running" in run.stdout
    assert f"is polymm-trader running? it listens on {sock_path}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_status_with_feed_down_says_so_and_is_unhealthy(trader, sock_path, shm_name):
    run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert f"no shared-memory segment '{shm_name}': is polymm-feed running?" in run.stdout
    assert "TRADER  running" in run.stdout


@pytest.mark.parametrize(
    "segment, warning",
    [
        (dict(heartbeat_age_s=30.0), "feed heartbeat 30.0s old"),
        (dict(book_age_s=20.0), "feed book is 20.0s old"),
        (dict(status="stale"), "feed status is stale"),
        (dict(crossed=True), "crossed book"),
    ],
)
def test_status_warns_in_words_and_fails_on_feed_trouble(trader, sock_path, shm_name, segment, warning):
    with feed_segment(shm_name, **segment):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert warning in run.stdout
    assert "UNHEALTHY" in run.stdout


def test_status_says_when_the_feed_has_no_book_for_the_window_yet(trader, sock_path, shm_name):
    from polymm.feed import shm

    writer = shm.Writer(shm_name)
    try:
        start = int(time.time() // 900 * 900)
        writer.set_market(window_start=start, window_end=start + 900, condition_id=CONDITION_ID, up_token="1",
                          down_token="2", tick_size=0.01, min_order_size=5.0, fee_rate=0.07)
        writer.heartbeat()
        run = mmctl(sock_path, "status", shm=shm_name)
    finally:
        writer.close()
        writer.unlink()
    assert run.exit_code == 1
    assert "feed has no book for this window yet" in run.stdout
    assert "bid - x -" in run.stdout


def test_status_says_when_the_feed_stopped(trader, sock_path, shm_name):
    with feed_segment(shm_name) as writer:
        writer.close()  # what polymm-feed does on SIGTERM: marks the segment stopped, leaves it in place
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert "FEED    stopped" in run.stdout and "no market data" in run.stdout


@pytest.mark.parametrize(
    "reply, warning",
    [
        (status_reply(healthy=False, heartbeat_ok=False), "exchange heartbeat failing"),
        (status_reply(healthy=False, warnings=["balance low: 3.20 pUSD, below the 10.00 needed for one entry"]),
         "balance low"),
        (status_reply(pending_restart=["endpoints.clob_url"]), "config change pending restart: endpoints.clob_url"),
        (status_reply(state="paused", paused=True), "trader is paused"),
        (status_reply(state="starting", healthy=False), "trader reports itself unhealthy (state starting)"),
        (status_reply(state="cancel_only", healthy=False, blocked_legs={"up": "exchange in cancel-only mode"}),
         "leg up blocked: exchange in cancel-only mode"),
    ],
)
def test_status_surfaces_trader_trouble_as_warnings_and_fails(sock_path, shm_name, reply, warning):
    handler = FakeHandler()
    handler.status_now = reply
    with serve(sock_path, handler), feed_segment(shm_name):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert warning in run.stdout


def test_watch_refreshes_status_and_stops(trader, sock_path, shm_name, monkeypatch):
    monkeypatch.setattr(cli_module.time, "sleep", lambda _s: None)
    with feed_segment(shm_name):
        run = mmctl(sock_path, "watch", "--interval", "0.2", "--count", "3", shm=shm_name)
    assert run.exit_code == 0
    assert run.stdout.count("TRADER  running") == 3


def test_watch_exits_cleanly_on_ctrl_c(trader, sock_path, monkeypatch):
    def interrupt(_s):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.time, "sleep", interrupt)
    run = mmctl(sock_path, "watch")
    assert run.exit_code == 0
    assert "Traceback" not in run.stdout + run.stderr


# -- config / set / unset / reload ---------------------------------------------------------------------------


def test_config_table_marks_overrides_and_restart_only_keys_and_redacts_secrets(trader, sock_path, handler):
    handler.cfg.overrides.add("s1.entry_threshold")
    run = mmctl(sock_path, "config")
    assert run.exit_code == 0
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert "override" in lines["s1.entry_threshold"]
    assert "override" not in lines["s1.size_usd"]
    assert "restart-only" in lines["endpoints.clob_url"]
    assert p.REDACTED in lines["pk"] and p.REDACTED in lines["auth.api_secret"]
    assert_no_secrets(run.stdout, run.stderr)


def test_config_json_is_redacted_too(trader, sock_path):
    run = mmctl(sock_path, "config", "--json")
    doc = json.loads(run.stdout)
    values = {e["key"]: e["value"] for e in doc["entries"]}
    assert values["pk"] == p.REDACTED and values["s1.entry_threshold"] == 0.6
    assert_no_secrets(run.stdout)


def test_config_of_one_key(trader, sock_path):
    run = mmctl(sock_path, "config", "s1.size_usd", "--json")
    assert [e["key"] for e in json.loads(run.stdout)["entries"]] == ["s1.size_usd"]


def test_config_of_an_unknown_key_suggests_the_nearest(trader, sock_path):
    run = mmctl(sock_path, "config", "s1.entry_treshold")
    assert_one_error_line(run, "unknown config key 's1.entry_treshold'", "did you mean s1.entry_threshold?")


def test_set_shows_old_to_new_for_every_key(trader, sock_path, handler):
    run = mmctl(sock_path, "set", "s1.entry_threshold=0.62", "s1.size_usd=5")
    assert run.exit_code == 0
    assert "s1.entry_threshold  0.6  →  0.62" in run.stdout
    assert "s1.size_usd" in run.stdout and "→" in run.stdout
    assert handler.cfg.values["s1.entry_threshold"] == 0.62


def test_set_json_lists_the_changes(trader, sock_path):
    doc = json.loads(mmctl(sock_path, "set", "s1.entry_threshold=0.62", "--json").stdout)
    assert doc["changes"] == [{"key": "s1.entry_threshold", "old": 0.6, "new": 0.62}]


@pytest.mark.parametrize(
    "assignment, fragment",
    [
        ("s1.entry_treshold=0.5", "did you mean s1.entry_threshold?"),
        ("endpoints.clob_url=http://x", "cannot change while trading"),
        ("s1.entry_threshold=abc", "Expected `float`"),
        ("s1.size_usd=500", "must not exceed risk.max_exposure_usd"),
    ],
)
def test_set_refusals_are_one_line_and_change_nothing(trader, sock_path, handler, assignment, fragment):
    before = dict(handler.cfg.values)
    run = mmctl(sock_path, "set", "risk.max_exposure_usd=90", assignment)
    assert_one_error_line(run, fragment)
    assert handler.cfg.values == before


def test_set_without_equals_is_a_usage_error_sent_nowhere(trader, sock_path, handler):
    run = mmctl(sock_path, "set", "s1.entry_threshold")
    assert run.exit_code == 2
    assert "is not KEY=VALUE" in run.stderr
    assert "set" not in handler.calls


def test_unset_and_reload(trader, sock_path, handler):
    mmctl(sock_path, "set", "s1.size_usd=6")
    run = mmctl(sock_path, "unset", "s1.size_usd")
    assert run.exit_code == 0 and "s1.size_usd" in run.stdout and "→" in run.stdout
    assert handler.cfg.values["s1.size_usd"] == 4.0
    run = mmctl(sock_path, "reload")
    assert run.exit_code == 0 and "no change" in run.stdout and "config reloaded" in run.stdout
    assert json.loads(mmctl(sock_path, "reload", "--json").stdout)["kind"] == "changed"


# -- actions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command, op, text", [
    ("pause", "pause", "paused"),
    ("resume", "resume", "resumed"),
    ("cancel-all", "cancel_all", "cancelled 2 orders"),
])
def test_actions_print_what_was_done(trader, sock_path, handler, command, op, text):
    run = mmctl(sock_path, command)
    assert run.exit_code == 0 and text in run.stdout
    assert handler.calls[-1] == op
    doc = json.loads(mmctl(sock_path, command, "--json").stdout)
    assert doc["kind"] == "done" and text in doc["message"]


def test_flatten_without_a_terminal_and_without_yes_refuses_and_sends_nothing(trader, sock_path, handler):
    run = mmctl(sock_path, "flatten")
    assert_one_error_line(run, "--yes")
    assert "flatten" not in handler.calls


def test_flatten_asks_for_confirmation_on_a_terminal(trader, sock_path, handler, monkeypatch):
    monkeypatch.setattr(cli_module, "stdin_is_tty", lambda: True)
    run = mmctl(sock_path, "flatten", input="n\n")
    assert run.exit_code == 1 and "flatten" not in handler.calls
    run = mmctl(sock_path, "flatten", input="y\n")
    assert run.exit_code == 0 and handler.calls[-1] == "flatten"
    assert "sent 2 sell orders" in run.stdout


def test_flatten_with_yes_does_not_ask(trader, sock_path, handler):
    run = mmctl(sock_path, "flatten", "--yes", "--json")
    assert run.exit_code == 0 and json.loads(run.stdout)["count"] == 2


def test_restart_in_process_prints_what_the_trader_did(sock_path):
    class Restartable(FakeHandler):
        def restart(self, request):
            self._record("restart")
            return p.DoneReply(message="engine restarted: 2 orders cancelled, reconnected, reconciled")

    handler = Restartable()
    with serve(sock_path, handler):
        run = mmctl(sock_path, "restart")
        assert run.exit_code == 0 and "engine restarted" in run.stdout
        doc = json.loads(mmctl(sock_path, "restart", "--json").stdout)
    assert doc["kind"] == "done" and handler.calls == ["restart", "restart"]


def test_restart_failure_inside_the_trader_is_one_line(trader, sock_path):
    run = mmctl(sock_path, "restart")
    assert_one_error_line(run, "restart failed inside the trader", "engine exploded")


def test_restart_service_outside_systemd_says_so(trader, sock_path, monkeypatch):
    monkeypatch.setattr(cli_module, "under_systemd", lambda: False)
    run = mmctl(sock_path, "restart", "--service", "feed")
    assert_one_error_line(run, "systemd is not running here")


def test_restart_service_asks_systemctl_for_each_unit(trader, sock_path, tmp_path, monkeypatch):
    log = tmp_path / "systemctl.log"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(cli_module, "under_systemd", lambda: True)
    run = mmctl(sock_path, "restart", "--service", "all")
    assert run.exit_code == 0
    assert log.read_text().splitlines() == ["--no-ask-password restart polymm-feed.service",
                                            "--no-ask-password restart polymm-trader.service"]


def test_restart_service_reports_systemctls_own_error(trader, sock_path, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Failed to restart polymm-feed.service: Access denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(cli_module, "under_systemd", lambda: True)
    run = mmctl(sock_path, "restart", "--service", "feed")
    assert_one_error_line(run, "systemctl restart polymm-feed.service failed", "Access denied")


# -- orders / positions / fills ----------------------------------------------------------------------------------


def test_orders_table_and_json(trader, sock_path):
    run = mmctl(sock_path, "orders")
    assert run.exit_code == 0
    header, *rows = run.stdout.splitlines()
    assert header.split()[:5] == ["strategy", "leg", "side", "price", "size"]
    assert len(rows) == 2 and "0.61" in rows[0] and "0.40" in rows[1]
    doc = json.loads(mmctl(sock_path, "orders", "--all", "--json").stdout)
    assert {o["state"] for o in doc["orders"]} == {"live", "filled"}


def test_positions_table_and_json(trader, sock_path):
    run = mmctl(sock_path, "positions")
    assert run.exit_code == 0
    assert "s2" in run.stdout and "10.00" in run.stdout and "0.3500" in run.stdout
    assert "realised +0.75" in run.stdout
    doc = json.loads(mmctl(sock_path, "positions", "--json").stdout)
    assert [(x["strategy"], x["leg"]) for x in doc["positions"]] == [("s1", "up"), ("s2", "down")]


def test_fills_since_a_time_only_shows_later_fills(trader, sock_path):
    run = mmctl(sock_path, "fills", "--json", "--since", str(NOW - 60))
    assert [f["trade_id"] for f in json.loads(run.stdout)["fills"]] == ["t-new"]
    run = mmctl(sock_path, "fills")
    assert run.exit_code == 0 and len(run.stdout.splitlines()) == 3  # header + 2 fills


def test_fills_with_a_bad_since_is_a_usage_error_naming_the_accepted_forms(trader, sock_path, handler):
    run = mmctl(sock_path, "fills", "--since", "yesterday-ish")
    assert run.exit_code == 2 and "duration" in run.stderr
    assert "fills" not in handler.calls


@pytest.mark.parametrize("text, expected", [
    ("10m", NOW - 600), ("90s", NOW - 90), ("1h30m", NOW - 5400), ("2d", NOW - 172800),
    ("1795000000", NOW), ("2026-11-18T11:06:40", NOW), ("2026-11-18T12:06:40+01:00", NOW),
    ("2026-11-18T11:06:40Z", NOW), ("2026-11-18 11:06", NOW - 40),
])
def test_parse_since_accepts_durations_times_and_unix_seconds(text, expected):
    assert parse_since(text, NOW) == pytest.approx(expected, abs=1e-3)


def test_parse_since_reads_a_bare_clock_time_as_today_utc():
    assert parse_since("11:00", NOW) == pytest.approx(NOW - 400, abs=1e-3)  # NOW is 2026-11-18 11:06:40 UTC


@pytest.mark.parametrize("text", ["", "600", "ten minutes", "10x"])
def test_parse_since_refuses_ambiguous_or_unknown_forms(text):
    with pytest.raises(ValueError):
        parse_since(text, NOW)


# -- errors, one line each ----------------------------------------------------------------------------------------


def test_missing_socket_says_is_the_trader_running(sock_path):
    run = mmctl(sock_path, "orders")
    assert_one_error_line(run, f"is polymm-trader running? it listens on {sock_path}")
    assert run.exit_code == 3


def test_stale_socket_file_says_is_the_trader_running(sock_path):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()
    run = mmctl(sock_path, "pause")
    assert_one_error_line(run, "is polymm-trader running?", "nobody listening")


def test_a_trader_that_never_answers_is_a_timeout(sock_path):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(sock_path))
    mute.listen(1)  # accepts connections (backlog) but never reads or answers
    try:
        run = mmctl(sock_path, "--timeout", "0.3", "positions")
    finally:
        mute.close()
    assert_one_error_line(run, "did not answer positions within 0.3 s")
    assert run.exit_code == 5


def test_a_trader_speaking_another_protocol_version_is_named(sock_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    def answer_as_v2():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(p.frame(msgspec.msgpack.encode({"v": 2, "kind": "orders", "orders": []})))
        conn.close()

    t = threading.Thread(target=answer_as_v2)
    t.start()
    run = mmctl(sock_path, "orders")
    t.join(5)
    listener.close()
    assert_one_error_line(run, "protocol mismatch", "version 2", f"speaks version {p.PROTOCOL_VERSION}")
    assert run.exit_code == 6


def test_secrets_never_appear_in_any_command_output(trader, sock_path, shm_name):
    outputs = []
    with feed_segment(shm_name):
        for args in (["status"], ["status", "--json"], ["config"], ["config", "--json"], ["config", "pk"],
                     ["config", "auth.api_secret", "--json"], ["orders", "--all"], ["positions"], ["fills"],
                     ["set", "s1.size_usd=5"], ["unset", "s1.size_usd", "--json"], ["reload"], ["pause"]):
            run = mmctl(sock_path, *args, shm=shm_name)
            outputs += [run.stdout, run.stderr]
    assert_no_secrets(*outputs)


def test_every_command_has_help_and_the_epilog_documents_completion():
    run = mmctl("/nonexistent", "--help")
    assert run.exit_code == 0
    assert "_MMCTL_COMPLETE=bash_source mmctl" in run.stdout
    for command in ("status", "config", "set", "unset", "reload", "pause", "resume", "cancel-all", "flatten",
                    "restart", "orders", "positions", "fills", "watch"):
        assert command in run.stdout
        assert mmctl("/nonexistent", command, "--help").exit_code == 0


# -- the real console script ---------------------------------------------------------------------------------------


def test_console_script_status_with_nothing_running_is_one_screen_no_traceback(sock_path, shm_name):
    run = mmctl_process(sock_path, "status", shm=shm_name)
    assert run.exit_code == 1
    assert "FEED    not available" in run.stdout and "TRADER  not running" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_console_script_error_is_one_line(sock_path):
    run = mmctl_process(sock_path, "pause")
    assert_one_error_line(run, "is polymm-trader running?")


def test_console_script_reads_socket_and_shm_from_the_environment(trader, sock_path, shm_name):
    exe = Path(sys.executable).with_name("mmctl")
    with feed_segment(shm_name):
        proc = subprocess.run([str(exe), "status", "--json"], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, POLYMM_SOCKET=str(sock_path), POLYMM_SHM=shm_name))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["feed"]["status"] == "connected"


def test_console_script_bash_completion_is_generated():
    exe = Path(sys.executable).with_name("mmctl")
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, _MMCTL_COMPLETE="bash_source"))
    assert proc.returncode == 0 and "_mmctl_completion" in proc.stdout


def test_main_turns_an_unexpected_bug_into_one_line(monkeypatch, capsys):
    def explode(*_a, **_k):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli_module.cli, "main", explode)
    with pytest.raises(SystemExit) as caught:
        cli_module.main(["status"])
    assert caught.value.code == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: oops" in err


# -- the one table formatter -----------------------------------------------------------------------------------------


def test_table_right_aligns_numbers_and_left_aligns_words():
    text = render.table(("leg", "price"), [("up", "0.61"), ("down", "0.4")])
    assert text.splitlines() == ["leg   price", "up     0.61", "down    0.4"]


def test_table_says_none_when_empty():
    assert render.table(("a",), []) == "(none)"


def test_price_keeps_two_decimals_and_the_tick():
    assert [render.price(x) for x in (0.4, 0.61, 0.005, float("nan"))] == ["0.40", "0.61", "0.005", "-"]
