"""One sim serving several series at once (`polymm-sim --series btc-15m,eth-5m,sol-1h`): Gamma answers each
series' slugs with its asset's texts, every series has its own markets and book, the RTDS serves each asset's
prices, and the admin scripts one series' live window without touching the others."""
from __future__ import annotations

import json
import time

import pytest
import websocket

from polymm import series as series_mod
from polymm.sim.gamma import GammaApi, title
from polymm.sim.server import Sim, parse_args
from polymm.sim.testing import run_sim

T = 1_775_376_000  # 2026-04-05 08:00 UTC = 4AM EDT: a whole hour, a multiple of 300 and 900


def _sim(*args: str) -> Sim:
    sim = Sim(parse_args(["--seed", "3", *args]))
    sim.tick(T + 1)
    return sim


def test_gamma_finds_each_series_window_by_its_own_slug_with_the_series_texts():
    sim = _sim("--series", "btc-15m,eth-5m,xrp-1h")
    gamma = GammaApi(sim)
    eth = gamma.lookup(f"eth-updown-5m-{T}", T + 1)[0]
    btc = gamma.lookup(f"btc-updown-15m-{T}", T + 1)[0]
    assert eth.series == "eth-5m" and btc.series == "btc-15m" and eth.condition_id != btc.condition_id
    assert (eth.window_end - eth.window_start, btc.window_end - btc.window_start) == (300, 900)
    assert title(eth) == "Ethereum Up or Down - April 5, 4:00AM-4:05AM ET"
    current, older = series_mod.parse("xrp-1h").slugs(T)
    hourly = gamma.lookup(current, T + 1)[0]
    assert hourly is not None and gamma.lookup(older, T + 1)[0].condition_id == hourly.condition_id
    assert title(hourly) == "XRP Up or Down - April 5, 4AM ET"
    assert gamma.lookup(f"sol-updown-5m-{T}", T + 1) is None  # a series the sim does not serve
    # the default series keeps the condition ids it always had
    assert btc.condition_id == _sim("--series", "btc-15m").calendar.spec_for(T).condition_id


def test_markets_of_one_asset_share_the_price_path_and_each_asset_has_its_own():
    sim = _sim("--series", "btc-15m,btc-5m,eth-5m")
    for step in range(1, 40):
        sim.tick(T + 1 + step * 0.25)
    btc15, btc5, eth5 = (sim.markets[n] for n in ("btc-15m", "btc-5m", "eth-5m"))
    assert btc15.btc_price() == btc5.btc_price() != eth5.btc_price()
    assert 1_000 < eth5.btc_price() < 10_000  # ETH's own level, not BTC's


def test_a_bad_series_list_is_refused_in_words(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--series", "btc-15m,doge-5m"])
    assert "unknown asset 'doge'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_running_sim_serves_books_and_reference_prices_of_every_series(tmp_path):
    with run_sim(tmp_path, seed=4, window_s=30, series="btc-15m,eth-5m") as sim:
        state = sim.admin.state()
        assert set(state["series"]) == {"btc-15m", "eth-5m"}
        btc, eth = sim.admin.live_market("btc-15m"), sim.admin.live_market("eth-5m")
        assert btc["slug"].startswith("btc-updown-15m-") and eth["slug"].startswith("eth-updown-5m-")
        # scripting one series' live window leaves the other's book alone
        scripted = sim.admin.book([[0.40, 10]], [[0.45, 10]], series="eth-5m")
        assert scripted["condition_id"] == eth["condition_id"] and scripted["bids"] == [["0.4", "10"]]
        deadline = time.monotonic() + 10
        while sim.admin.live_market("btc-15m")["up_best_bid"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sim.admin.live_market("btc-15m")["up_best_bid"] not in (None, "0.4")
        # RTDS: an ETH subscription gets ETH's prices only
        ws = websocket.create_connection(sim.urls["ws_rtds_url"], timeout=5)
        try:
            ws.send(json.dumps({"action": "subscribe", "subscriptions": [
                {"topic": "crypto_prices_chainlink", "type": "*", "filters": json.dumps({"symbol": "eth/usd"})},
                {"topic": "crypto_prices", "type": "update", "filters": "ethusdt"}]}))
            got, deadline = [], time.monotonic() + 10
            while len(got) < 4 and time.monotonic() < deadline:
                frame = ws.recv()
                if frame != "PONG":
                    got.append(json.loads(frame))
        finally:
            ws.close()
        assert {m["payload"]["symbol"] for m in got} <= {"eth/usd", "ethusdt"} and len(got) >= 4
