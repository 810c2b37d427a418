"""Every config key, given a value of the wrong type and one out of bounds, is refused in the operator's words:
the message names the key, the rule (derived from the schema) and the value. Walks the schema, so a new key is
covered without touching this file."""
from __future__ import annotations

import msgspec
import pytest

from polymm.trader import config as cfgmod

it = msgspec.inspect


def _field_type(key: str):
    top = it.type_info(cfgmod.Config).fields
    if "." not in key:  # a top-level key (`mode`)
        t = next(f.type for f in top if f.name == key)
        return t.type if isinstance(t, it.Metadata) else t
    section, name = key.split(".", 1)
    section_type = next(f.type for f in top if f.name == section)
    t = next(f.type for f in section_type.fields if f.name == name)
    return t.type if isinstance(t, it.Metadata) else t


def wrong_type(key: str) -> tuple[str, str]:
    """(text as typed in `mmctl set`, what the message shows) of a value of the wrong type for `key`."""
    t = _field_type(key)
    if isinstance(t, it.IntType):
        return "2.5", "2.5"
    if isinstance(t, it.FloatType):
        return "lots", "lots"
    if isinstance(t, it.BoolType):
        return "maybe", "maybe"
    if isinstance(t, it.LiteralType):
        return "sideways", "sideways"
    if isinstance(t, it.StrType):
        return "ftp://example.com", "ftp://example.com"
    return "0-300", "0-300"  # cap schedule


def out_of_bounds(key: str) -> str | None:
    t = _field_type(key)
    if not isinstance(t, (it.IntType, it.FloatType)):
        return None
    if t.lt is not None:
        return cfgmod._fmt(t.lt)
    if t.le is not None:
        return cfgmod._fmt(t.le + 1)
    if t.gt is not None:
        return cfgmod._fmt(t.gt)
    return cfgmod._fmt(t.ge - 1)


KEYS = cfgmod.all_keys()
BOUNDED = [k for k in KEYS if out_of_bounds(k) is not None]


def refuse(key: str, text: str) -> cfgmod.ConfigError:
    """As `mmctl set` sees it (text values); keys that are not live through the loader's overrides, which
    validate the same way."""
    with pytest.raises(cfgmod.ConfigError) as e:
        if key in cfgmod.live_keys():
            cfgmod.apply_settings(cfgmod.Config(), {key: text})
        else:
            cfgmod.load_config(None, {key: text})
    return e.value


@pytest.mark.parametrize("key", KEYS)
def test_a_value_of_the_wrong_type_names_the_key_the_rule_and_the_value(key):
    text, shown = wrong_type(key)
    err = refuse(key, text)
    message = str(err)
    assert err.key == key and message.startswith(key), message
    assert "Expected" not in message and "$." not in message, message  # not msgspec's words
    if key == "s1.cap_schedule":
        assert "cannot read cap window '0-300'" in message and "start-end:usd" in message
        return
    rule = cfgmod.rule_of(key)
    assert rule and f"{key} must be {rule} (got {shown})" == message, message


@pytest.mark.parametrize("key", BOUNDED)
def test_a_value_out_of_bounds_names_the_key_the_rule_and_the_value(key):
    value = out_of_bounds(key)
    message = str(refuse(key, value))
    assert message == f"{key} must be {cfgmod.rule_of(key)} (got {value})", message


@pytest.mark.parametrize("key", BOUNDED)
def test_the_same_words_for_a_value_in_the_config_file(tmp_path, key):
    section, name = key.split(".", 1)
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{name} = {out_of_bounds(key)}\n")
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(path)
    assert str(e.value) == f"{path}: {key} must be {cfgmod.rule_of(key)} (got {out_of_bounds(key)})"


def test_text_in_quotes_where_a_number_belongs_says_to_drop_the_quotes(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[s1]\nentry_threshold = "0.6"\n')
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(path)
    assert 's1.entry_threshold must be a number between 0 and 1 (got "0.6", text in quotes: write it without ' \
           'the quotes)' in str(e.value)


def test_a_section_that_is_not_a_table_is_said_so(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("s1 = 3\n")
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(path)
    assert "s1 must be a table of settings ([s1] in TOML) (got 3)" in str(e.value)


def test_a_window_of_a_cap_schedule_table_names_the_window_and_its_field(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[[s1.cap_schedule]]\nstart_s = 0\nend_s = 900\ncap_usd = 0\n")
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(path)
    assert "s1.cap_schedule: window 1: cap_usd must be a number above 0 and at most 1000000 (got 0)" in str(e.value)


def test_the_issues_examples():
    assert str(refuse("risk.max_orders_per_min", "2.5")) == \
        "risk.max_orders_per_min must be a whole number from 1 to 100000 (got 2.5)"
    assert str(refuse("s1.entry_threshold", "1.5")) == "s1.entry_threshold must be a number between 0 and 1 (got 1.5)"


def test_keys_in_file_lists_what_the_file_sets(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[s1]\nentry_threshold = 0.7\n[[s1.cap_schedule]]\nstart_s = 0\nend_s = 900\ncap_usd = 3\n'
                    '[risk]\nmax_exposure_usd = 20\n')
    assert cfgmod.keys_in_file(path) == {"s1.entry_threshold", "s1.cap_schedule", "risk.max_exposure_usd"}
    assert cfgmod.keys_in_file(None) == frozenset() and cfgmod.keys_in_file(tmp_path / "nope") == frozenset()
