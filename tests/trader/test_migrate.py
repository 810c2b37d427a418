"""polymm-migrate: the original bot's config.json -> config.toml + a 0600 env file, never echoing a secret."""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from polymm.trader import config as cfgmod
from polymm.trader import migrate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy" / "config.json"
LEGACY = json.loads(FIXTURE.read_text())
SECRETS = {
    "PK": LEGACY["PRIVATE_KEY"],
    "BROWSER_ADDRESS": LEGACY["PROXY_ADDRESS"],
    "SIGNATURE_TYPE": "2",
    "POLY_API_KEY": LEGACY["CLOB_API"]["API_KEY"],
    "POLY_API_SECRET": LEGACY["CLOB_API"]["API_SECRET"],
    "POLY_PASSPHRASE": LEGACY["CLOB_API"]["API_PASSPHRASE"],
}
NEVER_SHOWN = [v for k, v in SECRETS.items() if k != "SIGNATURE_TYPE"] + [LEGACY["TELEGRAM_BOT_TOKEN"]]


def run_cli(tmp_path: Path, *args: str, source: Path = FIXTURE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polymm.trader.migrate", str(source), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def env_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in NEVER_SHOWN:
            assert secret not in text
            assert secret[2:] not in text if secret.startswith("0x") else True


def test_a_realistic_config_json_migrates_every_recognised_value_and_moves_the_secrets(tmp_path):
    run = run_cli(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    toml, envf = tmp_path / "config.toml", tmp_path / "polymm.env"
    # The TOML is what the trader loads, and holds every recognised value of both strategies.
    cfg = cfgmod.load_config(toml)
    assert cfg.s1.entry_threshold == 0.62 and cfg.s1.leg_mode == "highest_bid"
    assert cfgmod.get_key(cfg, "s1.cap_schedule") == "0-300:3,300-600:4.5,600-900:6"
    assert cfg.s1.tp_increment == 0.02 and cfg.s1.max_tp_price == 0.98 and cfg.s1.sl_offset == 0.15
    assert cfg.s1.exit_delay_s == 1.5 and cfg.s1.requote_min_improve == 0.03  # "0.03" as a string is a number
    assert cfg.s2.enabled is True and cfg.s2.entry_ask_threshold == 0.92 and cfg.s2.target_usd == 40
    assert cfg.s2.order_size == 10 and cfg.s1.min_order_size == 5  # MIN_TRADE_SIZE per strategy
    text = toml.read_text()
    # A comment for each key it could not map, with the reason: unknown names, a bad value, a foreign credential.
    assert "#   POLL_INTERVAL_MS: not a setting polymm knows" in text
    assert "#   STRATEGY_1.USE_KELLY_SIZING: not a setting polymm knows" in text
    bad = next(line for line in text.splitlines() if "STRATEGY_1.LATE_SL_TRIGGER" in line)
    assert bad.startswith("#") and "s1.late_sl_trigger must be a number between 0 and 1 (got 1.7)" in bad
    assert cfg.s1.late_sl_trigger == cfgmod.S1Params().late_sl_trigger  # the bad value is not half-applied
    assert "#   TELEGRAM_BOT_TOKEN: looks like a credential" in text
    # Secrets: only in the env file, created 0600, exactly as given.
    assert env_values(envf) == SECRETS
    assert stat.S_IMODE(envf.stat().st_mode) == 0o600
    assert_no_secret(text, run.stdout, run.stderr)
    assert "PK, BROWSER_ADDRESS, SIGNATURE_TYPE, POLY_API_KEY, POLY_API_SECRET, POLY_PASSPHRASE (values not shown)" in run.stdout


def test_output_files_are_never_overwritten_without_force_and_force_keeps_the_env_file_0600(tmp_path):
    (tmp_path / "config.toml").write_text("# mine\n")
    run = run_cli(tmp_path)
    assert run.returncode == 2 and "config.toml exists" in run.stderr and "--force" in run.stderr
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
    envf = tmp_path / "other.env"
    envf.write_text("old\n")
    envf.chmod(0o644)
    run = run_cli(tmp_path, "--force", "--env-out", str(envf))
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(envf.stat().st_mode) == 0o600 and env_values(envf) == SECRETS


@pytest.mark.parametrize("content, fragment", [
    (b"{not json", "not JSON (line 1"),
    (b"[1, 2]", "not a JSON object of settings"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_an_unreadable_file_is_one_line_and_writes_nothing(tmp_path, content, fragment):
    source = tmp_path / "config.json"
    source.write_bytes(content)
    run = run_cli(tmp_path, source=source)
    assert run.returncode == 2 and fragment in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "config.toml").exists() and not (tmp_path / "polymm.env").exists()


def test_a_missing_file_is_named(tmp_path):
    run = run_cli(tmp_path, source=tmp_path / "nope.json")
    assert run.returncode == 2 and "nope.json: no such file" in run.stderr


def test_a_flat_file_maps_unique_names_and_explains_shared_ones():
    m = migrate.migrate({"ENTRY_BID_THRESHOLD": 0.65, "ASK_ENTRY_THRESHOLD": 0.95, "ENABLED": True,
                         "MIN_TRADE_SIZE": 6})
    assert {v.key: v.value for v in m.values} == {"s1.entry_threshold": 0.65, "s2.entry_ask_threshold": 0.95}
    shared = [line for line in m.skipped if line.startswith(("ENABLED", "MIN_TRADE_SIZE"))]
    assert len(shared) == 2 and all("both strategies have" in line and "S1 / S2" in line for line in shared)


def test_a_name_of_the_other_strategy_is_explained():
    m = migrate.migrate({"S2": {"ENTRY_BID_THRESHOLD": 0.7}})
    assert m.values == [] and "s1.entry_threshold has this name, s2 has no such setting" in m.skipped[0]


@pytest.mark.parametrize("schedule", [
    "0-300:3,300-600:4,600-900:5",
    [[0, 300, 3], [300, 600, 4], [600, 900, 5]],
    [{"start": 0, "end": 300, "cap": 3}, {"start": 300, "end": 600, "cap": 4}, {"start": 600, "end": 900, "cap": 5}],
    {"0-300": 3, "300-600": 4, "600-900": 5},
])
def test_cap_schedule_in_every_shape_we_know(schedule):
    m = migrate.migrate({"STRATEGY_1": {"CAP_SCHEDULE": schedule}})
    assert [(v.key, v.value) for v in m.values] == [("s1.cap_schedule", "0-300:3,300-600:4,600-900:5")]
    assert m.problems == []


@pytest.mark.parametrize("schedule, why", [
    (42, "is not a cap schedule"),
    ([[0, 300]], "neither [start, end, cap] nor an object"),
    ("0-300", "cannot read cap window"),
    ([{"start": 0, "cap": 3}], "needs a start, an end and a cap"),
])
def test_a_cap_schedule_of_unknown_shape_is_a_comment_with_the_reason(schedule, why):
    m = migrate.migrate({"STRATEGY_1": {"CAP_SCHEDULE": schedule}})
    assert m.values == [] and why in m.skipped[0] and "CAP_SCHEDULE" in m.skipped[0]


def test_values_that_are_valid_alone_but_not_together_are_written_and_said(tmp_path):
    source = tmp_path / "config.json"
    source.write_text(json.dumps({"S1": {"CAP_SCHEDULE": "0-300:3,300-600:4"}}))  # stops short of 900 s
    run = run_cli(tmp_path, source=source)
    assert run.returncode == 1
    assert "error: s1.cap_schedule" in run.stdout and "does not validate yet" in run.stdout
    assert "THIS FILE DOES NOT VALIDATE YET" in (tmp_path / "config.toml").read_text()
    assert not (tmp_path / "polymm.env").exists()  # no secrets in that file: nothing to write


def test_a_secret_that_is_not_a_string_is_not_shown_and_not_written():
    m = migrate.migrate({"PRIVATE_KEY": ["0xdead"], "API_KEY": ""})
    assert m.secrets == {}
    assert any("PRIVATE_KEY: not a string (value not shown)" in line for line in m.skipped)
    assert all("dead" not in line for line in m.skipped)


def test_every_legacy_name_of_the_schema_is_recognised_in_its_section():
    """Derived from the schema: a new legacy name needs no change here."""
    for info in cfgmod.schema():
        if not info.legacy:
            continue
        section = info.key.split(".", 1)[0]
        default = info.default
        m = migrate.migrate({section.upper(): {info.legacy: default}})
        assert [v.key for v in m.values] == [info.key], (info.key, m.skipped)
