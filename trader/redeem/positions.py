"""The Data API's positions rows (GET /positions), decoded once at this edge.

Field names as docs.polymarket.com/api-reference/core/get-current-positions-for-a-user and the recorded
response in tests/fixtures/polymarket-recorded/nautilus-rust/test_data/data_api_positions_response.json.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import msgspec

PAGE = 500  # the API's maximum `limit`
MAX_PAGES = 20  # `offset` stops at 10000


class PositionsError(Exception):
    """The Data API could not be read or answered something we cannot use; the message says which."""


class PositionRow(msgspec.Struct, rename="camel"):
    asset: str
    condition_id: str
    size: float
    cur_price: float = 0.0
    redeemable: bool = False
    mergeable: bool = False
    outcome: str = ""
    outcome_index: int = -1
    negative_risk: bool = False
    end_date: str = ""
    slug: str = ""


_ROWS = msgspec.json.Decoder(list[PositionRow])


def decode_rows(body: bytes) -> list[PositionRow]:
    try:
        return _ROWS.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PositionsError(f"Data API positions answer is not a list of positions: {exc}") from None


def fetch(data_url: str, wallet: str, timeout_s: float = 10.0) -> list[PositionRow]:
    """Every position of the wallet, dust included (sizeThreshold=0; the API's default hides < 1 share)."""
    rows: list[PositionRow] = []
    for page in range(MAX_PAGES):
        query = urllib.parse.urlencode({"user": wallet, "sizeThreshold": "0", "limit": PAGE, "offset": page * PAGE})
        url = f"{data_url.rstrip('/')}/positions?{query}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "polymm"}),
                                        timeout=timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise PositionsError(f"Data API positions: HTTP {exc.code} {_text(exc)}") from None
        except (OSError, ValueError) as exc:
            raise PositionsError(f"Data API positions unreachable at {data_url}: {exc}") from None
        batch = decode_rows(body)
        rows += batch
        if len(batch) < PAGE:
            return rows
    return rows


def _text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode(errors="replace")
        return json.loads(body).get("error", body)[:200] if body.startswith("{") else body[:200]
    except Exception:
        return ""
