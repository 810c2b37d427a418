"""Helpers for the redemption tests: a Safe / proxy wallet trading on the sim and a redeemer for it."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from polymm.sim.testing import new_wallet
from polymm.trader.redeem import positions
from polymm.trader.redeem.journal import Journal
from polymm.trader.redeem.relayer import Credentials, Relayer
from polymm.trader.redeem.worker import Redeemer, RedeemSettings

KIND_SIGNATURE_TYPE = {"SAFE": 2, "PROXY": 1, "WALLET": 3, "EOA": 0}


class Wallet:
    """An owner key, the Safe / proxy / deposit wallet it controls (derived as the official client does) and a CLOB client
    trading from that wallet."""

    def __init__(self, sim, kind: str = "SAFE") -> None:
        from py_builder_relayer_client.builder.derive import derive, derive_beacon_deposit_wallet, derive_proxy_wallet
        from py_builder_relayer_client.config import get_contract_config

        from polymm.trader.venue.contracts import DEPOSIT_WALLET_BEACON

        self.sim = sim
        self.kind = kind
        self.signature_type = KIND_SIGNATURE_TYPE[kind]
        self.pk, self.owner = new_wallet()
        config = get_contract_config(137)
        self.address = {
            "EOA": lambda: self.owner,
            "SAFE": lambda: derive(self.owner, config.safe_factory),
            "PROXY": lambda: derive_proxy_wallet(self.owner, config.proxy_factory),
            "WALLET": lambda: derive_beacon_deposit_wallet(self.owner, config.deposit_wallet_factory,
                                                           DEPOSIT_WALLET_BEACON),
        }[kind]()
        self.clob = sim.clob_client(self.pk, signature_type=self.signature_type,
                                    funder=None if kind == "EOA" else self.address)

    def buy(self, token: str, shares: float) -> None:
        """Exactly `shares` shares, taken from the book (FOK at any price up to 0.99)."""
        from py_clob_client_v2.clob_types import OrderArgsV2, OrderType

        signed = self.clob.create_order(OrderArgsV2(token_id=token, price=0.99, size=shares, side="BUY"))
        answer = self.clob.post_order(signed, OrderType.FOK)
        assert answer.get("success") and answer.get("status") == "matched", answer

    def cash(self) -> Decimal:
        return Decimal(self.sim.admin.balance(self.address)["pusd"])

    def shares(self) -> dict[str, Decimal]:
        return {t: Decimal(v) for t, v in self.sim.admin.balance(self.address)["positions"].items() if Decimal(v)}

    def relayer(self):
        """The gasless relayer for types 1-3; a type-0 wallet's own transactions over the sim's RPC."""
        if self.kind == "EOA":
            from polymm.trader.redeem.eoa import EoaSender

            return EoaSender(self.sim.urls["rpc_url"], self.pk)
        return Relayer(self.sim.urls["relayer_url"], self.pk, self.signature_type, self.address,
                       Credentials(**self.sim.admin.relayer()["builder_creds"]))

    def redeemer(self, state_dir: Path, *, relayer: bool = True, clock=None, **settings) -> Redeemer:
        settings = {"delay_s": 0.0, "poll_s": 0.2, **settings}
        data_url = self.sim.urls["data_url"]
        kwargs = {"clock": clock} if clock is not None else {}
        return Redeemer(RedeemSettings(**settings), lambda: positions.fetch(data_url, self.address),
                        Journal.open(state_dir), self.relayer() if relayer else None, **kwargs)
