"""The feed's log level comes from the environment file like the trader's, and a bad one is refused in words."""
from __future__ import annotations

import pytest

from polymm.feed.service import parse_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("POLYMM_LOG_LEVEL", raising=False)
    monkeypatch.delenv("POLYMM_FEED_LOG_LEVEL", raising=False)


def test_default_is_info():
    assert parse_args([]).log_level == "INFO"


def test_the_shared_variable_sets_it(monkeypatch):
    monkeypatch.setenv("POLYMM_LOG_LEVEL", "debug")
    assert parse_args([]).log_level == "DEBUG"


def test_the_feed_variable_wins_over_the_shared_one_and_the_option_over_both(monkeypatch):
    monkeypatch.setenv("POLYMM_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("POLYMM_FEED_LOG_LEVEL", "DEBUG")
    assert parse_args([]).log_level == "DEBUG"
    assert parse_args(["--log-level", "error"]).log_level == "ERROR"


def test_an_empty_variable_is_unset(monkeypatch):
    monkeypatch.setenv("POLYMM_FEED_LOG_LEVEL", "")  # EnvironmentFile= lines like `POLYMM_FEED_LOG_LEVEL=`
    monkeypatch.setenv("POLYMM_LOG_LEVEL", "WARNING")
    assert parse_args([]).log_level == "WARNING"


def test_a_bad_level_from_the_environment_names_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("POLYMM_FEED_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as exc:
        parse_args([])
    assert exc.value.code == 2  # a usage error, like any other bad option
    err = capsys.readouterr().err
    assert "POLYMM_FEED_LOG_LEVEL=LOUD is not a log level" in err and "DEBUG, INFO, WARNING, ERROR" in err


def test_a_bad_level_from_the_option_names_the_option(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--log-level", "verbose"])
    assert "--log-level VERBOSE is not a log level" in capsys.readouterr().err
