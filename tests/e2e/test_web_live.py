"""polymm-web against a live trader on the sim (real sim, feed and trader processes, the real control socket, the
real `polymm-web` process; systemd through a fake systemctl, the real one in test_systemd_e2e.py): the API route by
route, a refused change that changes nothing, and the page in a real headless Chromium (Debian's, driven by
Playwright): it loads, the status updates live, pause, a key edited in place, a bad value refused in words.
The trader's key and API credentials are in the environment; no answer and no page carries them."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from polymm.ctl import protocol as p
from polymm.ctl.client import request as ctl_request
from tests.support.fake_systemctl import read_state, write_fake_systemctl
from tests.support.live_trader import WINDOW_S, start_stack, wait_for
from tests.support.web import TOKEN, WebProcess

try:
    from playwright.sync_api import expect
except ImportError:  # the browser tests then fail with the reason (the fixture imports it again)
    expect = None

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
API_SECRET = "api-secret-" + "7" * 32
ANSWERS: list[bytes] = []  # every body the web service sent in this module, checked for secrets at the end


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("web"), seed=5)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def web(stack, tmp_path_factory):
    work = tmp_path_factory.mktemp("web-service")
    exe, state = write_fake_systemctl(work / "systemd")
    # The secrets a live host has in the environment: the web service is never given them, but if it ever read
    # and showed its environment they would be there.
    secrets = {"PK": stack.pk, "POLY_API_KEY": "key-" + "5" * 32, "POLY_API_SECRET": API_SECRET,
               "POLY_PASSPHRASE": "pass-" + "3" * 32}
    service = WebProcess(work, stack.socket, ledger=stack.state_dir / "ledger.sqlite", systemctl=exe, env=secrets)
    service.systemctl_state = state
    yield service
    service.close()
    ANSWERS.append(service.log_path.read_bytes())


def call(web, method: str, path: str, **kw):
    reply = web.request(method, path, **kw)
    ANSWERS.append(reply.body)
    return reply


def trader_config(stack, key: str):
    reply = ctl_request(stack.socket, p.ConfigRequest(key=key))
    return reply.entries[0].value


def test_every_route_needs_the_token(web):
    for method, path in [("GET", "/mm-bot"), ("GET", "/mm-bot/status"), ("GET", "/mm-bot/config"),
                         ("PUT", "/mm-bot/config"), ("POST", "/mm-bot/start"), ("POST", "/mm-bot/stop"),
                         ("POST", "/mm-bot/restart"), ("POST", "/mm-bot/pause"), ("GET", "/mm-bot/events"),
                         ("GET", "/mm-bot/pnl")]:
        assert call(web, method, path, token=None, body={}).status == 401, (method, path)
    # A wrong token too (a few: ten within a minute lock the address out for a minute, which test_web_api covers).
    for method, path in [("GET", "/mm-bot/status"), ("POST", "/mm-bot/stop"), ("PUT", "/mm-bot/config")]:
        assert call(web, method, path, token="not-the-" + TOKEN, body={}).status == 401, (method, path)
    assert [c for c in read_state(web.systemctl_state)["calls"] if c[0] != "show"] == []


def test_status_of_the_live_trader(stack, web):
    status = wait_for(lambda: (s := call(web, "GET", "/mm-bot/status").json)["trader"].get("state") == "running" and s,
                      2 * WINDOW_S, what="status running")
    assert status["is_running"] and status["mode"] == "live" and status["main_process"]["alive"]
    assert status["trader"]["pid"] == stack.status().pid and status["window"]["condition_id"]
    assert {b["leg"] for b in status["book"]} == {"up", "down"}
    assert isinstance(status["open_orders"], list) and isinstance(status["positions"], list)
    assert status["pnl"]["unrealised"] is not None


def test_config_shows_effective_values_with_their_source(stack, web):
    body = call(web, "GET", "/mm-bot/config").json
    entries = {e["key"]: e for e in body["entries"]}
    assert entries["s1.entry_threshold"]["value"] == trader_config(stack, "s1.entry_threshold")
    assert entries["s1.entry_threshold"]["source"] == "file" and entries["endpoints.clob_url"]["source"] == "env"
    assert entries["market.window_s"]["live"] is False
    assert body["config"]["s1"]["entry_threshold"] == entries["s1.entry_threshold"]["value"]


def test_a_refused_change_lists_each_bad_key_and_changes_nothing(stack, web):
    before = call(web, "GET", "/mm-bot/config").json
    overrides = stack.state_dir / "overrides.json"
    before_file = overrides.read_text() if overrides.exists() else None
    r = call(web, "PUT", "/mm-bot/config", body={"config": {
        "s1.entry_threshold": 1.5, "s1.entry_treshold": 0.5, "market.window_s": 60, "s1.sl_floor": 0.45}})
    assert r.status == 422, r.json
    errors = {e["key"]: e for e in r.json["errors"]}
    assert set(errors) == {"s1.entry_threshold", "s1.entry_treshold", "market.window_s"}
    assert "s1.entry_threshold must be" in errors["s1.entry_threshold"]["message"]
    assert errors["s1.entry_treshold"]["suggestion"] == "s1.entry_threshold"
    assert errors["market.window_s"]["restart_required"] and "cannot change while the trader runs" in (
        errors["market.window_s"]["message"])
    assert r.json["detail"].startswith("nothing changed, 3 settings refused")
    assert call(web, "GET", "/mm-bot/config").json == before
    assert (overrides.read_text() if overrides.exists() else None) == before_file
    assert call(web, "PUT", "/mm-bot/config", raw=b'{"config": {"s1.entry_threshold": 0.5').status == 400


def test_a_change_is_applied_like_mmctl_set(stack, web):
    r = call(web, "PUT", "/mm-bot/config", body={"config": {"s1": {"tp_increment": 0.02}}})
    assert r.status == 200 and r.json["changes"] == [{"key": "s1.tp_increment", "old": 0.01, "new": 0.02}]
    assert trader_config(stack, "s1.tp_increment") == 0.02
    assert json.loads((stack.state_dir / "overrides.json").read_text())["s1.tp_increment"] == "0.02"
    ctl_request(stack.socket, p.UnsetRequest(key="s1.tp_increment"))


def test_pause_resume_flatten_through_the_api(stack, web):
    assert call(web, "POST", "/mm-bot/pause").json["paused"] is True
    assert stack.status().paused
    assert call(web, "GET", "/mm-bot/status").json["trader"]["state"] == "paused"
    assert call(web, "POST", "/mm-bot/flatten").status == 400 and stack.status().paused  # not confirmed: not done
    assert call(web, "POST", "/mm-bot/resume").json["paused"] is False
    assert not stack.status().paused


def test_start_stop_restart_reach_systemctl(web):
    for verb, word in (("stop", "stopped"), ("start", "started"), ("restart", "restarted")):
        r = call(web, "POST", f"/mm-bot/{verb}")
        assert r.status == 200 and r.json["status"] == word
    assert [c[0] for c in read_state(web.systemctl_state)["calls"] if c[0] != "show"] == ["stop", "start", "restart"]


def test_pnl_comes_from_the_ledger(stack, web):
    wait_for(lambda: call(web, "GET", "/mm-bot/pnl").json["all"]["points"], 3 * WINDOW_S, every_s=1,
             what="a traded window in the ledger")
    pnl = call(web, "GET", "/mm-bot/pnl").json
    assert pnl["problem"] is None and pnl["ledger"].endswith("ledger.sqlite")
    assert pnl["all"]["totals"]["windows"] == len(pnl["all"]["points"])


# ---- the page in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(web, tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no {CHROMIUM}: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1300, "height": 1500})
        tab = browser.new_page()
        tab.set_default_timeout(30_000)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.errors = errors
        yield tab
        browser.close()
    shutil.rmtree(profile, ignore_errors=True)


def test_the_page_loads_with_the_token_from_the_fragment_and_forgets_the_fragment(web, page):
    page.goto(f"{web.url}#token={TOKEN}")
    state_is(page, "running")
    assert page.url == web.url  # the token left the address bar (and the history entry)
    assert page.evaluate("sessionStorage.getItem('polymm-web-token')") == TOKEN
    assert page.evaluate("document.cookie") == ""
    assert page.text_content("#svc-trader") == "trader running"
    page.wait_for_selector("#config tr[data-key='s1.entry_threshold']")
    ANSWERS.append(page.content().encode())


def test_the_status_updates_live_without_a_reload(stack, page):
    state_is(page, "running")
    page.evaluate("window.sameDocument = 42")  # a reload would lose it
    ctl_request(stack.socket, p.PauseRequest(), timeout=15)  # paused behind the page's back, with mmctl's request
    try:
        state_is(page, "paused")
        assert page.is_disabled("#btn-pause") and page.is_enabled("#btn-resume")
    finally:
        ctl_request(stack.socket, p.ResumeRequest(), timeout=15)
    state_is(page, "running")
    assert page.evaluate("window.sameDocument") == 42


def test_pause_and_resume_from_the_page(stack, page):
    page.click("#btn-pause")
    state_is(page, "paused")
    assert stack.status().paused
    assert "paused" in page.text_content("#messages")
    page.click("#btn-resume")
    state_is(page, "running")
    assert not stack.status().paused


def test_flatten_asks_first_and_cancel_does_nothing(stack, page):
    page.click("#btn-flatten")
    assert page.is_visible("#confirm") and "sell every position" in page.text_content("#confirm-text")
    page.click("#confirm-no")
    assert not page.is_visible("#confirm")
    assert not stack.status().paused


def state_is(page, word: str) -> None:
    """The page's state badge says `word` (waits for it; the page runs under its own strict CSP, so the test reads
    the DOM through locators rather than evaluating script in it)."""
    expect(page.locator("#state")).to_have_attribute("data-state", word, timeout=15_000)


def test_stop_asks_first_then_start_from_the_page(web, page):
    page.click("#btn-stop")
    assert page.is_visible("#confirm") and "Stop polymm-trader" in page.text_content("#confirm-text")
    page.click("#confirm-yes")
    expect(page.locator("#messages")).to_contain_text("stopped")
    page.click("#btn-start")
    expect(page.locator("#messages")).to_contain_text("started")
    verbs = [c[0] for c in read_state(web.systemctl_state)["calls"] if c[0] != "show"]
    assert verbs[-2:] == ["stop", "start"]


def edit(page, key: str, value: str) -> None:
    page.click(f"#config tr[data-key='{key}'] td[data-role=value]")
    field = page.locator(f"#config tr[data-key='{key}'] input")
    field.fill(value)
    field.press("Enter")


def test_a_key_edited_in_place_reaches_the_trader(stack, page):
    edit(page, "s1.entry_threshold", "0.57")
    expect(page.locator("#config-message")).to_contain_text("→ 0.57")
    assert trader_config(stack, "s1.entry_threshold") == 0.57
    expect(page.locator("#config tr[data-key='s1.entry_threshold'] td[data-role=value]")).to_have_text("0.57")


def test_a_bad_value_is_refused_in_words_and_nothing_changes(stack, page, tmp_path_factory):
    edit(page, "s1.entry_threshold", "1.5")
    row = "#config tr[data-key='s1.entry_threshold']"
    page.wait_for_selector(f"{row}.refused")
    words = page.text_content(f"{row} td[data-role=error]")
    assert "s1.entry_threshold must be" in words, words
    assert "nothing changed" in page.text_content("#config-message")
    assert trader_config(stack, "s1.entry_threshold") == 0.57
    shot = tmp_path_factory.mktemp("screens") / "refused.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.locator(f"{row} input").press("Escape")
    ctl_request(stack.socket, p.UnsetRequest(key="s1.entry_threshold"), timeout=15)
    assert page.errors == []


def test_no_secret_in_any_answer_or_page(stack):
    text = b"\n".join(ANSWERS).decode(errors="replace").lower()
    assert ANSWERS
    for secret in (stack.pk, API_SECRET, "5" * 32, "3" * 32):
        assert secret.lower().removeprefix("0x") not in text
    assert re.search(r"0x[0-9a-f]{64}", text) is None or stack.pk.lower() not in text
