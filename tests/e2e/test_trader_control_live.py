"""The control socket of a REAL trader trading on the sim (issue 6): garbage bytes, an oversized frame and a
half-open client do not disturb trading (decisions keep coming, mmctl status still answers), and a user outside
the allowed set is refused by the trader itself. (tests/trader/control/test_control_server.py proves the same against a fake
handler; here the socket is the one polymm-trader opened.)"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import msgspec
import pytest

from tests.support.ctl import mmctl, raw_client, read_reply, refusal_as_child, run_as
from tests.support.live_trader import WINDOW_S, live_config, wait_for
from polymm.ctl import protocol as p
from polymm.ctl.client import ControlClient
from polymm.demo import Stack

pytestmark = pytest.mark.slow

NOBODY = 65534


@pytest.fixture(scope="module")
def stack():
    """sim + feed + trader, the control socket in a directory any user can traverse (pytest's tmp dirs are
    root-only, which would refuse a stranger before the trader is even asked)."""
    public = Path(tempfile.mkdtemp(prefix="polymm_live_ctl_", dir="/tmp"))
    public.chmod(0o755)
    stack = Stack(public / "work", window_s=WINDOW_S, seed=13, config_text=live_config(WINDOW_S))
    stack.workdir.chmod(0o755)
    stack.socket = public / "trader.sock"
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
        shutil.rmtree(public, ignore_errors=True)


def decisions(stack: Stack) -> int:
    return stack.status().decisions


def assert_still_trading(stack: Stack) -> None:
    """Decisions keep coming (the loop's own counter) and mmctl status answers with the trader's state."""
    before = decisions(stack)
    wait_for(lambda: decisions(stack) > before + 10, timeout_s=10, every_s=0.05, what="more decisions")
    status = mmctl(stack.socket, "status", shm=stack.shm)
    assert "TRADER  " in status.stdout and "not running" not in status.stdout, status.stdout + status.stderr
    assert stack.trader.poll() is None


def test_the_trader_reports_its_decision_count(stack):
    first = decisions(stack)
    assert first > 0
    wait_for(lambda: decisions(stack) > first, timeout_s=10, every_s=0.05, what="the decision count growing")


def test_garbage_bytes_on_the_real_socket_do_not_disturb_trading(stack):
    raw = raw_client(stack.socket)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " read as a length: far over MAX_FRAME
    reply = read_reply(raw)
    assert isinstance(reply, p.ErrorReply) and reply.code == p.E_TOO_LARGE
    raw.close()

    framed = raw_client(stack.socket)
    framed.sendall(p.frame(b"\xc1\xc1\xc1 not msgpack"))
    reply = read_reply(framed)
    assert isinstance(reply, p.ErrorReply) and reply.code == p.E_BAD_FRAME
    framed.sendall(p.frame(msgspec.msgpack.encode({"v": p.PROTOCOL_VERSION, "op": "self_destruct"})))
    reply = read_reply(framed)
    assert isinstance(reply, p.ErrorReply) and reply.code == p.E_UNKNOWN_OP
    framed.sendall(p.encode(p.StatusRequest()))  # the same connection still works
    assert isinstance(read_reply(framed), p.StatusReply)
    framed.close()

    for blob in (os.urandom(4096), b"\x00" * 3, b"\xff" * 64):
        junk = raw_client(stack.socket)
        junk.sendall(blob)
        junk.close()
    assert_still_trading(stack)


def test_an_oversized_frame_is_refused_and_trading_goes_on(stack):
    raw = raw_client(stack.socket)
    raw.sendall(p.HEADER.pack(p.MAX_FRAME + 1) + b"x" * 1000)
    reply = read_reply(raw)
    assert isinstance(reply, p.ErrorReply) and reply.code == p.E_TOO_LARGE
    assert read_reply(raw) is None  # closed before its body is read
    raw.close()
    assert_still_trading(stack)


def test_a_half_open_client_does_not_stall_the_trader_or_other_clients(stack):
    stuck = raw_client(stack.socket, timeout=60)
    stuck.sendall(p.encode(p.StatusRequest())[:5])  # a length and one byte, then silence, connection kept open
    silent = raw_client(stack.socket)  # and one that never says anything
    try:
        assert_still_trading(stack)
        with ControlClient(stack.socket, timeout=5) as client:
            assert isinstance(client.request(p.StatusRequest()), p.StatusReply)
    finally:
        stuck.close()
        silent.close()
    assert_still_trading(stack)




def test_a_user_outside_the_allowed_set_is_refused_by_the_real_trader(stack):
    # The socket's mode (0660, root's group here) already keeps the stranger out...
    refusal = run_as(NOBODY, NOBODY, [], refusal_as_child(stack.socket))
    assert refusal.startswith("permission denied") and "join group" in refusal
    # ...and with the mode opened by mistake the trader still refuses by the peer's credentials.
    mode = stack.socket.stat().st_mode & 0o777
    os.chmod(stack.socket, 0o666)
    try:
        refusal = run_as(NOBODY, NOBODY, [], refusal_as_child(stack.socket))
    finally:
        os.chmod(stack.socket, mode)
    assert refusal.startswith("permission denied:") and "may not control polymm-trader" in refusal
    assert "refused" in (stack.workdir / "trader.log").read_text()
    assert_still_trading(stack)
