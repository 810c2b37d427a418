"""The trader's live start runs the cheap critical subset of polymm-preflight: a wrong funder or missing approvals
for the served order version refuse the start in one line with exit 2 (the unit's RestartPreventExitStatus=2: no
restart loop); paper trading needs neither and starts. sim + feed + trader as real processes."""
from __future__ import annotations

import pytest

from polymm import env
from polymm.demo import Stack, demo_config
from polymm.trader.venue.wallets import proxy_wallet, safe_wallet
from tests.support.live_trader import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("start-checks"), window_s=60, seed=31, config_text=demo_config(60))
    try:
        stack.start(trader=False)
    except BaseException:
        stack.close()
        raise
    yield stack
    stack.close()


@pytest.fixture(autouse=True)
def approved(stack):
    stack.sim.admin.set_chain(address=stack.address, only="all")
    yield
    stack.stop_trader()


def refused(stack, extra_env=None, args=()) -> str:
    """Start the trader, expect it to exit 2; return its last log line."""
    log = stack.workdir / "trader.log"
    before = log.read_text() if log.exists() else ""
    proc = stack.start_trader(wait_s=0, extra_env=extra_env, args=args)
    code = proc.wait(timeout=60)
    lines = log.read_text()[len(before):].strip().splitlines()
    assert code == 2, "\n".join(lines[-20:])
    assert stack.pk[2:10].lower() not in "\n".join(lines).lower()
    return next(line for line in reversed(lines) if "not starting" in line)


def test_a_funder_that_is_not_the_keys_wallet_refuses_live_at_once(stack):
    line = refused(stack, {env.SIGNATURE_TYPE: "2", env.BROWSER_ADDRESS: proxy_wallet(stack.address)})
    assert (f"not starting: refusing to start live: BROWSER_ADDRESS {proxy_wallet(stack.address)} is not the Safe of "
            f"this key for SIGNATURE_TYPE=2 (expected {safe_wallet(stack.address)})") in line


def test_missing_approvals_refuse_live_but_paper_trading_starts(stack):
    stack.sim.admin.set_chain(address=stack.address, only="none")
    line = refused(stack)
    assert (f"not starting: refusing to start live: wallet {stack.address} lacks the approvals order version 2 "
            "needs (pUSD → Exchange V2 (buys), the conditional tokens (CTF) → Exchange V2 (sells)); run "
            "polymm-preflight --fix-approvals") in line
    stack.start_trader(args=("--paper",))
    assert stack.status().mode == "paper"


def test_after_the_move_to_v3_a_wallet_with_v3_approvals_starts_live(stack):
    stack.sim.admin.set_chain(address=stack.address, only="v2")
    stack.sim.admin.set_order_version(3)
    try:
        line = refused(stack)
        assert "lacks the approvals order version 3 needs (pUSD → Exchange V3 (buys))" in line
        stack.sim.admin.set_chain(address=stack.address, only="all")
        stack.start_trader()
        wait_for(lambda: stack.status().state != "starting", timeout_s=30, what="the trader running")
        assert stack.status().mode == "live"
    finally:
        stack.sim.admin.fault("clear")
