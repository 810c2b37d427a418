"""Fixtures every suite may use. Helpers live in tests/support/, one module per area."""
from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture
def shm_name() -> str:
    """A shared-memory name no other test (or process) uses."""
    return f"polymm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
