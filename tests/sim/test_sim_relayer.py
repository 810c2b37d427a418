"""The sim's relayer refuses what production refuses: a wrong builder key or HMAC, a tampered signed
request, a request signed by someone else, a replayed nonce. Requests are built by the official client
(py-builder-relayer-client) exactly as it sends them."""
from __future__ import annotations

import json
import time

import pytest
import requests

from polymm.sim import relayer_requests as rr
from polymm.sim.testing import new_wallet, run_sim
from polymm.trader.redeem import calls as ctf
from tests.support.redeem import Wallet


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=17, window_s=600, extra_args=["--redeem", "manual"]) as s:
        yield s


def signed_request(sim, wallet: Wallet, calls) -> dict:
    """The body the official client would POST to /submit (built by its own code, not sent)."""
    from py_builder_relayer_client.builder.proxy import build_proxy_transaction_request
    from py_builder_relayer_client.builder.safe import build_safe_transaction_request
    from py_builder_relayer_client.encode.proxy import encode_proxy_transaction_data
    from py_builder_relayer_client.models import (CallType, OperationType, ProxyTransaction, ProxyTransactionArgs,
                                                  SafeTransaction, SafeTransactionArgs)

    client = wallet.relayer()._client
    base = sim.urls["relayer_url"]
    if wallet.kind == "WALLET":
        from py_builder_relayer_client.builder.deposit_wallet import build_deposit_wallet_batch_request
        from py_builder_relayer_client.models import DepositWalletCall, DepositWalletTransactionArgs

        nonce = requests.get(f"{base}/nonce", params={"address": wallet.owner, "type": "WALLET"}).json()["nonce"]
        args = DepositWalletTransactionArgs(
            from_address=wallet.owner, chain_id=137, wallet_address=wallet.address, nonce=nonce,
            deadline=str(int(time.time()) + 600),
            calls=[DepositWalletCall(target=c.to, value="0", data=c.data) for c in calls])
        return build_deposit_wallet_batch_request(client.signer, args, client.contract_config).to_dict()
    if wallet.kind == "SAFE":
        nonce = requests.get(f"{base}/nonce", params={"address": wallet.owner, "type": "SAFE"}).json()["nonce"]
        txs = [SafeTransaction(to=c.to, operation=OperationType.Call, data=c.data, value="0") for c in calls]
        args = SafeTransactionArgs(from_address=wallet.owner, nonce=nonce, chain_id=137, transactions=txs)
        return build_safe_transaction_request(client.signer, args, client.contract_config).to_dict()
    payload = requests.get(f"{base}/relay-payload", params={"address": wallet.owner, "type": "PROXY"}).json()
    data = encode_proxy_transaction_data([ProxyTransaction(to=c.to, type_code=CallType.Call, data=c.data, value="0")
                                          for c in calls])
    args = ProxyTransactionArgs(from_address=wallet.owner, nonce=payload["nonce"], gas_price="0", data=data,
                                relay=payload["address"], gas_limit="500000")
    return build_proxy_transaction_request(client.signer, args, client.contract_config).to_dict()


def submit(sim, body: dict, creds: dict | None = None) -> requests.Response:
    """POST /submit with builder headers over the exact body text."""
    from py_builder_signing_sdk.config import BuilderConfig
    from py_builder_signing_sdk.sdk_types import BuilderApiKeyCreds

    creds = creds or sim.admin.relayer()["builder_creds"]
    text = json.dumps(body)
    headers = BuilderConfig(local_builder_creds=BuilderApiKeyCreds(**creds)).generate_builder_headers(
        "POST", "/submit", text).to_dict()
    return requests.post(sim.urls["relayer_url"] + "/submit", data=text, headers={**headers,
                                                                                "Content-Type": "application/json"})


@pytest.mark.parametrize("kind", ["SAFE", "PROXY", "WALLET"])
def test_a_genuine_request_is_accepted(sim, kind):
    wallet = Wallet(sim, kind)
    answer = submit(sim, signed_request(sim, wallet, [ctf.approve_adapter()]))
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"transactionID", "transactionHash", "state"}


def tamper(body: dict) -> None:
    """Change the last byte of the calldata."""
    holder = body["depositWalletParams"]["calls"][0] if body["type"] == "WALLET" else body
    holder["data"] = holder["data"][:-2] + ("00" if holder["data"][-2:] != "00" else "01")


@pytest.mark.parametrize("kind", ["SAFE", "PROXY", "WALLET"])
def test_a_tampered_request_is_refused(sim, kind):
    wallet = Wallet(sim, kind)
    body = signed_request(sim, wallet, [ctf.redeem("0x" + "ab" * 32)])
    tamper(body)
    answer = submit(sim, body)
    assert answer.status_code == 400 and "invalid signature" in answer.json()["error"]


@pytest.mark.parametrize("kind", ["SAFE", "PROXY", "WALLET"])
def test_a_request_for_someone_elses_wallet_is_refused(sim, kind):
    wallet, other = Wallet(sim, kind), Wallet(sim, kind)
    body = signed_request(sim, wallet, [ctf.approve_adapter()])
    if kind == "WALLET":
        body["depositWalletParams"]["depositWallet"] = other.address  # run it from another owner's wallet
    else:
        body["proxyWallet"] = other.address
    answer = submit(sim, body)
    assert answer.status_code == 400 and "is not the" in answer.json()["error"]
    body = signed_request(sim, wallet, [ctf.approve_adapter()])
    body["from"] = other.owner  # claim another owner signed it
    answer = submit(sim, body)
    assert answer.status_code == 400


def test_wrong_builder_credentials_and_replays_are_refused(sim):
    wallet = Wallet(sim)
    body = signed_request(sim, wallet, [ctf.approve_adapter()])
    creds = dict(sim.admin.relayer()["builder_creds"])
    creds["secret"] = "c2ltLXdyb25nLXNlY3JldC1zaW0td3Jvbmctc2VjcmV0MDA="
    assert submit(sim, body, creds).status_code == 401
    assert submit(sim, body).status_code == 200
    replay = submit(sim, body)  # the same signed request again: its nonce is used
    assert replay.status_code == 400 and "nonce" in replay.json()["error"]


def test_wallet_addresses_match_the_official_derivation():
    from py_builder_relayer_client.builder.derive import (derive, derive_beacon_deposit_wallet, derive_proxy_wallet,
                                                          derive_uups_deposit_wallet)
    from py_builder_relayer_client.config import get_contract_config

    _, owner = new_wallet()
    config = get_contract_config(137)
    assert rr.safe_of(owner) == derive(owner, config.safe_factory).lower()
    assert rr.proxy_of(owner) == derive_proxy_wallet(owner, config.proxy_factory).lower()
    assert rr.deposit_wallets_of(owner) == {
        derive_beacon_deposit_wallet(owner, config.deposit_wallet_factory, rr.DEPOSIT_WALLET_BEACON).lower(),
        derive_uups_deposit_wallet(owner, config.deposit_wallet_factory, config.deposit_wallet_implementation).lower()}


def test_an_expired_deposit_wallet_batch_is_refused(sim):
    wallet = Wallet(sim, "WALLET")
    body = signed_request(sim, wallet, [ctf.approve_adapter()])
    body["depositWalletParams"]["deadline"] = str(int(time.time()) - 1)  # (the signature no longer matches either)
    answer = submit(sim, body)
    assert answer.status_code == 400 and "deadline" in answer.json()["error"]


def test_calls_outside_the_adapter_revert_and_change_nothing(sim):
    wallet = Wallet(sim)
    m = sim.admin.live_market()
    wallet.buy(m["up_token"], 5)
    sim.admin.resolve_now(m["condition_id"], "Up")
    before = wallet.cash()
    raw_ctf = ctf.Call(ctf.CTF, ctf.redeem(m["condition_id"]).data)  # straight to the CTF: not how pUSD redeems
    answer = submit(sim, signed_request(sim, wallet, [ctf.approve_adapter(), raw_ctf]))
    assert answer.status_code == 200
    tx = requests.get(sim.urls["relayer_url"] + "/transaction", params={"id": answer.json()["transactionID"]}).json()
    assert tx[0]["state"] == "STATE_FAILED" and "not supported" in tx[0]["error"]
    assert wallet.cash() == before and wallet.shares()
    # Without the adapter's approval the adapter cannot burn the shares (a polymarket.com account has it; this
    # wallet is made to lack it).
    sim.admin.set_chain(address=wallet.address, token="ctf", spender=ctf.CTF_COLLATERAL_ADAPTER, approved=False)
    answer = submit(sim, signed_request(sim, wallet, [ctf.redeem(m["condition_id"])]))
    tx = requests.get(sim.urls["relayer_url"] + "/transaction", params={"id": answer.json()["transactionID"]}).json()
    assert tx[0]["state"] == "STATE_FAILED" and "approve" in tx[0]["error"]
    assert wallet.cash() == before
