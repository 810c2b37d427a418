"""Fixtures every suite may use. Helpers live in tests/support/, one module per area."""
from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture
def shm_name() -> str:
    """A shared-memory name no other test (or process) uses."""
    return f"polymm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"


# Services started by tests must not fight over the default metrics ports (127.0.0.1:9891/9892), nor with an
# installed polymm on the same host: off unless a test asks for an address. Set before any test builds a
# child's environment from os.environ.
os.environ.setdefault("POLYMM_FEED_METRICS", "off")
os.environ.setdefault("POLYMM_TRADER_METRICS", "off")
