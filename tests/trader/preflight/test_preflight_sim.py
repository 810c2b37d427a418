"""`polymm-preflight` as a real process against the sim: the ready path, and every ✘ the sim can present.

One sim for the module (each test its own fresh wallet, faults cleared after it). The checks' words are asserted
where an operator acts on them (the fix); PK never appears in any output, not even a prefix.
"""
from __future__ import annotations

import json
import socket

import pytest

from polymm import env
from polymm.sim.testing import run_sim
from polymm.trader.venue import contracts
from polymm.trader.venue.wallets import proxy_wallet, safe_wallet
from tests.support.preflight import Account, by_name, line

pytestmark = pytest.mark.slow  # ~30 runs of the command, a second or two each (tests/trader/preflight/test_preflight_fast.py
# keeps the ready path and one failing run in the fast suite)

CRITICAL_NAMES = {"config", "pk", "signature_type", "funder", "state_dir", "ledger", "socket", "clock", "version",
                  "credentials", "closed_only", "balance", "market", "approval:pusd-exchange-v2",
                  "approval:ctf-exchange-v2", "geoblock"}
WARNING_NAMES = {"approval:pusd-exchange-v3", "approval:position-manager-exchange-v3", "approval:ctf-adapter",
                 "approval:neg-risk", "rtds", "data_api", "relayer", "pol"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=21, window_s=60) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(sim):
    yield
    sim.admin.fault("clear")
    sim.admin.relayer_fault(clear=True)


def dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def assert_no_secret(done, account: Account) -> None:
    body = account.pk[2:].lower()
    for text in (done.stdout.lower(), done.stderr.lower()):
        assert body[:8] not in text and body[-8:] not in text


def test_every_check_of_a_ready_safe_wallet_passes_in_json(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    code, result = account.json()
    checks = by_name(result)
    assert code == 0 and result["ready"] is True and result["critical_failed"] == [] and result["warnings"] == []
    assert {n for n, c in checks.items() if c["critical"]} == CRITICAL_NAMES
    assert {n for n, c in checks.items() if not c["critical"]} == WARNING_NAMES
    assert all(c["state"] == "passed" for c in result["checks"])
    assert account.funder in checks["funder"]["summary"] and "1,000.00 pUSD" in checks["balance"]["summary"]
    assert "read from the chain" in checks["approval:position-manager-exchange-v3"]["summary"]


@pytest.mark.parametrize("signature_type", [0, 1, 3])
def test_each_signature_type_trades_from_the_wallet_the_official_clients_derive(sim, tmp_path, signature_type):
    account = Account(sim, tmp_path / "a", signature_type=signature_type)
    code, result = account.json()
    checks = by_name(result)
    assert code == 0, [c for c in result["checks"] if c["state"] != "passed"]
    assert checks["funder"]["state"] == "passed" and account.funder in checks["funder"]["summary"]
    if signature_type == 0:
        assert checks["relayer"]["summary"].startswith("not used")


def test_a_wrong_funder_names_the_expected_wallet_and_the_signature_type_that_would_match(sim, tmp_path):
    account = Account(sim, tmp_path / "a", signature_type=2)
    done = account.run(**{env.BROWSER_ADDRESS: proxy_wallet(account.owner)})
    assert done.returncode == 1
    text = line(done.stdout, "funder")
    assert text.startswith("  ✘ funder") and safe_wallet(account.owner) in text
    assert "it is this key's proxy wallet: set SIGNATURE_TYPE=1" in text
    assert_no_secret(done, account)
    stranger = "0x" + "12" * 20
    done = account.run(**{env.BROWSER_ADDRESS: stranger, env.SIGNATURE_TYPE: "1"})
    text = line(done.stdout, "funder")
    assert proxy_wallet(account.owner) in text and "none of this key's wallets" in text


@pytest.mark.parametrize("value, words", [
    (None, "PK is not set"),
    ("0x" + "zz" * 32, "not a 32-byte hex key"),
    ("0x" + "00" * 32, "not a valid secp256k1 private key"),
])
def test_a_missing_or_malformed_key_is_refused_without_echoing_it(sim, tmp_path, value, words):
    account = Account(sim, tmp_path / "a")
    done = account.run(**{env.PK: value})
    assert done.returncode == 1
    assert line(done.stdout, "pk").startswith("  ✘ pk") and words in done.stdout
    assert line(done.stdout, "funder").startswith("  – funder")
    if value:
        assert value[2:10] not in done.stdout and value[-8:] not in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_bad_signature_type_is_refused(sim, tmp_path):
    done = Account(sim, tmp_path / "a").run(**{env.SIGNATURE_TYPE: "7"})
    assert done.returncode == 1 and "SIGNATURE_TYPE='7' is not 0, 1, 2 or 3" in line(done.stdout, "signature_type")


def test_clock_skew_geoblock_and_closed_only_each_fail_with_their_fix(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.fault("clock_skew", seconds=30)
    sim.admin.fault("geoblock", blocked=True, country="US", region="NY")
    sim.admin.fault("closed_only", address=account.funder)
    code, result = account.json()
    checks = by_name(result)
    assert code == 1 and set(result["critical_failed"]) == {"clock", "geoblock", "closed_only"}
    assert "behind the exchange" in checks["clock"]["summary"] and "timedatectl" in checks["clock"]["fix"]
    assert "US/NY" in checks["geoblock"]["summary"] and "permitted region" in checks["geoblock"]["fix"]
    assert "closed-only" in checks["closed_only"]["summary"]


def test_an_order_version_polymm_cannot_sign_fails_and_skips_the_approvals(sim, tmp_path):
    sim.admin.set_order_version(4)
    code, result = Account(sim, tmp_path / "a").json()
    checks = by_name(result)
    assert code == 1 and checks["version"]["state"] == "failed" and "upgrade polymm" in checks["version"]["fix"]
    assert checks["approvals"]["state"] == "skipped"


def test_credentials_the_exchange_refuses_fail_and_what_needs_them_is_skipped(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    done = account.run(**{env.POLY_API_KEY: "00000000-0000-0000-0000-000000000000", env.POLY_API_SECRET: "c2VjcmV0",
                          env.POLY_PASSPHRASE: "not-it"})
    assert done.returncode == 1
    assert line(done.stdout, "credentials").startswith("  ✘ credentials")
    assert "unset POLY_API_KEY, POLY_API_SECRET and POLY_PASSPHRASE" in done.stdout
    for name in ("balance", "closed_only", "approvals"):
        assert line(done.stdout, name).startswith(f"  – {name}")
    assert "c2VjcmV0" not in done.stdout and "not-it" not in done.stdout


def test_an_empty_wallet_fails_the_balance(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.fund(account.funder, -1000)
    code, result = account.json()
    assert code == 1 and result["critical_failed"] == ["balance"]
    assert "holds 0 pUSD" in by_name(result)["balance"]["summary"]


def test_an_unapproved_wallet_fails_every_trading_approval(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.set_chain(address=account.funder, only="none")
    code, result = account.json()
    checks = by_name(result)
    assert code == 1
    assert set(result["critical_failed"]) == {"approval:pusd-exchange-v2", "approval:ctf-exchange-v2"}
    assert set(result["warnings"]) == {"approval:pusd-exchange-v3", "approval:position-manager-exchange-v3",
                                       "approval:ctf-adapter"}
    assert "--fix-approvals" in checks["approval:pusd-exchange-v2"]["fix"]


def test_after_the_move_to_v3_its_approvals_are_critical_and_read_on_chain(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.set_chain(address=account.funder, only="v2")
    sim.admin.set_order_version(3)
    code, result = account.json()
    checks = by_name(result)
    assert code == 1
    assert set(result["critical_failed"]) == {"approval:pusd-exchange-v3", "approval:position-manager-exchange-v3"}
    assert checks["approval:pusd-exchange-v3"]["critical"] and not checks["approval:pusd-exchange-v2"]["critical"]
    # Without a Polygon RPC the position manager's approval cannot be read: not ready, and said why.
    account.rpc = False
    code, result = account.json()
    pm = by_name(result)["approval:position-manager-exchange-v3"]
    assert code == 1 and pm["state"] == "skipped" and "redeem.rpc_url" in pm["fix"]


def test_fix_approvals_sets_the_missing_ones_through_the_relayer_after_yes(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.set_chain(address=account.funder, only="none")
    before = sim.admin.relayer()["stats"]["submitted"]
    done = account.run("--fix-approvals")  # no terminal and no --yes: nothing is sent
    assert done.returncode == 1 and "not sent: no terminal to ask on; add --yes" in done.stdout
    assert sim.admin.relayer()["stats"]["submitted"] == before
    done = account.run("--fix-approvals", "--yes")
    assert done.returncode == 0, done.stdout
    assert "mined" in done.stdout and done.stdout.rstrip().endswith("READY for live trading: every critical check passed.")
    state = sim.admin.chain(account.funder)
    low = lambda a: a.lower()  # noqa: E731
    assert all(int(state["allowances"][low(x)]) > 0 for x in (contracts.EXCHANGE_V2, contracts.EXCHANGE_V3))
    assert all(state["approvals"][f"{low(t)}:{low(o)}"] for t, o in (
        (contracts.CTF, contracts.EXCHANGE_V2), (contracts.CTF, contracts.CTF_COLLATERAL_ADAPTER),
        (contracts.POSITION_MANAGER, contracts.EXCHANGE_V3)))
    assert_no_secret(done, account)


def test_a_type_0_wallet_is_shown_exactly_what_to_send(sim, tmp_path):
    account = Account(sim, tmp_path / "a", signature_type=0)
    sim.admin.set_chain(address=account.funder, only="none")
    sent = sim.admin.chain()["stats"]["transactions"]
    done = account.run("--fix-approvals", "--yes")
    assert done.returncode == 1
    assert f"send these 5 transaction(s) from {account.funder}" in done.stdout
    assert f"to:   {contracts.PUSD}" in done.stdout and f"to:   {contracts.POSITION_MANAGER}" in done.stdout
    approve_v2 = "0x095ea7b3" + "0" * 24 + contracts.EXCHANGE_V2[2:].lower()
    assert approve_v2 in done.stdout.lower()
    assert sim.admin.chain()["stats"]["transactions"] == sent


def test_the_hosts_own_problems_state_dir_ledger_socket(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    socket_file = tmp_path / "sock"
    socket_file.write_text("")
    done = account.run("--state-dir", str(blocker / "state"), "--socket", str(socket_file))
    assert line(done.stdout, "state_dir").startswith("  ✘ state_dir")
    assert "not a socket" in line(done.stdout, "socket")
    done = account.run("--state-dir", str(tmp_path / "state"))
    assert line(done.stdout, "ledger").startswith("  ✘ ledger") and done.returncode == 1


def test_services_besides_the_exchange_are_warnings(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    sim.admin.fault("freeze_rtds", on=True)
    code, result = account.json(**{env.DATA_URL: dead_url(), env.BUILDER_SECRET: "d3Jvbmc="})
    checks = by_name(result)
    assert code == 0 and result["ready"] is True  # trading works without them
    assert set(result["warnings"]) == {"rtds", "data_api", "relayer"}
    assert "no fresh Chainlink BTC/USD price" in checks["rtds"]["summary"]
    assert "refused the builder credentials (HTTP 401)" in checks["relayer"]["summary"]
    code, result = account.json(**{env.BUILDER_API_KEY: None, env.BUILDER_SECRET: None,
                                   env.BUILDER_PASS_PHRASE: None})
    assert "no builder credentials" in by_name(result)["relayer"]["summary"]


def test_a_type_0_wallet_needs_an_rpc_and_pol_for_its_own_redemptions(sim, tmp_path):
    account = Account(sim, tmp_path / "a", signature_type=0)
    sim.admin.set_chain(address=account.owner, pol=0)
    code, result = account.json()
    assert code == 0 and result["warnings"] == ["pol"] and "0.0000 POL" in by_name(result)["pol"]["summary"]
    account.rpc = False
    code, result = account.json()
    assert "no Polygon RPC configured" in by_name(result)["pol"]["summary"]


def test_secrets_come_from_the_traders_environment_file(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    env_file = tmp_path / "polymm.env"
    env_file.write_text(f"# the trader's secrets\nPK={account.pk}\nSIGNATURE_TYPE=\"2\"\n"
                        f"BROWSER_ADDRESS='{account.funder}'\n")
    done = account.run("--json", env_file=str(env_file), **{env.PK: None, env.SIGNATURE_TYPE: None,
                                                            env.BROWSER_ADDRESS: None})
    assert done.returncode == 0 and json.loads(done.stdout)["ready"] is True
    env_file.write_text("this line is not KEY=VALUE\n")
    done = account.run(env_file=str(env_file), **{env.PK: None})
    assert "line 1: expected KEY=VALUE" in line(done.stdout, "pk")


def test_a_config_that_does_not_load_and_an_unreachable_gamma(sim, tmp_path):
    account = Account(sim, tmp_path / "a")
    account.config.write_text("[s1]\nentry_threshold = 1.5\n")
    done = account.run()
    assert "s1.entry_threshold" in line(done.stdout, "config") and done.returncode == 1
    account.config.write_text("")
    done = account.run(**{env.GAMMA_URL: dead_url(), env.WINDOW_S: "900"})
    assert line(done.stdout, "market").startswith("  ✘ market") and done.returncode == 1
