"""The decision loop (trader/engine.py) driven step by step with fakes: what it trades on, what it refuses,
how it follows windows and applies operator commands."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import msgspec
import pytest

from tests.support.engine import (  # noqa: I001
    link,
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


def test_a_quiet_book_on_a_live_socket_is_fresh_and_keeps_trading():
    # Issue 27: no book change for 5 s (well past risk.stale_feed_ms, 2 s) while the socket answers its PINGs is a
    # quiet market, not a dead feed: resting orders stay.
    now = time.time()
    engine, _, _, pipeline, _ = started_engine(now=now, data_t=now - 5.0, socket=link(now=now, data_t=now - 5.0,
                                                                                        frame_t=now - 1.0))
    engine.step()
    market = pipeline.calls[-1]["market"]
    assert market.fresh is True and market.age_ms >= 5000
    assert engine.status.state == "running" and engine.status.problem is None


def test_a_frozen_socket_is_not_fresh_after_the_quiet_limit():
    # PONGs go on but no market data at all for longer than risk.quiet_feed_ms (15 s): frozen, entries cancelled.
    now = time.time()
    engine, _, _, pipeline, _ = started_engine(now=now, data_t=now - 16.0,
                                               socket=link(now=now, data_t=now - 16.0, frame_t=now - 0.5))
    engine.step()
    market = pipeline.calls[-1]["market"]
    assert market.fresh is False and "frozen" in market.stale_reason
    assert engine.status.state == "stale_feed" and engine.status.problem.startswith("feed frozen")


def test_a_dead_socket_is_not_fresh_within_its_ping_interval_plus_pong_timeout():
    # Not even a PONG for longer than ping interval (10 s) + PONG timeout (5 s): dead, however recent the heartbeat.
    now = time.time()
    engine, _, _, pipeline, _ = started_engine(now=now, data_t=now - 15.5,
                                               socket=link(now=now, data_t=now - 15.5, frame_t=now - 15.5))
    engine.step()
    assert pipeline.calls[-1]["market"].fresh is False
    assert engine.status.problem.startswith("feed dead") and "not even a PONG" in engine.status.problem
    # ... and a closed socket is dead at once
    engine2, _, _, pipeline2, _ = started_engine(now=now, socket=link(now=now, connected=False))
    engine2.step()
    assert pipeline2.calls[-1]["market"].fresh is False and "not connected" in engine2.status.problem


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


class SettlingCore(FakeCore):
    """A core that switches markets in memory and settles later (ExecutionCore.set_market(settle_later=True)), with
    the decision reads of its current market; `calls` records what happened, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []
        self.current = None
        self.held_in: dict = {}  # condition id -> positions: the reads show the current market's

    def positions(self) -> dict:
        return dict(self.held_in.get(self.current.condition_id, {}))

    def start(self, market) -> None:
        super().start(market)
        self.current = market

    def set_market(self, market, settle_later: bool = False) -> None:
        super().set_market(market)
        self.current = market
        self.calls.append(("set_market", market.condition_id, settle_later))

    def settle_market(self) -> None:
        self.calls.append(("settle",))

    def place(self, want):
        self.calls.append(("place",))
        return super().place(want)

    def decision_reads(self):
        from types import MappingProxyType

        from polymm.trader.execution.state import DecisionReads
        from polymm.trader.decision.fees import DEFAULT_SCHEDULE

        return DecisionReads(self.current.condition_id, tuple(self.working), MappingProxyType(self.positions()),
                             DEFAULT_SCHEDULE), None


def _reading_engine():
    """An engine on a core that publishes its decision reads (as ExecutionCore does), one decision made."""
    now = time.time()
    reader = FakeReader(snapshot(now=now, window_start=int(now) - 10))
    core = SettlingCore()
    pipeline = RecordingPipeline()
    notifier = Notifier()
    engine = Engine(reader, core, Config(), notifier=notifier, pipeline=pipeline, new_state=pipeline.new_state)
    hooked = []
    engine._on_decision = lambda snap, decided_at, done_at: hooked.append(snap.seq)
    engine.start(identity_of(reader.snap))
    engine.step()
    return engine, reader, core, pipeline, notifier, hooked


def test_the_windows_first_decision_comes_before_the_rotations_paperwork(caplog):
    # Issue 26: the rotation's log line and the core's records and subscription (~0.5 ms at every window start) wait
    # for the first decision's bookkeeping; the decision and its orders go first.
    engine, reader, core, pipeline, _, _ = _reading_engine()
    first = engine.market
    reader.snap = snapshot(now=time.time(), window_start=first.window_end, window_s=60, seq=reader.snap.seq + 1)
    pipeline.next_actions = [Place(want())]
    caplog.set_level("INFO", logger="polymm.trader.engine")
    engine.step()
    new = reader.snap.market.condition_id
    assert core.calls == [("set_market", new, True), ("place",), ("settle",)]
    assert any("window rotation" in r.getMessage() for r in caplog.records)
    engine.step()  # settled once
    assert core.calls.count(("settle",)) == 1


def test_a_rotation_counts_the_old_windows_positions_as_unresolved_before_the_exact_refold():
    # The old window's positions (its last decision reads: 10 shares at 0.40) join what earlier windows tie up at
    # once, for the new window's first decision; the exact refold (every fill) follows in the bookkeeping.
    engine, reader, core, pipeline, _, _ = _reading_engine()
    engine._unresolved_usd = 2.5  # an even older window, awaiting resolution
    engine._unresolved_at = time.monotonic()  # folded just now: no refold due by the clock
    old = engine.market
    core.held_in[old.condition_id] = position(10, avg=0.40)
    reader.publish()
    engine.step()
    reader.snap = snapshot(now=time.time(), window_start=old.window_end, window_s=60, seq=reader.snap.seq + 1)
    core.awaiting = [(old, position(10, avg=0.40))]  # what the exact fold says (the older one has resolved meanwhile)
    seen = []
    real_bookkeeping = engine._bookkeeping

    def bookkeeping(*args, **kw):
        seen.append(pipeline.calls[-1]["unresolved_usd"])
        return real_bookkeeping(*args, **kw)

    engine._bookkeeping = bookkeeping
    engine.step()
    assert seen == [pytest.approx(6.5)]  # the first decision: 2.5 + 10 x 0.40
    assert engine._unresolved_usd == pytest.approx(4.0)  # then the exact fold


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


def test_the_core_s_threads_see_the_loop_busy_while_it_decides_and_while_a_tick_waits_for_it():
    """trader/priority.py: the gate says busy during a decision and for a published tick the loop has not read; a
    loop that is not running holds nobody up."""
    engine, reader, _, pipeline, _ = started_engine()
    gate = engine.gate
    seen: list[tuple[bool, bool, bool]] = []  # (deciding, a tick pending before the publish, after it)
    inner = pipeline.__call__

    def recording(*args, **kw):
        if not seen:
            before = gate.tick_pending()
            reader.publish(up=reader.snap.up)  # the feed publishes during this decision
            seen.append((gate.deciding, before, gate.tick_pending()))
        return inner(*args, **kw)

    engine._pipeline = recording
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    stop.set()
    thread.join(5)
    assert seen == [(True, False, True)]
    assert not gate.deciding
    reader.publish(up=reader.snap.up)  # a tick nobody will read: the loop has stopped
    assert not gate.busy() and gate.step_aside() == 0.0


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
    core.poll_events = lambda wait=True: ["fill"]  # something changed: the loop refreshes what awaits resolution
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


def test_a_tick_size_change_in_shm_reaches_the_execution_core_once(caplog):
    engine, reader, core, pipeline, _ = started_engine()
    engine.step()
    engine.step()
    assert core.ticks == [(reader.snap.market.up_token, 0.01), (reader.snap.market.down_token, 0.01)]
    reader.publish(tick_size=0.001)
    caplog.set_level("INFO", logger="polymm.trader.engine")
    seen_in_decision = []
    real_pipeline = engine._pipeline
    engine._pipeline = lambda *a, **kw: (seen_in_decision.append(len(caplog.records)), real_pipeline(*a, **kw))[1]
    engine.step()
    assert core.ticks[2:] == [(reader.snap.market.up_token, 0.001), (reader.snap.market.down_token, 0.001)]
    assert pipeline.calls[-1]["market"].market.tick_size == 0.001
    # one line, written after the decision (by its bookkeeping), not before it
    lines = [r.getMessage() for r in caplog.records if "tick size" in r.getMessage()]
    assert seen_in_decision == [0] and lines == [f"tick size of {reader.snap.market.condition_id[:12]}: 0.01 -> 0.001 "
                                                 "(both tokens)"]


def test_a_decision_reads_the_cores_published_state_without_asking_it():
    """ExecutionCore.decision_reads (issue 26): orders, positions, fee schedule and exchange status come as the
    core's writers published them; the core's locked reads are not called on the hot path."""
    from types import MappingProxyType

    from polymm.trader.decision.fees import FeeSchedule
    from polymm.trader.execution.state import DecisionReads
    from polymm.trader.model import ExchangeMode, ExchangeStatus

    engine, reader, core, pipeline, _ = started_engine()
    working, held = order("c7"), position(6.0)
    fee = FeeSchedule(0.05, 1.5, source="test")
    status = ExchangeStatus(mode=ExchangeMode.POST_ONLY)
    core.decision_reads = lambda: (DecisionReads(reader.snap.market.condition_id, (working,),
                                                 MappingProxyType(held), fee), status)

    def not_on_the_hot_path(*_args, **_kw):
        raise AssertionError("a locked read of the core on the hot path")

    core.orders = core.positions = core.state = core.fee_schedule = not_on_the_hot_path
    engine.step()
    call = pipeline.calls[-1]
    assert list(call["orders"]) == [working] and dict(call["positions"]) == held
    assert call["post_only_only"] is True and call["market"].fee_rate == 0.05 and call["market"].fee_exponent == 1.5


def test_reads_of_another_market_than_the_one_traded_are_not_used():
    from types import MappingProxyType

    from polymm.trader.decision.fees import DEFAULT_SCHEDULE
    from polymm.trader.execution.state import DecisionReads

    engine, _, core, pipeline, _ = started_engine()
    core.working = [order("c1")]
    core.decision_reads = lambda: (DecisionReads("0xelsewhere", (order("c9"),), MappingProxyType({}),
                                                 DEFAULT_SCHEDULE), None)
    engine.step()
    assert [o.client_id for o in pipeline.calls[-1]["orders"]] == ["c1"]


def test_a_rehearsal_runs_the_tick_path_and_changes_nothing():
    engine, reader, core, pipeline, notifier = started_engine()
    pipeline.next_actions = []
    engine.step()
    decisions, state, status = engine._decisions, engine._pipeline_state, engine.status
    pipeline.next_actions = [Place(want())]  # whatever the rehearsal decides is dropped
    engine._rehearse()
    assert len(pipeline.calls) == 2 and pipeline.calls[-1]["market"].market == reader.snap.market
    assert core.placed == [] and core.cancelled == []
    assert (engine._decisions, engine._pipeline_state, engine.status, notifier.pets) == (decisions, state, status, 1)


def test_the_loop_rehearses_while_the_book_is_quiet_and_not_without_warming():
    engine, reader, core, pipeline, _ = started_engine()
    engine.step()
    calls = len(pipeline.calls)
    engine.warm_every_s = 0.001
    engine._last_rehearsal_mono = engine._last_decision_mono = time.monotonic() - 0.002
    assert engine._wait_for_work() is False  # nothing due: it rehearsed, then waited
    assert len(pipeline.calls) == calls + 1 and core.placed == []
    engine.warm_every_s = None
    engine._last_decision_mono = time.monotonic()
    engine._wait_for_work()
    assert len(pipeline.calls) == calls + 1


def test_a_failing_rehearsal_is_reported_once_and_never_stops_the_loop(caplog):
    engine, _, _, pipeline, _ = started_engine()
    engine.step()

    def broken(*_args, **_kw):
        raise RuntimeError("bug")

    engine._pipeline = broken
    for _ in range(3):
        engine._warm()
    assert sum("rehearsal of the decision failed" in r.getMessage() for r in caplog.records) == 1


def test_the_services_warming_comes_from_the_environment_and_a_bad_value_is_refused_in_words(monkeypatch):
    import pytest

    from polymm import env
    from polymm.trader import service

    monkeypatch.delenv(env.WARM_EVERY_MS, raising=False)
    assert service.warm_every_s() is None  # tests, the demo, a shell: no rehearsals
    for raw, expected in (("1", 0.001), ("2.5", 0.0025), ("0", None), ("", None)):
        monkeypatch.setenv(env.WARM_EVERY_MS, raw)
        assert service.warm_every_s() == expected
    for raw in ("fast", "-1", "5000", "nan"):
        monkeypatch.setenv(env.WARM_EVERY_MS, raw)
        with pytest.raises(service.StartupError, match=f"{env.WARM_EVERY_MS}={raw!r} is not a number of milli"):
            service.warm_every_s()


def test_the_services_loop_cpu_comes_from_the_environment_and_a_bad_value_is_refused_in_words(monkeypatch):
    from polymm import env, realtime
    from polymm.trader import service

    monkeypatch.setattr(realtime, "allowed_cpus", lambda: {0, 1, 2})
    monkeypatch.delenv(env.LOOP_CPU, raising=False)
    assert service.loop_cpu() is None  # tests, the demo, a shell: not pinned
    for raw, expected in (("auto", 2), ("1", 1), ("off", None), ("", None)):
        monkeypatch.setenv(env.LOOP_CPU, raw)
        assert service.loop_cpu() == expected
    for raw, words in (("fast", "is not a CPU number"), ("7", "CPU 7 is not one this process may use")):
        monkeypatch.setenv(env.LOOP_CPU, raw)
        with pytest.raises(service.StartupError, match=f"{env.LOOP_CPU}={raw!r}: .*{words}"):
            service.loop_cpu()


def test_the_loop_pins_its_thread_when_given_a_cpu_and_runs_commands_unpinned(monkeypatch, caplog):
    """tune_runtime pins the loop's thread to `loop_cpu` (said in the log with the scheduling); a refusal is a
    warning; commands (a restart starts threads) run under realtime.unpinned(). The scheduler itself is faked."""
    from polymm import realtime
    from polymm.trader import engine as engine_mod

    monkeypatch.setattr(engine_mod.sys, "setswitchinterval", lambda s: None)
    monkeypatch.setattr(engine_mod.gc, "freeze", lambda: None)
    monkeypatch.setattr(realtime, "make_current_thread_realtime", lambda wanted: (0, "ordinary scheduling"))
    monkeypatch.setattr(realtime, "allowed_priority", lambda wanted: 0)
    pins: list = []
    answers = iter([(True, "pinned to CPU 1 of CPUs 0,1"), (False, "not pinned (CPU 1 refused: nope)")])
    monkeypatch.setattr(realtime, "pin_current_thread", lambda cpu: (pins.append(cpu), next(answers))[1])
    monkeypatch.setattr(engine_mod.cpu_idle, "describe", lambda cpu: f"CPU {cpu} polls while idle")
    engine, _, _, _, _ = started_engine()
    caplog.set_level("INFO", logger="polymm.trader.engine")
    engine.tune_runtime()
    assert pins == [] and not engine.pinned  # no CPU named: not asked
    engine.loop_cpu = 1
    engine.tune_runtime()
    assert pins == [1] and engine.pinned
    assert caplog.records[-1].levelname == "INFO"
    assert caplog.records[-1].getMessage() == ("decision loop: ordinary scheduling; pinned to CPU 1 of CPUs 0,1; "
                                               "CPU 1 polls while idle")  # (read back: polymm-cpu-idle set it)
    engine.tune_runtime()
    assert not engine.pinned and caplog.records[-1].levelname == "WARNING"
    assert "not pinned (CPU 1 refused: nope)" in caplog.records[-1].getMessage()

    entered: list = []

    class Unpinned:
        def __enter__(self):
            entered.append("in")

        def __exit__(self, *exc):
            entered.append("out")

    monkeypatch.setattr(realtime, "unpinned", Unpinned)
    engine._apply_commands()  # none queued: not even unpinned
    assert entered == []
    applied = []
    monkeypatch.setattr(engine, "_apply", lambda cmd: applied.append(list(entered)) or "ok")
    engine._commands.put(engine_mod.Command("pause", None))
    engine._apply_commands()
    assert applied == [["in"]] and entered == ["in", "out"]


def test_the_waiting_loop_collects_young_garbage_between_ticks(monkeypatch):
    """Young collections happen in the wait (IDLE_GC_YOUNG pending), the middle generation with them when due, so
    the collector rarely interrupts a decision; nothing is collected below the mark."""
    from polymm.trader import engine as engine_mod

    engine, _, _, _, _ = started_engine()
    collected: list[int] = []
    monkeypatch.setattr(engine_mod.gc, "collect", lambda generation=2: collected.append(generation) or 0)
    counts = iter([(engine_mod.IDLE_GC_YOUNG - 1, 0, 0), (engine_mod.IDLE_GC_YOUNG, 3, 0), (500, 9, 0)])
    monkeypatch.setattr(engine_mod.gc, "get_count", lambda: next(counts))
    monkeypatch.setattr(engine_mod.gc, "get_threshold", lambda: (700, 10, 10))
    for _ in range(3):
        engine._idle_gc()
    assert collected == [0, 1] and engine.idle_collections == 2


# ---- issue 26: a newer tick first, the bookkeeping after; the GIL around the wait ------------------------------


def _publishing_pipeline(engine, reader, pipeline):
    """The feed publishes a newer book while the decision runs (a trade's `book` right after its price_change)."""
    engine._pipeline = lambda *a, **kw: (reader.publish(), pipeline(*a, **kw))[1]


def _counting_polls(core):
    polls = []
    core.poll_events = lambda wait=True: polls.append(wait) or []
    return polls


def test_the_bookkeeping_waits_for_the_decision_of_a_newer_tick():
    engine, reader, core, pipeline, notifier = started_engine()
    polls = _counting_polls(core)
    engine.step()
    assert engine.status.decisions == 1 and polls == [False]  # the loop's poll never waits for the core's lock
    engine._bookkept_mono = time.monotonic()  # bookkeeping ran a moment ago
    _publishing_pipeline(engine, reader, pipeline)
    engine.step()
    # the decision and its orders are done, the watchdog petted; the status, events, unresolved exposure wait
    assert (engine._decisions, notifier.pets, engine.status.decisions, polls) == (2, 2, 1, [False])
    assert engine._bookkeeping_due is not None
    engine._pipeline = pipeline
    engine.step()  # the newer tick's decision, nothing newer behind it: bookkeeping for both
    assert (engine.status.decisions, polls, engine._bookkeeping_due) == (3, [False, False], None)


def test_the_bookkeeping_waits_no_longer_than_its_bound():
    engine, reader, core, pipeline, _ = started_engine()
    polls = _counting_polls(core)
    engine.step()
    _publishing_pipeline(engine, reader, pipeline)
    engine._bookkept_mono = time.monotonic() - 1.0  # a busy feed kept it waiting long enough
    engine.step()
    assert engine.status.decisions == 2 and len(polls) == 2 and engine._bookkeeping_due is None


def test_bookkeeping_left_waiting_is_done_before_the_loop_sleeps():
    """A newer tick whose decision failed (or never came): the loop does the bookkeeping before it waits."""
    engine, reader, core, pipeline, _ = started_engine()
    polls = _counting_polls(core)
    engine.step()
    engine._bookkept_mono = time.monotonic()
    _publishing_pipeline(engine, reader, pipeline)
    engine.step()
    assert engine.status.decisions == 1
    engine._last_seq = reader.seq()  # as if that decision had read it and failed
    assert engine._wait_for_work() is False
    assert engine.status.decisions == 2 and len(polls) == 2 and engine._bookkeeping_due is None


def test_a_tick_published_during_the_bookkeeping_stops_it_after_the_stage_it_is_in():
    # The tick came after the check that defers the whole bookkeeping: it waits one stage, not all of them; what the
    # stage learnt (an older market's fill: refold what awaits resolution) is kept for the bookkeeping that follows.
    from polymm.trader.model import FillChanged

    engine, reader, core, pipeline, _ = started_engine()
    engine.step()
    refolds = []
    engine._refresh_unresolved = lambda mono, changed: refolds.append(changed)
    polls = []

    def poll_events(wait=True):
        polls.append(wait)
        if len(polls) == 1:
            reader.publish()  # the feed publishes while the loop polls the core's events
            return [FillChanged(None, None, "0xolder")]
        return []

    core.poll_events = poll_events
    decided = engine.status.decisions
    engine.step()
    assert polls == [False] and refolds == [] and engine.status.decisions == decided  # stopped after "events"
    assert engine._bookkeeping_due is not None and engine._unresolved_due is True
    engine.step()  # the newer tick's decision: its bookkeeping does the rest, the refold included
    assert refolds == [True] and engine._bookkeeping_due is None and engine.status.decisions == engine._decisions


def test_a_tick_that_changes_nothing_the_decision_reads_is_answered_without_deciding_again():
    # Issue 26: a trade's `last_trade_price` frame comes right after its `price_change`; the feed publishes the book
    # it already holds with the new last trade, which no strategy reads. The decision would be the last one again.
    engine, reader, core, pipeline, notifier, hooked = _reading_engine()
    decided_mono = engine._last_decision_mono
    reader.publish(same_book=True)
    assert engine.step() == 0
    assert len(pipeline.calls) == 1 and engine.unchanged_ticks == 1
    assert hooked == [1, 2] and notifier.pets == 2  # answered (the metrics hook) and the loop is alive
    assert engine._last_decision_mono == decided_mono  # the periodic decision still comes on time
    reader.publish()  # the book moves: decided
    engine.step()
    assert len(pipeline.calls) == 2 and engine.unchanged_ticks == 1


def test_a_reference_price_not_known_yet_is_the_same_unknown_at_the_next_tick():
    # The REF block holds NaN for what the feed has not got (Binance's price on a Chainlink series, the opening before
    # the window's first price): equal values, not a change, even though NaN equals nothing and each snapshot reads
    # new floats.
    from polymm.feed.shm.layout import Reference

    engine, reader, core, pipeline, _, _ = _reading_engine()
    t = time.time()

    def ref() -> Reference:
        return Reference(97_000.0, t, t, float("nan"), float("nan"), float("nan"), engine.market.window_start,
                         float("nan"), 0.0, "pending", True, 0, 1)

    reader.publish(ref=ref())
    engine.step()
    calls = len(pipeline.calls)
    reader.publish(same_book=True, ref=ref())  # new NaN objects, the same values
    engine.step()
    assert len(pipeline.calls) == calls and engine.unchanged_ticks == 1


@pytest.mark.parametrize("what", ["event", "command", "timer", "paused", "orders", "wallet", "reference",
                                  "stale book", "empty side"])
def test_anything_else_that_changed_means_a_decision(what, monkeypatch):
    engine, reader, core, pipeline, _, _ = _reading_engine()
    if what == "event":
        core.wake.set()
    elif what == "command":
        engine.submit("resume", wait_s=0)
    elif what == "timer":
        engine._last_decision_mono -= 1.0  # the last decision is older than DECIDE_EVERY_S
    elif what == "paused":
        engine.paused = True
    elif what == "orders":
        core.working = [order("c1")]
    elif what == "wallet":
        class Wallet:
            def __init__(self):
                self.limit = 1.0

            def admit(self, actions, exposure, now):
                return actions

            def decide_args(self, now):
                return {"wallet": self.limit}

            def after(self, *args):
                pass

        engine.wallet = wallet = Wallet()
        engine.step()
        wallet.limit = 2.0  # another series on the wallet took some of the budget
    elif what == "reference":  # the BTC price moved (the fair value reads it): a decision, whatever the book
        from polymm.feed.shm.layout import Reference

        t = time.time()
        reader.snap = replace(reader.snap, ref=Reference(97_000.0, t, t, 97_001.0, t, t, engine.market.window_start,
                                                         96_900.0, t, "captured", True, 0, 1))
    elif what == "stale book":  # the last decision was on a dead feed's book: a fresh one is decided on again
        reader.snap = replace(reader.snap, heartbeat=time.time() - 10, seq=reader.snap.seq + 1)
        engine.step()
    elif what == "empty side":
        reader.publish(up=replace(reader.snap.up, bid=float("nan"), bid_size=float("nan")))
        engine.step()
    calls = len(pipeline.calls)
    reader.publish(same_book=True, **({"heartbeat": time.time()} if what == "stale book" else {}))
    engine.step()
    assert len(pipeline.calls) == calls + 1 and engine.unchanged_ticks == 0


def test_a_tick_published_before_the_pipeline_runs_is_decided_on_instead_of_the_older_one():
    # Issue 26: a trade's frames come 35-400 us apart. Deciding on the older book first made the newer wait for that
    # whole decision; one decision on the newer answers both.
    engine, reader, core, pipeline, notifier = started_engine()
    hooked = []
    engine._on_decision = lambda snap, decided_at, done_at: hooked.append(snap.seq)
    engine.step()
    decided_mono = engine._last_decision_mono
    orders = core.orders
    publishes = []

    def orders_then_a_newer_tick(working_only=True):  # read after the book, before the pipeline
        if len(publishes) < 2:
            reader.publish()
            publishes.append(reader.snap.seq)
        return orders(working_only)

    core.orders = orders_then_a_newer_tick
    reader.publish()
    older = reader.snap.seq
    engine.step()
    assert len(pipeline.calls) == 1 and hooked == [1] and core.placed == []  # nothing decided on the older book
    assert engine.merged_ticks == 1 and engine._last_decision_mono == decided_mono
    assert engine._wait_for_work() is True  # straight back for the newer one
    engine.step()  # another tick comes before its pipeline too: decided all the same (once in a row)
    assert len(pipeline.calls) == 2 and engine.merged_ticks == 1
    assert hooked == [1, publishes[-1] - 1] and publishes[0] == older + 1
    assert pipeline.calls[-1]["market"].up_bid_size == reader.snap.up.bid_size - 1  # the book it read: the newer one
    engine.step()  # the tick that came during it, as usual
    assert len(pipeline.calls) == 3 and hooked[-1] == reader.snap.seq


def test_the_wallet_publish_is_part_of_the_bookkeeping():
    engine, reader, core, pipeline, _ = started_engine()

    class Wallet:
        def __init__(self):
            self.published = []

        def admit(self, actions, exposure, now):
            return actions

        def decide_args(self, now):
            return {}

        def after(self, exposure, orders, positions, view, market, now):
            self.published.append(view.up_bid)

    engine.wallet = wallet = Wallet()
    engine.step()
    assert wallet.published == [0.6]
    engine._bookkept_mono = time.monotonic()
    _publishing_pipeline(engine, reader, pipeline)
    engine.step()
    assert wallet.published == [0.6]  # waits with the rest
    engine._pipeline = pipeline
    engine.step()
    assert len(wallet.published) == 2  # the newest decision's exposure (the waiting one is superseded)


def test_the_loop_waits_under_the_short_switch_interval_and_decides_under_the_longer_one():
    import sys

    engine, reader, _core, _pipeline, _ = started_engine()
    engine.step()
    seen = []
    wait_update = reader.wait_update

    def recording_wait(last_seq, timeout_s, *, spin_s=0.0):
        seen.append(sys.getswitchinterval())
        return wait_update(last_seq, timeout_s, spin_s=spin_s)

    reader.wait_update = recording_wait
    before = sys.getswitchinterval()
    try:
        engine._switch_intervals = (0.0001, 0.0005)
        engine._last_decision_mono = time.monotonic()
        engine._wait_for_work()
        assert seen == [pytest.approx(0.0001)] and sys.getswitchinterval() == pytest.approx(0.0005)
        engine._switch_intervals = None  # runtime left as Python ships it: the loop never touches the interval
        sys.setswitchinterval(0.005)
        engine._wait_for_work()
        assert seen[-1] == pytest.approx(0.005) and sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


def test_a_tick_published_during_a_rehearsal_ends_it_before_the_pipeline():
    engine, reader, _core, pipeline, _ = started_engine()
    engine.step()
    calls = len(pipeline.calls)
    view = engine._view

    def view_then_tick(*args, **kw):
        out = view(*args, **kw)
        reader.publish()  # the feed publishes while the rehearsal builds its view
        return out

    engine._view = view_then_tick
    engine._rehearse()
    assert len(pipeline.calls) == calls  # dropped before the pipeline: the tick's decision comes first
    engine._view = view
    engine._rehearse()  # a tick not yet decided on: nothing to rehearse
    assert len(pipeline.calls) == calls
    engine.step()
    engine._rehearse()
    assert len(pipeline.calls) == calls + 2


def test_only_events_that_can_move_earlier_windows_refold_what_awaits_resolution():
    from dataclasses import replace

    from polymm.trader.model import (ExchangeStatus, FillChanged, Leg, MarketResolvedEvent, OrderChanged,
                                     StatusChanged)

    engine, _, _core, _pipeline, _ = started_engine()
    engine.step()
    current = engine.market.condition_id
    here = replace(order("c1"), condition_id=current, filled=5.0)
    elsewhere = replace(order("c2"), condition_id="0xolder", filled=5.0)
    fill = object()  # only its market is read
    quiet = [StatusChanged(ExchangeStatus()), OrderChanged(here, None), OrderChanged(replace(elsewhere, filled=0.0), None),
             FillChanged(fill, None, current)]
    assert engine._older_markets_moved(quiet) is False
    for moved in (OrderChanged(elsewhere, None), FillChanged(fill, None, "0xolder"), FillChanged(fill, None, ""),
                  MarketResolvedEvent("0xolder", Leg.UP), "an event the loop does not know"):
        assert engine._older_markets_moved([*quiet, moved]) is True, moved
