"""Finding each window's market through Gamma (feed/discovery.py)."""
from __future__ import annotations

import copy
import json
import random

import pytest
from tests.support.recorded import load_fixture

from polymm.feed import discovery as disc

REAL = "nautilus-rust/test_data/gamma_market.json"  # a real btc-updown-5m market (2026-03)
T = 1773307200


def real_market() -> dict:
    return load_fixture(REAL)


def test_real_gamma_market_gives_tokens_by_outcome_name_and_the_window():
    info = disc.parse_market(real_market(), T, 300)
    assert info.up_token.startswith("1042398980") and info.down_token.startswith("7118396081")
    assert (info.window_start, info.window_end) == (T, T + 300)
    assert (info.tick_size, info.min_order_size) == (0.01, 5.0)
    assert info.condition_id == real_market()["conditionId"]


def test_tokens_follow_outcome_names_not_positions():
    doc = real_market()
    doc["outcomes"] = json.dumps(["Down", "Up"])
    info = disc.parse_market(doc, T, 300)
    assert info.up_token.startswith("7118396081") and info.down_token.startswith("1042398980")


def test_fee_rate_comes_from_the_fee_schedule_and_its_absence_is_a_warning():
    doc = real_market()
    assert disc.parse_market(doc, T, 300).warnings  # the 2026-03 sample predates feeSchedule
    doc["feeSchedule"] = {"exponent": 1, "rate": 0.07, "takerOnly": True, "rebateRate": 0.2}
    info = disc.parse_market(doc, T, 300)
    assert info.fee_rate == 0.07 and not info.warnings and info.fee_schedule["rebateRate"] == 0.2
    doc.pop("feeSchedule")
    doc["feesEnabled"] = False
    assert disc.parse_market(doc, T, 300).fee_rate == 0.0


def test_event_with_nested_market_is_accepted():
    event = {"slug": "btc-updown-15m-1", "markets": [real_market()]}
    assert disc.parse_market(event, T, 300).window_start == T


def test_window_that_disagrees_with_the_slug_is_refused():
    with pytest.raises(disc.DiscoveryError, match="not the window start"):
        disc.parse_market(real_market(), T + 300, 300)


def test_other_window_length_is_a_warning_not_a_failure():
    info = disc.parse_market(real_market(), T, 900)
    assert any("300s long" in w for w in info.warnings)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(outcomes=json.dumps(["Yes", "No"])), "expected Up and Down"),
        (lambda d: d.update(clobTokenIds="[1"), "clobTokenIds is not valid JSON"),
        (lambda d: d.update(clobTokenIds=json.dumps(["1"])), "2 outcomes but 1 clobTokenIds"),
        (lambda d: d.pop("orderPriceMinTickSize"), "orderPriceMinTickSize is None"),
        (lambda d: d.update(orderMinSize=0), "orderMinSize is 0"),
        (lambda d: d.pop("endDate"), "endDate missing"),
        (lambda d: d.update(conditionId=None), "conditionId is None"),
    ],
)
def test_broken_gamma_fields_give_errors_naming_the_field(mutate, message):
    doc = copy.deepcopy(real_market())
    mutate(doc)
    with pytest.raises(disc.DiscoveryError, match=message):
        disc.parse_market(doc, T, 300)


def test_slug_and_window_from_the_clock():
    assert disc.window_start_for(1_800_000_123.4, 900) == 1_800_000_000  # a multiple of 900
    assert disc.window_start_for(1_800_000_899.9, 900) == 1_800_000_000
    assert disc.window_start_for(1_800_000_900.0, 900) == 1_800_000_900
    assert disc.window_start_for(1_800_000_021.0, 20) == 1_800_000_020
    assert disc.slug_for(1_800_000_000) == "btc-updown-15m-1800000000"


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_discoverer_retries_with_backoff_while_gamma_does_not_know_the_market_and_says_so():
    clock = FakeClock()
    calls = []
    info = disc.parse_market(real_market(), T, 300)

    def fetch(window_start):
        calls.append(clock.t)
        if len(calls) < 4:
            raise disc.NotListedYet(f"Gamma does not know {disc.slug_for(window_start)} yet")
        return info

    d = disc.Discoverer(fetch, clock=clock, backoff_initial_s=1.0, backoff_max_s=3.0, rng=random.Random(1))
    d.want(T)
    assert d.describe(T) == "looking up"
    d.poll_once()
    assert d.get(T) is None
    assert "does not know btc-updown-15m-1773307200 yet; retry 2 in" in d.describe(T)
    d.poll_once()  # not due yet: no new call
    assert len(calls) == 1
    for _ in range(20):
        clock.t += 0.5
        d.poll_once()
    assert d.get(T) == info and d.describe(T) == "found"
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) == 4 and gaps[0] < gaps[1] and all(g <= 3.0 * 1.25 + 0.5 for g in gaps)


def test_discoverer_forgets_old_windows():
    d = disc.Discoverer(lambda t: (_ for _ in ()).throw(disc.NotListedYet("no")), clock=FakeClock())
    d.want(100)
    d.want(200)
    d.forget_before(200)
    assert d.describe(100) == "not requested" and d.describe(200) == "looking up"


def test_discoverer_retries_at_the_window_start_and_then_often_once_the_window_has_begun():
    clock = FakeClock(T - 2.0)
    calls = []

    def fetch(window_start):
        calls.append(clock.t)
        raise disc.NotListedYet("not yet")

    d = disc.Discoverer(fetch, clock=clock, backoff_initial_s=8.0, backoff_max_s=8.0, urgent_max_s=1.0,
                        rng=random.Random(2))
    d.want(T)
    d.poll_once()
    while clock.t < T + 6:
        clock.t += 0.01
        d.poll_once()
    assert calls[1] - T < 0.1  # the second try is right at the window start, not 8 s later
    assert all(b - a <= 1.25 + 0.02 for a, b in zip(calls[1:], calls[2:]))  # then at least every ~1 s


def test_the_events_stated_price_to_beat_is_read_when_present():
    from tests.support.feed import gamma_event

    from polymm.feed.discovery import parse_market

    t = 1_800_000_000
    event = gamma_event(t, 900, "1" * 70, "2" * 70)
    assert parse_market(event, t, 900).price_to_beat is None
    event["eventMetadata"] = {"priceToBeat": 97050.5}
    assert parse_market(event, t, 900).price_to_beat == 97050.5
    event["eventMetadata"] = {"priceToBeat": "n/a"}
    assert parse_market(event, t, 900).price_to_beat is None


class _Gamma(disc.GammaClient):
    """GammaClient with the HTTP part replaced: answers from a dict slug -> event list."""

    def __init__(self, series, listed: dict) -> None:
        super().__init__("http://gamma.invalid", series)
        self.listed, self.asked = listed, []

    def _get(self, path: str):
        slug = path.split("slug=", 1)[1]
        self.asked.append(slug)
        return self.listed.get(slug, [])


def test_an_hourly_window_is_found_under_its_older_name_when_the_current_one_is_not_listed():
    from polymm import series

    eth = series.parse("eth-1h")
    start = 1_773_388_800  # 2026-03-13 08:00 UTC = 4AM EDT
    current, older = eth.slugs(start)
    doc = copy.deepcopy(real_market())
    doc.update(eventStartTime="2026-03-13T08:00:00Z", endDate="2026-03-13T09:00:00Z", slug=older)
    gamma = _Gamma(eth, {older: [{"slug": older, "markets": [doc]}]})
    info = gamma.fetch(start)
    assert gamma.asked == [current, older] and info.slug == older and info.window_end - info.window_start == 3600
    with pytest.raises(disc.NotListedYet, match="ethereum-up-or-down-march-13-2026-5am-et or ethereum-up-or-down-march-13-5am-et"):
        gamma.fetch(start + 3600)


def test_a_minute_series_asks_for_its_own_updown_slug():
    from polymm import series

    gamma = _Gamma(series.parse("sol-5m"), {})
    with pytest.raises(disc.NotListedYet):
        gamma.fetch(1_800_000_000)
    assert gamma.asked == ["sol-updown-5m-1800000000"]
