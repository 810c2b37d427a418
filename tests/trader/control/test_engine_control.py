"""The trader's control handler (trader/control/handler.py) over a running decision loop with a fake exchange:
config changes are validated as a whole, persisted atomically, applied at the next decision; nothing changes on
any error."""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from tests.support.engine import FakeCore, FakeReader, RecordingPipeline, order, position, snapshot
from polymm.ctl import protocol as p
from polymm.trader.control.handler import ConfigStore, TraderControlHandler
from polymm.trader.engine import Engine, identity_of, market_view

BASE_TOML = """\
[s1]
entry_threshold = 0.6
"""


@pytest.fixture
def trader(tmp_path):
    """A decision loop running in a thread, with its control handler."""
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text(BASE_TOML)
    store = ConfigStore(cfg_file, tmp_path / "state" / "overrides.json")
    store.load()
    now = time.time()
    reader = FakeReader(snapshot(now=now, window_start=int(now) - 10, window_s=900))
    core = FakeCore()
    pipeline = RecordingPipeline()
    engine = Engine(reader, core, store.current, pipeline=pipeline, new_state=pipeline.new_state,
                    config_source=lambda: store.current)
    engine.start(identity_of(reader.snap))
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    handler = TraderControlHandler(engine, core, store)
    yield handler, engine, core, pipeline, store, cfg_file
    stop.set()
    thread.join(5)


def refused(code: str, fn, *args) -> p.ControlError:
    with pytest.raises(p.ControlError) as err:
        fn(*args)
    assert err.value.code == code, err.value.message
    return err.value


def decisions_use(pipeline: RecordingPipeline, predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pipeline.calls and predicate(pipeline.calls[-1]["cfg"]):
            return True
        time.sleep(0.01)
    return False


def test_set_reports_old_to_new_persists_and_reaches_the_next_decisions(trader):
    handler, engine, _, pipeline, store, _ = trader
    reply = handler.set(p.SetRequest(settings={"s1.entry_threshold": "0.42"}))
    assert [(c.key, c.old, c.new) for c in reply.changes] == [("s1.entry_threshold", 0.6, 0.42)]
    assert json.loads(store.overrides_path.read_text()) == {"s1.entry_threshold": "0.42"}
    assert decisions_use(pipeline, lambda cfg: cfg.s1.entry_threshold == 0.42)
    entry = handler.config(p.ConfigRequest(key="s1.entry_threshold")).entries[0]
    assert entry.value == 0.42 and entry.override and entry.live


def test_several_keys_are_applied_together(trader):
    handler, _, _, pipeline, _, _ = trader
    handler.set(p.SetRequest(settings={"s1.tp_increment": "0.02", "risk.max_orders_per_min": "30"}))
    assert decisions_use(pipeline, lambda cfg: cfg.s1.tp_increment == 0.02 and cfg.risk.max_orders_per_min == 30)


@pytest.mark.parametrize(
    "settings, code",
    [
        ({"s1.entry_threshold": "1.5"}, p.E_INVALID),  # out of bounds
        ({"s1.entry_threshold": "abc"}, p.E_INVALID),  # wrong type
        ({"s1.entry_treshold": "0.5"}, p.E_UNKNOWN_KEY),  # typo
        ({"s1.late_window_s": "5000"}, p.E_INVALID),  # cross-field: longer than the market window
        ({"s1.tp_increment": "0.02", "s1.max_tp_price": "0.999"}, p.E_INVALID),  # one bad key spoils all
        ({"endpoints.clob_url": "http://elsewhere"}, p.E_NOT_LIVE),
    ],
)
def test_a_refused_set_changes_nothing(trader, settings, code):
    handler, engine, _, _, store, _ = trader
    before_cfg, before_overrides = store.current, dict(store.overrides)
    refused(code, handler.set, p.SetRequest(settings=settings))
    assert store.current == before_cfg and engine.config == before_cfg
    assert store.overrides == before_overrides and not store.overrides_path.exists()


def test_unknown_key_suggests_the_nearest_valid_one(trader):
    handler = trader[0]
    err = refused(p.E_UNKNOWN_KEY, handler.set, p.SetRequest(settings={"s1.entry_treshold": "0.5"}))
    assert err.suggestion == "s1.entry_threshold"


def test_unset_brings_back_the_file_value(trader):
    handler, _, _, pipeline, store, _ = trader
    handler.set(p.SetRequest(settings={"s1.entry_threshold": "0.42"}))
    reply = handler.unset(p.UnsetRequest(key="s1.entry_threshold"))
    assert [(c.old, c.new) for c in reply.changes] == [(0.42, 0.6)]
    assert json.loads(store.overrides_path.read_text()) == {}
    assert decisions_use(pipeline, lambda cfg: cfg.s1.entry_threshold == 0.6)


def test_reload_with_a_broken_file_keeps_the_old_config(trader):
    handler, engine, _, _, store, cfg_file = trader
    before = store.current
    cfg_file.write_text("[s1]\nentry_threshold = 7\n")
    err = refused(p.E_INVALID, handler.reload, p.ReloadRequest())
    assert "old config kept" in err.message
    assert store.current == before and engine.config == before


def test_a_config_file_that_no_longer_loads_is_a_warning_until_it_loads_again(trader):
    # Issue 27: after a reload of a broken file (old config kept) status stayed healthy, so nobody knew the next
    # restart would fail. It is a warning (and status.config_error, the metric's source) until the file loads.
    handler, _, _, _, store, cfg_file = trader
    assert handler.status(p.StatusRequest()).config_error is None
    cfg_file.write_text("[s1]\nentry_threshold = 7\n")
    refused(p.E_INVALID, handler.reload, p.ReloadRequest())
    reply = handler.status(p.StatusRequest())
    assert "s1.entry_threshold" in reply.config_error and not reply.healthy
    [warning] = [w for w in reply.warnings if w.startswith("config does not load")]
    assert "a restart would fail until the file is fixed" in warning and str(cfg_file) in warning
    # the file is fixed (no reload yet): the warning goes, because the file loads again
    cfg_file.write_text(BASE_TOML)
    reply = handler.status(p.StatusRequest())
    assert reply.config_error is None and not [w for w in reply.warnings if w.startswith("config does not load")]


def test_a_restart_that_could_not_reread_the_config_is_incomplete(trader):
    handler, _, _, _, _, cfg_file = trader
    cfg_file.write_text("[s1]\nentry_threshold = 7\n")
    engine = handler.engine
    engine._reconfigure = lambda: handler.store.reload()
    reply = handler.restart(p.RestartRequest())
    assert reply.complete is False and "config NOT re-read" in reply.message
    assert reply.warnings and "s1.entry_threshold" in reply.warnings[0]


def test_reload_applies_live_keys_and_holds_non_live_ones_for_a_restart(trader):
    handler, engine, _, pipeline, store, cfg_file = trader
    cfg_file.write_text(BASE_TOML + "min_order_size = 7\n[endpoints]\nclob_url = \"http://127.0.0.1:1\"\n")
    reply = handler.reload(p.ReloadRequest())
    assert [c.key for c in reply.changes] == ["s1.min_order_size"]
    assert reply.pending_restart == ["endpoints.clob_url"]
    assert store.current.endpoints.clob_url != "http://127.0.0.1:1"
    status = handler.status(p.StatusRequest())
    assert status.pending_restart == ["endpoints.clob_url"]
    assert any("pending restart" in w for w in status.warnings)


def test_pause_resume_flatten_cancel_all_answer_in_words(trader):
    handler, engine, core, pipeline, _, _ = trader
    core.working = [order("c1")]
    assert "1 working order(s) cancelled" in handler.pause(p.PauseRequest()).message
    assert handler.status(p.StatusRequest()).state == "paused"
    assert "running" in handler.resume(p.ResumeRequest()).message
    core.working = [order("c2")]
    assert "1 working order(s) cancelled" in handler.cancel_all(p.CancelAllRequest()).message
    core.held = position(10.0)
    assert "flattening" in handler.flatten(p.FlattenRequest()).message
    assert core.cancel_alls == ["paused by operator", "operator cancel-all", "flatten by operator"]


def test_status_shows_orders_with_distance_from_the_book_and_positions_with_pnl(trader):
    handler, engine, core, _, _, _ = trader
    core.working = [order("c1", price=0.58)]
    core.held = position(10.0, avg=0.5)
    deadline = time.monotonic() + 2
    while engine.status.market_view is None and time.monotonic() < deadline:
        time.sleep(0.01)
    st = handler.status(p.StatusRequest())
    assert st.orders[0].distance == pytest.approx(0.02)  # best bid 0.60, our buy at 0.58
    pos = st.positions[0]
    assert (pos.leg, pos.shares, pos.mark) == ("up", 10.0, 0.6)
    assert pos.unrealised_pnl == pytest.approx(1.0)
    assert st.state == "running" and st.condition_id == engine.market.condition_id


def test_endpoints_from_the_environment_override_the_file_but_are_not_persisted_as_overrides(tmp_path):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('[endpoints]\nclob_url = "http://file.example"\n')
    store = ConfigStore(cfg_file, tmp_path / "state" / "overrides.json", base={"endpoints.clob_url": "http://127.0.0.1:9"})
    store.load()
    assert store.current.endpoints.clob_url == "http://127.0.0.1:9"
    store.set({"s1.tp_increment": "0.02"})
    assert json.loads(store.overrides_path.read_text()) == {"s1.tp_increment": "0.02"}
    assert "endpoints.clob_url" not in store.overrides


def test_credentials_in_an_endpoint_url_are_redacted_in_config_output(trader):
    handler, _, _, _, store, _ = trader
    store.base["endpoints.gamma_url"] = "https://user:s3cr3t@gamma.example"
    store.current = store._build(store.overrides)
    entry = handler.config(p.ConfigRequest(key="endpoints.gamma_url")).entries[0]
    assert "s3cr3t" not in str(entry.value) and entry.value == "https://<redacted>@gamma.example"


def _wait_for_a_book(engine) -> None:
    deadline = time.monotonic() + 2
    while engine.status.market_view is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_positions_awaiting_resolution_are_listed_with_their_window(trader):
    from polymm.trader.execution.core import MarketIdentity
    from polymm.trader.model import Leg

    handler, engine, core, _, _, _ = trader
    _wait_for_a_book(engine)
    old = MarketIdentity("0xold", "o1", "o2", engine.market.window_start - 900, engine.market.window_start, 0.01, 5,
                         0.07)
    core.held = position(10.0, avg=0.5)
    core.awaiting = [(old, position(8.0, leg=Leg.DOWN, avg=0.55))]
    for infos in (handler.status(p.StatusRequest()).positions, handler.positions(p.PositionsRequest()).positions):
        assert [(i.leg, i.shares, i.window_start, i.awaiting_resolution) for i in infos] == [
            ("up", 10.0, engine.market.window_start, False), ("down", 8.0, old.window_start, True)]
        assert infos[1].mark is None and infos[1].unrealised_pnl == 0.0


def test_done_replies_carry_the_count_and_the_pause_state_after_the_command(trader):
    handler, engine, core, _, _, _ = trader
    core.working = [order("c1"), order("c2")]
    paused = handler.pause(p.PauseRequest())
    assert (paused.count, paused.paused) == (2, True)
    resumed = handler.resume(p.ResumeRequest())
    assert resumed.paused is False
    core.working = [order("c3")]
    cancelled = handler.cancel_all(p.CancelAllRequest())
    assert (cancelled.count, cancelled.paused) == (1, False)
    core.working = [order("c4"), order("c5"), order("c6")]
    core.held = position(10.0)
    flattened = handler.flatten(p.FlattenRequest())
    assert (flattened.count, flattened.paused) == (3, True)  # flatten leaves the trader paused
    assert "stays paused" in flattened.message


def test_status_while_starting_answers_without_logging_a_traceback(tmp_path, caplog):
    """mmctl watch asks every second and STATUS= every 2 s: a trader still starting (no config, no book yet)
    must answer quietly, not log a traceback each time."""
    store = ConfigStore(None, tmp_path / "overrides.json")
    store.load()
    now = time.time()
    reader = FakeReader(snapshot(now=now, window_start=int(now) - 10, window_s=900))
    engine = Engine(reader, FakeCore(), None)
    # a book already read, no config published yet: what made _exposure raise on every call
    view = market_view(reader.snap, now=now, stale_feed_ms=2000)
    engine.status = dataclasses.replace(engine.status, market_view=view, config=None)
    handler = TraderControlHandler(engine, engine.core, store)
    with caplog.at_level("ERROR", logger="polymm.trader.control"):
        for _ in range(3):
            reply = handler.status(p.StatusRequest())
    assert reply.state == "starting" and reply.exposure == []
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_a_failing_heartbeat_is_one_warning_in_the_execution_cores_words(trader):
    from polymm.trader.execution.exchange_state import HEARTBEATS_FAILING, ExchangeState

    handler, _, core, _, _, _ = trader
    state = ExchangeState()
    state.heartbeat_ok = False
    core.exchange = state.status()
    warnings = handler.status(p.StatusRequest()).warnings
    assert [w for w in warnings if "heartbeat" in w] == [HEARTBEATS_FAILING]


def test_status_counts_decisions(trader):
    handler, engine, _, _, _, _ = trader
    first = handler.status(p.StatusRequest()).decisions
    deadline = time.monotonic() + 5
    while handler.status(p.StatusRequest()).decisions <= first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.status(p.StatusRequest()).decisions > first


def test_a_restart_that_fails_says_the_core_keeps_retrying(trader):
    from polymm.trader.execution.exchange_state import NetworkError
    from polymm.trader.model import ExchangeStatus

    handler, _, core, _, _, _ = trader

    def restart(reason):
        # what ExecutionCore.restart does when the exchange is unreachable: start retrying, then raise
        core.exchange = ExchangeStatus(warnings=["execution core stopped after a failed restart; retrying"])
        raise NetworkError(None, "GET /data/orders timed out")

    core.restart = restart
    err = refused(p.E_UNAVAILABLE, handler.restart, p.RestartRequest())
    assert "timed out" in err.message and "retries the restart" in err.message
    assert "places no orders until it succeeds" in err.message
