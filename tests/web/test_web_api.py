"""polymm-web's HTTP API against a real control server (the fake trader handler of tests/support/ctl.py) and a
fake systemctl: the token on every route, the original bot's shapes, a refused config change listing each bad key
with nothing applied, start/stop/restart through systemctl, limits, and no secret in any answer."""
from __future__ import annotations

import json
import time

import pytest

from polymm.web.app import Api
from polymm.web.limits import AuthFailures, RateLimiter
from polymm.web.trader_link import TraderLink
from polymm.web.units import Systemd
from tests.support.ctl import SECRET_API, SECRET_PK, FakeHandler, serve
from tests.support.fake_systemctl import change_state, read_state, write_fake_systemctl
from tests.support.web import TOKEN, InProcessWeb

ROUTES = [("GET", "/mm-bot"), ("GET", "/mm-bot/status"), ("GET", "/mm-bot/config"), ("PUT", "/mm-bot/config"),
          ("POST", "/mm-bot/start"), ("POST", "/mm-bot/stop"), ("POST", "/mm-bot/restart"), ("POST", "/mm-bot/pause"),
          ("POST", "/mm-bot/resume"), ("POST", "/mm-bot/flatten"), ("GET", "/mm-bot/events"), ("GET", "/mm-bot/pnl"),
          ("GET", "/"), ("GET", "/favicon.ico"), ("OPTIONS", "/mm-bot/stop")]


@pytest.fixture
def setup(tmp_path):
    handler = FakeHandler()
    exe, state = write_fake_systemctl(tmp_path / "systemd")
    with serve(tmp_path / "trader.sock", handler):
        # Limits out of the way here (they have their own test): this module sends many bad tokens on purpose.
        web = InProcessWeb(Api(TOKEN, TraderLink(tmp_path / "trader.sock"), Systemd(str(exe)), None,
                               {"127.0.0.1", "localhost"}, rate=RateLimiter(rate=1000, burst=1000),
                               failures=AuthFailures(max_failures=10_000)))
        try:
            yield web, handler, state
        finally:
            web.close()


def test_every_route_refuses_a_missing_or_wrong_token(setup):
    web, handler, state = setup
    for method, path in ROUTES:
        for token in (None, "wrong-" + TOKEN[6:], TOKEN + "x"):
            r = web.request(method, path, token=token, body={"confirm": True} if method != "GET" else None)
            assert r.status == 401, (method, path, token, r.status)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # The token in the query string (where logs and history would keep it) is not a token.
    assert web.get(f"/mm-bot/status?token={TOKEN}", token=None).status == 401
    # Basic auth with the token as password is not accepted either (a browser would replay it cross-site).
    assert web.get("/mm-bot/status", token=None, headers={"Authorization": f"Basic {TOKEN}"}).status == 401
    assert handler.calls == []  # nothing reached the trader
    assert [c for c in read_state(state)["calls"] if c[0] != "show"] == []


def test_the_page_without_a_token_is_only_its_static_code(setup):
    web, _, _ = setup
    locked = web.get("/mm-bot", token=None)
    assert locked.status == 401 and locked.headers["content-type"].startswith("text/html")
    with_token = web.get("/mm-bot")
    assert with_token.status == 200 and with_token.body == locked.body  # the same bytes: no data either way
    csp = with_token.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe" not in csp and "connect-src 'self'" in csp
    assert "set-cookie" not in with_token.headers and with_token.headers["cache-control"] == "no-store"
    assert with_token.headers["x-frame-options"] == "DENY" and with_token.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in with_token.text.replace("http://www.w3.org/2000/svg", "")  # nothing fetched elsewhere


def test_a_foreign_host_name_is_refused(setup):
    web, handler, _ = setup
    r = web.get("/mm-bot/status", headers={"Host": "evil.example:8780"})
    assert r.status == 421 and "loopback host name" in r.json["detail"]
    assert web.get("/mm-bot/status", headers={"Host": "localhost:8780"}).status == 200


def test_status_has_the_original_shape_and_more(setup):
    web, _, _ = setup
    s = web.get("/mm-bot/status").json
    assert s["is_running"] is True
    assert s["main_process"] == {"pid": 4001, "alive": True, "returncode": None}  # the trader's unit
    assert s["trade_process"] == {"pid": 4000, "alive": True, "returncode": None}  # the feed's unit
    assert s["services"]["polymm-trader"]["running"] and s["services"]["polymm-feed"]["running"]
    assert s["mode"] == "live" and s["trader"]["state"] == "running" and s["trader"]["reachable"]
    assert [o["client_id"] for o in s["open_orders"]] == ["c-1", "c-2"]
    assert {(x["strategy"], x["leg"]) for x in s["positions"]} == {("s1", "up"), ("s2", "down")}
    assert s["pnl"]["unrealised"] == pytest.approx(-0.069) and s["warnings"] == []


def test_stop_start_restart_go_through_systemctl(setup):
    web, _, state = setup
    r = web.request("POST", "/mm-bot/stop")
    assert r.status == 200 and r.json["status"] == "stopped" and "stopped" in r.json["message"]
    s = web.get("/mm-bot/status").json
    assert s["is_running"] is False and s["main_process"]["alive"] is False
    assert "polymm-trader.service is inactive" in s["warnings"]
    assert web.request("POST", "/mm-bot/start").json["status"] == "started"
    assert web.request("POST", "/mm-bot/restart?service=trader").json == {
        "status": "restarted", "message": "polymm-trader.service restarted", "units": ["polymm-trader.service"]}
    assert web.request("POST", "/mm-bot/restart", body={"service": "feed"}).json["units"] == ["polymm-feed.service"]
    calls = [c for c in read_state(state)["calls"] if c[0] != "show"]
    assert calls == [["stop", "polymm-trader.service", "polymm-feed.service"],
                     ["start", "polymm-feed.service", "polymm-trader.service"],
                     ["restart", "polymm-trader.service"], ["restart", "polymm-feed.service"]]
    assert web.request("POST", "/mm-bot/stop?service=everything").status == 400


def test_systemd_refusals_are_said_in_words(setup):
    web, _, state = setup
    change_state(state, deny=True)
    r = web.request("POST", "/mm-bot/stop")
    assert r.status == 403 and "polkit" in r.json["detail"] and "50-polymm-web.rules" in r.json["detail"]
    change_state(state, deny=False, no_systemd=True)
    r = web.request("POST", "/mm-bot/start")
    assert r.status == 503 and "systemd is not running" in r.json["detail"]
    s = web.get("/mm-bot/status").json  # the trader still answers: status says what it can
    assert s["systemd"] is False and s["is_running"] is True and s["trader"]["reachable"]
    assert any("systemd is not running" in w for w in s["warnings"])


def test_a_second_action_while_one_runs_is_refused_not_queued(setup):
    import threading

    web, _, state = setup
    change_state(state, delay_s=3)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(web.request("POST", "/mm-bot/restart")))
    worker.start()
    deadline = time.monotonic() + 5
    while not any(c[0] == "restart" for c in read_state(state)["calls"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = web.request("POST", "/mm-bot/stop")
    worker.join(10)
    assert second.status == 409 and "a restart is already running" in second.json["detail"]
    assert first[0].status == 200
    assert [c[0] for c in read_state(state)["calls"] if c[0] != "show"] == ["restart"]


def test_config_is_nested_with_sources_and_no_secret(setup):
    web, _, _ = setup
    c = web.get("/mm-bot/config")
    assert c.status == 200
    body = c.json
    assert body["config"]["s1"]["entry_threshold"] == 0.6
    assert body["config"]["pk"] == "<redacted>" and body["config"]["auth"]["api_secret"] == "<redacted>"
    assert {e["key"]: e["live"] for e in body["entries"]}["endpoints.clob_url"] is False
    assert SECRET_PK not in c.text and SECRET_API not in c.text


def test_put_config_applies_nested_or_dotted_keys(setup):
    web, handler, _ = setup
    r = web.request("PUT", "/mm-bot/config", body={"config": {"s1": {"entry_threshold": 0.62}}})
    assert r.status == 200 and r.json["status"] == "updated"
    assert r.json["changes"] == [{"key": "s1.entry_threshold", "old": 0.6, "new": 0.62}]
    r = web.request("PUT", "/mm-bot/config", body={"risk.max_exposure_usd": 90})  # the bare object works too
    assert r.status == 200 and handler.cfg.values["risk.max_exposure_usd"] == 90.0
    # A whole config read with GET and sent back with one change: only that change is sent (the restart-only
    # keys left as they were do not refuse it).
    whole = web.get("/mm-bot/config").json["config"]
    whole["s1"]["size_usd"] = 5
    r = web.request("PUT", "/mm-bot/config", body={"config": whole})
    assert r.status == 200 and [c["key"] for c in r.json["changes"]] == ["s1.size_usd"]
    assert "endpoints.clob_url" in r.json["unchanged"]


def test_put_config_refusals_list_each_bad_key_and_change_nothing(setup):
    web, handler, _ = setup
    before = dict(handler.cfg.values)
    r = web.request("PUT", "/mm-bot/config", body={"config": {"s1.entry_threshold": "high"}})
    assert r.status == 422 and r.json["errors"][0]["key"] == "s1.entry_threshold" and r.json["detail"]
    r = web.request("PUT", "/mm-bot/config", body={"config": {"endpoints.clob_url": "http://x"}})
    assert r.status == 422 and r.json["errors"][0]["restart_required"] is True
    assert "cannot change while trading" in r.json["detail"]
    assert handler.cfg.values == before


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"config": 3}', '"config" must be an object'),
    (b'{"config": {}}', "nothing to set"),
    (b'{"config": {"s1.entry_threshold": null}}', "null is not a value"),
    (b'{"config": {"s1.entry_threshold": [1]}}', "give a number"),
])
def test_malformed_bodies_are_a_400_in_words(setup, raw, words):
    web, handler, _ = setup
    r = web.request("PUT", "/mm-bot/config", raw=raw)
    assert r.status == 400 and words in r.json["detail"], r.json
    assert "set" not in handler.calls


def test_a_body_over_the_limit_is_refused(setup):
    web, handler, _ = setup
    r = web.request("PUT", "/mm-bot/config", raw=b'{"config": {"s1.entry_threshold": "' + b"9" * 100_000 + b'"}}')
    assert r.status == 413 and "too large" in r.json["detail"]
    assert "set" not in handler.calls


def test_pause_resume_and_flatten_that_must_be_confirmed(setup):
    web, handler, _ = setup
    assert web.request("POST", "/mm-bot/pause").json["message"].startswith("paused")
    assert web.request("POST", "/mm-bot/resume").json["message"] == "resumed"
    r = web.request("POST", "/mm-bot/flatten")
    assert r.status == 400 and "confirm" in r.json["detail"] and "flatten" not in handler.calls
    assert web.request("POST", "/mm-bot/flatten", body={"confirm": "yes"}).status == 400
    assert web.request("POST", "/mm-bot/flatten", body={"confirm": True}).status == 200
    assert handler.calls.count("flatten") == 1


def test_unknown_routes_and_methods(setup):
    web, _, _ = setup
    assert web.get("/mm-bot/nope").status == 404
    r = web.request("DELETE", "/mm-bot/config")
    assert r.status == 405 and "allowed" in r.json["detail"]


def test_the_event_stream_sends_status(setup):
    import http.client

    web, _, _ = setup
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    conn.request("GET", "/mm-bot/events", headers={"Authorization": f"Bearer {TOKEN}"})
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("Content-Type") == "text/event-stream"
    seen = b""
    deadline = time.monotonic() + 10
    while b"event: status" not in seen and time.monotonic() < deadline:
        seen += res.read1(65536)
    conn.close()
    line = next(l for l in seen.split(b"\n") if l.startswith(b"data: "))
    assert json.loads(line[6:])["trader"]["state"] == "running"


def test_rate_limit_and_lockout_after_wrong_tokens(tmp_path):
    exe, _ = write_fake_systemctl(tmp_path / "systemd")
    with serve(tmp_path / "trader.sock", FakeHandler()):
        web = InProcessWeb(Api(TOKEN, TraderLink(tmp_path / "trader.sock"), Systemd(str(exe)), None, None,
                               rate=RateLimiter(rate=0.5, burst=3), failures=AuthFailures(max_failures=3)))
        try:
            codes = [web.get("/mm-bot/pnl").status for _ in range(5)]
            assert codes[:3] == [404, 404, 404] and codes[3:] == [429, 429]  # no ledger configured: 404
            r = web.get("/mm-bot/status")
            assert r.status == 429 and int(r.headers["retry-after"]) >= 1 and "too many requests" in r.json["detail"]
        finally:
            web.close()
        web = InProcessWeb(Api(TOKEN, TraderLink(tmp_path / "trader.sock"), Systemd(str(exe)), None, None,
                               failures=AuthFailures(max_failures=3, lockout_s=60)))
        try:
            assert [web.get("/mm-bot/status", token="guess-" + "y" * 40).status for _ in range(3)] == [401] * 3
            r = web.get("/mm-bot/status")  # even the right token, from a locked-out address
            assert r.status == 429 and "wrong token" in r.json["detail"]
        finally:
            web.close()
