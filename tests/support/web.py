"""Helpers for polymm-web's tests: the server in-process on a free loopback port (its own event loop on a thread),
plain HTTP requests against it, and the real `polymm-web` process for the end-to-end tests."""
from __future__ import annotations

import asyncio
import http.client as httpclient
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from polymm.web.app import Api, create_app

TOKEN = "t0k3n-" + "x" * 40


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(port: int, method: str, path: str, *, token: str | None = TOKEN, body=None, raw: bytes | None = None,
         headers: dict | None = None, timeout: float = 60.0, host: str = "127.0.0.1") -> Reply:
    conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs.setdefault("Authorization", f"Bearer {token}")
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        return Reply(res.status, {k.lower(): v for k, v in res.getheaders()}, res.read())
    finally:
        conn.close()


class InProcessWeb:
    """create_app(api) served on 127.0.0.1:<free port> from a thread; `close()` stops it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="web-test")
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the web server did not start")

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(create_app(self.api), access_log=None, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def get(self, path: str, **kw) -> Reply:
        return call(self.port, "GET", path, **kw)

    def request(self, method: str, path: str, **kw) -> Reply:
        return call(self.port, method, path, **kw)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class WebProcess:
    """The real `polymm-web` console script, listening on a free loopback port."""

    def __init__(self, workdir: Path, socket_path: Path, *, ledger: Path | None = None, systemctl: Path | None = None,
                 token: str = TOKEN, extra: tuple = (), env: dict | None = None) -> None:
        from tests.support.metrics import free_port

        workdir.mkdir(parents=True, exist_ok=True)
        self.token_file = workdir / "web.token"
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)
        self.port = free_port()
        self.log_path = workdir / "web.log"
        args = [str(Path(sys.executable).with_name("polymm-web")), "--listen", f"127.0.0.1:{self.port}",
                "--token-file", str(self.token_file), "--socket", str(socket_path), *extra]
        if ledger is not None:
            args += ["--ledger", str(ledger)]
        if systemctl is not None:
            args += ["--systemctl", str(systemctl)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"polymm-web exited {self.proc.returncode}: {self.log_path.read_text()}")
            if "serving http://" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"polymm-web did not start: {self.log_path.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mm-bot"

    def request(self, method: str, path: str, **kw) -> Reply:
        return call(self.port, method, path, **kw)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
