"""The redeemer's pure parts: calldata, plan, accounting, journal, credentials."""
from __future__ import annotations

from decimal import Decimal

import pytest
from eth_abi import decode

from polymm.trader.redeem import calls as ctf
from tests.support.recorded import FIXTURES
from polymm.trader.redeem.journal import Journal
from polymm.trader.redeem.plan import Action, plan, worth
from polymm.trader.redeem.positions import PositionRow, PositionsError, decode_rows
from polymm.trader.redeem.relayer import Credentials, RedeemSetupError, unsupported_reason

C1, C2, C3 = "0x" + "11" * 32, "0x" + "22" * 32, "0x" + "33" * 32
END = "2026-12-04T13:45:00Z"
END_TS = 1796391900.0


def row(condition=C1, index=0, size=5.0, price=0.5, redeemable=False, neg=False, end=END) -> PositionRow:
    return PositionRow(asset=f"{condition}-{index}", condition_id=condition, size=size, cur_price=price,
                       redeemable=redeemable, mergeable=False, outcome="Up" if index == 0 else "Down",
                       outcome_index=index, negative_risk=neg, end_date=end, slug="btc-updown-15m-1")


def test_calldata_is_the_adapters_abi_with_pusd_and_the_binary_partition():
    redeem = ctf.redeem(C1)
    assert redeem.to == ctf.CTF_COLLATERAL_ADAPTER and redeem.data.startswith("0x01b7037c")
    collateral, parent, condition, sets = decode(["address", "bytes32", "bytes32", "uint256[]"],
                                                 bytes.fromhex(redeem.data[10:]))
    assert (collateral.lower(), parent, "0x" + condition.hex(), list(sets)) == (ctf.PUSD.lower(), b"\0" * 32, C1, [1, 2])
    merge = ctf.merge(C1, Decimal("5.1234567"))
    *_, amount = decode(["address", "bytes32", "bytes32", "uint256[]", "uint256"], bytes.fromhex(merge.data[10:]))
    assert amount == 5_123_456  # rounded down to the token's 6 decimals
    assert ctf.approve_adapter().to == ctf.CTF
    with pytest.raises(ValueError):
        ctf.merge(C1, Decimal("0.0000001"))
    with pytest.raises(ValueError):
        ctf.redeem("0x1234")


def test_plan_redeems_after_the_delay_and_batches():
    rows = [row(C1, 0, 5, 1.0, True), row(C1, 1, 3, 0.0, True), row(C2, 1, 2, 1.0, True), row(C3, 0, 4, 0.0, True)]
    seen = {C1: 100.0, C2: 100.0, C3: 150.0}
    assert plan(rows, set(), 120.0, first_seen=seen, delay_s=30, merge=False, batch=10) == []
    batches = plan(rows, set(), 131.0, first_seen=seen, delay_s=30, merge=False, batch=1)
    assert [[(a.kind, a.condition_id, a.shares) for a in b] for b in batches] == [
        [("redeem", C1, Decimal(5))], [("redeem", C2, Decimal(2))]]
    later = plan(rows, {f"redeem:{C1}"}, 200.0, first_seen=seen, delay_s=30, merge=False, batch=10)
    assert [a.condition_id for b in later for a in b] == [C2, C3]  # C1 in flight; C3 lost: cleared for 0
    assert later[0][1].shares == 0


def test_plan_merges_full_sets_only_of_ended_unresolved_windows():
    rows = [row(C1, 0, 5), row(C1, 1, 7.5), row(C2, 0, 5), row(C3, 0, 4), row(C3, 1, 4, neg=True)]
    assert plan(rows, set(), END_TS - 1, first_seen={}, delay_s=0, merge=True, batch=10) == []
    (batch,) = plan(rows, set(), END_TS, first_seen={}, delay_s=0, merge=True, batch=10)
    assert batch == [Action("merge", C1, Decimal(5), "btc-updown-15m-1")]
    assert plan(rows, set(), END_TS, first_seen={}, delay_s=0, merge=False, batch=10) == []


def test_worth_counts_winners_awaiting_and_marks_open_positions():
    rows = [row(C1, 0, 5, 1.0, True), row(C1, 1, 3, 0.0, True), row(C2, 0, 10, 0.42), row(C3, 0, 2, 1.0, True, neg=True)]
    w = worth(rows)
    assert (w.awaiting_usd, w.awaiting_count, w.open_value_usd, w.unresolved_count, w.neg_risk_count) == (
        5.0, 1, 4.2, 1, 1)


def test_positions_rows_decode_the_recorded_answer_and_reject_junk():
    rows = decode_rows((FIXTURES / "nautilus-rust/test_data/data_api_positions_response.json").read_bytes())
    assert rows and any(r.redeemable for r in rows) and all(isinstance(r.size, float) for r in rows)
    with pytest.raises(PositionsError, match="not a list of positions"):
        decode_rows(b'{"error": "rate limited"}')


def test_journal_survives_a_restart_and_knows_what_is_in_flight(tmp_path):
    j = Journal.open(tmp_path)
    batch = [Action("redeem", C1, Decimal(5), "s1"), Action("merge", C2, Decimal(2), "s2")]
    j.begin(batch, 1000.0)
    assert j.busy(1000.0, 120) == {f"redeem:{C1}", f"merge:{C2}"}
    assert j.busy(1121.0, 120) == set()  # outcome unknown for long: may go again
    j.sent(batch, "tx-1", 1001.0)
    again = Journal.open(tmp_path)
    assert again.pending_tx_ids() == ["tx-1"] and again.busy(5000.0, 120) == {f"redeem:{C1}", f"merge:{C2}"}
    done = again.finish("tx-1", "confirmed", 1002.0)
    assert len(done) == 2 and again.pending_tx_ids() == []
    assert Journal.open(tmp_path).today(1002.0) == {"redeemed_today_usd": 5.0, "merged_today_usd": 2.0}
    assert Journal.open(tmp_path).today(1002.0 + 86400) == {"redeemed_today_usd": 0.0, "merged_today_usd": 0.0}


def test_an_unreadable_journal_is_set_aside_with_a_warning(tmp_path, caplog):
    (tmp_path / "redeem.json").write_text("{not json")
    j = Journal.open(tmp_path)
    assert j.entries == {}
    assert list(tmp_path.glob("redeem.json.bad-*"))
    assert "unreadable" in caplog.text


def test_credentials_all_or_none_and_never_shown():
    assert Credentials.from_env(lambda name: None) is None
    values = {"BUILDER_API_KEY": "k-123", "BUILDER_SECRET": "s3cr3t", "BUILDER_PASS_PHRASE": "p4ss"}
    creds = Credentials.from_env(values.get)
    assert "s3cr3t" not in repr(creds) and "p4ss" not in repr(creds) and "k-123" not in repr(creds)
    with pytest.raises(RedeemSetupError, match="or none of them"):
        Credentials.from_env({"BUILDER_API_KEY": "k"}.get)


def test_wallet_types_polymm_cannot_serve_say_so():
    assert unsupported_reason(1) is None and unsupported_reason(2) is None and unsupported_reason(3) is None
    assert "POL" in unsupported_reason(0)


class _Section:
    enabled, delay_s, batch, merge = True, 30.0, 10, False


@pytest.mark.parametrize("sig, environ, words", [
    (2, {}, None),  # no credentials: the standard warning (worker.NO_CREDENTIALS)
    (0, {"BUILDER_API_KEY": "k", "BUILDER_SECRET": "s", "BUILDER_PASS_PHRASE": "p"}, "plain EOA"),
    (3, {}, None),
    (2, {"BUILDER_API_KEY": "k"}, "or none of them"),
])
def test_without_a_usable_setup_the_redeemer_only_reports_and_says_why(tmp_path, sig, environ, words):
    from polymm.trader.redeem.service import build_redeemer

    redeemer = build_redeemer(_Section(), funder="0x" + "11" * 20, signature_type=sig, state_dir=tmp_path,
                              get=environ.get)
    assert redeemer.relayer is None
    assert (redeemer.off_reason is None) if words is None else (words in redeemer.off_reason)


def test_a_type_0_wallet_redeems_with_its_own_transactions_only_with_an_rpc(tmp_path):
    from polymm.trader.redeem.service import build_redeemer

    pk = "0x" + "5a" * 32
    without = build_redeemer(_Section(), funder="0x" + "11" * 20, signature_type=0, state_dir=tmp_path,
                             get={"PK": pk}.get)
    assert without.relayer is None and "set redeem.rpc_url (or POLYMM_RPC_URL) and hold POL" in without.off_reason
    section = _Section()
    section.rpc_url = "https://polygon.example/v2/the-providers-key"
    with_rpc = build_redeemer(section, funder="0x" + "11" * 20, signature_type=0, state_dir=tmp_path,
                              get={"PK": pk}.get)
    assert with_rpc.relayer.kind == "EOA" and with_rpc.batch == 1 and with_rpc.off_reason is None
    assert "the-providers-key" not in with_rpc.relayer.rpc.where  # a provider's key never reaches a message
    env_wins = build_redeemer(_Section(), funder="0x" + "11" * 20, signature_type=0, state_dir=tmp_path,
                              get={"PK": pk, "POLYMM_RPC_URL": "http://127.0.0.1:9/rpc"}.get)
    assert env_wins.relayer.rpc.url == "http://127.0.0.1:9/rpc"


@pytest.mark.parametrize("sig, what", [(1, "proxy wallet"), (2, "Safe"), (3, "deposit wallet")])
def test_a_funder_that_is_not_the_keys_wallet_turns_redemption_off(tmp_path, sig, what):
    from polymm.trader.redeem.service import build_redeemer

    environ = {"PK": "0x" + "12" * 32, "BUILDER_API_KEY": "k", "BUILDER_SECRET": "czNjcjN0", "BUILDER_PASS_PHRASE": "p"}
    redeemer = build_redeemer(_Section(), funder="0x" + "11" * 20, signature_type=sig, state_dir=tmp_path,
                              get=environ.get)
    assert redeemer.relayer is None and f"is not the {what} of PK" in redeemer.off_reason


def test_an_unreachable_data_api_is_said_once_not_every_cycle(tmp_path, caplog):
    from polymm.trader.redeem.worker import Redeemer, RedeemSettings

    now = [1000.0]

    def down():
        raise PositionsError("Data API positions unreachable at http://127.0.0.1:9: connection refused")

    redeemer = Redeemer(RedeemSettings(), down, Journal.open(tmp_path), None, clock=lambda: now[0])
    for _ in range(5):
        redeemer.step()
        now[0] += 15
    assert caplog.text.count("unreachable") == 1
    assert "unreachable" in redeemer.snapshot()["last_error"]
    now[0] += 600
    redeemer.step()
    assert caplog.text.count("unreachable") == 2


def test_failing_alone_backs_off_and_is_given_up_a_merge_after_3_a_redemption_after_8(tmp_path):
    from polymm.trader.redeem.journal import MAX_ALONE_FAILURES, MAX_MERGE_ATTEMPTS

    j = Journal.open(tmp_path)
    merge, redeem = Action("merge", C1, Decimal(5)), Action("redeem", C2, Decimal(5))
    now = 1000.0
    for attempt in range(MAX_ALONE_FAILURES):
        for action in (merge, redeem):
            if action.key in j.busy(now, 120):
                continue
            j.begin([action], now)
            j.sent([action], f"tx-{attempt}-{action.kind}", now)
            j.finish(f"tx-{attempt}-{action.kind}", "failed", now, "STATE_FAILED", reverted=True)
        now += 6 * 3600 + 1  # past any back-off
    entries = Journal.open(tmp_path).entries  # what was learnt survives a restart
    assert entries[merge.key].given_up and entries[merge.key].alone_failures == MAX_MERGE_ATTEMPTS
    assert entries[redeem.key].given_up and entries[redeem.key].alone_failures == MAX_ALONE_FAILURES
    assert {merge.key, redeem.key} <= j.busy(now + 10**6, 120)

