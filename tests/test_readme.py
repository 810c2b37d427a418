"""The README is part of the product: its config reference is generated from the schema and must not drift."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_config_reference_matches_the_schema():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "readme_config.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_shows_the_two_quickstart_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text


def test_every_config_key_is_documented_in_the_readme():
    from polymm.trader.config import Config, flatten

    text = (ROOT / "README.md").read_text()
    missing = [key for key in flatten(Config()) if f"`{key}`" not in text]
    assert not missing, missing


def test_readme_has_no_unfilled_sections():
    text = (ROOT / "README.md").read_text()
    for marker in ("MMCTL_EXAMPLES", "WARNINGS_TABLE", "FIGURES", "SIM_MB", "FEED_MB", "TRADER_MB", "TODO", "TBD"):
        assert marker not in text, marker
