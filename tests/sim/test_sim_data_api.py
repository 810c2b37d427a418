"""The sim's Data API positions: the recorded production shape, and the flags the redeemer acts on."""
from __future__ import annotations

import pytest
import requests

from polymm.sim.testing import run_sim, shape_diff
from tests.support.recorded import load_fixture
from tests.support.redeem import Wallet

RECORDED = "nautilus-rust/test_data/data_api_positions_response.json"


@pytest.fixture
def sim(tmp_path):
    with run_sim(tmp_path, seed=18, window_s=600, extra_args=["--redeem", "manual"]) as s:
        yield s


def positions(sim, user: str, **query) -> list[dict]:
    answer = requests.get(sim.urls["data_url"] + "/positions", params={"user": user, **query})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_rows_have_the_recorded_shape_and_flags_follow_the_market(sim):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    wallet.buy(m["down_token"], 0.5)
    recorded = load_fixture(RECORDED)
    rows = positions(sim, wallet.address)
    assert len(rows) == 1  # sizeThreshold defaults to 1 share: the 0.5 is hidden
    assert shape_diff(rows[0], recorded[0]) == []
    rows = {r["outcome"]: r for r in positions(sim, wallet.address, sizeThreshold=0)}
    assert rows["Up"]["size"] == 5.0 and rows["Down"]["size"] == 0.5
    assert rows["Up"]["mergeable"] and not rows["Up"]["redeemable"] and rows["Up"]["negativeRisk"] is False
    assert rows["Up"]["conditionId"] == m["condition_id"] and rows["Up"]["oppositeAsset"] == m["down_token"]
    sim.admin.resolve_now(m["condition_id"], "Down")
    rows = {r["outcome"]: r for r in positions(sim, wallet.address, sizeThreshold=0, redeemable="true")}
    assert rows["Up"]["redeemable"] and rows["Up"]["curPrice"] == 0 and rows["Down"]["curPrice"] == 1
    assert not rows["Up"]["mergeable"]


def test_bad_queries_get_400_in_words(sim):
    assert requests.get(sim.urls["data_url"] + "/positions").status_code == 400
    answer = requests.get(sim.urls["data_url"] + "/positions", params={"user": "0x" + "11" * 20, "limit": 501})
    assert answer.status_code == 400 and "limit" in answer.json()["error"]
