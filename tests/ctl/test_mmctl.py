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
from polymm.ctl import client as client_module
from polymm.ctl import protocol as p
from polymm.ctl import render
from polymm.ctl.cli import parse_since

from tests.support.ctl import (CONDITION_ID, NOW, SECRET_API, SECRET_PK, FakeHandler, feed_segment, mmctl, mmctl_process,
                         position, serve, status_reply)


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
    assert run.exit_code == 3  # trader down: its own class, not "unhealthy"
    assert "FEED    connected" in run.stdout
    assert "TRADER  not running" in run.stdout
    assert "UNHEALTHY: TRADER DOWN" in run.stdout
    assert f"is polymm-trader running? it listens on {sock_path}" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_status_with_feed_down_says_so_and_is_unhealthy(trader, sock_path, shm_name):
    run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 8  # feed down
    assert "UNHEALTHY: FEED DOWN" in run.stdout
    assert f"no shared-memory segment '{shm_name}': is polymm-feed running?" in run.stdout
    assert "TRADER  running" in run.stdout


@pytest.mark.parametrize(
    "segment, warning, code",
    [
        (dict(heartbeat_age_s=30.0), "feed heartbeat 30.0s old", 8),  # hung or dead: feed down
        # alive, but no market data at all on a socket that still answers PINGs: frozen
        (dict(book_age_s=20.0, socket_age_s=0.5), "no market data for 20.0 s on a live socket (frozen?", 1),
        # not even a PONG for longer than ping interval + PONG timeout: dead socket
        (dict(book_age_s=16.0, socket_age_s=16.0), "the feed's market socket is silent: no frame for 16.0 s", 1),
        (dict(socket_age_s=None), "the feed's market socket is not connected", 1),
        (dict(status="stale"), "feed status is stale", 1),
        (dict(crossed=True), "crossed book", 1),
    ],
)
def test_status_warns_in_words_and_fails_on_feed_trouble(trader, sock_path, shm_name, segment, warning, code):
    with feed_segment(shm_name, **segment):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == code
    assert warning in run.stdout
    assert "UNHEALTHY" in run.stdout


def test_a_quiet_book_on_a_live_socket_is_healthy(trader, sock_path, shm_name):
    # Issue 27: the book has not changed for 12 s, the socket answered its last PING 3 s ago and some market data
    # (not changing the top) came 4 s ago: a quiet market, not a stale feed.
    with feed_segment(shm_name, book_age_s=12.0, socket_age_s=3.0, data_age_s=4.0):
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 0, run.stdout
    assert "book age 12.0s" in run.stdout and "HEALTHY" in run.stdout


def test_status_says_when_the_feed_has_no_book_for_the_window_yet(trader, sock_path, shm_name):
    from polymm.feed import shm

    writer = shm.Writer(shm_name)
    try:
        start = int(time.time()) - 60  # a minute into the window: past the rollover's grace
        writer.set_market(window_start=start, window_end=start + 900, condition_id=CONDITION_ID, up_token="1",
                          down_token="2", tick_size=0.01, min_order_size=5.0, fee_rate=0.07)
        writer.heartbeat()
        run = mmctl(sock_path, "status", shm=shm_name)
    finally:
        writer.close()
        writer.unlink()
    assert run.exit_code == 1
    assert "feed has no book for this window yet (1m" in run.stdout
    assert "bid - x -" in run.stdout


def test_a_rollover_in_progress_is_a_note_not_a_warning(trader, sock_path, shm_name):
    # Issue 27: a health check polling right at the boundary must not page anyone: the new window started 1 s
    # ago and its first book is on its way.
    from polymm.feed import shm

    writer = shm.Writer(shm_name)
    try:
        start = int(time.time()) - 1
        writer.set_market(window_start=start, window_end=start + 900, condition_id=CONDITION_ID, up_token="1",
                          down_token="2", tick_size=0.01, min_order_size=5.0, fee_rate=0.07)  # status "rotating"
        writer.heartbeat()
        run = mmctl(sock_path, "status", shm=shm_name)
        as_json = json.loads(mmctl(sock_path, "status", "--json", shm=shm_name).stdout)
    finally:
        writer.close()
        writer.unlink()
    assert run.exit_code == 0, run.stdout
    assert "HEALTHY" in run.stdout and "note: new window: first book pending" in run.stdout
    assert as_json["verdict"] == "healthy" and as_json["notes"][0].startswith("new window: first book pending")


def test_status_says_when_the_feed_stopped(trader, sock_path, shm_name):
    with feed_segment(shm_name) as writer:
        writer.close()  # what polymm-feed does on SIGTERM: marks the segment stopped, leaves it in place
        run = mmctl(sock_path, "status", shm=shm_name)
    assert run.exit_code == 8
    assert "FEED    stopped" in run.stdout and "no market data" in run.stdout


@pytest.mark.parametrize(
    "reply, warning, code",
    [
        (status_reply(healthy=False, heartbeat_ok=False), "heartbeats failing: not placing orders", 1),
        (status_reply(healthy=False, warnings=["balance low: 3.20 pUSD, below the 10.00 needed for one entry"]),
         "balance low", 1),
        (status_reply(pending_restart=["endpoints.clob_url"]), "config change pending restart: endpoints.clob_url", 1),
        (status_reply(state="paused", healthy=False, paused=True), "trader is paused", 9),  # deliberate: its own code
        (status_reply(state="paused", healthy=False, paused=True,
                      warnings=["flattening: selling every position; trader paused"]), "flattening", 9),
        (status_reply(state="paused", healthy=False, paused=True, heartbeat_ok=False), "heartbeats failing", 1),
        (status_reply(state="starting", healthy=False), "trader reports itself unhealthy (state starting)", 1),
        (status_reply(state="cancel_only", healthy=False, blocked_legs={"up": "exchange in cancel-only mode"}),
         "leg up blocked: exchange in cancel-only mode", 1),
    ],
)
def test_status_surfaces_trader_trouble_as_warnings_and_fails(sock_path, shm_name, reply, warning, code):
    handler = FakeHandler()
    handler.status_now = reply
    with serve(sock_path, handler), feed_segment(shm_name):
        run = mmctl(sock_path, "status", shm=shm_name)
        doc = json.loads(mmctl(sock_path, "status", "--json", shm=shm_name).stdout)
    assert run.exit_code == code and doc["exit_code"] == code
    assert warning in run.stdout
    verdict = next(line for line in run.stdout.splitlines() if line.startswith(("HEALTHY", "UNHEALTHY", "PAUSED")))
    assert verdict.startswith("PAUSED") is (code == 9)


def test_a_failing_heartbeat_reads_the_same_everywhere_and_is_said_once():
    """The execution core words it; mmctl falls back to the very same words only when a trader does not."""
    from polymm.ctl import status as status_view
    from polymm.trader.execution.exchange_state import HEARTBEATS_FAILING

    assert status_view.HEARTBEATS_FAILING == HEARTBEATS_FAILING
    feed = status_view.feed_health(None, NOW, problem="no segment")
    worded = status_reply(healthy=False, heartbeat_ok=False, warnings=[HEARTBEATS_FAILING])
    unworded = status_reply(healthy=False, heartbeat_ok=False)
    for reply in (worded, unworded):
        view = status_view.build_status(feed, reply, None)
        assert [w for w in view.warnings if "heartbeat" in w] == [HEARTBEATS_FAILING]


def test_positions_awaiting_resolution_are_listed_with_their_window(sock_path):
    handler = FakeHandler()
    old_window = int(NOW) - 1800
    awaiting = position(strategy="s1", leg="down", shares=8.0, avg_price=0.55, mark=None, unrealised_pnl=0.0,
                        window_start=old_window, awaiting_resolution=True)
    handler.status_now = status_reply(positions=[position(window_start=int(NOW) - 300), awaiting])
    with serve(sock_path, handler):
        table = mmctl(sock_path, "positions")
        doc = json.loads(mmctl(sock_path, "positions", "--json").stdout)
        status = mmctl(sock_path, "status")
    assert table.exit_code == 0
    current, _, old = table.stdout.partition("AWAITING RESOLUTION")
    assert old, table.stdout
    assert [line.split()[:2] for line in current.splitlines() if line.startswith(("s1", "s2"))] == [["s1", "up"]]
    row = next(line for line in old.splitlines() if "down" in line)
    assert row.split()[:7] == [time.strftime("%H:%M:%S", time.gmtime(old_window)), "start", "s1", "down", "8.00",
                               "0.5500", "4.40"]
    assert [(x["leg"], x["awaiting_resolution"], x["window_start"]) for x in doc["positions"]] == [
        ("up", False, int(NOW) - 300), ("down", True, old_window)]
    assert "AWAITING RESOLUTION" in status.stdout


def test_positions_of_an_older_trader_without_window_fields_still_render(sock_path):
    handler = FakeHandler()  # positions built without window_start / awaiting_resolution
    with serve(sock_path, handler):
        table = mmctl(sock_path, "positions")
    assert table.exit_code == 0 and "AWAITING RESOLUTION" not in table.stdout


def test_watch_refreshes_status_and_stops(trader, sock_path, shm_name, monkeypatch):
    monkeypatch.setattr(cli_module.time, "sleep", lambda _s: None)
    with feed_segment(shm_name):
        run = mmctl(sock_path, "watch", "--interval", "0.2", "--count", "3", shm=shm_name)
    assert run.exit_code == 0
    assert run.stdout.count("TRADER  running") == 3


def test_watch_json_streams_one_status_object_per_refresh(trader, sock_path, shm_name, monkeypatch):
    monkeypatch.setattr(cli_module.time, "sleep", lambda _s: None)
    with feed_segment(shm_name):
        run = mmctl(sock_path, "watch", "--json", "--count", "3", shm=shm_name)
    assert run.exit_code == 0
    lines = run.stdout.splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    assert all(d["healthy"] and d["verdict"] == "healthy" and d["trader"]["state"] == "running" for d in docs)
    assert all(isinstance(d["ts"], float) for d in docs) and "\x1b" not in run.stdout


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


def test_config_says_where_each_value_comes_from(trader, sock_path, handler):
    handler.cfg.file_keys = {"s1.size_usd", "s1.entry_threshold"}
    handler.cfg.overrides.add("s1.entry_threshold")  # the override wins over the file
    run = mmctl(sock_path, "config")
    assert run.exit_code == 0
    header = run.stdout.splitlines()[0].split()
    assert header == ["key", "value", "default", "source", "flags"]
    source = {line.split()[0]: line.split()[header.index("source")] for line in run.stdout.splitlines()[1:]
              if line.strip() and not line.startswith(("file:", "overrides:"))}
    assert source["s1.entry_threshold"] == "override" and source["s1.size_usd"] == "file"
    assert source["risk.max_exposure_usd"] == "default"
    doc = json.loads(mmctl(sock_path, "config", "--json").stdout)
    assert {e["key"]: e["source"] for e in doc["entries"]}["s1.size_usd"] == "file"


def test_config_json_is_redacted_too(trader, sock_path):
    run = mmctl(sock_path, "config", "--json")
    doc = json.loads(run.stdout)
    values = {e["key"]: e["value"] for e in doc["entries"]}
    assert values["pk"] == p.REDACTED and values["s1.entry_threshold"] == 0.6
    assert_no_secrets(run.stdout)


def test_config_of_one_key(trader, sock_path):
    run = mmctl(sock_path, "config", "s1.size_usd", "--json")
    assert [e["key"] for e in json.loads(run.stdout)["entries"]] == ["s1.size_usd"]


def test_config_of_a_section_shows_only_its_keys(trader, sock_path):
    keys = [e["key"] for e in json.loads(mmctl(sock_path, "config", "s1", "--json").stdout)["entries"]]
    assert keys and all(k.startswith("s1.") for k in keys)


def test_config_of_an_unknown_section_lists_the_sections(trader, sock_path):
    run = mmctl(sock_path, "config", "s9")
    assert_one_error_line(run, "unknown config section 's9'", "s1")
    assert "mmctl: mmctl:" not in run.stderr


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


def test_set_accepts_one_key_value_pair_as_two_words(trader, sock_path, handler):
    # Issue 27: `mmctl set s1.fair_guard true`, the way README said it, is the same as s1.fair_guard=true.
    run = mmctl(sock_path, "set", "s1.entry_threshold", "0.62")
    assert run.exit_code == 0, run.stderr
    assert handler.calls[-1] == "set" and handler.cfg.values["s1.entry_threshold"] == 0.62
    run = mmctl(sock_path, "set", "s1.entry_threshold", "0.62", "s1.sl_floor=0.3")  # three words: KEY=VALUE only
    assert run.exit_code == 2 and "'s1.entry_threshold' is not KEY=VALUE" in run.stderr


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


def test_a_restart_that_did_not_reread_the_config_exits_1(sock_path):
    # Issue 27: "config NOT re-read" used to exit 0: a script restarting after a config edit must notice.
    class Partly(FakeHandler):
        def restart(self, request):
            self._record("restart")
            return p.DoneReply(message="restarted: config NOT re-read, old config kept: s1.sl_floor must be ...",
                               warnings=["config NOT re-read, old config kept: s1.sl_floor must be ..."],
                               complete=False)

    with serve(sock_path, Partly()):
        run = mmctl(sock_path, "restart")
        as_json = mmctl(sock_path, "restart", "--json")
    assert run.exit_code == 1 and "config NOT re-read" in run.stdout and "WARNINGS" in run.stdout
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["complete"] is False


class FlattenSays(FakeHandler):
    def __init__(self, reply: p.DoneReply) -> None:
        super().__init__()
        self.reply = reply

    def flatten(self, request):
        self._record("flatten")
        return self.reply


@pytest.mark.parametrize("reply, says_paused", [
    (p.DoneReply(message="flattening: 2 working order(s) cancelled", paused=True), True),
    (p.DoneReply(message="flattening: 2 working order(s) cancelled; the trader stays paused (mmctl resume to "
                         "trade again)"), True),  # a trader that does not fill `paused`: its words decide
    (p.DoneReply(message="flattening: the trader stays paused", paused=False), False),  # the field wins
    (p.DoneReply(message="flatten: cancelled 2 orders, sent 2 sell orders"), False),
])
def test_flatten_says_the_trader_is_paused_when_the_reply_says_so(sock_path, reply, says_paused):
    with serve(sock_path, FlattenSays(reply)):
        run = mmctl(sock_path, "flatten", "--yes")
        doc = json.loads(mmctl(sock_path, "flatten", "--yes", "--json").stdout)
    assert run.exit_code == 0 and reply.message in run.stdout
    assert (run.stdout.count("mmctl resume") == 1) is says_paused  # said once, in the trader's or mmctl's words
    assert run.stdout.count("stays paused") <= 1
    assert doc["paused"] == reply.paused  # --json passes the field through as the trader sent it


def test_slow_commands_wait_at_least_their_minimum_whatever_timeout_says(sock_path):
    """The real trader answers restart after cancel + reconnect + reconcile (10+ s); --timeout is for
    quick requests and must not turn a successful restart into "timeout"."""
    class SlowRestart(FakeHandler):
        def restart(self, request):
            self._record("restart")
            time.sleep(0.6)
            return p.DoneReply(message="engine restarted")

    with serve(sock_path, SlowRestart()):
        run = mmctl(sock_path, "--timeout", "0.2", "restart")
    assert run.exit_code == 0 and "engine restarted" in run.stdout, run.stderr


@pytest.mark.parametrize("request_, given, expected", [
    (p.RestartRequest(), 5.0, 35.0),
    (p.RestartRequest(), 60.0, 60.0),
    (p.FlattenRequest(), 5.0, 15.0),
    (p.CancelAllRequest(), 5.0, 15.0),
    (p.PauseRequest(), 5.0, 15.0),
    (p.ReloadRequest(), 5.0, 10.0),
    (p.SetRequest(settings={"a": "1"}), 5.0, 10.0),
    (p.UnsetRequest(key="a"), 5.0, 10.0),
    (p.StatusRequest(), 5.0, 5.0),
    (p.PositionsRequest(), 0.3, 0.3),
])
def test_timeout_for_each_request_is_the_larger_of_its_minimum_and_the_option(request_, given, expected):
    assert client_module.timeout_for(request_, given) == expected


def test_a_timed_out_change_says_it_may_still_take_effect(sock_path):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(sock_path))
    mute.listen(1)
    try:
        with pytest.raises(client_module.RequestTimeout) as caught:
            with client_module.ControlClient(sock_path, timeout=0.2) as client:
                client.request(p.PauseRequest())
    finally:
        mute.close()
    assert "did not answer pause within 0.2 s" in str(caught.value)
    assert "may still take effect: check `mmctl status`" in str(caught.value)


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


def _answer_once(sock_path, reply: p.Reply) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(p.encode(reply))
        conn.close()
        listener.close()

    t = threading.Thread(target=answer)
    t.start()
    return t


def test_permission_denied_is_worded_with_mmctls_own_user_and_the_traders_group(sock_path):
    """Under PrivateUsers=yes the trader sees uid 65534 and cannot name us: mmctl names itself."""
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    t = _answer_once(sock_path, p.ErrorReply(code=p.E_FORBIDDEN, message="permission denied: this user ...",
                                             group="polymm_no_such_group"))
    run = mmctl(sock_path, "pause")
    t.join(5)
    assert_one_error_line(run)
    assert run.stderr.strip() == (
        f"mmctl: permission denied: user {me} may not control polymm-trader; join group polymm_no_such_group "
        f"(sudo usermod -aG polymm_no_such_group {me}) and log in again")
    assert run.exit_code == 4


def test_permission_denied_from_a_trader_that_names_no_group_shows_its_own_words(sock_path):
    t = _answer_once(sock_path, p.ErrorReply(code=p.E_FORBIDDEN, message="permission denied: join group ops"))
    run = mmctl(sock_path, "status")
    t.join(5)
    assert "permission denied: join group ops" in run.stdout  # status shows the trader as unreachable
    assert run.exit_code == 4  # unreachable for that reason: the same code every command gives it


class _Group:
    def __init__(self, name, gid, members):
        self.gr_name, self.gr_gid, self.gr_mem = name, gid, members


@pytest.fixture
def ops_group(monkeypatch):
    import grp

    group = _Group("ops", 70001, [])
    real = grp.getgrnam
    monkeypatch.setattr(grp, "getgrnam", lambda name: group if name == "ops" else real(name))
    return group


def test_advice_for_a_user_added_to_the_group_after_logging_in_is_to_log_in_again(ops_group, monkeypatch):
    ops_group.gr_mem.append("mallory")
    monkeypatch.setattr(os, "getgroups", lambda: [1000])
    advice = client_module.group_advice("ops", "mallory")
    assert "log in again" in advice and "newgrp ops" in advice and "usermod" not in advice


def test_advice_for_a_session_already_in_the_group_points_at_the_traders_log(ops_group, monkeypatch):
    monkeypatch.setattr(os, "getgroups", lambda: [1000, ops_group.gr_gid])
    advice = client_module.group_advice("ops", "mallory")
    assert "journalctl -u polymm-trader" in advice and "usermod" not in advice


def test_advice_for_a_stranger_is_to_join_the_group(ops_group, monkeypatch):
    monkeypatch.setattr(os, "getgroups", lambda: [1000])
    assert client_module.forbidden_message("ops", "mallory") == (
        "permission denied: user mallory may not control polymm-trader; "
        "join group ops (sudo usermod -aG ops mallory) and log in again")


def test_status_renders_missing_optional_trader_data_as_dashes():
    """A trader that leaves optional fields unset (no age, no distance, no caps, no marks, no balance)
    still gets a full status screen: "-" where a value is unknown, never a crash."""
    from polymm.ctl import status as status_view

    bare_order = p.OrderInfo(client_id="c-9", order_id=None, strategy="s2", leg="down", side="BUY", price=0.3,
                             size=5.0, filled=0.0, state="live", role="", order_type="", post_only=False,
                             created_at=0.0, age_s=None, distance=None, reason=None)
    reply = p.StatusReply(
        state="running", healthy=True, orders=[bare_order],
        positions=[p.PositionInfo(strategy="s2", leg="down", shares=5.0, avg_price=float("nan"), mark=None)],
        exposure=[p.Exposure(scope="total", usd=3.0, cap_usd=None), p.Exposure(scope="s2", usd=float("nan"), cap_usd=0.0)],
    )
    feed = status_view.feed_health(None, NOW, problem="no segment")
    text = status_view.render_status(status_view.build_status(feed, reply, None), NOW)
    orders_line = next(line for line in text.splitlines() if line.startswith("s2") and "BUY" in line)
    # strategy leg side price size filled type role state age behind id reason
    assert orders_line.split() == ["s2", "down", "BUY", "0.30", "5.00", "0.00", "-", "-", "live", "-", "-", "c-9", "-"]
    assert "cash -" in text and "awaiting redemption -" in text and "up -" in text and "last decision none yet" in text
    exposure = text.split("EXPOSURE")[1]
    assert "total" in exposure and "s2" in exposure


def test_order_age_comes_from_the_replys_clock_when_the_trader_sends_none():
    from polymm.ctl import status as status_view

    order_ = p.OrderInfo(client_id="c-1", order_id=None, strategy="s1", leg="up", side="BUY", price=0.6, size=5.0,
                         filled=0.0, state="live", role="entry", order_type="GTC", post_only=False,
                         created_at=NOW - 12.0)
    assert status_view.orders_table([order_], NOW).splitlines()[1].split()[9] == "12.0s"
    assert status_view.orders_table([order_]).splitlines()[1].split()[9] == "-"  # no clock: unknown, not a guess


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
    assert run.exit_code == 3
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


# -- the book without us ------------------------------------------------------------------------------------


def test_status_and_orders_show_the_top_without_us_where_our_orders_are_the_top(sock_path, shm_name):
    handler = FakeHandler()
    books = [
        p.LegBook(leg="up", bid=0.61, bid_size=6.55, ask=0.63, ask_size=10.0, net_bid=0.58, net_bid_size=40.0,
                  net_ask=0.63, net_ask_size=10.0),
        p.LegBook(leg="down", bid=0.37, bid_size=10.0, ask=0.39, ask_size=5.0, net_bid=0.37, net_bid_size=10.0,
                  net_ask=None, net_ask_size=None, net_ask_known=False),
    ]
    handler.status_now = status_reply(book=books)
    with serve(sock_path, handler), feed_segment(shm_name):
        status = mmctl(sock_path, "status", shm=shm_name)
        orders = mmctl(sock_path, "orders")
        doc = json.loads(mmctl(sock_path, "orders", "--json").stdout)
    assert "bid 0.61 x 6.55 (ours) → 0.58 x 40 without us" in status.stdout
    assert "ask 0.39 x 5 (ours) → ? without us" in status.stdout
    assert "up: bid 0.61 x 6.55 (ours) → 0.58 x 40 without us; ask 0.63 x 10" in orders.stdout
    assert "down: bid 0.37 x 10; ask 0.39 x 5 (ours) → ? without us" in orders.stdout
    assert doc["book"][0]["net_bid"] == 0.58


def test_status_without_our_orders_in_the_top_reads_as_before(trader, sock_path, shm_name):
    with feed_segment(shm_name):
        out = mmctl(sock_path, "status", shm=shm_name).stdout
        orders = mmctl(sock_path, "orders").stdout
    assert "without us" not in out + orders


def test_a_paper_trader_says_paper_first_in_status_text_json_and_the_unit_status_line():
    from polymm.ctl import status as status_view
    from polymm.trader.control.handler import summary_line

    feed = status_view.feed_health(None, NOW, problem="no segment")
    paper, live = status_reply(mode="paper"), status_reply()
    text = status_view.render_status(status_view.build_status(feed, paper, None), NOW)
    assert text.splitlines()[0].startswith("PAPER TRADING")
    assert not status_view.render_status(status_view.build_status(feed, live, None), NOW).startswith("PAPER")
    assert status_view.status_json(status_view.build_status(feed, paper, None))["mode"] == "paper"
    assert status_view.status_json(status_view.build_status(feed, live, None))["mode"] == "live"

    class Handler:
        def status(self, _request):
            return paper

    assert summary_line(Handler()).startswith("PAPER ")
