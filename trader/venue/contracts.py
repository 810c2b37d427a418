"""Polymarket's contracts on Polygon (chain 137): one definition of every address polymm signs for, approves or
calls, with the official source of each.

Sources: py-clob-client-v2 1.2.1 `config.get_contract_config(137)` (exchanges per order version, pUSD, CTF),
py-builder-relayer-client 0.0.3 `config.py` (Safe/proxy/deposit-wallet factories, relay hub), Polymarket/py-sdk
`src/polymarket/environments.py` (the collateral adapters, the position manager and the deposit-wallet beacon the
CLOB client does not carry). docs/venue.md lists them with the tests that pin them.
"""
from __future__ import annotations

CHAIN_ID = 137

# Collateral and outcome tokens.
PUSD = "0xC011a7E12a19f7B1f670d46F03B03f3342E82DFB"  # ERC-20, 6 decimals (collateral since CLOB V2)
CTF = "0x4D97DCd97eC945f40cF65F87097ACe5EA0476045"  # Conditional Tokens (ERC-1155): the V2 exchanges' outcome shares
# Order version 3 trades the position manager's ERC-1155 positions (py-sdk resolve_order_exchange_address:
# a "V2 position id" goes to exchange_v3; _required_trading_approvals: position_manager -> exchange_v3).
POSITION_MANAGER = "0x006F54F7f9A22e0000CC2AB60031000000ae9fEF"

# Exchanges (the EIP-712 verifying contracts; also the spenders the wallet must approve).
EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
NEG_RISK_EXCHANGE_V2 = "0xe2222d279d744050d28e00520010520000310F59"
EXCHANGE_V3 = "0xe3333700cA9d93003F00f0F71f8515005F6c00Aa"  # one contract, whatever neg-risk says

# Redemption and merging: pUSD-native CTF actions go through the collateral adapter (docs/redemption.md).
CTF_COLLATERAL_ADAPTER = "0xAdA100Db00Ca00073811820692005400218FcE1f"
NEG_RISK_COLLATERAL_ADAPTER = "0xadA2005600Dec949baf300f4C6120000bDB6eAab"

# Wallet factories (signature types 1-3) and the relayer's hub.
PROXY_FACTORY = "0xaB45c5A4B0c941a2F231C04C3f49182e1A254052"
SAFE_FACTORY = "0xaacFeEa03eb1561C4e67d661e40682Bd20E3541b"
DEPOSIT_WALLET_FACTORY = "0x00000000000Fb5C9ADea0298D729A0CB3823Cc07"
DEPOSIT_WALLET_IMPLEMENTATION = "0x58CA52ebe0DadfdF531Cde7062e76746de4Db1eB"  # older (UUPS) deposit wallets
DEPOSIT_WALLET_BEACON = "0x7A18EDfe055488A3128f01F563e5B479D92ffc3a"  # current (beacon proxy) deposit wallets
RELAY_HUB = "0xD216153c06E857cD7f72665E0aF1d7D82172F494"

# Human names for the lines polymm prints.
NAMES = {
    PUSD.lower(): "pUSD",
    CTF.lower(): "the conditional tokens (CTF)",
    POSITION_MANAGER.lower(): "the position manager",
    EXCHANGE_V2.lower(): "Exchange V2",
    NEG_RISK_EXCHANGE_V2.lower(): "Neg-risk Exchange V2",
    EXCHANGE_V3.lower(): "Exchange V3",
    CTF_COLLATERAL_ADAPTER.lower(): "the collateral adapter",
    NEG_RISK_COLLATERAL_ADAPTER.lower(): "the neg-risk collateral adapter",
}


SHORT = {
    PUSD.lower(): "pusd", CTF.lower(): "ctf", POSITION_MANAGER.lower(): "position-manager",
    EXCHANGE_V2.lower(): "exchange-v2", NEG_RISK_EXCHANGE_V2.lower(): "negrisk-exchange-v2",
    EXCHANGE_V3.lower(): "exchange-v3", CTF_COLLATERAL_ADAPTER.lower(): "adapter",
    NEG_RISK_COLLATERAL_ADAPTER.lower(): "negrisk-adapter",
}


def short(address: str) -> str:
    return SHORT.get(address.lower(), address.lower())


def name(address: str) -> str:
    return NAMES.get(address.lower(), address)
