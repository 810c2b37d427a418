"""The real recorded Polymarket messages (tests/fixtures/polymarket-recorded)."""
from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "polymarket-recorded"


def load_fixture(relpath: str):
    """A recorded Polymarket message, e.g. load_fixture("nautilus-python/ws_messages/book.json")."""
    return json.loads((FIXTURES / relpath).read_text())
