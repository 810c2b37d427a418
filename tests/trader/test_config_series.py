"""Per-series config (trader/config/series.py): the base sections stretched to a series' window, its own
`[series.<name>.<section>]` table taken literally, every mistake named in words."""
from __future__ import annotations

import pytest

from polymm import series as series_mod
from polymm.trader.config import ConfigError, format_cap_schedule, load_config
from polymm.trader.config.load import series_sources


def _file(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _load(tmp_path, text: str, name: str, overrides=None):
    return load_config(_file(tmp_path, text), overrides, series=series_mod.parse(name))


def test_the_base_is_stretched_to_a_5_minute_and_an_hourly_window(tmp_path):
    eth = _load(tmp_path, "", "eth-5m")
    assert eth.market.window_s == 300
    assert format_cap_schedule(eth.s1.cap_schedule) == "0-100:3,100-200:4,200-300:5"
    assert (eth.s1.late_window_s, eth.s2.window_s) == (40, 140)
    # reaction times are the exchange's and the book's, not the window's
    assert (eth.s1.requote_wait_s, eth.s1.exit_delay_s, eth.risk.cancel_before_end_s) == (2.0, 1.0, 5.0)
    sol = _load(tmp_path, "", "sol-1h")
    assert format_cap_schedule(sol.s1.cap_schedule) == "0-1200:3,1200-2400:4,2400-3600:5"
    assert (sol.market.window_s, sol.s1.late_window_s, sol.s2.window_s) == (3600, 480, 1680)


def test_the_default_series_is_exactly_the_file_as_before(tmp_path):
    text = '[market]\nwindow_s = 60\n[s1]\ncap_schedule = "0-20:4,20-40:5,40-60:6"\nlate_window_s = 8\n'
    path = _file(tmp_path, text)
    assert load_config(path, series=series_mod.default()) == load_config(path)
    # a base written for 60 s windows is stretched from 60 s for another series
    assert format_cap_schedule(_load(tmp_path, text, "eth-5m").s1.cap_schedule) == "0-100:4,100-200:5,200-300:6"


def test_a_series_table_is_taken_literally_and_inherits_the_rest(tmp_path):
    text = """
[s1]
entry_threshold = 0.62
[risk]
max_exposure_usd = 40
[series.eth-5m.s1]
cap_schedule = "0-150:2,150-300:3"
late_window_s = 30
[series.eth-5m.risk]
max_exposure_usd = 10
"""
    eth = _load(tmp_path, text, "eth-5m")
    assert format_cap_schedule(eth.s1.cap_schedule) == "0-150:2,150-300:3" and eth.s1.late_window_s == 30
    assert (eth.s1.entry_threshold, eth.risk.max_exposure_usd, eth.s2.window_s) == (0.62, 10, 140)
    btc = _load(tmp_path, text, "btc-15m")
    assert btc.risk.max_exposure_usd == 40 and btc.s1.late_window_s == 120
    own, stretched = series_sources(_file(tmp_path, text), series_mod.parse("eth-5m"))
    assert own == {"s1.cap_schedule", "s1.late_window_s", "risk.max_exposure_usd"} and stretched == {"s2.window_s"}


def test_overrides_win_and_a_compressed_window_stretches_from_the_base(tmp_path):
    eth = _load(tmp_path, "", "eth-5m", overrides={"market.window_s": "30", "s1.late_window_s": "3"})
    assert eth.market.window_s == 30 and eth.s1.late_window_s == 3
    assert format_cap_schedule(eth.s1.cap_schedule) == "0-10:3,10-20:4,20-30:5"


@pytest.mark.parametrize("text,key,words", [
    ("[series.etc-5m.s1]\nentry_threshold = 0.6\n", "series.etc-5m", "did you mean eth-5m?"),
    ("[series.eth-5m.wallet]\nmax_exposure_usd = 5\n", "series.eth-5m.wallet", "set them in [wallet]"),
    ("[series.eth-5m.market]\nwindow_s = 60\n", "series.eth-5m.market", "the window length is the series' own"),
    ("[series.eth-5m.s1]\nentry_treshold = 0.6\n", "series.eth-5m.s1.entry_treshold", "did you mean s1.entry_threshold?"),
    ("[series.eth-5m.s1]\nentry_threshold = 1.5\n", "series.eth-5m.s1.entry_threshold", "between 0 and 1 (got 1.5)"),
    ("[series.eth-5m.s1]\nentry_threshold = \"0.6\"\n", "series.eth-5m.s1.entry_threshold", "without the quotes"),
    ("[series.eth-5m.s1]\ncap_schedule = \"0-100:3\"\n", "series.eth-5m.s1.cap_schedule", "window end at 300 s"),
    ("[series]\neth-5m = 3\n", "series.eth-5m", "must hold sections"),
])
def test_every_series_table_mistake_is_named(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text, "btc-15m")  # any series reading the file finds it
    assert err.value.key == key and words in str(err.value), str(err.value)


def test_each_series_trader_gets_its_own_metrics_port_on_the_base_host(tmp_path):
    assert _load(tmp_path, "", "eth-5m").metrics.listen == "127.0.0.1:9907"
    text = '[metrics]\nlisten = "0.0.0.0:9892"\n[series.sol-1h.metrics]\nlisten = "127.0.0.1:7001"\n'
    assert _load(tmp_path, text, "eth-5m").metrics.listen == "0.0.0.0:9907"
    assert _load(tmp_path, text, "sol-1h").metrics.listen == "127.0.0.1:7001"
    assert _load(tmp_path, text, "btc-15m").metrics.listen == "0.0.0.0:9892"
    assert _load(tmp_path, '[metrics]\nlisten = "off"\n', "xrp-5m").metrics.listen == "off"


def test_wallet_limits_are_in_their_own_section_with_defaults_off(tmp_path):
    cfg = _load(tmp_path, "[wallet]\nmax_exposure_usd = 200\nmax_daily_loss_usd = 50\n", "eth-5m")
    assert (cfg.wallet.max_exposure_usd, cfg.wallet.max_daily_loss_usd) == (200, 50)
    default = load_config(None)
    assert (default.wallet.max_exposure_usd, default.wallet.max_daily_loss_usd, default.risk.max_daily_loss_usd) == (0, 0, 0)
