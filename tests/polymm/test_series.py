"""The series catalogue (polymm/series.py): names, errors in words, slugs as Polymarket writes them."""
from datetime import datetime, timezone

import pytest

from polymm import series
from polymm.series import SeriesError


def test_default_is_btc_15m_first_in_the_catalogue():
    s = series.default()
    assert (s.name, s.window_s, s.index, s.is_default) == ("btc-15m", 900, 0, True)
    assert series.ALL_NAMES[0] == "btc-15m" and len(series.ALL_NAMES) == 12 == len(set(series.ALL_NAMES))


@pytest.mark.parametrize("text,window_s", [("eth-5m", 300), ("SOL-1h", 3600), (" xrp-15m ", 900), ("btc-5m", 300)])
def test_parse_gives_the_window_length(text, window_s):
    s = series.parse(text)
    assert s.window_s == window_s == s.nominal_s and not s.compressed


@pytest.mark.parametrize("text,words", [
    ("doge-5m", "unknown asset 'doge' (known: btc, eth, sol, xrp)"),
    ("eth-10m", "unknown window '10m' (known: 5m, 15m, 1h)"),
    ("etc-5m", "did you mean eth-5m?"),
    ("btc15m", "is not a series: write ASSET-WINDOW"),
    ("", "no series given"),
    ("btc-1hr", "did you mean btc-1h?"),
])
def test_bad_names_are_errors_in_words(text, words):
    with pytest.raises(SeriesError) as err:
        series.parse(text)
    assert words in str(err.value)


def test_parse_list_refuses_duplicates_and_keeps_order():
    assert [s.name for s in series.parse_list("eth-5m, btc-15m sol-1h")] == ["eth-5m", "btc-15m", "sol-1h"]
    with pytest.raises(SeriesError, match="listed twice"):
        series.parse_list("eth-5m,ETH-5m")


def test_minute_series_slugs_are_the_updown_form_recorded_in_production():
    # Slugs seen on Polymarket (docs/venue.md): btc-updown-15m-1767960000, eth-updown-5m-1766972400
    assert series.parse("btc-15m").slugs(1767960000) == ("btc-updown-15m-1767960000",)
    assert series.parse("eth-5m").slug(1766972400) == "eth-updown-5m-1766972400"
    s = series.parse("sol-5m")
    assert s.window_of_slug("sol-updown-5m-1766972400") == 1766972400
    assert s.window_of_slug("sol-updown-5m-1766972401") is None  # not a window start
    assert s.window_of_slug("btc-updown-5m-1766972400") is None  # another series


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("name,utc,slugs", [
    # April 5 2026 4AM EDT = 08:00 UTC (ethereum-up-or-down-april-5-2026-4am-et on Polymarket)
    ("eth-1h", "2026-04-05T08:00:00", ("ethereum-up-or-down-april-5-2026-4am-et", "ethereum-up-or-down-april-5-4am-et")),
    # January 20 2026 5PM EST = 22:00 UTC (the older form: bitcoin-up-or-down-january-20-5pm-et)
    ("btc-1h", "2026-01-20T22:00:00", ("bitcoin-up-or-down-january-20-2026-5pm-et", "bitcoin-up-or-down-january-20-5pm-et")),
    # midnight and noon are 12am / 12pm
    ("xrp-1h", "2026-04-06T04:00:00", ("xrp-up-or-down-april-6-2026-12am-et", "xrp-up-or-down-april-6-12am-et")),
    ("sol-1h", "2026-03-21T16:00:00", ("solana-up-or-down-march-21-2026-12pm-et", "solana-up-or-down-march-21-12pm-et")),
])
def test_hourly_slugs_are_named_by_the_eastern_hour(name, utc, slugs):
    s = series.parse(name)
    start = _ts(utc)
    assert s.slugs(start) == slugs
    assert s.window_of_slug(slugs[0]) == start
    assert s.window_of_slug(slugs[1], near=start + 86_400) == start
    other = "eth-1h" if name != "eth-1h" else "btc-1h"
    assert series.parse(other).window_of_slug(slugs[0]) is None  # another asset's hour


def test_hourly_slug_follows_daylight_saving_time():
    s = series.parse("btc-1h")
    # 2026-03-08: clocks go forward at 2AM EST. 06:00 UTC is 1AM EST, 07:00 UTC is 3AM EDT (there is no 2AM).
    assert s.slug(_ts("2026-03-08T06:00:00")) == "bitcoin-up-or-down-march-8-2026-1am-et"
    assert s.slug(_ts("2026-03-08T07:00:00")) == "bitcoin-up-or-down-march-8-2026-3am-et"


def test_compressed_windows_use_the_updown_form_for_every_series():
    s = series.parse("eth-1h", window_s=60)
    assert s.compressed and s.window_s == 60 and s.nominal_s == 3600
    assert s.slug(120) == "eth-updown-1h-120" and s.window_of_slug("eth-updown-1h-120") == 120
    assert series.parse("btc-15m", window_s=60).slug(60) == "btc-updown-15m-60"  # what the sim always served


def test_reference_symbols_and_resolution_source_follow_the_asset_and_window():
    eth5 = series.parse("eth-5m")
    assert (eth5.asset.chainlink, eth5.asset.binance, eth5.resolution_source) == ("eth/usd", "ethusdt", "chainlink")
    assert series.parse("xrp-1h").resolution_source == "binance"
    assert series.parse("sol-15m").title == "Solana Up or Down - 15 minute"
