"""The trader through its control socket: the same client, framing and timeouts as mmctl (ctl/client.py; ctl owns
the protocol), run on a worker thread so the web server's event loop never blocks on the socket.

Every failure becomes a `TraderError` carrying the HTTP status it maps to, mmctl's one line of words, the
protocol's error code and, for a refused `set`, every refused key.
"""
from __future__ import annotations

import asyncio
import os

from polymm.ctl import protocol as p
from polymm.ctl.client import (DEFAULT_TIMEOUT_S, ControlClient, CtlError, PermissionDenied, ProtocolMismatch,
                               RemoteError, RequestTimeout, TraderNotRunning, timeout_for)

# The trader's refusal codes -> HTTP. A config value the schema refuses is well-formed JSON with bad content: 422;
# a request the trader cannot serve now: 503.
_STATUS = {
    p.E_UNKNOWN_KEY: 422, p.E_NOT_LIVE: 422, p.E_INVALID: 422, p.E_BAD_REQUEST: 400, p.E_UNAVAILABLE: 503,
    p.E_BUSY: 503, p.E_FORBIDDEN: 502, p.E_VERSION: 502, p.E_BAD_FRAME: 502, p.E_UNKNOWN_OP: 502,
    p.E_TOO_LARGE: 502, p.E_INTERNAL: 500,
}


class TraderError(Exception):
    def __init__(self, message: str, status: int, code: str, problems: list[p.KeyProblem] | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        # Every refused key; a trader that lists none (an older one) named at most one key: that one.
        self.problems = list(problems or []) or (
            [p.KeyProblem(key=key, code=code, message=message)] if key else [])


def _translate(err: CtlError) -> TraderError:
    if isinstance(err, RemoteError):
        line = err.reply.message
        if err.suggestion and err.suggestion not in line:
            line += f" (did you mean {err.suggestion}?)"
        return TraderError(line, _STATUS.get(err.code, 502), err.code, err.reply.problems, key=err.key)
    if isinstance(err, TraderNotRunning):
        return TraderError(str(err), 503, "not_running")
    if isinstance(err, PermissionDenied):
        return TraderError(f"{err} (the web service's user must be in the trader's group)", 502, "forbidden")
    if isinstance(err, RequestTimeout):
        return TraderError(str(err), 504, "timeout")
    if isinstance(err, ProtocolMismatch):
        return TraderError(str(err), 502, "version")
    return TraderError(str(err), 502, "connection")


class TraderLink:
    def __init__(self, socket_path: str | os.PathLike, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def _ask_blocking(self, request: p.Request) -> p.Reply:
        with ControlClient(self.socket_path, timeout_for(request, self.timeout_s)) as client:
            return client.request(request)

    async def ask(self, request: p.Request) -> p.Reply:
        """One request, one reply; TraderError for any failure or refusal."""
        try:
            return await asyncio.to_thread(self._ask_blocking, request)
        except CtlError as err:
            raise _translate(err) from None

    async def status(self) -> p.StatusReply:
        return await self.ask(p.StatusRequest())

    async def config(self) -> p.ConfigReply:
        return await self.ask(p.ConfigRequest())

    async def set(self, settings: dict[str, str]) -> p.ChangeReply:
        return await self.ask(p.SetRequest(settings=settings))

    async def action(self, op: str) -> p.DoneReply:
        request = {"pause": p.PauseRequest, "resume": p.ResumeRequest, "flatten": p.FlattenRequest,
                   "cancel_all": p.CancelAllRequest}[op]()
        return await self.ask(request)
