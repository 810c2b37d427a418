"""mmctl's side of the control socket: connect, send one request, read one reply, with a deadline.

Every failure becomes a `CtlError` whose `str()` is the one line mmctl prints: what went wrong and what
to do about it (start the trader, join the group, use the matching mmctl).
"""
from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
import time
from pathlib import Path

import msgspec

from polymm.ctl import protocol as p

DEFAULT_TIMEOUT_S = 5.0


class CtlError(Exception):
    """A failure to show as one line. `exit_code` is what mmctl exits with."""

    exit_code = 1


class TraderNotRunning(CtlError):
    exit_code = 3


class PermissionDenied(CtlError):
    exit_code = 4


class RequestTimeout(CtlError):
    exit_code = 5


class ProtocolMismatch(CtlError):
    exit_code = 6


class ConnectionLost(CtlError):
    exit_code = 7


class RemoteError(CtlError):
    """The trader answered with an ErrorReply (refused, invalid, unknown key...)."""

    def __init__(self, reply: p.ErrorReply) -> None:
        super().__init__(reply.message)
        self.code = reply.code
        self.key = reply.key
        self.suggestion = reply.suggestion
        self.reply = reply


def not_running_message(path: str | os.PathLike, detail: str) -> str:
    return f"is polymm-trader running? it listens on {path} ({detail})"


def own_user_name() -> str | None:
    """This process's login name, for the "join group" advice (None when the uid has no passwd entry).

    Worded here, not by the trader: under the unit's PrivateUsers=yes the trader sees every other user as
    uid 65534 and cannot know who we are. $USER is not trusted: sudo -u and setuid keep the caller's."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def _group_gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return int(group) if group.isdigit() else None


def group_advice(group: str, user: str | None) -> str:
    """What to do about a refusal, given the group that is allowed in.

    Three cases an operator hits: not in the group (join it); added to it but still in a login session
    started before (groups are read at login); or in it here and refused anyway (then the trader allows
    another group than this one, and its log says which).
    """
    gid = _group_gid(group)
    in_session = gid is not None and gid in (os.getgroups() + [os.getgid()])
    if in_session:
        return f"this session is in group {group} but the trader refused it; see its log (journalctl -u polymm-trader)"
    try:
        entry = grp.getgrnam(group)
        listed = user is not None and (user in entry.gr_mem or pwd.getpwnam(user).pw_gid == entry.gr_gid)
    except KeyError:
        listed = False
    if listed:
        return f"user {user} is in group {group} but this login session predates it: log in again (or run `newgrp {group}`)"
    return f"join group {group} (sudo usermod -aG {group} {user or '$USER'}) and log in again"


def _who(user: str | None) -> str:
    return f"user {user}" if user else f"uid {os.getuid()}"


def forbidden_message(group: str, user: str | None = None) -> str:
    """The one line for a trader's E_FORBIDDEN refusal, worded from this process's own identity."""
    user = user or own_user_name()
    return f"permission denied: {_who(user)} may not control polymm-trader; {group_advice(group, user)}"


def join_group_message(path: str | os.PathLike, user: str | None = None) -> str:
    """The one line for EACCES on connect: the socket file's mode keeps us out before the trader sees us."""
    user = user or own_user_name()
    group = socket_group(Path(path))
    return f"permission denied on {path}: {group_advice(group, user)}"


def socket_group(path: Path) -> str:
    """The group that owns the socket (or, if it cannot be seen, the nearest existing parent directory)."""
    for candidate in (path, *path.parents):
        try:
            gid = os.stat(candidate).st_gid
        except OSError:
            continue
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return "polymm"


def _refused_detail(path: Path) -> str:
    # Linux answers ECONNREFUSED both for a socket nobody listens on and for a path that is not a socket.
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        is_socket = True
    return "stale socket file, nobody listening" if is_socket else "that path is not a socket"


class ControlClient:
    """One connection to the trader. Use as a context manager, or `connect()` / `close()`.

    `request()` returns the trader's reply Struct, or raises CtlError (RemoteError for a refusal).
    """

    def __init__(self, path: str | os.PathLike, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = p.FrameReader()
        self._waiting_s = timeout

    def __enter__(self) -> "ControlClient":
        self.connect()
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise TraderNotRunning(not_running_message(self.path, "no socket there")) from None
        except ConnectionRefusedError:
            sock.close()
            raise TraderNotRunning(not_running_message(self.path, _refused_detail(self.path))) from None
        except PermissionError:
            sock.close()
            raise PermissionDenied(join_group_message(self.path)) from None
        except socket.timeout:
            sock.close()
            raise RequestTimeout(f"polymm-trader did not accept a connection within {self.timeout:g} s on {self.path}") from None
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENOTSOCK or exc.errno == errno.ENOTDIR:
                raise TraderNotRunning(not_running_message(self.path, "not a socket")) from None
            raise CtlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def request(self, request: p.Request, timeout: float | None = None) -> p.Reply:
        if self._sock is None:
            self.connect()
        op = type(request).__struct_config__.tag
        self._waiting_s = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + self._waiting_s
        try:
            try:
                self._send(p.encode(request), deadline, op)
            except (BrokenPipeError, ConnectionResetError):
                # The server may have answered and closed before reading our request (a refusal: forbidden,
                # busy). That answer is still in our receive buffer; it says more than "broken pipe".
                pass
            payload = self._receive(deadline, op)
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise ConnectionLost(f"polymm-trader closed the connection during {op} (check its log)") from None
        return self._interpret(payload, op)

    # -- internals -------------------------------------------------------------------------------------

    def _send(self, data: bytes, deadline: float, op: str) -> None:
        view = memoryview(data)
        while view:
            self._sock.settimeout(self._remaining(deadline, op))
            try:
                sent = self._sock.send(view)
            except socket.timeout:
                raise self._timeout(op) from None
            view = view[sent:]

    def _receive(self, deadline: float, op: str) -> bytes:
        while True:
            self._sock.settimeout(self._remaining(deadline, op))
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                raise self._timeout(op) from None
            if not data:
                self.close()
                raise ConnectionLost(f"polymm-trader closed the connection before answering {op} (check its log)")
            try:
                payloads = self._reader.feed(data)
            except p.FrameTooLarge as exc:
                self.close()
                raise CtlError(f"the trader's reply to {op} is unreadable: {exc}") from None
            if payloads:
                return payloads[0]  # one request in flight, so one reply

    def _interpret(self, payload: bytes, op: str) -> p.Reply:
        try:
            reply = p.decode_reply(payload)
        except p.VersionMismatch as exc:
            raise ProtocolMismatch(str(exc)) from None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CtlError(f"the trader's reply to {op} is malformed: {p.one_line(str(exc))}") from None
        if isinstance(reply, p.ErrorReply):
            if reply.code == p.E_VERSION:
                raise ProtocolMismatch(reply.message)
            if reply.code == p.E_FORBIDDEN:
                # A trader that names the group lets us word the line with our own name (it may not know
                # it); an older one's own wording is shown as it is.
                raise PermissionDenied(forbidden_message(reply.group) if reply.group else reply.message)
            raise RemoteError(reply)
        return reply

    def _remaining(self, deadline: float, op: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout(op)
        return left

    def _timeout(self, op: str) -> RequestTimeout:
        self.close()  # the reply may still come: this connection is out of step now
        line = f"polymm-trader did not answer {op} within {self._waiting_s:g} s (socket {self.path})"
        if op in p.MUTATING_OPS:
            # The trader got the request and may still carry it out: "timeout" must not read as "not done".
            line += f"; the {op.replace('_', '-')} may still take effect: check `mmctl status`"
        return RequestTimeout(line)


# The least time mmctl waits for each slow request, whatever --timeout says: the trader answers these only
# once its decision loop has applied them (the handler waits up to 5 s for the loop, 25 s for an
# in-process restart: cancel, reconnect, reconcile), and cancels/flatten wait for the exchange. A shorter
# wait would report "timeout" for a command that then succeeds.
MIN_TIMEOUT_S = {
    "restart": 35.0,
    "flatten": 15.0,
    "cancel_all": 15.0,
    "pause": 15.0,
    "reload": 10.0,
    "set": 10.0,
    "unset": 10.0,
    "resume": 10.0,
}


def timeout_for(request: p.Request, timeout: float) -> float:
    """`timeout` (mmctl --timeout), raised to the request's minimum."""
    return max(timeout, MIN_TIMEOUT_S.get(type(request).__struct_config__.tag, 0.0))


def request(path: str | os.PathLike, message: p.Request, timeout: float = DEFAULT_TIMEOUT_S) -> p.Reply:
    """Connect, send one request, return its reply, close."""
    with ControlClient(path, timeout) as client:
        return client.request(message)
