"""`mmctl config` says where each value comes from: the trader's ConfigStore knows the file's keys, the
overrides and the endpoints given by environment or option."""
from __future__ import annotations

from polymm.ctl import protocol as p
from polymm.trader.control.handler import ConfigStore, TraderControlHandler


def sources(handler) -> dict[str, str]:
    return {e.key: e.source for e in handler.config(p.ConfigRequest()).entries}


def test_each_value_is_marked_file_override_env_or_default(tmp_path):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[s1]\nentry_threshold = 0.62\nsl_floor = 0.4\n[risk]\nmax_exposure_usd = 20\n")
    store = ConfigStore(cfg_file, tmp_path / "state" / "overrides.json",
                        base={"endpoints.clob_url": "http://127.0.0.1:9"})
    store.load()
    handler = TraderControlHandler(None, None, store)
    store.set({"s1.sl_floor": "0.45"})  # the override wins over the file
    got = sources(handler)
    assert got["s1.entry_threshold"] == "file" and got["risk.max_exposure_usd"] == "file"
    assert got["s1.sl_floor"] == "override"
    assert got["endpoints.clob_url"] == "env"
    assert got["s1.tp_increment"] == "default" and got["market.window_s"] == "default"
    # After an edit of the file and a reload, the column follows the file.
    cfg_file.write_text("[s1]\ntp_increment = 0.02\n")
    store.reload()
    got = sources(handler)
    assert got["s1.tp_increment"] == "file" and got["s1.entry_threshold"] == "default"
    store.unset("s1.sl_floor")
    assert sources(handler)["s1.sl_floor"] == "default"
