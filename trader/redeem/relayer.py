"""The gasless relayer, through the official client (py-builder-relayer-client), and its credentials.

Credentials come from the environment like PK: BUILDER_API_KEY, BUILDER_SECRET, BUILDER_PASS_PHRASE (the
builder API key of polymarket.com's builder settings). They are never logged or shown: Credentials' repr
hides them, and the client only puts an HMAC of them on the wire.

Which wallets can be served (docs/redemption.md section 3): signature type 2 (Safe), 1 (proxy wallet) and
3 (deposit wallet), whose owner key signs and whose wallet the relayer runs the calls from. Type 0 (a plain
EOA) needs an on-chain transaction paid in POL; for it `unsupported_reason` says so and nothing is sent.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from polymm import env
from polymm.trader.venue.wallets import expected_funders

log = logging.getLogger("polymm.trader.redeem")

HTTP_TIMEOUT_S = 15.0
KINDS = {1: "PROXY", 2: "SAFE", 3: "WALLET"}
BATCH_DEADLINE_S = 600  # a deposit-wallet batch signature is valid this long


class RedeemSetupError(Exception):
    """Redemption cannot run with this configuration; the message says what to change."""


class RelayerBusy(Exception):
    """Congestion or a transient failure (HTTP 429 / 5xx / no answer): try again later."""


class RelayerRefused(Exception):
    """The relayer refused the request (4xx): retrying the same request will not help. `credentials`: it refused
    who we are (401/403), not what we asked, so splitting the request would not help either."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.credentials = status in (401, 403)


@dataclass(frozen=True)
class Credentials:
    key: str = field(repr=False)
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)

    @classmethod
    def from_env(cls, get=env.get) -> "Credentials | None":
        values = [get(env.BUILDER_API_KEY), get(env.BUILDER_SECRET), get(env.BUILDER_PASS_PHRASE)]
        if not any(values):
            return None
        if not all(values):
            raise RedeemSetupError(f"set all of {env.BUILDER_API_KEY}, {env.BUILDER_SECRET} and "
                                   f"{env.BUILDER_PASS_PHRASE} (the builder API key), or none of them")
        return cls(*values)


def unsupported_reason(signature_type: int) -> str | None:
    """Why the relayer cannot serve this wallet type (None: it can). Type 0 redeems with its own transactions
    instead (trader/redeem/eoa.py), which needs a Polygon RPC."""
    if signature_type == 0:
        return ("a signature type 0 wallet (plain EOA) redeems with its own on-chain transactions paid in POL: set "
                f"redeem.rpc_url (or {env.RPC_URL}) and hold POL")
    if signature_type not in KINDS:
        return f"unknown signature type {signature_type}"
    return None


def _with_timeout(requests):
    """The client calls requests.request() with no timeout; a hung relayer would stall the redeemer for good."""

    class TimeoutRequests:
        RequestException = requests.RequestException
        JSONDecodeError = requests.JSONDecodeError

        @staticmethod
        def request(**kwargs):
            kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
            return requests.request(**kwargs)

    return TimeoutRequests


class Relayer:
    def __init__(self, relayer_url: str, private_key: str, signature_type: int, funder: str,
                 creds: Credentials, chain_id: int = 137) -> None:
        try:
            import requests
            from py_builder_relayer_client import client as relayer_client
            from py_builder_relayer_client.http_helpers import helpers
            from py_builder_relayer_client.models import DepositWalletCall, RelayerTxType, Transaction
            from py_builder_signing_sdk.config import BuilderConfig
            from py_builder_signing_sdk.sdk_types import BuilderApiKeyCreds
        except ImportError:
            raise RedeemSetupError("the relayer client is not installed: pip install 'polymm[redeem]'") from None
        reason = unsupported_reason(signature_type)
        if reason:
            raise RedeemSetupError(reason)
        helpers.requests = _with_timeout(requests)
        self._transaction, self._wallet_call = Transaction, DepositWalletCall
        self.kind = KINDS[signature_type]
        self._client = relayer_client.RelayClient(
            relayer_url, chain_id, private_key,
            BuilderConfig(local_builder_creds=BuilderApiKeyCreds(creds.key, creds.secret, creds.passphrase)),
            relay_tx_type=RelayerTxType.PROXY if self.kind == "PROXY" else RelayerTxType.SAFE)
        # The wallet the relayer runs calls from, derived as the official clients do (trader/venue/wallets.py).
        what = {"SAFE": "Safe", "PROXY": "proxy wallet", "WALLET": "deposit wallet"}[self.kind]
        wallets = expected_funders(self._client.signer.address(), signature_type)
        if funder.lower() not in {w.lower() for w in wallets}:
            raise RedeemSetupError(f"{env.BROWSER_ADDRESS} {funder} is not the {what} of {env.PK} ({wallets[0]}); the "
                                   f"relayer runs calls from that {what}, so redemption is off")
        self.wallet = funder

    def submit(self, calls: list, metadata: str) -> str:
        """Relay one transaction made of `calls` (trader.redeem.calls.Call); returns its transaction id."""
        from py_builder_relayer_client.exceptions import RelayerApiException, RelayerClientException

        try:
            if self.kind == "WALLET":
                # The batch nonce comes from GET /nonce?type=WALLET, as Polymarket's TypeScript client fetches it.
                owner = self._client.signer.address()
                nonce = str(self._client.get_nonce(owner, "WALLET")["nonce"])
                response = self._client.execute_deposit_wallet_batch(
                    [self._wallet_call(target=c.to, value="0", data=c.data) for c in calls], self.wallet, nonce,
                    str(int(time.time()) + BATCH_DEADLINE_S))
            else:
                response = self._client.execute([self._transaction(to=c.to, data=c.data, value="0") for c in calls],
                                                metadata)
        except RelayerApiException as exc:
            status = getattr(exc, "status_code", None)
            if status is None or status == 429 or status >= 500:
                raise RelayerBusy(f"relayer busy or unreachable ({status or 'no answer'}): {exc.error_msg}") from None
            raise RelayerRefused(f"relayer refused the request (HTTP {status}): {exc.error_msg}", status) from None
        except RelayerClientException as exc:
            raise RelayerBusy(f"relayer client: {exc.msg}") from None
        except (KeyError, TypeError):
            raise RelayerBusy("relayer answered the nonce request without a nonce") from None
        if not response.transaction_id:
            raise RelayerBusy("relayer answered without a transaction id")
        return response.transaction_id

    def state(self, tx_id: str) -> tuple[str | None, str]:
        """(state, error text) of a relayed transaction; state None when the relayer does not know it (yet)."""
        from py_builder_relayer_client.exceptions import RelayerClientException

        try:
            found = self._client.get_transaction(tx_id)
        except RelayerClientException as exc:
            raise RelayerBusy(f"relayer transaction lookup failed: {getattr(exc, 'error_msg', exc.msg)}") from None
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            return None, ""
        return found[0].get("state"), str(found[0].get("error", "") or "")


def check_credentials(relayer_url: str, creds: Credentials, timeout_s: float = HTTP_TIMEOUT_S) -> None:
    """Do the builder credentials authenticate? An authenticated read (GET /transactions, which the official
    TypeScript client sends with the builder headers) that sends nothing. Raises RelayerRefused (401/403: wrong
    credentials), RelayerBusy (no answer, 5xx) or RedeemSetupError (client not installed)."""
    try:
        import httpx
        from py_builder_signing_sdk.config import BuilderConfig
        from py_builder_signing_sdk.sdk_types import BuilderApiKeyCreds
    except ImportError:
        raise RedeemSetupError("the relayer client is not installed: pip install 'polymm[redeem]'") from None
    config = BuilderConfig(local_builder_creds=BuilderApiKeyCreds(creds.key, creds.secret, creds.passphrase))
    headers = config.generate_builder_headers("GET", "/transactions")
    try:
        answer = httpx.get(relayer_url.rstrip("/") + "/transactions", headers=headers.to_dict() if headers else {},
                           timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise RelayerBusy(f"the relayer at {relayer_url} did not answer ({type(exc).__name__})") from None
    if answer.status_code in (401, 403):
        raise RelayerRefused(f"the relayer refused the builder credentials (HTTP {answer.status_code})",
                             answer.status_code)
    if answer.status_code != 200:
        raise RelayerBusy(f"the relayer answered HTTP {answer.status_code}")
