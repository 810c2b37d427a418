"""The preflight's ready path and one failing run as real processes against the sim (the fast suite's share; every
other ✘ path is in test_preflight_sim.py, marked slow)."""
from __future__ import annotations

import pytest

from polymm.sim.testing import run_sim
from tests.support.preflight import Account, line


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=22, window_s=60) as running:
        yield running


def test_a_ready_wallet_gets_one_tick_per_line_in_two_groups_and_exit_0(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    done = account.run()
    assert done.returncode == 0, done.stdout
    out = done.stdout
    critical, warnings = out.index("Critical:"), out.index("Warnings:")
    assert critical < out.index("✔ funder") < warnings < out.index("✔ rtds")
    assert out.rstrip().endswith("READY for live trading: every critical check passed.")
    assert "✘" not in out and account.pk[2:10].lower() not in out.lower() and done.stderr == ""


def test_a_missing_approval_of_the_served_version_is_critical_and_exits_1(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.set_chain(address=account.funder, token="pusd", spender="0xE111180000d2663C0091e4f400237545B87B996B",
                        approved=False)
    done = account.run()
    assert done.returncode == 1
    assert line(done.stdout, "approval:pusd-exchange-v2").startswith("  ✘ approval:pusd-exchange-v2")
    assert "fix: polymm-preflight --fix-approvals" in done.stdout
    assert "NOT READY: 1 critical check(s) failed or could not run (approval:pusd-exchange-v2)" in done.stdout
