"""The L2 calls' keep-alive client, against real local servers (plain and TLS): connection reuse per thread, a
connection the server closed never reused, timeouts and failures as typed errors in words, proxies left to httpx."""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from polymm.trader.execution.exchange_state import NetworkError
from polymm.trader.venue.gateway import ApiCredentials, Gateway
from polymm.trader.venue.http_keepalive import (KeepAliveClient, TransportError, TransportTimeout,
                                                proxy_for)


class Server:
    """A threaded HTTP/1.1 server on a free port that records requests and the connections they came on."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict] = []
        self.connections = 0
        self.close_after: set[str] = set()  # paths answered with Connection: close
        self.drop_after: set[str] = set()  # paths after whose answer the server closes without saying so
        self.slow: set[str] = set()  # paths never answered in time
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                outer.connections += 1
                super().setup()

            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": self.command, "path": self.path, "body": body,
                                       "headers": dict(self.headers), "conn": id(self.connection)})
                if self.path.split("?")[0] in outer.slow:
                    time.sleep(1.0)
                payload = json.dumps({"path": self.path}).encode()
                self.send_response(429 if self.path.startswith("/busy") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if self.path.startswith("/busy"):
                    self.send_header("Retry-After", "7")
                if self.path.split("?")[0] in outer.close_after:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)
                if self.path.split("?")[0] in outer.drop_after:
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up (the timeout test): quiet
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def client_of(url: str, **kw) -> KeepAliveClient:
    return KeepAliveClient(url, timeout_s=kw.pop("timeout_s", 2.0), connect_timeout_s=1.0,
                           headers={"User-Agent": "polymm", "Content-Type": "application/json"}, **kw)


def test_requests_of_one_thread_share_one_connection_and_arrive_whole(server):
    c = client_of(f"http://127.0.0.1:{server.port}")
    try:
        a = c.request("POST", f"{c.origin}/order", headers={"POLY_API_KEY": "k"}, content=b'{"x":1}')
        b = c.request("GET", f"{c.origin}/data/orders", params={"market": "0xc", "next_cursor": "MA=="})
        d = c.request("DELETE", f"{c.origin}/order", content=b'{"orderID":"0x1"}')
    finally:
        c.close()
    assert [r.status_code for r in (a, b, d)] == [200, 200, 200]
    assert a.json() == {"path": "/order"} and b.json() == {"path": "/data/orders?market=0xc&next_cursor=MA%3D%3D"}
    assert server.connections == 1 and c.connections_made == 1
    assert len({r["conn"] for r in server.requests}) == 1
    first = server.requests[0]
    assert (first["method"], first["body"]) == ("POST", b'{"x":1}')
    assert first["headers"]["POLY_API_KEY"] == "k" and first["headers"]["User-Agent"] == "polymm"
    assert server.requests[2]["body"] == b'{"orderID":"0x1"}'


def test_each_thread_has_its_own_connection(server):
    c = client_of(f"http://127.0.0.1:{server.port}")
    try:
        def work():
            for _ in range(3):
                assert c.request("GET", f"{c.origin}/ok").status_code == 200

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        c.close()
    assert len(server.requests) == 6 and server.connections == 2


def test_a_connection_the_server_closed_is_never_reused(server):
    server.close_after.add("/bye")
    server.drop_after.add("/idle")
    c = client_of(f"http://127.0.0.1:{server.port}")
    try:
        assert c.request("GET", f"{c.origin}/bye").status_code == 200  # said Connection: close
        assert c.request("GET", f"{c.origin}/idle").status_code == 200  # a new connection, which looks reusable
        # ... but the server drops it right after the answer (its idle timeout, in production): the next request
        # must go out on a fresh connection, not be written into the closed one (and fail as an unknown outcome).
        time.sleep(0.1)
        assert c.request("POST", f"{c.origin}/order", content=b"{}").status_code == 200
    finally:
        c.close()
    assert c.connections_made == 3 and server.connections == 3


def test_a_connection_idle_longer_than_the_expiry_is_not_reused(server):
    # A NAT may drop an idle flow without a FIN: nothing to read, yet a request sent into it would wait its timeout.
    c = client_of(f"http://127.0.0.1:{server.port}", keepalive_expiry_s=0.05)
    try:
        c.request("GET", f"{c.origin}/ok")
        c.request("GET", f"{c.origin}/ok")  # at once: the same connection
        time.sleep(0.1)
        c.request("GET", f"{c.origin}/ok")
    finally:
        c.close()
    assert c.connections_made == 2 and server.connections == 2


def test_the_answer_keeps_status_and_headers(server):
    c = client_of(f"http://127.0.0.1:{server.port}")
    try:
        r = c.request("GET", f"{c.origin}/busy")
    finally:
        c.close()
    assert r.status_code == 429 and r.headers.get("retry-after") == "7" and r.text == '{"path": "/busy"}'


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_not_reused(server):
    server.slow.add("/slow")
    c = client_of(f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(TransportTimeout, match="no answer in time"):
            c.request("POST", f"{c.origin}/slow", content=b"{}", timeout=0.2)
        assert c.request("GET", f"{c.origin}/ok").status_code == 200  # on a fresh connection
    finally:
        c.close()
    assert c.connections_made == 2


def test_nobody_listening_is_a_transport_error_in_words():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nobody listens once closed
    c = client_of(f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError, match="ConnectionRefusedError"):
        c.request("GET", f"{c.origin}/ok")
    c.close()


def test_a_url_outside_the_origin_or_not_http_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        KeepAliveClient("ftp://x", timeout_s=1, connect_timeout_s=1)
    c = client_of("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="is not under"):
        c.request("GET", "http://elsewhere:9/ok")


def test_tls_is_verified_against_the_trust_store_given():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = Server(tls=server_ctx)
    try:
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        c = client_of(f"https://127.0.0.1:{server.port}", ssl_context=trusted)
        try:
            assert c.request("POST", f"{c.origin}/order", content=b"{}").json() == {"path": "/order"}
            assert c.request("GET", f"{c.origin}/ok").status_code == 200
        finally:
            c.close()
        assert c.connections_made == 1
        # Not signed by a CA we trust (the default store here): refused, in words, nothing sent.
        before = len(server.requests)
        stranger = client_of(f"https://127.0.0.1:{server.port}")
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            stranger.request("POST", f"{stranger.origin}/order", content=b"{}")
        stranger.close()
        assert len(server.requests) == before
    finally:
        server.close()


def test_a_proxy_in_the_environment_keeps_the_gateway_on_httpx(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                 "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://clob.polymarket.com") is None
    gw = Gateway("https://clob.polymarket.com", "0x" + "5a" * 32)
    assert isinstance(gw._l2, KeepAliveClient)  # noqa: SLF001
    gw.close()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert proxy_for("https://clob.polymarket.com") == "http://proxy.internal:3128"
    gw = Gateway("https://clob.polymarket.com", "0x" + "5a" * 32)
    assert gw._l2 is gw._http  # noqa: SLF001
    gw.close()
    monkeypatch.setenv("NO_PROXY", "clob.polymarket.com")
    assert proxy_for("https://clob.polymarket.com") is None


def test_the_gateway_sends_l2_calls_on_one_kept_connection_and_maps_failures(server):
    gw = Gateway(f"http://127.0.0.1:{server.port}", "0x" + "5a" * 32,
                 creds=ApiCredentials("key-1", "c2VjcmV0", "pass"))
    try:
        assert gw.heartbeat("") == ""
        gw.cancel_order("0xabc")
        assert gw.closed_only() is False
        assert server.connections == 1
        assert [r["path"] for r in server.requests] == ["/v1/heartbeats", "/order", "/auth/ban-status/closed-only"]
        assert server.requests[1]["body"] == b'{"orderID":"0xabc"}'
        assert server.requests[1]["headers"]["POLY_API_KEY"] == "key-1"
        server.slow.add("/order")
        with pytest.raises(NetworkError, match=r"DELETE /order timed out"):
            gw._request("DELETE", "/order", {"orderID": "0x1"}, timeout_s=0.2)  # noqa: SLF001
    finally:
        gw.close()
    with pytest.raises(NetworkError, match=r"GET /auth/ban-status/closed-only failed: ConnectionRefusedError"):
        Gateway("http://127.0.0.1:9", "0x" + "5a" * 32, creds=ApiCredentials("k", "c2VjcmV0", "p")).closed_only()
