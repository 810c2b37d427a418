"""The L2 calls' HTTP client: HTTP/1.1 keep-alive, one connection per calling thread, on the standard library.

Why not httpx (which the rest of the gateway uses for cold calls): a bare POST costs ~350 us of Python CPU in httpx
against ~100 us in http.client, and a whole place + cancel (signing included) less than half the CPU through this
client (bench/bench_roundtrip.py prints both: 0.32-0.47x). The order workers run beside the decision loop under
one GIL, so every one of those microseconds is a microsecond a tick can wait (issue 26: the slow decisions' waits
were the workers' and the user channel's CPU right after a trade). The exchange is happy with HTTP/1.1
keep-alive; each worker thread keeps its own connection, so nothing is shared between threads and no lock is held
across a request.

What it keeps from httpx, on purpose:
- A connection the server closed while idle is never reused (httpcore checks the same way before reuse): the
  socket is readable while nothing was asked, so it is closed and a fresh one opened. Nor is one idle longer than
  `KEEPALIVE_EXPIRY_S`: a NAT or firewall may have dropped it without a word, and an order sent into it would wait
  for the whole timeout (httpx's own expiry is 5 s). Nothing is retried: a POST whose answer never came is an
  unknown outcome, for the caller to resolve (exchange_state.py).
- TLS verification with the system's trust store (ssl.create_default_context), a connect timeout and a per-call
  read timeout.
- The response's status, headers (case-insensitive) and body, as `Response` (the part of httpx.Response the
  gateway reads).

Errors are `TransportTimeout` / `TransportError`, in words, never with a request's headers (they carry the
API key's HMAC).
"""
from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import urllib.parse
import urllib.request
from email.message import Message
import time
from typing import Any, Mapping

# A connection idle this long is closed rather than reused. Cloud NATs forget idle flows after ~5 minutes, proxies
# sooner; an order worker idles between orders, and a reconnect costs one TLS handshake.
KEEPALIVE_EXPIRY_S = 30.0


class TransportError(Exception):
    """The request failed below HTTP (connect, TLS, reset, a malformed answer): no response was read.
    `cause`: what failed, in words (the exception's type and message)."""

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(f"{what}: {cause}")
        self.cause = cause


class TransportTimeout(TransportError):
    """No connection or no answer in time: for a POST, the exchange may or may not have it."""


class Response:
    """What the gateway reads of an answer (the same names as httpx.Response)."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Message | Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (as httpx)."""
        return json.loads(self.content)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, ALL_PROXY... minus NO_PROXY), else None. httpx
    honours those variables and http.client does not: where one applies, the gateway stays on httpx."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _closed_by_peer(sock) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or holds bytes nobody asked
    for): either way it must not carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class KeepAliveClient:
    """`request()` from any thread; each thread has its own connection to `base_url`'s origin."""

    def __init__(self, base_url: str, *, timeout_s: float, connect_timeout_s: float,
                 headers: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if self._https else None
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_expiry_s = keepalive_expiry_s
        self._headers = dict(headers or {})
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self.connections_made = 0  # for tests and the bench: how often a connection was opened

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.connect_timeout_s,
                                               context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout_s)
        with self._lock:
            self._open.add(conn)
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
        elif conn.sock is not None and (time.monotonic() - self._local.used > self.keepalive_expiry_s
                                        or _closed_by_peer(conn.sock)):
            conn.close()
        if conn.sock is None:
            conn.connect()  # under the connect timeout (TCP and, for https, the TLS handshake); TCP_NODELAY set
            with self._lock:
                self.connections_made += 1
        return conn

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                params: Mapping[str, Any] | None = None, content: bytes | None = None,
                timeout: float | None = None) -> Response:
        """One request to `url` (which must be under this client's origin); the answer whatever its status."""
        if not url.startswith(self.origin + "/"):
            raise ValueError(f"{url!r} is not under {self.origin}")
        target = url[len(self.origin):]
        if params:
            target += ("&" if "?" in target else "?") + urllib.parse.urlencode(params)
        merged = {**self._headers, **(headers or {})}
        conn = None
        try:
            conn = self._connection()
            conn.sock.settimeout(self.timeout_s if timeout is None else timeout)
            conn.request(method, target, body=content, headers=merged)
            answer = conn.getresponse()
            body = answer.read()
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise TransportTimeout(f"{method} {target.split('?')[0]}", "no answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()  # whatever state it is in, the next request starts on a fresh connection
            raise TransportError(f"{method} {target.split('?')[0]}", f"{type(exc).__name__}: {exc}") from None
        if answer.will_close:
            conn.close()
        self._local.used = time.monotonic()
        return Response(answer.status, answer.headers, body)

    def close(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            conn.close()
