"""The decision loop (trader/engine.py) driven step by step with fakes: what it trades on, what it refuses,
how it follows windows and applies operator commands."""
from __future__ import annotations

import threading
import time

import msgspec

from tests.support.engine import (
    Cancel, FakeCore, FakeReader, Place, RecordingPipeline, order, position, snapshot, want,
)
from polymm.trader.config import Config
from polymm.trader.engine import Engine, identity_of


class Notifier:
    def __init__(self) -> None:
        self.pets = 0

    def watchdog(self) -> None:
        self.pets += 1


def started_engine(now: float | None = None, **snap_kw):
    now = time.time() if now is None else now
    reader = FakeReader(snapshot(now=now, window_start=int(now) - 10, **snap_kw))
    core = FakeCore()
    pipeline = RecordingPipeline()
    notifier = Notifier()
    engine = Engine(reader, core, Config(), notifier=notifier, pipeline=pipeline, new_state=pipeline.new_state)
    engine.start(identity_of(reader.snap))
    return engine, reader, core, pipeline, notifier


def test_fresh_book_reaches_the_pipeline_as_a_market_view():
    engine, reader, core, pipeline, _ = started_engine(up_bid=0.62, up_ask=0.63)
    engine.step()
    market = pipeline.calls[-1]["market"]
    assert (market.up_bid, market.up_ask) == (0.62, 0.63)
    assert (market.down_bid, market.down_ask) == (0.37, 0.38)
    assert market.fresh and not market.crossed
    assert market.market.condition_id == reader.snap.market.condition_id
    assert engine.status.state == "running" and engine.status.problem is None


def test_place_and_cancel_actions_go_to_the_execution_core_in_order():
    engine, _, core, pipeline, _ = started_engine()
    entry = want()
    pipeline.next_actions = [Cancel("c9", "requote"), Place(entry)]
    assert engine.step() == 2
    assert core.cancelled == [("c9", "requote")]
    assert core.placed == [entry]


def test_every_decision_pets_the_watchdog():
    engine, _, _, _, notifier = started_engine()
    for _ in range(3):
        engine.step()
    assert notifier.pets == 3


def test_stale_feed_is_passed_as_not_fresh_and_reported():
    now = time.time()
    engine, reader, _, pipeline, _ = started_engine(now=now, data_t=now - 5.0)
    engine.step()
    assert pipeline.calls[-1]["market"].fresh is False
    assert engine.status.state == "stale_feed"
    assert "old" in engine.status.problem


def test_dead_feed_heartbeat_is_not_fresh_even_with_recent_data():
    now = time.time()
    engine, _, _, pipeline, _ = started_engine(now=now, heartbeat=now - 10.0)
    engine.step()
    assert pipeline.calls[-1]["market"].fresh is False
    assert "heartbeat" in engine.status.problem


def test_crossed_book_is_flagged_to_the_pipeline():
    engine, _, _, pipeline, _ = started_engine(crossed=True)
    engine.step()
    assert pipeline.calls[-1]["market"].crossed is True
    assert engine.status.problem == "book crossed"


def test_wrong_window_in_shm_is_not_traded_and_our_orders_are_cancelled_once():
    now = time.time()
    engine, reader, core, pipeline, _ = started_engine(now=now)
    core.working = [order("c1")]
    older = snapshot(now=now, window_start=int(now) - 200, seq=reader.snap.seq + 1)
    reader.snap = older
    engine.step()
    engine.step()
    assert pipeline.calls == []
    assert len(core.cancel_alls) == 1 and "wrong window" in core.cancel_alls[0]
    assert engine.status.problem.startswith("wrong window")


def test_rotation_follows_the_feed_to_the_next_window_and_starts_a_fresh_strategy_state():
    now = time.time()
    engine, reader, core, pipeline, _ = started_engine(now=now)
    engine.step()
    first = engine.market
    nxt = snapshot(now=now, window_start=first.window_end, window_s=60, seq=reader.snap.seq + 1)
    reader.snap = nxt
    engine.step()
    assert core.markets[-1].condition_id == nxt.market.condition_id
    assert engine.market.window_start == first.window_end
    assert pipeline.states_created == 2
    assert pipeline.calls[-1]["market"].market.window_start == nxt.market.window_start


def test_rotation_waits_until_the_feed_is_connected_on_the_new_window():
    now = time.time()
    engine, reader, core, pipeline, _ = started_engine(now=now)
    first = engine.market
    reader.snap = snapshot(now=now, window_start=first.window_end, status="rotating", seq=reader.snap.seq + 1)
    engine.step()
    assert engine.market == first and len(core.markets) == 1
    assert engine.status.problem.startswith("wrong window")


def test_pause_cancels_everything_and_the_pipeline_sees_paused_until_resume():
    engine, _, core, pipeline, _ = started_engine()
    core.working = [order("c1")]
    cmd = _command_from_thread(engine, "pause")
    assert "1 working order(s) cancelled" in cmd.result
    assert core.cancel_alls == ["paused by operator"]
    assert pipeline.calls[-1]["paused"] is True and engine.status.state == "paused"
    _command_from_thread(engine, "resume")
    assert pipeline.calls[-1]["paused"] is False and engine.status.state == "running"


def test_flatten_runs_until_no_sellable_position_is_left_then_stays_paused():
    engine, _, core, pipeline, _ = started_engine()
    core.held = position(10.0)
    _command_from_thread(engine, "flatten")
    assert pipeline.calls[-1]["flatten"] is True
    assert engine.status.state == "flattening"
    core.held = position(0.0)
    engine.step()
    engine.step()
    assert pipeline.calls[-1]["flatten"] is False and pipeline.calls[-1]["paused"] is True
    assert engine.status.state == "paused"


def test_new_config_is_used_from_the_next_decision():
    engine, _, _, pipeline, _ = started_engine()
    engine.step()
    cfg = Config()
    new = msgspec.structs.replace(cfg, s1=msgspec.structs.replace(cfg.s1, entry_threshold=0.42))
    _command_from_thread(engine, "set_config", new)
    assert pipeline.calls[-1]["cfg"].s1.entry_threshold == 0.42


def test_a_failing_command_is_reported_and_the_loop_keeps_deciding():
    engine, _, _, pipeline, _ = started_engine()
    cmd = _command_from_thread(engine, "no_such_command")
    assert cmd.error and "no_such_command" in cmd.error
    engine.step()
    assert pipeline.calls


def test_run_wakes_on_a_new_shm_sequence_and_stops_on_request():
    engine, reader, _, pipeline, _ = started_engine()
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    seen = []
    engine._on_decision = lambda snap, decided, sent: seen.append(snap.seq)
    reader.publish(up=reader.snap.up)
    deadline = time.monotonic() + 5
    while reader.snap.seq not in seen and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    thread.join(5)
    assert reader.snap.seq in seen
    assert not thread.is_alive()


def _command_from_thread(engine: Engine, kind: str, payload=None):
    """Submit like the control thread does, while this thread runs the decisions."""
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("cmd", engine.submit(kind, payload, wait_s=5)))
    t.start()
    deadline = time.monotonic() + 5
    while t.is_alive() and time.monotonic() < deadline:
        engine.step()
        time.sleep(0.001)
    t.join(1)
    engine.step()
    return result["cmd"]


def test_exchange_that_takes_no_orders_halts_placing_in_words():
    from polymm.trader.model import ExchangeMode, ExchangeStatus

    engine, _, core, pipeline, _ = started_engine()
    core.exchange = ExchangeStatus(mode=ExchangeMode.CANCEL_ONLY)
    engine.step()
    assert "cancel-only" in pipeline.calls[-1]["halt_reason"]
    core.exchange = ExchangeStatus(mode=ExchangeMode.POST_ONLY)
    engine.step()
    assert pipeline.calls[-1]["halt_reason"] == "" and pipeline.calls[-1]["post_only_only"] is True


def test_positions_awaiting_resolution_count_as_exposure_in_the_next_decisions():
    engine, _, core, pipeline, _ = started_engine()
    held = position(10.0, avg=0.6)
    core.awaiting = [(engine.market, held)]
    core.poll_events = lambda: ["fill"]  # something changed: the loop refreshes what awaits resolution
    engine.step()
    engine.step()
    assert pipeline.calls[-1]["unresolved_usd"] == 6.0


def test_a_status_only_sequence_step_is_not_a_tick():
    engine, reader, _, _, _ = started_engine()
    engine.step()
    reader.snap = reader.snap.__class__(**{**reader.snap.__dict__, "seq": reader.snap.seq + 1})  # no leg stamped
    engine.step()
    assert engine.tick_publish_ts is None
    reader.publish()
    engine.step()
    assert engine.tick_publish_ts == reader.snap.up.publish_ts


def test_a_tick_size_change_in_shm_reaches_the_execution_core_once():
    engine, reader, core, pipeline, _ = started_engine()
    engine.step()
    engine.step()
    assert core.ticks == [(reader.snap.market.up_token, 0.01), (reader.snap.market.down_token, 0.01)]
    reader.publish(tick_size=0.001)
    engine.step()
    assert core.ticks[2:] == [(reader.snap.market.up_token, 0.001), (reader.snap.market.down_token, 0.001)]
    assert pipeline.calls[-1]["market"].market.tick_size == 0.001
