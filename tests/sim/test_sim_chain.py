"""The sim's chain: approvals (what the CLOB's balance-allowance reports and what orders need), the JSON-RPC
endpoint polymm reads approvals and sends a type-0 wallet's transactions through, and the strict funder check."""
from __future__ import annotations

import httpx
import pytest
from eth_abi import encode
from eth_account import Account
from py_clob_client_v2.clob_types import AssetType, BalanceAllowanceParams, OrderArgsV2, OrderType
from py_clob_client_v2.exceptions import PolyApiException

from polymm.sim.testing import new_wallet, run_sim
from polymm.trader.venue import contracts
from polymm.trader.venue.chain import ChainRpc, Reverted
from polymm.trader.venue.wallets import proxy_wallet, safe_wallet


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with run_sim(tmp_path_factory.mktemp("sim"), seed=51, window_s=900, extra_args=["--strict-funder"]) as running:
        yield running


def test_balance_allowance_and_eth_call_report_the_wallets_approvals(sim):
    pk, owner = new_wallet()
    client = sim.clob_client(pk)
    rpc = ChainRpc(sim.urls["rpc_url"])
    answer = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL))
    assert int(answer["allowances"][contracts.EXCHANGE_V3]) == 2**256 - 1  # a polymarket.com account's approvals
    sim.admin.set_chain(address=owner, only="v2")
    answer = client.get_balance_allowance(BalanceAllowanceParams(asset_type=AssetType.COLLATERAL))
    assert answer["allowances"][contracts.EXCHANGE_V3] == "0" and int(answer["allowances"][contracts.EXCHANGE_V2]) > 0
    assert rpc.erc20_allowance(contracts.PUSD, owner, contracts.EXCHANGE_V3) == 0
    assert rpc.erc1155_approved(contracts.CTF, owner, contracts.EXCHANGE_V2) is True
    assert rpc.erc1155_approved(contracts.POSITION_MANAGER, owner, contracts.EXCHANGE_V3) is False
    assert rpc.chain_id() == 137 and rpc.erc20_balance(contracts.PUSD, owner) == 1000 * 10**6
    rpc.close()


def test_an_order_the_wallet_has_not_approved_for_the_served_version_is_refused_as_balance_allowance(sim):
    pk, owner = new_wallet()
    client = sim.clob_client(pk)
    sim.admin.set_chain(address=owner, token="pusd", spender=contracts.EXCHANGE_V2, approved=False)
    token = sim.admin.live_market()["up_token"]
    with pytest.raises(PolyApiException, match="not enough balance / allowance"):
        client.post_order(client.create_order(OrderArgsV2(token_id=token, price=0.05, size=5, side="BUY")),
                          OrderType.GTC)


def test_a_maker_that_is_not_the_signers_wallet_is_refused_with_strict_funder(sim):
    pk, owner = new_wallet()
    token = sim.admin.live_market()["up_token"]
    wrong = sim.clob_client(pk, signature_type=2, funder=proxy_wallet(owner))  # the proxy, not the Safe
    with pytest.raises(PolyApiException, match="invalid signature"):
        wrong.post_order(wrong.create_order(OrderArgsV2(token_id=token, price=0.05, size=5, side="BUY")),
                         OrderType.GTC)
    right = sim.clob_client(pk, signature_type=2, funder=safe_wallet(owner))
    answer = right.post_order(right.create_order(OrderArgsV2(token_id=token, price=0.05, size=5, side="BUY")),
                              OrderType.GTC)
    assert answer["success"] is True
    right.cancel_all()


def test_a_plain_transaction_pays_gas_in_pol_and_a_predicted_revert_is_an_rpc_error(sim):
    pk, owner = new_wallet()
    rpc = ChainRpc(sim.urls["rpc_url"])
    selector = bytes.fromhex("a22cb465")  # setApprovalForAll(address,bool)
    data = "0x" + (selector + encode(["address", "bool"], [contracts.EXCHANGE_V3, True])).hex()
    gas = rpc.estimate_gas(owner, contracts.POSITION_MANAGER, data)
    price = rpc.gas_price()
    signed = Account.from_key(pk).sign_transaction({
        "type": 2, "chainId": 137, "nonce": rpc.nonce(owner), "to": contracts.POSITION_MANAGER, "value": 0,
        "data": data, "gas": gas, "maxFeePerGas": 2 * price, "maxPriorityFeePerGas": price})
    before = rpc.balance_wei(owner)
    receipt = rpc.wait_receipt(rpc.send_raw(bytes(signed.raw_transaction)), timeout_s=5)
    assert int(receipt["status"], 16) == 1 and rpc.balance_wei(owner) == before - int(receipt["gasUsed"], 16) * price
    assert rpc.erc1155_approved(contracts.POSITION_MANAGER, owner, contracts.EXCHANGE_V3)
    redeem = "0x01b7037c" + encode(["address", "bytes32", "bytes32", "uint256[]"],
                                   [contracts.PUSD, b"\0" * 32, b"\x12" * 32, [1, 2]]).hex()
    with pytest.raises(Reverted, match="not prepared"):
        rpc.estimate_gas(owner, contracts.CTF_COLLATERAL_ADAPTER, redeem)
    bad = httpx.post(sim.urls["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_mine"}).json()
    assert bad["error"]["code"] == -32601
    rpc.close()
