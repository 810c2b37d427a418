"""A scripted market (sim/script.py), the one way to tell the sim what a window does: `--script FILE` for every
window, `POST /_sim/book` (SyntheticMarket.script_book) for one window, now. Fair steps move the synthetic ladder,
book steps rest exactly their levels; a scripted window gets no random takers."""
from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from polymm.sim import script
from polymm.sim.engine import LastTrade
from polymm.sim.server import load_script

from tests.sim.test_sim_market import T0, make_sim, run

W = 60  # window length in these tests


def top(engine, token):
    bids, asks = engine.book(token)
    return (bids[0][0] if bids else None), (asks[0][0] if asks else None)


def test_the_short_form_and_the_steps_form_are_one_script():
    short = script.parse({"fair": [[3, 0.62], [0, 0.5]]})
    steps = script.parse({"steps": [{"at": 0, "fair": 0.5}, {"at": 3, "fair": 0.62}]})
    assert short == steps and [s.at_s for s in short.steps] == [0, 3]
    assert short.fair_at(0) == 0.5 and short.fair_at(2.9) == 0.5 and short.fair_at(3) == 0.62 and short.fair_at(99) == 0.62
    assert short.book_at(99) is None
    mixed = script.parse({"fair": [[0, 0.5]], "steps": [{"at": 5, "bids": [[0.4, 10]], "asks": [["0.6", 10]]}]})
    index, step = mixed.book_at(5)
    assert step.bids == ((D("0.4"), D("10")),) and step.asks == ((D("0.6"), D("10")),) and mixed.book_at(4.9) is None
    assert script.parse({"steps": [{"at": 1, "bids": [[0.4, 10]]}]}).fair_at(5) is None  # the BTC walk decides


@pytest.mark.parametrize("data, words", [
    ([1, 2], 'expected {"steps"'),
    ({"fair": []}, "at least one step"),
    ({"fair": [[0, 1.2]]}, "between 0 and 1"),
    ({"fair": [[-1, 0.5]]}, ">= 0 seconds"),
    ({"steps": [{"fair": 0.5}]}, '{"at": seconds'),
    ({"steps": [{"at": 0}]}, 'sets "fair" or "bids"/"asks"'),
    ({"steps": [{"at": 0, "bids": [[0.6, 10]], "asks": [[0.6, 5]]}]}, "below the scripted asks"),
    ({"steps": [{"at": 0, "bids": [[0.6, 0]]}]}, "must be > 0"),
    ({"steps": [{"at": 0, "bids": [[0.6, "lots"]]}]}, "bids must be a number, got 'lots'"),
    ({"steps": [{"at": 0, "asks": [[1.5, 3]]}]}, "not in (0, 1)"),
])
def test_a_script_that_cannot_be_followed_says_why(data, words):
    with pytest.raises(script.ScriptError) as err:
        script.parse(data)
    assert words in str(err.value)


def test_a_bad_script_file_stops_the_sim_with_the_reason(tmp_path):
    bad = tmp_path / "script.json"
    bad.write_text('{"fair": [[0, 2]]}')
    with pytest.raises(SystemExit, match=r"--script .*script.json: P\(Up\) must be between 0 and 1"):
        load_script(str(bad))
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read it as JSON"):
        load_script(str(bad))


def test_fair_steps_move_the_ladder_and_the_last_favourite_wins():
    engine, calendar, market = make_sim(window_s=W, taker_rate_per_s=50.0,
                                        script=script.parse({"fair": [[0, 0.5], [10, 0.62], [40, 0.3]]}))
    spec = calendar.spec_for(int(T0))
    run(market, T0, T0 + 5, 0.25)
    assert top(engine, spec.up_token) == (D("0.49"), D("0.51"))
    run(market, T0 + 5.25, T0 + 15, 0.25)
    assert top(engine, spec.up_token) == (D("0.61"), D("0.63"))
    assert not [e for e in engine.events if isinstance(e, LastTrade)]  # takers at 50/s unscripted; none here
    run(market, T0 + 15.25, T0 + W + 1, 0.25)
    assert engine.market(spec.condition_id).winning_token == spec.down_token  # 0.3 at the end: Down


def test_a_book_step_from_the_file_rests_exactly_its_levels_in_every_window():
    steps = {"steps": [{"at": 0, "fair": 0.5}, {"at": 5, "bids": [[0.61, 20], [0.58, 40]], "asks": [[0.63, 10]]},
                       {"at": 20, "fair": 0.7}, {"at": 30, "bids": [[0.55, 5]], "asks": [[0.66, 5]]}]}
    engine, calendar, market = make_sim(window_s=W, taker_rate_per_s=50.0, script=script.parse(steps))
    for start in (T0, T0 + W):
        spec = calendar.spec_for(int(start))
        run(market, start, start + 4, 0.25)
        assert top(engine, spec.up_token) == (D("0.49"), D("0.51"))  # the ladder around the fair step
        run(market, start + 4.25, start + 25, 0.25)
        # exactly the levels: no ladder (a later fair step does not bring it back), no random takers
        assert engine.book(spec.up_token) == ([(D("0.61"), D("20")), (D("0.58"), D("40"))], [(D("0.63"), D("10"))])
        run(market, start + 25.25, start + 35, 0.25)
        assert engine.book(spec.up_token) == ([(D("0.55"), D("5"))], [(D("0.66"), D("5"))])  # replaced
        run(market, start + 35.25, start + W, 0.25)


def test_the_admins_book_is_a_step_added_to_one_windows_script():
    """/_sim/book on a market that follows --script: that window's levels from now on; its fair (and so its
    winner) still follows the file, and the other windows keep the ladder."""
    engine, calendar, market = make_sim(window_s=W, script=script.parse({"fair": [[0, 0.5], [30, 0.8]]}))
    first, second = calendar.spec_for(int(T0)), calendar.spec_for(int(T0) + W)
    run(market, T0, T0 + 10, 0.25)
    market.script_book(first.condition_id, [(D("0.45"), D("30"))], [(D("0.55"), D("30"))], T0 + 10)
    run(market, T0 + 10.25, T0 + 40, 0.25)
    assert engine.book(first.up_token) == ([(D("0.45"), D("30"))], [(D("0.55"), D("30"))])
    assert market.fair(first.condition_id) == 0.8
    run(market, T0 + 40.25, T0 + W + 5, 0.25)
    assert engine.market(first.condition_id).winning_token == first.up_token
    assert top(engine, second.up_token) == (D("0.49"), D("0.51"))  # the ladder, as the file says
    with pytest.raises(ValueError, match="below the scripted asks"):
        market.script_book(second.condition_id, [(D("0.6"), D("1"))], [(D("0.6"), D("1"))], T0 + W + 5)
