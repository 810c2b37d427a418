"""The trader's control socket server: a real server on a real Unix socket, with a fake handler."""
from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import pytest

from polymm.ctl import protocol as p
from polymm.ctl.client import ControlClient, ProtocolMismatch, RemoteError
from polymm.trader.control.server import ControlServer, ControlServerError, Peer, peer_allowed

from tests.support.ctl import FakeHandler, TradingThread, raw_client, read_reply, refusal_as_child, run_as, serve

STRANGER = 65534  # nobody
OPERATORS_GID = 54321  # a group the stranger can be put in


def status_ok(path) -> bool:
    with ControlClient(path, timeout=5) as client:
        return isinstance(client.request(p.StatusRequest()), p.StatusReply)


def wait_until(condition, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def sock_path(tmp_path) -> Path:
    return tmp_path / "run" / "trader.sock"


@pytest.fixture
def public_dir():
    """A directory a non-root user can traverse (pytest's tmp_path is root-only), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="polymm_ctl_test_", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- serving --------------------------------------------------------------------------------------------------


def test_many_clients_at_once_each_get_their_replies(sock_path):
    with serve(sock_path) as server:
        results = []

        def client():
            with ControlClient(sock_path) as c:
                results.append(all(isinstance(c.request(p.StatusRequest()), p.StatusReply) for _ in range(20)))

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [True] * 16
        assert server.stats.requests == 16 * 20


def test_one_connection_carries_many_requests_in_order(sock_path):
    with serve(sock_path), ControlClient(sock_path) as client:
        assert isinstance(client.request(p.StatusRequest()), p.StatusReply)
        assert isinstance(client.request(p.PositionsRequest()), p.PositionsReply)
        assert isinstance(client.request(p.FillsRequest()), p.FillsReply)


def test_handler_refusal_reaches_the_client_with_code_and_suggestion(sock_path):
    with serve(sock_path), ControlClient(sock_path) as client:
        with pytest.raises(RemoteError) as caught:
            client.request(p.ConfigRequest(key="s1.entry_treshold"))
    assert caught.value.code == p.E_UNKNOWN_KEY
    assert caught.value.suggestion == "s1.entry_threshold"


def test_handler_exception_becomes_an_internal_error_logged_and_the_connection_stays_usable(sock_path, caplog):
    with caplog.at_level(logging.ERROR, logger="polymm.trader.control"):
        with serve(sock_path), ControlClient(sock_path) as client:
            with pytest.raises(RemoteError) as caught:
                client.request(p.RestartRequest())  # the fake handler raises RuntimeError
            assert isinstance(client.request(p.StatusRequest()), p.StatusReply)
    assert caught.value.code == p.E_INTERNAL
    assert "engine exploded" in str(caught.value)
    assert any("handler.restart failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_handler_returning_something_else_than_a_reply_is_an_internal_error(sock_path):
    class Broken(FakeHandler):
        def pause(self, request):
            return {"not": "a reply"}

    with serve(sock_path, Broken()), ControlClient(sock_path) as client:
        with pytest.raises(RemoteError) as caught:
            client.request(p.PauseRequest())
    assert caught.value.code == p.E_INTERNAL


def test_mutating_requests_never_run_concurrently(sock_path):
    class Counting(FakeHandler):
        inside = 0
        most = 0

        def pause(self, request):
            Counting.inside += 1
            Counting.most = max(Counting.most, Counting.inside)
            time.sleep(0.02)
            Counting.inside -= 1
            return super().pause(request)

    with serve(sock_path, Counting()):
        def client():
            with ControlClient(sock_path) as c:
                for _ in range(3):
                    c.request(p.PauseRequest())

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert Counting.most == 1


def test_a_change_queued_behind_a_long_one_is_refused_as_busy_not_left_hanging(sock_path):
    """A pause sent during a long flatten/restart gets a clear "try again" well before mmctl stops waiting."""
    handler = FakeHandler()
    handler.block.set()
    with serve(sock_path, handler, mutate_wait_s=0.2):
        flattening = threading.Thread(target=lambda: ControlClient(sock_path, timeout=10).request(p.FlattenRequest()))
        flattening.start()
        try:
            assert wait_until(lambda: "flatten" in handler.calls)
            with pytest.raises(RemoteError) as caught, ControlClient(sock_path, timeout=5) as client:
                client.request(p.PauseRequest())
            assert caught.value.code == p.E_BUSY and "try again" in str(caught.value)
            assert "pause" not in handler.calls
        finally:
            handler.release.set()
            flattening.join(10)


def test_slow_handler_call_does_not_delay_another_clients_status(sock_path):
    handler = FakeHandler()
    handler.block.set()
    with serve(sock_path, handler):
        slow = raw_client(sock_path)
        slow.sendall(p.encode(p.FlattenRequest()))
        assert wait_until(lambda: "flatten" in handler.calls)
        assert status_ok(sock_path)  # answered while flatten is still inside the handler
        handler.release.set()
        assert isinstance(read_reply(slow), p.DoneReply)
        slow.close()


def test_client_that_shuts_down_its_sending_side_still_gets_its_reply(sock_path):
    with serve(sock_path):
        sock = raw_client(sock_path)
        sock.sendall(p.encode(p.StatusRequest()))
        sock.shutdown(socket.SHUT_WR)
        assert isinstance(read_reply(sock), p.StatusReply)
        assert read_reply(sock) is None  # then the server closes
        sock.close()


# -- bad input ---------------------------------------------------------------------------------------------------


def test_garbage_bytes_do_not_disturb_other_clients_or_trading(sock_path):
    with serve(sock_path), TradingThread() as trading:
        before = trading.ticks
        garbage = raw_client(sock_path)
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " as a length: way over MAX_FRAME
        reply = read_reply(garbage)
        assert isinstance(reply, p.ErrorReply) and reply.code == p.E_TOO_LARGE
        assert read_reply(garbage) is None
        garbage.close()
        assert status_ok(sock_path)
        assert wait_until(lambda: trading.ticks > before)


def test_well_framed_garbage_gets_an_error_and_the_connection_stays_usable(sock_path):
    with serve(sock_path):
        sock = raw_client(sock_path)
        sock.sendall(p.frame(b"\xc1\xc1\xc1 not msgpack"))
        reply = read_reply(sock)
        assert isinstance(reply, p.ErrorReply) and reply.code == p.E_BAD_FRAME
        sock.sendall(p.encode(p.StatusRequest()))
        assert isinstance(read_reply(sock), p.StatusReply)
        sock.close()


def test_unknown_op_gets_an_error_and_the_connection_stays_usable(sock_path):
    with serve(sock_path):
        sock = raw_client(sock_path)
        sock.sendall(p.frame(msgspec.msgpack.encode({"v": p.PROTOCOL_VERSION, "op": "self_destruct"})))
        reply = read_reply(sock)
        assert isinstance(reply, p.ErrorReply) and reply.code == p.E_UNKNOWN_OP
        sock.sendall(p.encode(p.StatusRequest()))
        assert isinstance(read_reply(sock), p.StatusReply)
        sock.close()


def test_other_protocol_version_is_told_so_and_the_client_reports_a_mismatch(sock_path):
    with serve(sock_path):
        sock = raw_client(sock_path)
        sock.sendall(p.frame(msgspec.msgpack.encode({"v": 99, "op": "status"})))
        reply = read_reply(sock)
        sock.close()
        assert isinstance(reply, p.ErrorReply) and reply.code == p.E_VERSION

        class FutureStatus(msgspec.Struct, tag_field="op", tag="status"):
            v: int = 99

        with ControlClient(sock_path) as client, pytest.raises(ProtocolMismatch) as caught:
            client.request(FutureStatus())  # type: ignore[arg-type]
        assert "version 99" in str(caught.value)


def test_random_bytes_never_break_the_server(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    path = tmp_path / "fuzz.sock"
    with serve(path, partial_frame_timeout_s=0.2) as server:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.one_of(
            st.binary(max_size=2048),
            st.binary(max_size=512).map(p.frame),  # well framed, garbage inside
            st.dictionaries(st.sampled_from(["v", "op", "key", "settings", "since"]),
                            st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=8), st.none(), st.floats(),
                                      st.sampled_from(sorted(p.ALL_OPS)), st.just(p.PROTOCOL_VERSION)),
                            max_size=4).map(lambda d: p.frame(msgspec.msgpack.encode(d))),
        ))
        def send(blob):
            sock = raw_client(path)
            try:
                sock.sendall(blob)
                sock.shutdown(socket.SHUT_WR)
                while read_reply(sock) is not None:
                    pass
            except (ConnectionResetError, BrokenPipeError, p.FrameTooLarge, msgspec.DecodeError):
                pass
            finally:
                sock.close()

        send()
        assert server.running
        assert status_ok(path)


def test_oversized_frame_is_refused_and_closed_before_its_body_is_read(sock_path):
    with serve(sock_path):
        sock = raw_client(sock_path)
        sock.sendall(p.HEADER.pack(p.MAX_FRAME + 1) + b"x" * 1000)
        reply = read_reply(sock)
        assert isinstance(reply, p.ErrorReply) and reply.code == p.E_TOO_LARGE
        assert read_reply(sock) is None
        sock.close()
        assert status_ok(sock_path)


def test_half_open_client_with_a_partial_frame_does_not_stall_others_and_is_dropped(sock_path):
    with serve(sock_path, partial_frame_timeout_s=0.3) as server, TradingThread() as trading:
        stuck = raw_client(sock_path)
        stuck.sendall(p.encode(p.StatusRequest())[:5])  # header and one byte: then silence
        assert status_ok(sock_path)
        before = trading.ticks
        assert read_reply(stuck) is None  # the server gave up on it
        stuck.close()
        assert server.stats.closed_bad >= 1
        assert wait_until(lambda: trading.ticks > before)


def test_many_silent_connections_do_not_stall_a_real_client(sock_path):
    with serve(sock_path, max_clients=64):
        silent = [raw_client(sock_path) for _ in range(40)]
        try:
            assert status_ok(sock_path)
        finally:
            for s in silent:
                s.close()


def test_client_that_sends_requests_without_reading_replies_is_cut_off(sock_path):
    with serve(sock_path, max_pipelined=4, write_timeout_s=0.5) as server:
        flood = raw_client(sock_path)
        flood.setblocking(False)
        burst = p.encode(p.StatusRequest()) * 200
        try:
            flood.sendall(burst)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        assert wait_until(lambda: server.client_count == 0)
        flood.close()
        assert status_ok(sock_path)


def test_clients_above_the_limit_are_told_the_server_is_busy(sock_path):
    with serve(sock_path, max_clients=2):
        held = [raw_client(sock_path), raw_client(sock_path)]
        try:
            with pytest.raises(RemoteError) as caught, ControlClient(sock_path) as client:
                client.request(p.StatusRequest())
            assert caught.value.code == p.E_BUSY
        finally:
            for s in held:
                s.close()


def test_at_the_limit_the_longest_idle_connection_makes_room_for_a_new_client(sock_path):
    with serve(sock_path, max_clients=2):
        held = [raw_client(sock_path), raw_client(sock_path)]
        time.sleep(1.1)  # idle long enough to be evictable
        try:
            assert status_ok(sock_path)
            assert read_reply(held[0]) is None  # the oldest idle one was closed
        finally:
            for s in held:
                s.close()


# -- the socket file ---------------------------------------------------------------------------------------------


def test_socket_file_is_mode_0660_owned_by_the_allowed_group_in_a_created_directory(sock_path):
    assert not sock_path.parent.exists()
    with serve(sock_path, allowed_gid=OPERATORS_GID):
        st = os.stat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == OPERATORS_GID
    assert not sock_path.exists()  # removed on stop


def test_a_stale_socket_file_is_replaced(sock_path):
    sock_path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # the file stays, nobody listens: what a killed trader leaves behind
    with serve(sock_path):
        assert status_ok(sock_path)


def test_refuses_to_start_while_another_server_answers_on_the_path(sock_path):
    with serve(sock_path):
        with pytest.raises(ControlServerError, match="already serving"):
            ControlServer(sock_path, FakeHandler()).start()
        assert status_ok(sock_path)  # the first server is untouched


def test_refuses_to_replace_a_file_that_is_not_a_socket(sock_path):
    sock_path.parent.mkdir(parents=True)
    sock_path.write_text("precious")
    with pytest.raises(ControlServerError, match="not a socket"):
        ControlServer(sock_path, FakeHandler()).start()
    assert sock_path.read_text() == "precious"


def test_stop_leaves_a_successors_socket_alone(sock_path):
    first = ControlServer(sock_path, FakeHandler())
    first.start()
    first.stop()
    with serve(sock_path):
        first.stop()  # a second stop of the old server must not unlink the new server's socket
        assert status_ok(sock_path)


# -- who may connect -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer, allowed",
    [
        (Peer(pid=1, uid=0, gid=0), True),  # root
        (Peer(pid=1, uid=999, gid=999), True),  # the service user
        (Peer(pid=1, uid=1000, gid=OPERATORS_GID), True),  # primary group
        (Peer(pid=1, uid=1000, gid=1000, groups=frozenset({27, OPERATORS_GID})), True),  # supplementary group
        (Peer(pid=1, uid=1000, gid=1000, groups=frozenset({27})), False),
    ],
)
def test_peer_rules(peer, allowed):
    assert peer_allowed(peer, service_uid=999, allowed_gid=OPERATORS_GID) is allowed


def _status_as_child(path):
    def ask():
        with ControlClient(path, timeout=5) as client:
            return type(client.request(p.StatusRequest())).__name__
    return ask




def test_stranger_is_refused_by_peer_credentials_even_when_the_socket_mode_is_wrong(public_dir):
    path = public_dir / "trader.sock"
    handler = FakeHandler()
    with serve(path, handler, allowed_gid=OPERATORS_GID) as server:
        os.chmod(path, 0o666)  # a mistake the file mode alone would not survive
        message = run_as(STRANGER, STRANGER, [], refusal_as_child(path))
        assert server.stats.refused == 1
    assert message == (f"permission denied: user nobody may not control polymm-trader; "
                       f"join group {OPERATORS_GID} (sudo usermod -aG {OPERATORS_GID} nobody) and log in again")
    assert "status" not in handler.calls


def _rawrefusal_as_child(path):
    def ask():
        sock = raw_client(path)
        try:
            reply = read_reply(sock)  # the refusal comes at accept, before any request
        finally:
            sock.close()
        return p.to_builtins(reply)
    return ask


def test_refusal_names_the_group_and_words_no_name_the_trader_cannot_know(public_dir):
    """Under PrivateUsers=yes every operator is uid 65534 to the trader: the reply carries the group, and
    mmctl (not the trader) names the user."""
    path = public_dir / "trader.sock"
    with serve(path, allowed_gid=OPERATORS_GID):
        os.chmod(path, 0o666)
        reply = run_as(STRANGER, STRANGER, [], _rawrefusal_as_child(path))
    assert reply["kind"] == "error" and reply["code"] == p.E_FORBIDDEN
    assert reply["group"] == str(OPERATORS_GID)
    assert "nobody" not in reply["message"] and "$USER" in reply["message"]


def test_refused_uid_65534_is_logged_as_outside_the_units_user_namespace(public_dir, caplog):
    path = public_dir / "trader.sock"
    with caplog.at_level(logging.WARNING, logger="polymm.trader.control"):
        with serve(path, allowed_gid=OPERATORS_GID):
            os.chmod(path, 0o666)
            run_as(STRANGER, STRANGER, [], refusal_as_child(path))
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and "uid 65534 (outside the unit's user namespace)" in refusals[0]


def test_refused_user_without_a_passwd_entry_is_named_by_uid(public_dir):
    path = public_dir / "trader.sock"
    with serve(path, allowed_gid=OPERATORS_GID):
        os.chmod(path, 0o666)
        message = run_as(4242, 4242, [], refusal_as_child(path))
    assert message.startswith("permission denied: uid 4242 may not control polymm-trader")
    assert f"sudo usermod -aG {OPERATORS_GID} $USER" in message


def test_stranger_without_file_access_is_told_which_group_to_join(public_dir):
    path = public_dir / "trader.sock"
    with serve(path, allowed_gid=OPERATORS_GID):
        message = run_as(STRANGER, STRANGER, [], refusal_as_child(path))
    assert message.startswith(f"permission denied on {path}: join group")
    assert "sudo usermod -aG" in message and message.endswith(" nobody) and log in again")


def test_member_of_the_allowed_group_through_supplementary_groups_is_served(public_dir):
    path = public_dir / "trader.sock"
    with serve(path, allowed_gid=OPERATORS_GID):
        assert run_as(STRANGER, STRANGER, [OPERATORS_GID], _status_as_child(path)) == "StatusReply"


def test_supplementary_group_membership_is_read_from_the_socket_not_proc(public_dir, monkeypatch):
    """Under ProtectProc=invisible the trader cannot read an operator's /proc/<pid>; SO_PEERGROUPS still works."""
    from polymm.trader.control import server as control

    monkeypatch.setattr(control, "supplementary_groups", lambda pid: frozenset())
    path = public_dir / "trader.sock"
    with serve(path, allowed_gid=OPERATORS_GID):
        assert run_as(STRANGER, STRANGER, [OPERATORS_GID], _status_as_child(path)) == "StatusReply"
