"""The preflight's pure parts: how results are shown and judged, the trader's environment file, what an
exchange answer says about an approval."""
from __future__ import annotations

import json

import pytest

from polymm.trader.preflight.context import EnvFileError, read_env_file
from polymm.trader.preflight.report import exit_code, failed, passed, render_json, render_text, skipped
from polymm.trader.venue import approvals
from polymm.trader.venue.approvals import Approval, State, from_exchange, trading_approvals
from polymm.trader.venue.contracts import CTF, EXCHANGE_V2, EXCHANGE_V3, POSITION_MANAGER, PUSD


def test_exit_0_only_when_every_critical_check_passed():
    ok = [passed("a", "fine"), failed("w", "meh", "do x", critical=False)]
    assert exit_code(ok) == 0
    assert exit_code(ok + [failed("c", "bad", "do y")]) == 1
    assert exit_code(ok + [skipped("c", "needs a key")]) == 1  # what could not run is not a pass


def test_text_groups_critical_and_warnings_and_puts_the_fix_on_the_line():
    text = render_text([passed("pk", "PK is set"), failed("clock", "30 s behind", "synchronise it"),
                        failed("rtds", "no stream", "retry", critical=False)], "heading")
    lines = text.splitlines()
    assert lines[0] == "heading"
    assert lines.index("Critical: trading needs these (the trader refuses to start live without the first ones)") \
        < lines.index("  ✘ clock  30 s behind — fix: synchronise it") \
        < lines.index("Warnings: trading works without these; something else does not")
    assert lines[-1] == "NOT READY: 1 critical check(s) failed or could not run (clock); 1 warning(s) (rtds)."


def test_json_says_ready_and_lists_what_failed():
    result = json.loads(render_json([passed("pk", "ok"), failed("rtds", "no", "retry", critical=False)]))
    assert result["ready"] is True and result["warnings"] == ["rtds"] and result["critical_failed"] == []
    assert result["checks"][1] == {"name": "rtds", "critical": False, "ok": False, "summary": "no", "fix": "retry",
                                   "state": "failed"}


def test_the_environment_file_is_read_as_systemd_reads_it(tmp_path):
    path = tmp_path / "polymm.env"
    path.write_text("# comment\n; another\n\nPK=0xabc\nSIGNATURE_TYPE=\"2\"\nBROWSER_ADDRESS='0x12'\nEMPTY=\n")
    assert read_env_file(path) == {"PK": "0xabc", "SIGNATURE_TYPE": "2", "BROWSER_ADDRESS": "0x12", "EMPTY": ""}
    path.write_text("PK 0xabc\n")
    with pytest.raises(EnvFileError, match="line 1: expected KEY=VALUE"):
        read_env_file(path)
    path.write_text("PK='0xabc\n")
    with pytest.raises(EnvFileError, match="unbalanced quotes"):
        read_env_file(path)
    with pytest.raises(EnvFileError, match="missing"):
        read_env_file(tmp_path / "missing")


def test_each_order_version_needs_its_own_exchange_as_spender():
    v2, v3 = trading_approvals(2), trading_approvals(3)
    assert [(a.token, a.spender, a.erc20) for a in v2] == [(PUSD, EXCHANGE_V2, True), (CTF, EXCHANGE_V2, False)]
    assert [(a.token, a.spender, a.erc20) for a in v3] == [(PUSD, EXCHANGE_V3, True),
                                                           (POSITION_MANAGER, EXCHANGE_V3, False)]
    with pytest.raises(ValueError, match="order version 4"):
        trading_approvals(4)


def test_the_calls_that_set_them_are_the_erc20_and_erc1155_abis():
    to, data = Approval(PUSD, EXCHANGE_V3, True, "buys").call()
    assert to == PUSD and data.startswith("0x095ea7b3") and data.endswith("f" * 64)  # approve(spender, max)
    to, data = Approval(CTF, EXCHANGE_V2, False, "sells").call()
    assert to == CTF and data.startswith("0xa22cb465") and data.endswith("0" * 63 + "1")  # setApprovalForAll(op, true)


@pytest.mark.parametrize("allowances, balance, state", [
    ({EXCHANGE_V2.lower(): str(2**256 - 1)}, 5_000_000, State.APPROVED),  # keys compare without case
    ({EXCHANGE_V2: "7000000"}, 5_000_000, State.APPROVED),  # covers the balance
    ({EXCHANGE_V2: "1000000"}, 5_000_000, State.MISSING),  # less than the balance: larger buys are refused
    ({EXCHANGE_V2: "0"}, 5_000_000, State.MISSING),
    ({"0x" + "11" * 20: "5"}, 5_000_000, None),  # the exchange does not name this spender
    (None, 0, None),
])
def test_what_the_exchanges_allowances_say_about_a_pusd_approval(allowances, balance, state):
    reading = from_exchange(Approval(PUSD, EXCHANGE_V2, True, "buys"), allowances, balance)
    assert (reading.state if reading else None) == state


def test_an_approval_nothing_can_read_is_unknown_with_the_reason():
    (reading,) = approvals.read_approvals(trading_approvals(3)[1:], "0x" + "22" * 20, collateral=None,
                                          conditional=None, rpc=None)
    assert reading.state is State.UNKNOWN and "no Polygon RPC is configured" in reading.detail
