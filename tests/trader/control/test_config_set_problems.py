"""A refused `set` names every refused key, each in words, and changes nothing (mmctl set and PUT /mm-bot/config
share this one path): unknown keys with the nearest valid one, restart-only keys saying so, bad values with
what they must be. One bad key keeps the words it always had."""
from __future__ import annotations

import pytest

from polymm.ctl import protocol as p
from polymm.trader.control.handler import ConfigStore


@pytest.fixture
def store(tmp_path):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[s1]\nentry_threshold = 0.62\n")
    store = ConfigStore(cfg_file, tmp_path / "state" / "overrides.json")
    store.load()
    return store


def refused(store, settings: dict[str, str]) -> p.ControlError:
    before = store.current
    with pytest.raises(p.ControlError) as info:
        store.set(settings)
    assert store.current is before and not store.overrides_path.exists()  # nothing applied, nothing persisted
    return info.value


def test_every_refused_key_is_listed_with_its_reason(store):
    err = refused(store, {"s1.entry_threshold": "1.5", "s1.entry_treshold": "0.5", "mode": "paper",
                          "s1.sl_floor": "0.4", "s1.tp_increment": "lots"})
    by_key = {q.key: q for q in err.problems}
    assert set(by_key) == {"s1.entry_threshold", "s1.entry_treshold", "mode", "s1.tp_increment"}  # sl_floor is fine
    assert by_key["s1.entry_threshold"].code == p.E_INVALID and "s1.entry_threshold must be" in by_key["s1.entry_threshold"].message
    assert by_key["s1.entry_treshold"].code == p.E_UNKNOWN_KEY
    assert by_key["s1.entry_treshold"].suggestion == "s1.entry_threshold"
    assert by_key["mode"].code == p.E_NOT_LIVE and "cannot change while the trader runs" in by_key["mode"].message
    assert by_key["s1.tp_increment"].code == p.E_INVALID
    assert err.message.startswith("nothing changed, 4 settings refused: ")
    for q in err.problems:
        assert q.message in err.message
    # over the wire: the reply carries them all
    reply = p.decode_reply(p.encode(err.to_reply())[4:])
    assert [q.key for q in reply.problems] == [q.key for q in err.problems]


def test_one_refused_key_keeps_its_words(store):
    assert refused(store, {"s1.entry_threshold": "high"}).message.startswith("nothing changed: s1.entry_threshold")
    unknown = refused(store, {"s1.entry_treshold": "0.5"})
    assert unknown.code == p.E_UNKNOWN_KEY and unknown.message == (
        "unknown config key 's1.entry_treshold'; did you mean s1.entry_threshold?")
    assert refused(store, {"market.window_s": "60"}).code == p.E_NOT_LIVE


def test_a_combination_valid_together_is_applied(store):
    old, new, _ = store.set({"s1.entry_threshold": "0.58", "s1.sl_floor": "0.45"})
    assert new.s1.entry_threshold == 0.58 and new.s1.sl_floor == 0.45
