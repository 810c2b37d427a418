"""The shared wallet record and the coordinator over it (trader/wallet/): several series' traders of one wallet,
here as coordinators in one process (each holding its series lock, as a trader does), with a fake clock."""
from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from polymm import series as series_mod
from polymm.trader.config import load_config
from polymm.trader.execution.exchange_state import ExchangeError
from polymm.trader.execution.wallet_lock import WalletLock, WalletLocked
from polymm.trader.model import MarketIdentity
from polymm.trader.venue.gateway import HeartbeatRejected
from polymm.trader.wallet import coordinator as coord
from polymm.trader.wallet.records import RUNNING, STOPPED, SeriesRecord
from polymm.trader.wallet.store import StoreError, WalletStore


class Clock:
    def __init__(self, t: float = 1_800_000_100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def funder():
    return "0x" + secrets.token_hex(20)


@pytest.fixture
def wallet(tmp_path, funder):
    """make(series, **kw) -> a started coordinator holding its series lock; all share one record in tmp_path."""
    made, locks = [], []

    def make(name: str, config_text: str = "", **kw) -> coord.WalletCoordinator:
        series = series_mod.parse(name)
        lock = WalletLock(tmp_path / "state", funder, series=name, series_names=series_mod.ALL_NAMES)
        lock.acquire()
        locks.append(lock)
        (tmp_path / f"{name}.toml").write_text(config_text)
        c = coord.WalletCoordinator(funder, series, funder, directory=tmp_path, **kw)
        c.start(load_config(tmp_path / f"{name}.toml", series=series))
        made.append(c)
        return c

    yield make
    for c in made:
        c.lease.release()
        c.liveness.release()
    for lock in locks:
        lock.release()


def market(cond_byte: str = "aa", end: int = 1_800_000_300) -> MarketIdentity:
    return MarketIdentity("0x" + cond_byte * 32, "1", "2", end - 300, end, 0.01, 5.0, 0.07)


def test_a_record_is_shared_by_every_opener_and_outlives_its_writer(tmp_path):
    a = WalletStore("w1", tmp_path)
    rec = SeriesRecord("eth-5m", 123, RUNNING, 1.0, 12.5, 2.5, 300, 20270101, -3.0, 100.0, 0.0, 0.0, ("0x" + "cd" * 32,),
                       cash_moves=41)
    a.write(3, rec)
    a.close()
    b = WalletStore("w1", tmp_path)
    assert b.read(3) == rec and b.records() == {3: rec}
    b.close()
    (tmp_path / "polymm-wallet-bad").write_bytes(b"x" * 5000)
    with pytest.raises(StoreError, match="not a wallet record this polymm reads"):
        WalletStore("bad", tmp_path)


def test_the_wallet_cap_binds_across_series_through_claims(wallet):
    text = "[wallet]\nmax_exposure_usd = 30\n"
    eth, btc = wallet("eth-5m", text), wallet("btc-15m", text)
    clock = eth.clock
    eth.publish(exposure_usd=18.0, open_buys_usd=18.0, unrealised_usd=0.0, market=market("aa"))
    limits = btc.limits(clock())
    assert (limits.others_usd, limits.cap_usd) == (18.0, 30.0)
    assert btc.admit(committed_usd=5.0, new_buys_usd=7.0) is None  # 12 + 18 = 30: fits exactly
    words = eth.admit(committed_usd=18.0, new_buys_usd=1.0)
    assert "wallet.max_exposure_usd 30: this series $19.00 with the new buys, the other series $12.00" == words


def gone_trader(tmp_path, funder, clock, name: str, condition_ids: tuple[str, ...]) -> WalletStore:
    """The record of a trader of `name` that is gone without stopping ($9 exposure, $4 of it open buys): its pid is
    a process that already exited, and nobody holds its liveness lock. Returns the store (close it)."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = WalletStore(funder, tmp_path)
    store.write(series_mod.parse(name).index, SeriesRecord(
        name, int(gone.stdout), RUNNING, clock(), 9.0, 4.0, int(clock()) + 200, 0, 0.0, 0.0, 0.0, 0.0, condition_ids))
    return store


def test_a_dead_series_is_counted_and_its_orders_reaped_by_the_leader(wallet, tmp_path, funder):
    cancelled = []
    clock = Clock()
    leader = wallet("btc-15m", clock=clock, cancel_market=lambda cond: cancelled.append(cond) or 2)
    assert leader.try_lead()
    store = gone_trader(tmp_path, funder, clock, "eth-5m", ("0x" + "ee" * 32, "0x" + "ef" * 32))
    assert leader.state().others_usd == 9.0  # its buys may still rest: all of it counts
    assert leader.reap(clock()) == [] and cancelled == []  # first seen dead: not yet
    clock.t += coord.REAP_AFTER_S + 0.1
    assert leader.reap(clock()) == ["eth-5m"]
    assert cancelled == ["0x" + "ee" * 32, "0x" + "ef" * 32]
    assert leader.state().others_usd == 5.0  # its buys are gone, its positions still count
    clock.t += 1
    assert leader.reap(clock()) == []  # once
    store.close()


def test_a_restarting_trader_is_alive_before_it_starts_so_its_markets_are_not_reaped(wallet, tmp_path, funder):
    cancelled = []
    clock = Clock()
    leader = wallet("btc-15m", clock=clock, cancel_market=lambda cond: cancelled.append(cond) or 1)
    assert leader.try_lead()
    store = gone_trader(tmp_path, funder, clock, "eth-5m", ("0x" + "ee" * 32,))
    assert leader.reap(clock()) == []  # seen dead
    # its successor has taken the series lock and built its coordinator; it has not started (no decision yet)
    successor = coord.WalletCoordinator(funder, series_mod.parse("eth-5m"), funder, directory=tmp_path)
    try:
        clock.t += coord.REAP_AFTER_S + 1.0
        assert leader.reap(clock()) == [] and cancelled == []  # its start-up reconciles those orders itself
    finally:
        successor.stop()
        store.close()


def test_one_leader_heartbeats_the_others_follow_it_and_one_takes_over(wallet):
    clock = Clock()
    sent = []

    def send(heartbeat_id: str) -> str:
        sent.append(heartbeat_id)
        return f"id{len(sent)}"

    first = wallet("btc-15m", clock=clock)
    second = wallet("eth-5m", clock=clock)
    beat_first, beat_second = first.heartbeat_send(send), second.heartbeat_send(send)
    assert beat_first("") == "id1" and first.leader
    assert beat_second("whatever") == "whatever" and not second.leader  # confirms the leader's
    assert beat_first("id1") is None and beat_second("whatever") is None  # nothing due within the interval
    clock.t += 5.0
    assert beat_first("id1") == "id2" and sent == ["", "id1"]
    # the leader's heartbeats fail: the others trip as if their own had
    clock.t += 5.0

    def failing(heartbeat_id: str) -> str:
        raise ExchangeError(None, "POST /v1/heartbeats timed out")

    with pytest.raises(ExchangeError):
        first.heartbeat_send(failing)("id2")
    with pytest.raises(ExchangeError, match="the wallet's heartbeats .*series btc-15m.*timed out"):
        beat_second("whatever")
    # the leader dies: the next beat of another trader takes the lease and adopts the chain's id
    first.lease.release()
    clock.t += 1.0
    # The name is free once the old holder's probe thread has left accept() (release() wakes it; under load that can
    # take a moment): in a trader the next beat, a second later, tries again. Here: until it binds.
    deadline = time.monotonic() + 10.0
    while not second.try_lead():
        assert time.monotonic() < deadline, "the released lease never became free"
        time.sleep(0.005)

    def expects(heartbeat_id: str) -> str:
        if heartbeat_id != "id2":
            raise HeartbeatRejected(400, "Invalid Heartbeat ID", "id2")
        return "id3"

    with pytest.raises(HeartbeatRejected):
        second.heartbeat_send(expects)("")  # the Heartbeater adopts the expected id and retries at once
    assert second.leader and second.heartbeat_send(expects)("id2") == "id3"


def test_a_clean_stop_keeps_positions_counted_without_the_buys(wallet):
    eth, btc = wallet("eth-5m"), wallet("btc-15m")
    eth.publish(exposure_usd=10.0, open_buys_usd=4.0, unrealised_usd=-1.0, market=market("bb"))
    eth.stop()
    row = next(r for r in btc.state().rows if r.series == "eth-5m")
    assert (row.running, row.exposure_usd) == (False, 6.0)
    store = btc.store.read(series_mod.parse("eth-5m").index)
    assert store.state == STOPPED and store.open_buys_usd == 0.0


def test_a_restarted_series_replaces_its_record_never_doubles_it(wallet, tmp_path, funder):
    eth = wallet("eth-5m")
    eth.publish(exposure_usd=10.0, open_buys_usd=0.0, unrealised_usd=0.0, market=market("cc"))
    eth.lease.release()
    eth.liveness.release()  # its process is gone
    again = coord.WalletCoordinator(funder, series_mod.parse("eth-5m"), funder, directory=tmp_path)
    again.start(load_config(None, series=series_mod.parse("eth-5m")))
    assert len([r for r in again.store.records().values() if r.series == "eth-5m"]) == 1
    assert again.store.read(series_mod.parse("eth-5m").index).exposure_usd == 10.0  # kept until it decides


def test_a_second_trader_of_a_series_is_refused_and_an_older_polymm_too(tmp_path, funder):
    lock = WalletLock(tmp_path, funder, series="eth-5m", series_names=series_mod.ALL_NAMES)
    lock.acquire()
    try:
        with pytest.raises(WalletLocked, match="already trades series eth-5m of wallet"):
            WalletLock(tmp_path, funder, series="eth-5m").acquire()
        other = WalletLock(tmp_path / "other", funder, series="sol-1h")
        other.acquire()  # another series: fine
        other.release()
    finally:
        lock.release()
    legacy = WalletLock(tmp_path / "old", funder)  # a trader that locks the whole wallet, as before series
    legacy.acquire()
    try:
        with pytest.raises(WalletLocked, match="trades wallet .* as if alone"):
            WalletLock(tmp_path, funder, series="xrp-5m", series_names=series_mod.ALL_NAMES).acquire()
    finally:
        legacy.release()


def test_a_lock_holder_stays_visible_however_often_it_is_probed(tmp_path, funder):
    # Queued probe connections must never fill a lock holder's backlog (a holder that looked dead).
    import os

    from polymm.trader.execution.wallet_lock import abstract_name, holder_pid

    lock = WalletLock(tmp_path, funder, series="sol-5m")
    lock.acquire()
    try:
        assert all(holder_pid(abstract_name(funder, "sol-5m")) == os.getpid() for _ in range(200))
    finally:
        lock.release()


def test_liveness_is_asked_without_waking_the_trader_and_ends_with_it(tmp_path):
    from polymm.trader.wallet.locks import Liveness, series_alive

    record = tmp_path / "polymm-wallet-x"
    assert not series_alive(record, "sol-5m")  # never started
    live = Liveness(record, "sol-5m")
    assert live.acquire()
    assert all(series_alive(record, "sol-5m") for _ in range(200))  # asked from the same process too
    assert not Liveness(record, "sol-5m").acquire()  # a second holder is refused
    live.release()
    assert not series_alive(record, "sol-5m")
    # a process that dies holding it: the kernel drops it
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from polymm.trader.wallet.locks import Liveness; "
        f"Liveness(Path({str(record)!r}), 'eth-5m').acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held" and series_alive(record, "eth-5m")
    finally:
        holder.kill()
        holder.wait()
    assert not series_alive(record, "eth-5m")


def test_the_refresher_keeps_the_decision_s_limits_current_without_io_on_its_thread(wallet):
    import time

    eth, btc = wallet("eth-5m", "[wallet]\nmax_exposure_usd = 50\n"), wallet("btc-15m", "[wallet]\nmax_exposure_usd = 50\n")
    btc.start_refresher()
    try:
        eth.publish(exposure_usd=12.0, open_buys_usd=0.0, unrealised_usd=0.0, market=market("dd"))
        deadline = time.monotonic() + 5
        while btc.limits().others_usd != 12.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert btc.limits().others_usd == 12.0 and btc.limits().cap_usd == 50.0
    finally:
        btc._stop.set()


def test_the_refresher_reads_the_record_after_the_decision_in_progress(wallet):
    """trader/priority.py: the limits' refresher gives way to the decision loop; it refreshes once it is done."""
    import threading
    import time

    from polymm.trader.priority import DecisionGate

    eth, btc = wallet("eth-5m", "[wallet]\nmax_exposure_usd = 50\n"), wallet("btc-15m", "[wallet]\nmax_exposure_usd = 50\n")
    gate = btc.gate = DecisionGate(max_wait_s=30.0)
    refreshed = threading.Event()  # by the refresher's thread (a decision may refresh overdue limits itself)
    refresh = btc._refresh_limits
    btc._refresh_limits = lambda now: (threading.current_thread().name == "polymm-wallet-limits" and refreshed.set(),
                                       refresh(now))[1]
    gate.enter()  # the loop decides (this thread stands in for it)
    btc.start_refresher()
    try:
        eth.publish(exposure_usd=12.0, open_buys_usd=0.0, unrealised_usd=0.0, market=market("dd"))
        assert not refreshed.wait(0.6)  # two refresh periods: held back while the decision runs
        gate.leave()
        assert refreshed.wait(5) and gate.waits >= 1
        deadline = time.monotonic() + 5
        while btc.limits().others_usd != 12.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert btc.limits().others_usd == 12.0
    finally:
        btc._stop.set()


def test_each_series_publishes_its_cash_moves_for_the_others_cash_checks(wallet):
    # trader/execution/cash.py: another series' fills move the shared pUSD; its published count of cash moves is
    # what tells this series' balance check that a disagreement is not its own.
    eth, btc = wallet("eth-5m"), wallet("btc-15m")
    moves = {"n": 0}
    eth.cash_moves = lambda: moves["n"]
    seen = btc.others_cash_moves()
    assert seen == (("eth-5m", eth._record.pid, 0),)
    moves["n"] = 3  # eth's fills: published with its next decision even when nothing else moved
    eth.publish(exposure_usd=0.0, open_buys_usd=0.0, unrealised_usd=0.0)
    assert btc.others_cash_moves() == (("eth-5m", eth._record.pid, 3),) != seen
    assert eth.others_cash_moves() == (("btc-15m", btc._record.pid, 0),)
    eth.cash_moves = lambda: 1 / 0  # a failing counter never fails the decision's publish: the last count stays
    eth.publish(exposure_usd=1.0, open_buys_usd=0.0, unrealised_usd=0.0)
    assert btc.others_cash_moves()[0][2] == 3
