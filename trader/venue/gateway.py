"""The exchange gateway: the ONLY module that imports py_clob_client_v2.

What comes from the SDK: key handling (Signer), L1 auth (create/derive the API key) and the L2 HMAC
request headers. What we do ourselves, on purpose:
- Order signing: trader/venue/signing.py (byte-identical to the SDK, ~10x faster).
- The exchange's order version (`GET /version`, as the SDK's get_version / __resolve_version): learnt at
  connect() and again whenever an order is refused with `order_version_mismatch`; `sign()` signs for it.
  The refusal is raised as OrderVersionMismatch naming the version to re-sign for (the caller re-signs and
  resubmits once, as the SDK's _retry_on_version_update does). A version the signer cannot produce sets
  `version_problem` (words for `mmctl status`) and sign() refuses, so no order is sent only to be rejected.
- The market's fee parameters (`GET /clob-markets/{condition_id}`, the `fd` object the SDK's
  get_clob_market_info reads): fee_details().
- The HTTP round trip for L2 calls. The SDK's `post_order` blocks for up to 30 s polling
  /data/trades whenever an order matches (unless defer_exec), its exceptions drop the response headers
  (so 429 Retry-After is lost), and its module-global httpx client has no per-call timeout. We send the
  exact body the SDK would (same JSON, same `deferExec: false`, same HMAC over the same bytes) through
  our own client, so no call path can block on a matched order and every answer keeps its status,
  body and headers. Nothing here retries: the caller decides, from typed errors (exchange_state.py).
  That client is http_keepalive.py's (HTTP/1.1, a connection per worker thread, under half httpx's CPU per
  order: CPU the decision loop would wait for under the GIL); httpx where the environment names a proxy
  (http.client would ignore it) and for the cold public reads.

Credentials come from the environment (PK, BROWSER_ADDRESS, SIGNATURE_TYPE, optional POLY_API_KEY /
POLY_API_SECRET / POLY_PASSPHRASE, else derived at start). Secrets never appear in logs, reprs or errors.

Every method is blocking; the execution core calls them from worker threads only.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import httpx
import msgspec
from py_clob_client_v2.client import ClobClient
from py_clob_client_v2.clob_types import ApiCreds, RequestArgs
from py_clob_client_v2.exceptions import PolyApiException, PolyException
from py_clob_client_v2.headers.headers import create_level_2_headers

from polymm import env

from polymm.trader.execution.exchange_state import ExchangeError, NetworkError, Rejected, classify
from polymm.trader.venue.http_keepalive import KeepAliveClient, TransportError, TransportTimeout, proxy_for
from polymm.trader.venue.signing import SIGNABLE_VERSIONS, OrderSigner, SignedOrder, UnsupportedOrderVersion

log = logging.getLogger("polymm.trader.gateway")

CHAIN_ID = 137
END_CURSOR = "LTE="
MAX_BATCH = 15  # POST /orders accepts 1-15 orders
# The exchange's answer to an order signed for another exchange version (py_clob_client_v2.constants
# ORDER_VERSION_MISMATCH_ERROR; production sends it as HTTP 400 {"error": "order_version_mismatch"}).
ORDER_VERSION_MISMATCH = "order_version_mismatch"
DEFAULT_ORDER_VERSION = 2  # what the SDK assumes when /version cannot be read


class ConfigError(ValueError):
    """Bad or missing credentials configuration; the message names the variable, never its value."""


class HeartbeatRejected(Rejected):
    """400 Invalid Heartbeat ID: the exchange says which id it expects next."""

    def __init__(self, status: int | None, message: str, expected_id: str | None) -> None:
        super().__init__(status, message)
        self.expected_id = expected_id


class FeeDetails(msgspec.Struct, frozen=True):
    """`fd` of GET /clob-markets/{condition_id} (docs "Get CLOB market info"): the taker fee is
    shares x r x (p x (1 - p)) ^ e; `to` says takers only pay."""

    r: float
    e: float
    to: bool = True


class _ClobMarketInfo(msgspec.Struct):
    """GET /clob-markets/{condition_id} (docs "Get CLOB market info"); what polymm reads of it."""

    fd: FeeDetails | None = None
    oas: float | None = None  # "Minimum order age in seconds": an order younger than this is not cancelled (held)
    itode: bool | None = None  # "Whether taker order delay is enabled": a marketable order is held before it matches
    nr: bool | None = None  # neg-risk (the SDK's get_clob_market_info caches it per token)


_market_info = msgspec.json.Decoder(_ClobMarketInfo)

# How long the exchange holds a marketable order when the market's `itode` is set. The market info gives only the
# flag; the 250 ms figure is Polymarket's announcement for the crypto Up/Down markets traded through the API
# (effective 2026-06-05, reported by Jinse Finance / Bitget News): "taker orders within a 250-millisecond delay
# window ... cannot be cancelled before the delay ends" (docs/venue.md, "Order timing"). The POST answer for such
# an order says `delayed`.
TAKER_DELAY_S = 0.25


@dataclass(frozen=True)
class MarketRules:
    """One market's trading rules from its CLOB market info, read once per market (one fetch, one cache):
    the taker fee schedule, the minimum order age and whether takers are delayed."""

    fee: FeeDetails
    min_order_age_s: float = 0.0
    taker_delay_s: float = 0.0  # TAKER_DELAY_S when `itode`, else 0
    neg_risk: bool = False


class OrderVersionMismatch(Rejected):
    """The exchange refused an order signed for `signed_version`; `resign_version` is the version /version
    names now when it differs and can be signed (re-sign and resubmit once), else None (do not retry)."""

    def __init__(self, status: int | None, message: str, signed_version: int, resign_version: int | None) -> None:
        super().__init__(status, message)
        self.signed_version = signed_version
        self.resign_version = resign_version


@dataclass(frozen=True)
class ApiCredentials:
    api_key: str
    api_secret: str = field(repr=False)
    api_passphrase: str = field(repr=False)


@dataclass(frozen=True)
class PostResult:
    """One accepted order (POST /order success)."""

    order_id: str
    status: str  # live | matched | delayed | unmatched
    making_amount: float
    taking_amount: float
    trade_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CancelResult:
    canceled: tuple[str, ...]
    not_canceled: dict[str, str]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _error_message(body: Any, text: str) -> str:
    if isinstance(body, dict):
        for key in ("error", "error_msg", "errorMsg", "message"):
            value = body.get(key)
            if value:
                return value if isinstance(value, str) else json.dumps(value)
    return text[:300] if text else "(empty body)"


def from_sdk_exception(exc: Exception) -> ExchangeError:
    """Map the SDK's PolyApiException (status + parsed body) to our typed errors."""
    if isinstance(exc, PolyApiException):
        body = exc.error_msg
        return classify(exc.status_code, _error_message(body, str(body)), body if isinstance(body, dict) else None)
    if isinstance(exc, PolyException):
        return Rejected(None, str(exc.msg))
    return NetworkError(None, f"{type(exc).__name__}: {exc}")


class Gateway:
    def __init__(self, clob_url: str, private_key: str, *, funder: str | None = None, signature_type: int = 0,
                 creds: ApiCredentials | None = None, chain_id: int = CHAIN_ID, timeout_s: float = 5.0) -> None:
        self.clob_url = clob_url.rstrip("/")
        self.signer = OrderSigner(private_key, signature_type=signature_type, funder=funder, chain_id=chain_id)
        self.address = self.signer.address  # the EOA that signs
        self.funder = self.signer.funder  # the wallet holding funds (order maker)
        self.signature_type = signature_type
        self._sdk = ClobClient(self.clob_url, chain_id, key=private_key, signature_type=signature_type,
                               funder=self.funder)
        self._creds: ApiCredentials | None = creds
        if creds is not None:
            self._sdk.set_api_creds(ApiCreds(creds.api_key, creds.api_secret, creds.api_passphrase))
        headers = {"User-Agent": "polymm", "Accept": "*/*", "Content-Type": "application/json"}
        self._http = httpx.Client(http2=True, timeout=httpx.Timeout(timeout_s, connect=min(3.0, timeout_s)),
                                  headers=headers)
        # The L2 calls (orders, cancels, heartbeats, reads with keys): the lean client, unless a proxy applies.
        proxy = proxy_for(self.clob_url)
        if proxy is None:
            self._l2: KeepAliveClient | httpx.Client = KeepAliveClient(
                self.clob_url, timeout_s=timeout_s, connect_timeout_s=min(3.0, timeout_s), headers=headers)
        else:
            log.info("a proxy is set for %s: the exchange's L2 calls go through httpx", self.clob_url)
            self._l2 = self._http
        self.order_version: object = DEFAULT_ORDER_VERSION  # what /version said last (any JSON value)
        self.version_problem: str | None = None  # set while the exchange wants a version we cannot sign
        # Set by the live trader (trader/preflight/start.py): version -> words naming the approvals that version's
        # exchange lacks, or None. Run when the exchange moves to another order version, before any order is
        # signed for it, and again at every probe while it blocks (the wallet's owner may fix them meanwhile).
        self.approvals_check: Callable[[int], str | None] | None = None
        self._blocked_on_approvals = False

    @classmethod
    def from_env(cls, clob_url: str | None = None, environ: Mapping[str, str] | None = None, **kw) -> "Gateway":
        e = environ if environ is not None else os.environ

        def get(name: str) -> str | None:
            value = e.get(name)
            return value if value not in (None, "") else None

        pk = get(env.PK)
        if not pk:
            raise ConfigError(f"{env.PK} is not set: the trader needs the signing key in its environment")
        sig_raw = get(env.SIGNATURE_TYPE) or "0"
        try:
            sig = int(sig_raw)
        except ValueError:
            raise ConfigError(f"{env.SIGNATURE_TYPE} must be 0, 1, 2 or 3, got {sig_raw!r}") from None
        if sig not in (0, 1, 2, 3):
            raise ConfigError(f"{env.SIGNATURE_TYPE} must be 0, 1, 2 or 3, got {sig}")
        funder = get(env.BROWSER_ADDRESS)
        if sig != 0 and not funder:
            raise ConfigError(f"{env.BROWSER_ADDRESS} (the funder wallet) is required with {env.SIGNATURE_TYPE}={sig}")
        if funder is not None and not (funder.startswith("0x") and len(funder) == 42):
            raise ConfigError(f"{env.BROWSER_ADDRESS} is not a 0x-prefixed 20-byte address")
        triple = [get(env.POLY_API_KEY), get(env.POLY_API_SECRET), get(env.POLY_PASSPHRASE)]
        if any(triple) and not all(triple):
            raise ConfigError(f"set all of {env.POLY_API_KEY}, {env.POLY_API_SECRET}, {env.POLY_PASSPHRASE} or none")
        creds = ApiCredentials(*triple) if all(triple) else None
        url = clob_url or get(env.CLOB_URL) or env.PROD_CLOB_URL
        try:
            gateway = cls(url, pk, funder=funder, signature_type=sig, creds=creds, **kw)
        except ValueError as exc:  # OrderSigner's message never contains the key
            raise ConfigError(f"{env.PK}: {exc}") from None
        if sig == 0 and funder is not None and funder.lower() != gateway.address.lower():
            # Type 0 (EOA) orders need maker == signer; the exchange would refuse every order.
            gateway.close()
            raise ConfigError(f"{env.BROWSER_ADDRESS} {funder} is not the address of {env.PK} ({gateway.address}), "
                              f"but {env.SIGNATURE_TYPE}=0 (EOA) trades from the key's own address; set "
                              f"{env.SIGNATURE_TYPE} to 1 (proxy), 2 (Safe) or 3 (deposit wallet), or unset "
                              f"{env.BROWSER_ADDRESS}")
        return gateway

    def __repr__(self) -> str:
        return f"Gateway(clob_url={self.clob_url!r}, address={self.address}, funder={self.funder}, " \
               f"signature_type={self.signature_type})"

    # ---- credentials ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Learn the order version; derive (or create) the API key when none was configured. Raises ExchangeError."""
        self.refresh_version()
        if self._creds is not None:
            return
        # Derive first: the SDK's create-then-derive logs an ERROR for every restart (create refuses a key
        # that exists); create only when there is nothing to derive.
        try:
            sdk_creds = self._sdk.derive_api_key()
        except Exception:  # noqa: BLE001 - no key yet (or a transient failure): try creating one
            try:
                sdk_creds = self._sdk.create_api_key()
            except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a typed error
                raise from_sdk_exception(exc) from None
        if not sdk_creds or not sdk_creds.api_key:
            raise Rejected(None, "the exchange returned no API key for this signer")
        self._creds = ApiCredentials(sdk_creds.api_key, sdk_creds.api_secret, sdk_creds.api_passphrase)
        self._sdk.set_api_creds(sdk_creds)
        log.info("api key derived for signer %s", self.address)  # the key itself is a secret: never logged

    @property
    def api_key(self) -> str:
        """The API key id (the `owner` of our orders; not a secret on its own)."""
        return self._creds.api_key if self._creds else ""

    def ws_auth(self) -> dict:
        """The user-channel `auth` object. Contains secrets: send it, never log it."""
        c = self._require_creds()
        return {"apiKey": c.api_key, "secret": c.api_secret, "passphrase": c.api_passphrase}

    def _require_creds(self) -> ApiCredentials:
        if self._creds is None:
            raise Rejected(None, "no API credentials yet: call Gateway.connect() first")
        return self._creds

    # ---- the L2 round trip ------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                 timeout_s: float | None = None) -> Any:
        creds = self._require_creds()
        serialized = None if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        headers = create_level_2_headers(
            self._sdk.signer, ApiCreds(creds.api_key, creds.api_secret, creds.api_passphrase),
            RequestArgs(method=method, request_path=path, body=body, serialized_body=serialized),
        )
        timeout = {} if timeout_s is None else {"timeout": timeout_s}  # else the client's own
        try:
            resp = self._l2.request(method, self.clob_url + path, headers=headers, params=params,
                                    content=serialized.encode() if serialized is not None else None, **timeout)
        except TransportTimeout:
            raise NetworkError(None, f"{method} {path} timed out") from None
        except TransportError as exc:  # its words name the cause (connect, TLS, reset...)
            raise NetworkError(None, f"{method} {path} failed: {exc.cause}") from None
        except httpx.TimeoutException as exc:
            raise NetworkError(None, f"{method} {path} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise NetworkError(None, f"{method} {path} failed: {type(exc).__name__}: {exc}") from None
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code != 200:
            message = _error_message(data, resp.text)
            if path == "/v1/heartbeats" and resp.status_code == 400 and isinstance(data, dict):
                raise HeartbeatRejected(400, message, data.get("heartbeat_id"))
            raise classify(resp.status_code, message, data if isinstance(data, dict) else None,
                           _retry_after(resp.headers))
        return data

    # ---- order version ----------------------------------------------------------------------------
    def refresh_version(self) -> object:
        """GET /version -> the order version orders must be signed for. When the answer cannot be read the
        last known version stays (at start: 2, the SDK's assumption) and a warning is logged."""
        try:
            r = self._http.get(self.clob_url + "/version")
            version = r.json().get("version") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("GET /version failed (%s); still signing order version %s", type(exc).__name__,
                        self.order_version)
            return self.order_version
        if version is None:
            log.warning("GET /version answered HTTP %s without a version; still signing order version %s",
                        r.status_code, self.order_version)
            return self.order_version
        if isinstance(version, str) and version.strip().isdigit():
            version = int(version)  # "3" means 3: a quoting change must not stop the trading
        changed = version != self.order_version
        if changed:
            log.warning("exchange order version is now %r (was %r)", version, self.order_version)
        self.order_version = version
        if version in SIGNABLE_VERSIONS and not isinstance(version, bool):
            problem = None
            if self.approvals_check is not None and self._creds is not None and (changed or self._blocked_on_approvals):
                # A new version's exchange is another spender: without its approvals every order would be refused
                # as "not enough balance / allowance". Checked before the first order is signed for it.
                missing = self.approvals_check(version)
                if missing:
                    problem = (f"the exchange moved to order version {version} but the wallet lacks its approvals "
                               f"({missing}): no new orders until they are set (polymm-preflight --fix-approvals)")
            if problem is not None and problem != self.version_problem:
                log.error("%s", problem)
            elif problem is None and self._blocked_on_approvals:
                log.warning("order version %s approvals are set now: trading resumes", version)
            self._blocked_on_approvals = problem is not None
            self.version_problem = problem
        else:
            problem = (f"exchange order version {version!r} is not one polymm can sign "
                       f"({', '.join(map(str, SIGNABLE_VERSIONS))}): no new orders until it is; upgrade polymm")
            if problem != self.version_problem:  # once, not at every probe while it lasts
                log.error("%s", problem)
            self.version_problem = problem
            self._blocked_on_approvals = False
        return version

    def sign(self, token_id: str, side, price: float, size: float, tick: float | str, *, neg_risk: bool = False,
             expiration: int = 0, version: int | None = None) -> SignedOrder:
        """Sign for the exchange's current order version (or `version`). Raises ValueError for a bad price or
        tick and UnsupportedOrderVersion (a ValueError) while the exchange wants a version we cannot sign."""
        version = self.order_version if version is None else version
        if version not in SIGNABLE_VERSIONS or isinstance(version, bool):
            raise UnsupportedOrderVersion(version)
        return self.signer.build(token_id, side, price, size, tick, neg_risk=neg_risk, expiration=expiration,
                                 version=version)

    def _version_mismatch(self, err: ExchangeError, order: SignedOrder, served: list | None = None) -> ExchangeError:
        """An order refused for its version: learn the version now served (once per batch: `served` keeps it)
        and say whether to re-sign."""
        if ORDER_VERSION_MISMATCH not in err.message:
            return err
        if served is None or not served:
            now = self.refresh_version()
            if served is not None:
                served.append(now)
        else:
            now = served[0]
        resign = now if (now in SIGNABLE_VERSIONS and not isinstance(now, bool) and now != order.version
                         and self.version_problem is None) else None
        log.warning("order %s signed for version %s refused (%s); exchange version now %r: %s", order.order_hash,
                    order.version, err.message, now, f"re-sign for {resign}" if resign else "not re-signing")
        return OrderVersionMismatch(err.status, err.message, order.version, resign)

    # ---- orders -----------------------------------------------------------------------------------
    def post_order(self, order: SignedOrder, order_type: str = "GTC", post_only: bool = False) -> PostResult:
        """POST /order. Raises a typed ExchangeError (outcome_unknown for timeouts and 5xx;
        OrderVersionMismatch when the exchange wants another order version)."""
        body = order.to_json(self.api_key, order_type, post_only, defer_exec=False)
        try:
            return self._post_result(self._request("POST", "/order", body), order.order_hash)
        except Rejected as err:
            raise self._version_mismatch(err, order) from None

    def post_orders(self, items: list[tuple[SignedOrder, str, bool]]) -> list[PostResult | ExchangeError]:
        """POST /orders (1-15): one result per order, in order; an error for the whole batch raises."""
        if not 1 <= len(items) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} orders, got {len(items)}")
        body = [o.to_json(self.api_key, t, p, defer_exec=False) for o, t, p in items]
        try:
            answer = self._request("POST", "/orders", body)
        except Rejected as err:
            raise self._version_mismatch(err, items[0][0]) from None
        if not isinstance(answer, list):
            raise Rejected(200, f"unexpected batch answer: {str(answer)[:200]}")
        out: list[PostResult | ExchangeError] = []
        served: list = []  # GET /version once for the whole batch
        for (order, _, _), row in zip(items, answer):
            try:
                out.append(self._post_result(row, order.order_hash))
            except Rejected as err:
                out.append(self._version_mismatch(err, order, served))
            except ExchangeError as err:
                out.append(err)
        for order, _, _ in items[len(answer):]:
            out.append(NetworkError(None, f"batch answer has no entry for order {order.order_hash}"))
        return out

    @staticmethod
    def _post_result(row: Any, expected_id: str) -> PostResult:
        if not isinstance(row, dict):
            raise Rejected(200, f"unexpected order answer: {str(row)[:200]}")
        # success:true with a non-empty errorMsg happens: the message is what counts.
        error = row.get("errorMsg") or row.get("error") or ""
        if not row.get("success", False) or error:
            raise classify(400, error or "order not accepted (no message)", row)
        order_id = row.get("orderID") or expected_id
        if order_id.lower() != expected_id.lower():
            log.warning("exchange order id %s differs from our order hash %s", order_id, expected_id)
        return PostResult(
            order_id=order_id, status=str(row.get("status") or "live").lower(),
            making_amount=float(row.get("makingAmount") or 0), taking_amount=float(row.get("takingAmount") or 0),
            trade_ids=tuple(row.get("tradeIDs") or ()),
        )

    def cancel_order(self, order_id: str) -> CancelResult:
        return self._cancel_result(self._request("DELETE", "/order", {"orderID": order_id}))

    def cancel_orders(self, order_ids: list[str]) -> CancelResult:
        return self._cancel_result(self._request("DELETE", "/orders", list(order_ids)))

    def cancel_market(self, market: str | None = None, asset_id: str | None = None) -> CancelResult:
        body = {k: v for k, v in (("market", market), ("asset_id", asset_id)) if v}
        return self._cancel_result(self._request("DELETE", "/cancel-market-orders", body))

    def cancel_all(self) -> CancelResult:
        return self._cancel_result(self._request("DELETE", "/cancel-all"))

    @staticmethod
    def _cancel_result(row: Any) -> CancelResult:
        if not isinstance(row, dict):
            return CancelResult((), {})
        not_canceled = row.get("not_canceled") or {}
        return CancelResult(tuple(row.get("canceled") or ()),
                            {k: str(v) for k, v in not_canceled.items()} if isinstance(not_canceled, dict) else {})

    # ---- reads ------------------------------------------------------------------------------------
    def get_order(self, order_id: str) -> dict | None:
        """GET /data/order/{id}; None when the exchange has no such order."""
        try:
            row = self._request("GET", f"/data/order/{order_id}")
        except ExchangeError as err:
            if err.status == 404 or "not found" in err.message.lower():
                return None
            raise
        # Production answers an unknown id with 200 and an empty body/object.
        return row if isinstance(row, dict) and row.get("id") else None

    def _paged(self, path: str, params: dict) -> list[dict]:
        rows: list[dict] = []
        cursor = "MA=="
        for _ in range(1000):  # a bound, not a limit anyone should reach
            page = self._request("GET", path, params={**params, "next_cursor": cursor})
            if isinstance(page, list):  # tolerate unpaged answers
                return rows + page
            rows.extend(page.get("data") or [])
            cursor = page.get("next_cursor") or END_CURSOR
            if cursor == END_CURSOR:
                break
        return rows

    def open_orders(self, market: str | None = None, asset_id: str | None = None) -> list[dict]:
        return self._paged("/data/orders", {k: v for k, v in (("market", market), ("asset_id", asset_id)) if v})

    def trades(self, market: str | None = None, asset_id: str | None = None, after: float | None = None,
               trade_id: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("market", market), ("asset_id", asset_id), ("id", trade_id)) if v}
        if after is not None:
            params["after"] = str(int(after))
        return self._paged("/data/trades", params)

    def balance_allowance(self, asset_type: str = "COLLATERAL", token_id: str | None = None) -> dict:
        params = {"asset_type": asset_type, "signature_type": self.signature_type}
        if token_id:
            params["token_id"] = token_id
        return self._request("GET", "/balance-allowance", params=params)

    def update_balance_allowance(self, asset_type: str = "COLLATERAL", token_id: str | None = None) -> dict:
        """Ask the exchange to refresh its balance/allowance cache for us."""
        params = {"asset_type": asset_type, "signature_type": self.signature_type}
        if token_id:
            params["token_id"] = token_id
        return self._request("GET", "/balance-allowance/update", params=params)

    def heartbeat(self, heartbeat_id: str) -> str:
        """POST /v1/heartbeats with the chained id; returns the next id."""
        answer = self._request("POST", "/v1/heartbeats", {"heartbeat_id": heartbeat_id}, timeout_s=3.0)
        return str(answer.get("heartbeat_id", "")) if isinstance(answer, dict) else ""

    def closed_only(self) -> bool:
        answer = self._request("GET", "/auth/ban-status/closed-only")
        return bool(answer.get("closed_only")) if isinstance(answer, dict) else False

    def market_rules(self, condition_id: str) -> MarketRules:
        """The market's fee schedule, minimum order age and taker delay (GET /clob-markets/{condition_id}, public)."""
        return fetch_market_rules(self._http, self.clob_url, condition_id)

    def fee_details(self, condition_id: str) -> FeeDetails:
        return self.market_rules(condition_id).fee

    def server_time(self) -> float:
        try:
            r = self._http.get(self.clob_url + "/time")
        except httpx.HTTPError as exc:
            raise NetworkError(None, f"GET /time failed: {type(exc).__name__}") from None
        return float(r.text.strip())

    def close(self) -> None:
        if self._l2 is not self._http:
            self._l2.close()
        self._http.close()


def fetch_server_time(clob_url: str, timeout_s: float = 5.0) -> float:
    """GET /time (public): the exchange's clock, unix seconds (whole seconds in production's answer)."""
    try:
        r = httpx.get(clob_url.rstrip("/") + "/time", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise NetworkError(None, f"GET /time failed: {type(exc).__name__}") from None
    if r.status_code != 200:
        raise classify(r.status_code, _error_message(None, r.text), None)
    try:
        return float(r.text.strip())
    except ValueError:
        raise ValueError(f"GET /time answered {r.text[:60]!r}, not a time") from None


def fetch_fee_details(http: httpx.Client, clob_url: str, condition_id: str) -> FeeDetails:
    return fetch_market_rules(http, clob_url, condition_id).fee


def fetch_market_rules(http: httpx.Client, clob_url: str, condition_id: str) -> MarketRules:
    """The market's rules from GET /clob-markets/{condition_id} (public, no keys: paper trading and
    polymm-preflight read them too). Raises ExchangeError when the exchange does not answer and ValueError (saying
    what) when `fd` is missing or the answer is malformed. A negative `oas` is read as 0."""
    try:
        r = http.get(f"{clob_url}/clob-markets/{condition_id}")
    except httpx.HTTPError as exc:
        raise NetworkError(None, f"GET /clob-markets failed: {type(exc).__name__}") from None
    if r.status_code != 200:
        try:
            body = r.json()
        except ValueError:
            body = None
        raise classify(r.status_code, _error_message(body, r.text), body if isinstance(body, dict) else None)
    try:
        info = _market_info.decode(r.content)
    except msgspec.ValidationError as exc:
        raise ValueError(f"market fee details unreadable ({exc})") from None
    except msgspec.DecodeError:
        raise ValueError(f"GET /clob-markets answered {r.text[:120]!r}, not market info") from None
    if info.fd is None:
        raise ValueError("market info has no fee details (fd)")
    return MarketRules(info.fd, max(0.0, float(info.oas or 0)), TAKER_DELAY_S if info.itode else 0.0, bool(info.nr))
