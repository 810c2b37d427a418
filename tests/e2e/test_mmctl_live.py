"""Every mmctl command against a live trader on the sim (real sim, feed and trader processes, the real control
socket): reads, every live key set and reaching the decision loop, refusals that change nothing, overrides that
survive a restart, reload with a broken file, the kill switch, flatten, in-process restart, and no secret in
any output."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.ctl import mmctl, mmctl_process
from tests.support.live_trader import WINDOW_S, order_lines, start_stack, wait_for
from polymm.trader import config as config_mod

pytestmark = pytest.mark.slow

OUTPUTS: list[str] = []  # everything any mmctl run printed, checked for secrets at the end


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("mmctl"), seed=5)
    yield stack
    stack.close()


def run(stack, *args: str, process: bool = False):
    """mmctl against the live trader; in-process (CliRunner) by default, the real console script if asked."""
    result = (mmctl_process if process else mmctl)(stack.socket, *args, shm=stack.shm)
    OUTPUTS.append(result.stdout + result.stderr)
    return result


def config_json(stack) -> dict:
    result = run(stack, "config", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def effective(stack, key: str):
    entries = json.loads(run(stack, "config", key, "--json").stdout)["entries"]
    return entries[0]


def test_status_and_the_read_only_commands_answer(stack):
    wait_for(lambda: run(stack, "status").exit_code == 0, timeout_s=2 * WINDOW_S, what="mmctl status healthy")
    table = run(stack, "status", process=True)
    assert table.exit_code == 0 and "running" in table.stdout
    status = json.loads(run(stack, "status", "--json").stdout)
    assert status["trader"]["state"] == "running" and status["feed"]["status"] == "connected"
    for args in (("orders",), ("orders", "--json"), ("positions",), ("positions", "--json"), ("fills",),
                 ("fills", "--json"), ("fills", "--since", str(int(time.time()) - 60)), ("config",),
                 ("config", "s1.entry_threshold"), ("watch", "--count", "2", "--interval", "0.2")):
        result = run(stack, *args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)


def _candidate_values(key: str, current):
    """New values to try for a key, most plausible first (the schema's bounds and cross-field rules pick)."""
    if isinstance(current, bool):
        return [str(not current).lower()]
    if key == "s1.leg_mode":
        return [m for m in ("up_only", "both", "down_only", "highest_bid") if m != current]
    if key == "s1.cap_schedule":
        third = WINDOW_S / 3
        return [f"0-{third:g}:2,{third:g}-{2 * third:g}:3,{2 * third:g}-{WINDOW_S}:4"]
    if isinstance(current, int):
        return [str(current + 1), str(max(current - 1, 0))]
    return [repr(round(current * f + d, 4)) for f, d in ((1, 0.01), (1, -0.01), (1.1, 0), (0.9, 0), (1, 1))]


def _valid_change(cfg, key: str, current):
    for value in _candidate_values(key, current):
        try:
            config_mod.apply_settings(cfg, {key: value})
        except config_mod.ConfigError:
            continue
        return value
    raise AssertionError(f"no valid new value found for {key} (current {current!r})")


def test_set_of_each_live_key_applies_reports_old_to_new_and_is_marked_an_override(stack):
    cfg = config_mod.load_config(stack.config_path)
    for key in sorted(config_mod.live_keys()):
        current = config_mod.get_key(cfg, key)
        value = _valid_change(cfg, key, current)
        result = run(stack, "set", f"{key}={value}", "--json")
        assert result.exit_code == 0, (key, value, result.stdout, result.stderr)
        change = json.loads(result.stdout)["changes"]
        assert [c["key"] for c in change] == [key], (key, change)
        entry = effective(stack, key)
        assert entry["override"] and str(entry["value"]).lower() == str(config_mod.get_key(
            config_mod.apply_settings(cfg, {key: value})[0], key)).lower()
        assert run(stack, "unset", key).exit_code == 0
        assert not effective(stack, key)["override"]
    assert json.loads(stack.config_path.with_name("state").joinpath("overrides.json").read_text()) == {}


def test_set_changes_behaviour_at_the_next_decisions(stack):
    """Representative keys: S1 off cancels its orders; leg_mode up_only trades Up only; a zero exposure cap stops
    every entry."""
    log = stack.workdir / "trader.log"
    wait_for(lambda: stack.status().orders, timeout_s=4 * WINDOW_S, what="a working order")
    assert run(stack, "set", "s1.enabled=false").exit_code == 0
    wait_for(lambda: not stack.status().orders, timeout_s=5, what="S1's orders cancelled")
    off_at = time.time()
    time.sleep(2)
    assert not [o for o in order_lines(log, since=off_at + 0.2) if o.action == "submit"]
    assert run(stack, "unset", "s1.enabled").exit_code == 0

    assert run(stack, "set", "s1.leg_mode=up_only", "s1.entry_threshold=0.05").exit_code == 0
    since = time.time()
    wait_for(lambda: [o for o in order_lines(log, since=since) if o.action == "submit" and o.reason.startswith("entry")],
             timeout_s=2 * WINDOW_S, what="an entry under leg_mode up_only")
    entries = [o for o in order_lines(log, since=since) if o.action == "submit" and o.reason.startswith("entry")]
    assert {o.leg for o in entries} == {"up"}

    assert run(stack, "set", "risk.max_exposure_usd=0").exit_code == 0
    wait_for(lambda: not [o for o in stack.status().orders if o.side == "BUY"], timeout_s=5, what="entries cancelled")
    capped_at = time.time()
    time.sleep(2)
    assert not [o for o in order_lines(log, since=capped_at + 0.2) if o.action == "submit" and o.side == "BUY"]
    for key in ("s1.leg_mode", "s1.entry_threshold", "risk.max_exposure_usd"):
        assert run(stack, "unset", key).exit_code == 0


@pytest.mark.parametrize("assignment, words", [
    ("s1.entry_threshold=1.5", "s1.entry_threshold"),  # out of bounds
    ("s1.entry_threshold=high", "s1.entry_threshold"),  # not a number
    ("s1.entry_treshold=0.5", "s1.entry_threshold"),  # unknown key: the nearest valid one is suggested
    ("s1.late_window_s=500", "s1.late_window_s"),  # cross-field: longer than the 30 s market window
    ("endpoints.clob_url=http://127.0.0.1:9", "endpoints.clob_url"),  # not live
])
def test_a_refused_set_leaves_the_config_unchanged(stack, assignment, words):
    before = config_json(stack)
    overrides = stack.state_dir / "overrides.json"
    before_file = overrides.read_text() if overrides.exists() else None
    result = run(stack, "set", assignment)
    assert result.exit_code != 0
    assert words in result.stdout + result.stderr and "Traceback" not in result.stdout + result.stderr
    assert config_json(stack) == before
    assert (overrides.read_text() if overrides.exists() else None) == before_file


def test_reload_with_a_broken_file_keeps_the_old_config(stack):
    before = config_json(stack)
    original = stack.config_path.read_text()
    try:
        stack.config_path.write_text(original + "\n[risk]\nno_such_key = 1\n")
        result = run(stack, "reload")
        assert result.exit_code != 0 and "old config kept" in result.stdout + result.stderr
        assert config_json(stack) == before
    finally:
        stack.config_path.write_text(original)
    assert run(stack, "reload").exit_code == 0


def test_overrides_survive_a_trader_restart(stack):
    assert run(stack, "set", "s1.tp_increment=0.02").exit_code == 0
    assert stack.stop_trader() == 0
    stack.start_trader()
    entry = effective(stack, "s1.tp_increment")
    assert entry["value"] == 0.02 and entry["override"]
    assert run(stack, "unset", "s1.tp_increment").exit_code == 0


def test_kill_switch_cancel_all_flatten_and_in_process_restart(stack):
    paused = run(stack, "pause")
    assert paused.exit_code == 0 and "paused" in paused.stdout
    wait_for(lambda: stack.open_orders_on_sim() == [], timeout_s=10, what="no open orders while paused")
    status = run(stack, "status")
    # Paused is not healthy, and a health check can tell it from broken: its own exit code.
    assert status.exit_code == 9 and "PAUSED" in status.stdout, status.stdout
    assert run(stack, "resume").exit_code == 0
    assert run(stack, "cancel-all").exit_code == 0
    flattened = run(stack, "flatten", "--yes")
    assert flattened.exit_code == 0 and "flatten" in flattened.stdout
    assert flattened.stdout.count("mmctl resume") == 1, flattened.stdout  # "stays paused" said once
    assert run(stack, "resume").exit_code == 0
    pid = stack.status().pid
    restarted = run(stack, "restart")
    assert restarted.exit_code == 0 and "restarted" in restarted.stdout
    status = stack.status()
    assert status.pid == pid and status.state in ("running", "stale_feed")
    wait_for(lambda: stack.status().last_decision_at > time.time() - 1, timeout_s=10, what="deciding after restart")


def test_no_secret_in_any_output(stack):
    run(stack, "config", "--json")
    run(stack, "status", "--json")
    text = "\n".join(OUTPUTS) + (stack.workdir / "trader.log").read_text()
    assert OUTPUTS and stack.pk not in text and stack.pk[2:] not in text
