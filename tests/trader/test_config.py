"""Config schema: defaults, bounds, cross-field checks, warnings, live keys, TOML files, documentation."""
from __future__ import annotations

import subprocess
import sys
import tomllib

import msgspec
import pytest

from polymm import env
from polymm.trader import config as cfgmod
from polymm.trader.config import (
    CapWindow,
    Config,
    ConfigError,
    apply_settings,
    flatten,
    get_key,
    live_keys,
    load_config,
    markdown_reference,
    suggest_key,
    warnings,
)

# Every key of strategies.md with its documented default.
STRATEGIES_MD_DEFAULTS = {
    "s1.enabled": True,
    "s1.entry_threshold": 0.60,
    "s1.leg_mode": "highest_bid",
    "s1.cap_schedule": "0-300:3,300-600:4,600-900:5",
    "s1.min_order_size": 5,
    "s1.tp_increment": 0.01,
    "s1.max_tp_price": 0.99,
    "s1.sl_offset": 0.20,
    "s1.sl_floor": 0.50,
    "s1.sl_order_price": 0.01,
    "s1.exit_delay_s": 1.0,
    "s1.exit_retry_s": 1.0,
    "s1.exit_drift": 0.02,
    "s1.requote_wait_s": 2.0,
    "s1.requote_min_improve": 0.03,
    "s1.late_window_s": 120,
    "s1.late_hold_threshold": 0.90,
    "s1.late_sl_trigger": 0.70,
    "s1.late_reentry": True,
    "s1.max_late_reentries": 1,
    "s2.enabled": False,
    "s2.window_s": 420,
    "s2.entry_ask_threshold": 0.90,
    "s2.target_usd": 100,
    "s2.order_size": 10,
    "s2.sl_price": 0.70,
    "s2.sl_order_price": 0.01,
    "s2.exit_retry_s": 1.0,
    "risk.max_exposure_usd": 50,
    "risk.stale_feed_ms": 2000,
    "risk.cancel_before_end_s": 5,
    "risk.max_orders_per_min": 120,
    "risk.heartbeat": True,
    "market.window_s": 900,
}


def write(tmp_path, text: str):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_every_strategies_md_key_exists_with_its_default():
    values = flatten(Config())
    for key, default in STRATEGIES_MD_DEFAULTS.items():
        assert values[key] == default, key


def test_endpoints_default_to_polymarket_production():
    c = Config()
    assert (c.endpoints.gamma_url, c.endpoints.clob_url, c.endpoints.ws_market_url, c.endpoints.ws_user_url) == (
        env.PROD_GAMMA_URL, env.PROD_CLOB_URL, env.PROD_WS_MARKET_URL, env.PROD_WS_USER_URL)


def test_live_keys_are_derived_from_the_schema():
    live = live_keys()
    assert set(flatten(Config())) - live == {
        "market.window_s", "endpoints.gamma_url", "endpoints.clob_url", "endpoints.ws_market_url",
        "endpoints.ws_user_url", "risk.heartbeat", "metrics.listen",
        "redeem.enabled", "redeem.delay_s", "redeem.batch", "redeem.merge", "redeem.poll_s", "redeem.rpc_url",
        "mode", "fill_model.latency_ms", "paper.balance_usd",
    }
    # Every strategy key of strategies.md may change live (it says so), except the dead-man switch.
    assert {k for k in STRATEGIES_MD_DEFAULTS if k.startswith(("s1.", "s2."))} <= live


def test_every_non_live_key_says_why():
    for info in cfgmod.schema():
        assert info.meaning, info.key
        if not info.live:
            assert len(info.why_not_live) > 20, info.key


def test_load_without_a_file_gives_defaults():
    assert load_config(None) == Config()


def test_toml_file_overrides_defaults(tmp_path):
    p = write(tmp_path, '[s1]\nentry_threshold = 0.65\ncap_schedule = "0-450:4,450-900:6"\n[risk]\nmax_exposure_usd = 20\n')
    c = load_config(p)
    assert c.s1.entry_threshold == 0.65 and c.risk.max_exposure_usd == 20
    assert c.s1.cap_schedule == (CapWindow(0, 450, 4), CapWindow(450, 900, 6))


def test_cap_schedule_as_a_list_of_tables_in_toml(tmp_path):
    p = write(tmp_path, "[[s1.cap_schedule]]\nstart_s = 0\nend_s = 600\ncap_usd = 3\n"
                        "[[s1.cap_schedule]]\nstart_s = 600\nend_s = 900\ncap_usd = 7.5\n")
    assert get_key(load_config(p), "s1.cap_schedule") == "0-600:3,600-900:7.5"


def test_bad_value_in_file_names_the_key_the_rule_and_the_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[s1]\nentry_threshold = 1.2\n"))
    assert e.value.key == "s1.entry_threshold"
    assert "s1.entry_threshold must be a number between 0 and 1 (got 1.2)" in str(e.value)


def test_wrong_type_in_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, '[risk]\nmax_orders_per_min = "many"\n'))
    assert e.value.key == "risk.max_orders_per_min"
    assert 'must be a whole number from 1 to 100000 (got "many", text in quotes)' in str(e.value)


def test_unknown_key_in_file_is_rejected_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[s1]\nentry_treshold = 0.6\n"))
    assert e.value.key == "s1.entry_treshold"
    assert "did you mean s1.entry_threshold?" in str(e.value)


def test_unknown_section_in_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "[s3]\nenabled = true\n"))
    assert e.value.key == "s3"


def test_toml_syntax_error_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(write(tmp_path, "[s1\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("key,value,words", [
    ("s1.entry_threshold", "0", "s1.entry_threshold must be a number between 0 and 1 (got 0)"),
    ("s1.sl_order_price", "1", "must be a number between 0 and 1 (got 1)"),
    ("s2.sl_price", "-0.1", "must be a number between 0 and 1 (got -0.1)"),
    ("s1.max_tp_price", "0.995", "above 1 - tick"),
    ("s1.cap_schedule", "0-300:3,200-900:4", "overlaps"),
    ("s1.cap_schedule", "0-300:3,400-900:4", "gap"),
    ("s1.cap_schedule", "60-900:3", "gap"),
    ("s1.cap_schedule", "0-600:3", "gap: no cap between 600 s and the window end"),
    ("s1.cap_schedule", "0-300:3;300-900:4", "cannot read cap window"),
    ("s1.cap_schedule", "0-300:-3,300-900:4", "window 1: cap_usd must be a number above 0 and at most 1000000 (got -3)"),
    ("s1.late_window_s", "901", "longer than the market window"),
    ("risk.cancel_before_end_s", "900", "nothing could ever trade"),
    ("s1.leg_mode", "random", "must be one of both, down_only, highest_bid, up_only (got random)"),
    ("s1.enabled", "maybe", "s1.enabled must be true or false (got maybe)"),
    ("risk.max_orders_per_min", "2.5", "risk.max_orders_per_min must be a whole number from 1 to 100000 (got 2.5)"),
])
def test_invalid_settings_are_rejected_with_key_and_reason(key, value, words):
    with pytest.raises(ConfigError) as e:
        apply_settings(Config(), {key: value})
    assert e.value.key == key
    assert words in str(e.value)


def test_settings_parse_text_values_and_validate_the_whole_result():
    new, warns = apply_settings(Config(), {"s1.entry_threshold": "0.62", "s1.enabled": "false", "s2.enabled": "true",
                                          "risk.max_orders_per_min": "60", "s1.cap_schedule": "0-900:10"})
    assert (new.s1.entry_threshold, new.s1.enabled, new.s2.enabled, new.risk.max_orders_per_min) == (0.62, False, True, 60)
    assert new.s1.cap_schedule == (CapWindow(0, 900, 10),)
    assert warns == []


def test_settings_are_all_or_nothing():
    before = Config()
    with pytest.raises(ConfigError):
        apply_settings(before, {"s1.entry_threshold": "0.62", "s1.sl_floor": "2"})
    assert before == Config()


def test_non_live_key_cannot_be_set_live():
    with pytest.raises(ConfigError) as e:
        apply_settings(Config(), {"endpoints.clob_url": "http://127.0.0.1:1"})
    assert e.value.key == "endpoints.clob_url" and "restart" in str(e.value)


def test_unknown_key_cannot_be_set_and_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"did you mean s1\.late_sl_trigger\?"):
        apply_settings(Config(), {"s1.late_sl_triger": "0.6"})


def test_entry_threshold_at_or_below_stop_floor_is_accepted_with_a_warning():
    new, warns = apply_settings(Config(), {"s1.entry_threshold": "0.50"})
    assert new.s1.entry_threshold == 0.50
    assert any("every entry would stop out at once" in w for w in warns)
    assert warnings(new) == warns


def test_other_suspicious_combinations_warn_in_words():
    new, warns = apply_settings(Config(), {"s1.late_hold_threshold": "0.65", "s2.enabled": "true", "s2.order_size": "200"})
    text = " ".join(warns)
    assert "late_sl_trigger" in text and "S2 will rarely or never enter" in text


def test_defaults_have_no_warnings():
    assert warnings(Config()) == []


def test_short_sim_window_needs_a_late_window_that_fits():
    with pytest.raises(ConfigError, match="s1.late_window_s"):
        load_config(None, {"market.window_s": 60, "s1.cap_schedule": "0-60:5"})
    c = load_config(None, {"market.window_s": 60, "s1.cap_schedule": "0-60:5", "s1.late_window_s": 15})
    assert c.market.window_s == 60


def test_overrides_on_top_of_a_file(tmp_path):
    c = load_config(write(tmp_path, "[s1]\nentry_threshold = 0.65\n"), {"s1.entry_threshold": "0.7"})
    assert c.s1.entry_threshold == 0.7


def test_suggest_key_knows_typos_missing_sections_and_the_original_bots_names():
    assert suggest_key("s1.entry_treshold") == "s1.entry_threshold"
    assert suggest_key("entry_threshold") == "s1.entry_threshold"
    assert suggest_key("SL_FLOOR") == "s1.sl_floor"
    assert suggest_key("TARGET_POSITION_USD") == "s2.target_usd"
    assert suggest_key("zzzz") is None


def test_get_key_and_unknown_key():
    assert get_key(Config(), "risk.max_exposure_usd") == 50
    with pytest.raises(ConfigError):
        get_key(Config(), "risk.nope")


def test_markdown_reference_lists_every_key_with_liveness():
    text = markdown_reference()
    for key in flatten(Config()):
        assert f"| `{key}` |" in text
    assert "| `risk.heartbeat` | `true` | bool | no:" in text


def test_example_toml_has_every_key_and_loads_back_to_the_defaults(tmp_path):
    text = cfgmod.example_toml()
    raw = tomllib.loads(text)
    assert sum(len(v) if isinstance(v, dict) else 1 for v in raw.values()) == len(flatten(Config()))
    assert load_config(write(tmp_path, text)) == Config()


def test_command_line_prints_reference_example_and_checks_files(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "polymm.trader.config", *a], capture_output=True, text=True)  # noqa: E731
    r = run("--markdown-reference")
    assert r.returncode == 0 and "| `s1.entry_threshold` |" in r.stdout
    r = run("--example-toml")
    assert r.returncode == 0 and "entry_threshold = 0.6" in r.stdout
    r = run("--check", str(write(tmp_path, "[s1]\nsl_floor = 7\n")))
    assert r.returncode == 1 and "s1.sl_floor" in r.stderr and "Traceback" not in r.stderr


def test_config_round_trips_through_msgspec():
    c = load_config(None, {"s1.cap_schedule": "0-100:1,100-900:2"})
    assert msgspec.convert(msgspec.to_builtins(c), Config) == c


def test_mode_is_a_top_level_key_read_from_the_file_and_never_changed_live(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('mode = "paper"\n\n[paper]\nbalance_usd = 250\n')
    cfg = load_config(path)
    assert (cfg.mode, cfg.paper.balance_usd, flatten(cfg)["mode"]) == ("paper", 250.0, "paper")
    assert Config().mode == "live"
    with pytest.raises(ConfigError, match="needs a restart"):
        apply_settings(cfg, {"mode": "live"})
    with pytest.raises(ConfigError, match="one of live | paper"):
        load_config(None, {"mode": "papr"})


def test_metrics_listen_is_checked_in_words():
    assert load_config(None, {"metrics.listen": "off"}).metrics.listen == "off"
    assert load_config(None, {"metrics.listen": "[::1]:9000"}).metrics.listen == "[::1]:9000"
    for bad, words in (("9892", "metrics.listen must be HOST:PORT (e.g. 127.0.0.1:9892, [::1]:9892) or off (got 9892)"),
                       ("h:99999", "metrics.listen: 'h:99999': port 99999 is not in 0-65535")):
        with pytest.raises(ConfigError) as err:
            load_config(None, {"metrics.listen": bad})
        assert err.value.key == "metrics.listen" and words in str(err.value)
