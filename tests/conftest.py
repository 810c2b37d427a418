"""Shared test helpers. Keep this small: each suite's own helpers live in its own module."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "polymarket-recorded"


def load_fixture(relpath: str):
    """A recorded Polymarket message, e.g. load_fixture("nautilus-python/ws_messages/book.json")."""
    return json.loads((FIXTURES / relpath).read_text())


@pytest.fixture
def shm_name() -> str:
    """A shared-memory name no other test (or process) uses."""
    return f"polymm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
