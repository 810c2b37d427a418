"""The funder each signature type trades from: our CREATE2 derivations against the official relayer client's, and
the words for a wrong pairing."""
from __future__ import annotations

import pytest
from eth_account import Account

from polymm.trader.venue import wallets
from polymm.trader.venue.contracts import DEPOSIT_WALLET_BEACON


def test_every_derivation_equals_the_official_clients_over_random_keys():
    from py_builder_relayer_client.builder.derive import (derive, derive_beacon_deposit_wallet, derive_proxy_wallet,
                                                          derive_uups_deposit_wallet)
    from py_builder_relayer_client.config import get_contract_config

    config = get_contract_config(137)
    for _ in range(25):
        owner = Account.create().address
        assert wallets.expected_funders(owner, 0) == (owner,)
        assert wallets.expected_funders(owner, 2) == (derive(owner, config.safe_factory),)
        assert wallets.expected_funders(owner, 1) == (derive_proxy_wallet(owner, config.proxy_factory),)
        assert wallets.expected_funders(owner, 3) == (
            derive_beacon_deposit_wallet(owner, config.deposit_wallet_factory, DEPOSIT_WALLET_BEACON),
            derive_uups_deposit_wallet(owner, config.deposit_wallet_factory, config.deposit_wallet_implementation))


def test_the_right_wallet_passes_and_a_wrong_one_names_the_expected_and_what_it_is():
    owner = Account.create().address
    safe, proxy = wallets.safe_wallet(owner), wallets.proxy_wallet(owner)
    assert wallets.funder_problem(owner, 2, safe.lower()) is None  # case does not matter
    assert wallets.funder_problem(owner, 0, None) is None
    words = wallets.funder_problem(owner, 2, proxy)
    assert safe in words and "it is this key's proxy wallet: set SIGNATURE_TYPE=1" in words
    words = wallets.funder_problem(owner, 0, safe)
    assert "SIGNATURE_TYPE=0 (EOA) trades from it" in words and "set SIGNATURE_TYPE=2" in words
    assert "none of this key's wallets" in wallets.funder_problem(owner, 1, "0x" + "ab" * 20)
    assert "(unset)" in wallets.funder_problem(owner, 3, None)
    with pytest.raises(ValueError):
        wallets.expected_funders(owner, 4)
