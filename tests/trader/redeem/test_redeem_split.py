"""Redemption that cannot wedge, without sockets: batch sizes from the wallet type's gas figures, a failing batch
split down to single positions, the one that fails alone reported and backed off while the healthy ones are
redeemed, and all of it kept in the journal across a restart."""
from __future__ import annotations

import json
from decimal import Decimal

from polymm.trader.redeem.gas import batch_limit
from polymm.trader.redeem.journal import ALONE_BACKOFF_S, Journal
from polymm.trader.redeem.plan import Action, plan
from polymm.trader.redeem.positions import PositionRow
from polymm.trader.redeem.relayer import RelayerRefused
from polymm.trader.redeem.worker import Redeemer, RedeemSettings

CONDITIONS = ["0x" + c * 64 for c in "abcd"]
A, B, C, D = CONDITIONS


def winner(condition: str, shares: float = 5.0) -> PositionRow:
    return PositionRow(asset=condition + "-0", condition_id=condition, size=shares, cur_price=1.0, redeemable=True,
                       mergeable=False, outcome="Up", outcome_index=0, negative_risk=False,
                       end_date="2026-12-04T13:45:00Z", slug=f"btc-updown-{condition[2:6]}")


class FakeRelayer:
    """Reverts any transaction that redeems a condition in `failing`; mines the others at once."""

    def __init__(self, kind: str = "SAFE", failing: set[str] = frozenset(), refuse: bool = False) -> None:
        self.kind, self.wallet, self.failing, self.refuse = kind, "0x" + "99" * 20, set(failing), refuse
        self.sent: list[list[str]] = []
        self.outcome: dict[str, str] = {}

    def submit(self, calls, metadata):
        from polymm.trader.redeem import calls as ctf

        conditions = [c for c in CONDITIONS if any(call == ctf.redeem(c) for call in calls)]
        self.sent.append(conditions)
        if self.refuse and self.failing & set(conditions):
            raise RelayerRefused("relayer refused the request (HTTP 400): gas estimation failed", 400)
        tx = f"tx-{len(self.sent)}"
        self.outcome[tx] = "STATE_FAILED" if self.failing & set(conditions) else "STATE_MINED"
        return tx

    def state(self, tx_id):
        state = self.outcome[tx_id]
        return state, "execution reverted" if state == "STATE_FAILED" else ""


def redeemer(tmp_path, relayer, clock, batch=4) -> Redeemer:
    rows = [winner(c) for c in CONDITIONS]
    return Redeemer(RedeemSettings(delay_s=0, batch=batch, poll_s=1), lambda: [r for r in rows
                                                                               if r.condition_id not in relayer_paid(relayer)],
                    Journal.open(tmp_path), relayer, clock=clock)


def relayer_paid(relayer) -> set[str]:
    paid = set()
    for i, conditions in enumerate(relayer.sent, 1):
        if relayer.outcome.get(f"tx-{i}") == "STATE_MINED":
            paid |= set(conditions)
    return paid


def test_batch_sizes_come_from_each_wallet_types_gas_figures():
    assert batch_limit("PROXY", 10) == 2  # 500k signed without an RPC: 2 x 150k after approval and overhead
    assert batch_limit("PROXY", 1) == 1
    assert batch_limit("SAFE", 10) == 10 and batch_limit("WALLET", 7) == 7  # the relayer estimates: config rules
    assert batch_limit("EOA", 10) == 1  # a plain key cannot batch calls


def test_plan_puts_limited_positions_in_small_batches_and_keeps_the_rest_together():
    actions = [Action("redeem", c, Decimal(5)) for c in CONDITIONS]
    rows = [winner(c) for c in CONDITIONS]
    batches = plan(rows, set(), 0.0, first_seen={}, delay_s=0, merge=False, batch=4,
                   limits={actions[3].key: 1, actions[2].key: 2})
    assert [[a.condition_id for a in b] for b in batches] == [[D], [C], [A, B]]


def run_cycles(tmp_path, relayer, cycles: int):
    """A redeemer over the four winners, stepped `cycles` times one second apart; (worker, clock cell)."""
    now = [1000.0]
    worker = redeemer(tmp_path, relayer, lambda: now[0])
    for _ in range(cycles):
        worker.step()
        now[0] += 1
    return worker, now


def test_a_failing_batch_splits_down_to_the_one_position_that_fails_alone(tmp_path):
    relayer = FakeRelayer(failing={D})
    worker, now = run_cycles(tmp_path, relayer, 5)
    assert relayer.sent == [[A, B, C, D], [A, B], [C, D], [C], [D]]
    assert relayer_paid(relayer) == {A, B, C}  # the healthy ones are redeemed
    snap = worker.snapshot()
    assert snap["failing_count"] == 1 and snap["failing_usd"] == 5.0 and snap["redeemed_today_usd"] == 15.0
    assert snap["warning"] == (f"redemption of btc-updown-{D[2:6]} ($5.00) failed alone 1 time(s) (execution "
                               "reverted); next try in 1 min")
    # Backed off: not resent before its time, whatever the cycles do.
    for _ in range(10):
        worker.step()
        now[0] += 1
    assert relayer.sent[-1] == [D] and len(relayer.sent) == 5


def test_a_refused_batch_splits_the_same_way(tmp_path):
    relayer = FakeRelayer(failing={B}, refuse=True)
    worker, _ = run_cycles(tmp_path, relayer, 4)
    assert relayer.sent == [[A, B, C, D], [A, B], [C, D], [A], [B]]
    assert relayer_paid(relayer) == {A, C, D}
    assert worker.snapshot()["failing_count"] == 1


def test_what_failures_taught_survives_a_restart_and_the_failing_one_is_given_up_in_the_end(tmp_path):
    relayer = FakeRelayer(failing={D})
    _, now = run_cycles(tmp_path, relayer, 5)
    saved = json.loads((tmp_path / "redeem.json").read_text())["entries"]
    d = next(e for e in saved if e["condition_id"] == D)
    assert d["alone_failures"] == 1 and d["max_batch"] == 1 and d["retry_at"] > now[0]
    # A restarted redeemer (new process, same state directory) keeps waiting, then sends D alone again.
    relayer2 = FakeRelayer(failing={D})
    restarted = Redeemer(RedeemSettings(delay_s=0, batch=4, poll_s=1), lambda: [winner(D)], Journal.open(tmp_path),
                         relayer2, clock=lambda: now[0])
    restarted.step()
    assert relayer2.sent == []
    waits = []
    while not restarted.snapshot().get("failing") or not restarted.snapshot()["failing"][0]["given_up"]:
        entry = restarted.journal.entries[f"redeem:{D}"]
        waits.append(entry.retry_at - now[0])
        now[0] = entry.retry_at + 1
        restarted.step()  # sends D alone
        now[0] += 1
        restarted.step()  # learns the revert
        assert len(waits) < 20, "never given up"
    assert all(sent == [D] for sent in relayer2.sent) and len(relayer2.sent) == 7  # 1 + 7 = 8 failures alone
    assert waits[0] <= ALONE_BACKOFF_S and waits[1:] == sorted(waits[1:])  # longer each time
    assert "given up: redeem it in Polymarket's UI" in restarted.snapshot()["warning"]
    count = len(relayer2.sent)
    now[0] += 10**6
    restarted.step()
    assert len(relayer2.sent) == count  # never again
