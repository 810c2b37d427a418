"""The trader's control socket: serves mmctl's requests (ctl/protocol.py) without ever stalling trading.

Threads: one I/O thread multiplexes every connection with non-blocking sockets (`selectors`), and a small
pool runs the handler's methods. So a slow, silent or half-open client costs one file descriptor until it
times out, never a thread, and a slow handler call (flatten) does not delay other clients' status.
Requests that change the trader (MUTATING_OPS) are run one at a time: two `set`s never interleave.

The kill switch always gets through (KILL_SWITCH_OPS: pause, flatten, cancel-all). The server admits
`max_clients` connections and makes room by closing one silent for a second; when every one of them is active
(dashboards and monitoring scripts polling status), a new connection is still admitted, on probation: it may
ask for the kill switch only, anything else is told the server is full (and that the kill switch is always
served), and a probation connection that asks nothing is closed after `probation_idle_s`. Kill-switch requests
also run on their own worker, so they never queue behind other clients' reads.

Who may talk: root, the service's own uid, and members of the allowed group (the service's gid by
default). The socket file is mode 0660 with that group, and every connection's SO_PEERCRED is checked as
well (file modes alone do not protect an already-open descriptor passed around, and a mis-set umask or
group must not open the door). A refused peer gets an E_FORBIDDEN ErrorReply naming the group to join,
then EOF; mmctl words the line with its own user name, because under the unit's PrivateUsers=yes every
user but root and the service's is uid 65534 here and the trader cannot know who connected.

Bad input costs the client, never the trader: a frame that is not MessagePack or not a known request gets
an ErrorReply and the connection stays usable; a length prefix above MAX_FRAME gets an ErrorReply and the
connection is closed (the stream cannot be resynchronised); a handler exception becomes an E_INTERNAL
reply and a logged traceback.
"""
from __future__ import annotations

import collections
import errno
import grp
import logging
import os
import pwd
import queue
import selectors
import socket
import stat
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from polymm.ctl import protocol as p

log = logging.getLogger("polymm.trader.control")
_calling = threading.local()  # the peer whose request the handler is running on this thread


def current_peer() -> "Peer | None":
    """Who sent the request the calling handler method is serving (the ledger records who changed the config)."""
    return getattr(_calling, "peer", None)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlServerError(Exception):
    """The server cannot start: the message says why (path in use, not a socket, permission)."""


class ControlHandler(Protocol):
    """What the trader implements to answer mmctl. One method per request op; each gets the decoded request.

    Return the reply Struct named in the signature (or an ErrorReply), or raise `ControlError(code, message)`
    to refuse (E_UNKNOWN_KEY with `suggestion`, E_NOT_LIVE, E_INVALID, E_UNAVAILABLE, E_BAD_REQUEST). Any
    other exception becomes an E_INTERNAL reply and a logged traceback.

    Methods run on the server's worker threads, never the trading thread: they must be thread-safe and
    quick (read a snapshot the trading loop publishes; hand changes to the loop and wait briefly for it).
    Mutating methods (set, unset, reload, pause, resume, cancel_all, flatten, restart) are never called
    concurrently with each other; read-only ones may run concurrently with anything.
    Secrets must be redacted by the handler (`protocol.redact`); mmctl redacts again before printing.
    """

    def status(self, request: p.StatusRequest) -> p.StatusReply: ...

    def config(self, request: p.ConfigRequest) -> p.ConfigReply: ...

    def set(self, request: p.SetRequest) -> p.ChangeReply: ...

    def unset(self, request: p.UnsetRequest) -> p.ChangeReply: ...

    def reload(self, request: p.ReloadRequest) -> p.ChangeReply: ...

    def pause(self, request: p.PauseRequest) -> p.DoneReply: ...

    def resume(self, request: p.ResumeRequest) -> p.DoneReply: ...

    def cancel_all(self, request: p.CancelAllRequest) -> p.DoneReply: ...

    def flatten(self, request: p.FlattenRequest) -> p.DoneReply: ...

    def restart(self, request: p.RestartRequest) -> p.DoneReply: ...

    def orders(self, request: p.OrdersRequest) -> p.OrdersReply: ...

    def positions(self, request: p.PositionsRequest) -> p.PositionsReply: ...

    def fills(self, request: p.FillsRequest) -> p.FillsReply: ...


# ---------------------------------------------------------------------------------------------------------
# Who may connect (pure)


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()  # supplementary groups (SO_PEERGROUPS, else /proc/<pid>/status)

    def describe(self) -> str:
        if self.uid == OVERFLOW_UID:
            return f"uid {self.uid} (outside the unit's user namespace) pid={self.pid}"
        return f"uid={self.uid}({user_name(self.uid)}) pid={self.pid}"


def _overflow_uid() -> int:
    """The uid the kernel shows for a user not mapped into our user namespace (PrivateUsers=yes)."""
    try:
        with open("/proc/sys/kernel/overflowuid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65534


OVERFLOW_UID = _overflow_uid()


def peer_allowed(peer: Peer, *, service_uid: int, allowed_gid: int) -> bool:
    """Root, the service's own user, or a member (primary or supplementary) of the allowed group."""
    return peer.uid == 0 or peer.uid == service_uid or peer.gid == allowed_gid or allowed_gid in peer.groups


def refusal_reply(peer: Peer, allowed_gid: int) -> p.ErrorReply:
    """E_FORBIDDEN with the group to join. mmctl words its line from its own identity (`group` set); the
    message is for clients that do not: it names the user only when the uid means something here."""
    group = group_name(allowed_gid)
    if peer.uid == OVERFLOW_UID:
        who, user = "this user", "$USER"
    else:
        user = user_name(peer.uid)
        who = f"user {user} (uid {peer.uid})"
    message = (f"permission denied: {who} may not control polymm-trader; "
               f"join group {group} (sudo usermod -aG {group} {user}) and log in again")
    return p.ErrorReply(code=p.E_FORBIDDEN, message=message, group=group)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# SO_PEERGROUPS (Linux >= 4.13) has no constant in Python's socket module. 59 on x86, arm and most
# architectures; the odd ones out are listed so a port there does not silently read the wrong option.
_SO_PEERGROUPS = {"parisc": 0x4034, "sparc": 0x003D, "sparc64": 0x003D}.get(os.uname().machine, 59)


def peer_groups(sock: socket.socket) -> frozenset[int] | None:
    """The peer's supplementary groups from the socket itself (SO_PEERGROUPS), or None if unsupported.

    Preferred over /proc: the hardened unit runs with ProtectProc=invisible, which hides other users'
    /proc/<pid>, and the socket option is race-free (no pid reuse between connect and the check).
    """
    size = 4 * 64
    for _ in range(4):
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == errno.ERANGE:  # more groups than the buffer holds: the kernel wants a bigger one
                size *= 4
                continue
            return None
        count = len(raw) // 4
        return frozenset(struct.unpack(f"={count}I", raw[: count * 4]))
    return None


def supplementary_groups(pid: int) -> frozenset[int]:
    """The peer process's supplementary groups as /proc/<pid>/status `Groups:` shows them (fallback).

    Empty when the process is gone or /proc is unreadable: the check then falls back to uid and primary gid,
    which only ever refuses more, never less.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"Groups:"):
                    return frozenset(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return frozenset()


def read_peer(sock: socket.socket) -> Peer:
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    groups = peer_groups(sock)
    if groups is None:
        groups = supplementary_groups(pid)
    return Peer(pid=pid, uid=uid, gid=gid, groups=groups)


# ---------------------------------------------------------------------------------------------------------
# The server


@dataclass
class _Connection:
    id: int
    sock: socket.socket
    peer: Peer
    reader: p.FrameReader
    inbox: collections.deque = field(default_factory=collections.deque)  # complete payloads not yet handled
    outbuf: bytearray = field(default_factory=bytearray)
    busy: bool = False  # a request is with the handler
    eof: bool = False  # the client shut down its sending side
    close_after_flush: bool = False
    last_recv: float = 0.0
    last_send: float = 0.0
    events: int = 0  # currently registered selector events
    probation: bool = False  # admitted over max_clients: served the kill switch only


@dataclass
class ServerStats:
    accepted: int = 0
    refused: int = 0
    requests: int = 0
    errors: int = 0  # error replies sent (bad frames, handler refusals, internal errors)
    closed_bad: int = 0  # connections closed for oversize / timeouts / overflow
    on_probation: int = 0  # connections admitted over the limit (kill switch only)


class ControlServer:
    """Serves `handler` on the Unix socket `path` from background threads.

    `start()` binds (creating the parent directory; replacing a stale socket file but refusing if a live
    server answers on it) and returns; `stop()` closes everything and removes the socket file if it is
    still ours. Also a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        handler: ControlHandler,
        *,
        allowed_gid: int | None = None,
        max_clients: int = 32,
        workers: int = 4,
        idle_timeout_s: float = 300.0,
        partial_frame_timeout_s: float = 10.0,
        write_timeout_s: float = 10.0,
        # A change queued behind another (a 25 s in-process restart) gets "busy, try again" after this; it
        # plus the handler's own 5 s wait for the decision loop stays under mmctl's 10 s minimum for quick
        # changes, so the operator reads a refusal rather than an ambiguous timeout.
        mutate_wait_s: float = 4.0,
        max_pipelined: int = 8,
        probation_slots: int | None = None,
        probation_idle_s: float = 2.0,
    ) -> None:
        self.path = Path(path)
        self.handler = handler
        self.service_uid = os.geteuid()
        self.allowed_gid = os.getegid() if allowed_gid is None else allowed_gid
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s
        self.partial_frame_timeout_s = partial_frame_timeout_s
        self.write_timeout_s = write_timeout_s
        self.mutate_wait_s = mutate_wait_s
        self.max_pipelined = max_pipelined
        # Connections over the limit, each waiting to say what it wants: as many again as the limit.
        self.probation_slots = max_clients if probation_slots is None else probation_slots
        self.probation_idle_s = probation_idle_s
        self.stats = ServerStats()
        self._workers = workers
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[int, _Connection] = {}
        self._next_id = 0
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # (conn_id, frame bytes, close_after)
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._kill_pool: ThreadPoolExecutor | None = None  # the kill switch's own workers
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._mutate_lock = threading.Lock()
        self._accept_paused_until = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> "ControlServer":
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> None:
        self._listener = self._bind()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ctl-handler")
        self._kill_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ctl-kill-switch")
        self._thread = threading.Thread(target=self._run, name="ctl-io", daemon=True)
        self._thread.start()
        log.info("control socket listening on %s (group %s may connect)", self.path, group_name(self.allowed_gid))

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._wake()
        self._thread.join(timeout)
        for pool in (self._pool, self._kill_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._thread = None
        self._remove_socket_file()

    # -- binding ---------------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        self._prepare_path()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            # Mode and group before listen(): until then nobody can connect, so there is no window in which
            # the umask's mode applies.
            os.chmod(self.path, 0o660)
            if os.stat(self.path).st_gid != self.allowed_gid:
                try:
                    os.chown(self.path, -1, self.allowed_gid)
                except PermissionError:
                    log.warning(
                        "cannot give %s to group %s (not a member): only this user and root can connect",
                        self.path, group_name(self.allowed_gid),
                    )
            self._inode = os.stat(self.path).st_ino
            listener.listen(64)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise ControlServerError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        return listener

    def _prepare_path(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True, mode=0o750)
                if os.stat(parent).st_gid != self.allowed_gid:
                    os.chown(parent, -1, self.allowed_gid)
            except OSError as exc:
                raise ControlServerError(f"cannot create {parent} for the control socket: {exc.strerror or exc}") from None
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlServerError(f"{self.path} exists and is not a socket; refusing to replace it")
        if _socket_answers(self.path):
            raise ControlServerError(
                f"another process is already serving {self.path} (is a second polymm-trader running?)"
            )
        # A socket file nobody listens on: left by a process that died. Safe to replace.
        log.info("removing stale control socket %s", self.path)
        self.path.unlink()

    def _remove_socket_file(self) -> None:
        try:
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass

    # -- the I/O loop ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already has a pending wake byte, or shutting down

    def _run(self) -> None:
        assert self._selector is not None
        try:
            while not self._stopping.is_set():
                for key, mask in self._selector.select(timeout=0.5):
                    tag = key.data
                    if tag == "listen":
                        self._accept()
                    elif tag == "wake":
                        self._drain_wake()
                    else:
                        conn = self._conns.get(tag)
                        if conn is None:
                            continue
                        if mask & selectors.EVENT_READ:
                            self._on_readable(conn)
                        if mask & selectors.EVENT_WRITE and conn.id in self._conns:
                            self._flush(conn)
                self._collect_replies()
                self._sweep(time.monotonic())
        except Exception:  # noqa: BLE001 - the control plane must never take the trader down
            log.exception("control socket I/O loop failed; mmctl is unavailable until the trader restarts")
        finally:
            self._close_all()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: keep serving the clients we have, and stop polling the listener for a
                # moment (it stays readable, so polling it now would spin and flood the log).
                log.warning("control socket accept failed: %s; not accepting for 1 s", exc)
                self._selector.unregister(self._listener)
                self._accept_paused_until = time.monotonic() + 1.0
                return
            sock.setblocking(False)
            try:
                peer = read_peer(sock)
            except OSError:
                sock.close()
                continue
            self._next_id += 1
            now = time.monotonic()
            conn = _Connection(self._next_id, sock, peer, p.FrameReader(), last_recv=now, last_send=now)
            self._conns[conn.id] = conn
            self.stats.accepted += 1
            if not peer_allowed(peer, service_uid=self.service_uid, allowed_gid=self.allowed_gid):
                self.stats.refused += 1
                log.warning("control: refused %s (not root, not the service user, not in group %s)",
                            peer.describe(), group_name(self.allowed_gid))
                self._reply_and_close(conn, refusal_reply(peer, self.allowed_gid))
            elif self._regular_count() > self.max_clients and not self._evict_idle(now):
                if self._room_on_probation():
                    conn.probation = True
                    self.stats.on_probation += 1
                    self._set_events(conn, selectors.EVENT_READ)
                else:
                    self.stats.refused += 1
                    log.warning("control: refused %s: %d clients already connected and %d more on probation",
                                peer.describe(), self.max_clients, self.probation_slots)
                    self._reply_and_close(conn, self._full_reply())
            else:
                self._set_events(conn, selectors.EVENT_READ)

    def _regular_count(self) -> int:
        return sum(1 for c in self._conns.values() if not c.probation)

    def _full_reply(self) -> p.ErrorReply:
        return p.ErrorReply(code=p.E_BUSY, message=(
            f"too many mmctl clients ({self.max_clients}); try again shortly "
            "(pause, flatten and cancel-all are always served)"))

    def _room_on_probation(self) -> bool:
        """A probation slot for one more connection over the limit: a free one, else the one that has waited
        the longest without sending a request (a request in flight, a kill switch among them, is never cut)."""
        probation = [c for c in self._conns.values() if c.probation]
        if len(probation) < self.probation_slots:
            return True
        waiting = [c for c in probation if c.events and not c.busy and not c.outbuf and not c.inbox
                   and not c.close_after_flush]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.last_recv)
        log.info("control: closing %s (on probation, silent the longest) to admit a new client", oldest.peer.describe())
        self.stats.closed_bad += 1
        self._close(oldest)
        return True

    def _evict_idle(self, now: float) -> bool:
        """At the client limit, make room by closing the connection silent the longest (at least 1 s), so
        a pile of forgotten or hostile idle connections cannot lock operators out."""
        idle = [c for c in self._conns.values()
                if not c.busy and not c.outbuf and not c.close_after_flush and now - max(c.last_recv, c.last_send) >= 1.0]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: max(c.last_recv, c.last_send))
        log.info("control: closing %s (idle the longest) to admit a new client", oldest.peer.describe())
        self.stats.closed_bad += 1
        self._close(oldest)
        return True

    def _on_readable(self, conn: _Connection) -> None:
        # Bounded per wake-up so one fire-hose client cannot starve the others.
        for _ in range(16):
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            if not data:
                # The client shut down its write side (or vanished). Answer what it already sent, then close.
                conn.eof = True
                break
            conn.last_recv = time.monotonic()
            try:
                conn.inbox.extend(conn.reader.feed(data))
            except p.FrameTooLarge as exc:
                self.stats.closed_bad += 1
                log.warning("control: %s sent an oversized frame (%s); closing", conn.peer.describe(), exc)
                self._reply_and_close(conn, p.ErrorReply(code=p.E_TOO_LARGE, message=str(exc)))
                return
            if len(conn.inbox) > self.max_pipelined:
                self.stats.closed_bad += 1
                self._reply_and_close(conn, p.ErrorReply(
                    code=p.E_BUSY, message=f"more than {self.max_pipelined} requests sent without reading replies"))
                return
        self._dispatch(conn)
        self._update_events(conn)

    def _dispatch(self, conn: _Connection) -> None:
        """Hand the next request to the pool: one at a time per connection, and only once the previous
        reply is fully sent (so a client that does not read cannot make us buffer without bound)."""
        if conn.busy or conn.outbuf or conn.close_after_flush or not conn.inbox:
            return
        payload = conn.inbox.popleft()
        try:
            request = p.decode_request(payload)
        except p.ControlError as err:
            self.stats.errors += 1
            log.info("control: %s: %s", conn.peer.describe(), err.message)
            self._queue_out(conn, p.encode(err.to_reply()))
            return
        op = type(request).__struct_config__.tag
        if conn.probation and op not in p.KILL_SWITCH_OPS:
            self.stats.refused += 1
            log.info("control: %s asked for %s while over the client limit; refused", conn.peer.describe(), op)
            self._reply_and_close(conn, self._full_reply())
            return
        conn.busy = True
        self.stats.requests += 1
        pool = self._kill_pool if op in p.KILL_SWITCH_OPS else self._pool
        pool.submit(self._handle, conn.id, conn.peer, request)

    def _handle(self, conn_id: int, peer: Peer, request: p.Request) -> None:
        """Runs on a pool thread: call the handler, encode its reply, post it back to the I/O thread."""
        op = type(request).__struct_config__.tag
        reply = self._call_handler(peer, op, request)
        if isinstance(reply, p.ErrorReply):
            self.stats.errors += 1
        try:
            frame = p.encode(reply)
        except p.FrameTooLarge as exc:
            log.error("control: reply to %s too large: %s", op, exc)
            frame = p.encode(p.ErrorReply(code=p.E_INTERNAL, message=f"reply to {op} too large ({exc.size} bytes)"))
        except Exception as exc:  # noqa: BLE001 - e.g. a handler returned a value msgspec cannot encode
            log.exception("control: cannot encode reply to %s", op)
            frame = p.encode(p.ErrorReply(code=p.E_INTERNAL, message=f"cannot encode reply to {op}: {p.one_line(str(exc))}"))
        self._done.put((conn_id, frame))
        self._wake()

    def _call_handler(self, peer: Peer, op: str, request: p.Request) -> p.Reply:
        method = getattr(self.handler, op, None)
        if method is None:
            return p.ErrorReply(code=p.E_UNKNOWN_OP, message=f"this trader does not implement {op!r}")
        mutating = op in p.MUTATING_OPS
        if mutating and not self._mutate_lock.acquire(timeout=self.mutate_wait_s):
            return p.ErrorReply(code=p.E_BUSY, message=f"another change is still in progress; {op} not done, try again")
        try:
            _calling.peer = peer
            reply = method(request)
            if not isinstance(reply, p.Reply):
                log.error("control: handler.%s returned %r, not a Reply", op, type(reply).__name__)
                return p.ErrorReply(code=p.E_INTERNAL, message=f"trader bug: {op} returned no reply")
        except p.ControlError as err:
            reply = err.to_reply()
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the connection or the server
            log.exception("control: handler.%s failed for %s", op, peer.describe())
            reply = p.ErrorReply(code=p.E_INTERNAL,
                                 message=f"{op} failed inside the trader: {p.one_line(f'{type(exc).__name__}: {exc}')}")
        finally:
            _calling.peer = None
            if mutating:
                self._mutate_lock.release()
        if mutating:
            outcome = reply.message if isinstance(reply, (p.ErrorReply, p.DoneReply)) else _describe(reply)
            log.info("control: %s from %s -> %s", _describe_request(op, request), peer.describe(), p.one_line(outcome))
        else:
            log.debug("control: %s from %s", op, peer.describe())
        return reply

    def _collect_replies(self) -> None:
        while True:
            try:
                conn_id, frame = self._done.get_nowait()
            except queue.Empty:
                return
            conn = self._conns.get(conn_id)
            if conn is None:
                continue  # the client left while its request was being handled
            conn.busy = False
            self._queue_out(conn, frame)

    def _queue_out(self, conn: _Connection, frame: bytes) -> None:
        if not conn.outbuf:
            conn.last_send = time.monotonic()  # the write timeout counts from when output started to wait
        conn.outbuf += frame
        self._flush(conn)

    def _reply_and_close(self, conn: _Connection, reply: p.ErrorReply) -> None:
        self.stats.errors += 1
        conn.inbox.clear()
        conn.close_after_flush = True
        self._queue_out(conn, p.encode(reply))

    def _flush(self, conn: _Connection) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)  # EPIPE / ECONNRESET: the client is gone
                return
            del conn.outbuf[:sent]
            conn.last_send = time.monotonic()
        if not conn.outbuf:
            if conn.close_after_flush:
                self._close(conn)
                return
            self._dispatch(conn)
        if conn.id in self._conns:
            if conn.eof and not conn.busy and not conn.outbuf and not conn.inbox:
                self._close(conn)
                return
            self._update_events(conn)

    def _update_events(self, conn: _Connection) -> None:
        if conn.id not in self._conns:
            return
        events = 0
        if not conn.eof and not conn.close_after_flush:
            events |= selectors.EVENT_READ
        if conn.outbuf:
            events |= selectors.EVENT_WRITE
        if conn.eof and not conn.busy and not conn.outbuf and not conn.inbox:
            self._close(conn)
            return
        self._set_events(conn, events)

    def _set_events(self, conn: _Connection, events: int) -> None:
        if events == conn.events:
            return
        if conn.events == 0:
            self._selector.register(conn.sock, events, conn.id)
        elif events == 0:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn.id)
        conn.events = events

    def _sweep(self, now: float) -> None:
        """Close connections that stopped making progress: they hold a descriptor and a client slot."""
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        for conn in list(self._conns.values()):
            if conn.outbuf and now - conn.last_send > self.write_timeout_s:
                reason = f"not reading its reply for {self.write_timeout_s:g} s"
            elif conn.reader.pending and now - conn.last_recv > self.partial_frame_timeout_s:
                reason = f"a partial frame stalled for {self.partial_frame_timeout_s:g} s"
            elif not conn.busy and not conn.outbuf and now - max(conn.last_recv, conn.last_send) > self.idle_timeout_s:
                reason = f"idle for {self.idle_timeout_s:g} s"
            elif (conn.probation and not conn.busy and not conn.outbuf
                  and now - max(conn.last_recv, conn.last_send) > self.probation_idle_s):
                reason = f"on probation (over the client limit) and silent for {self.probation_idle_s:g} s"
            else:
                continue
            self.stats.closed_bad += 1
            log.info("control: closing %s: %s", conn.peer.describe(), reason)
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        if conn.events:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        conn.events = 0
        try:
            # Read what the client sent and we will not answer: closing a Unix socket with unread data makes
            # the kernel flag ECONNRESET on the peer, and our last reply (a refusal) should arrive as a reply.
            conn.sock.shutdown(socket.SHUT_WR)
            for _ in range(4):
                if not conn.sock.recv(65536):
                    break
        except OSError:
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        if self._selector is not None:
            self._selector.close()

    # -- introspection (tests, the trader's status) --------------------------------------------------------

    @property
    def client_count(self) -> int:
        return len(self._conns)

    @property
    def running(self) -> bool:
        """The I/O thread is alive (the trader can report "control socket down" in its status if not)."""
        return self._thread is not None and self._thread.is_alive()


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        # EACCES, EAGAIN (backlog full = somebody is listening): do not take the path from a live server.
        return True
    finally:
        probe.close()


def _describe_request(op: str, request: p.Request) -> str:
    if isinstance(request, p.SetRequest):
        return "set " + " ".join(f"{k}={'<redacted>' if p.is_secret_key(k) else v}" for k, v in request.settings.items())
    if isinstance(request, p.UnsetRequest):
        return f"unset {request.key}"
    return op


def _describe(reply: p.Reply) -> str:
    if isinstance(reply, p.ChangeReply):
        if not reply.changes:
            return "no change"
        return ", ".join(f"{c.key}: {p.redact(c.key, c.old)} -> {p.redact(c.key, c.new)}" for c in reply.changes)
    return type(reply).__name__
