"""The series template units (deploy/systemd/polymm-{feed,trader}@.service) are the default units with the series'
lines and nothing else: hardening, timeouts and restart policy cannot drift apart. (Booted under systemd in
tests/e2e/test_systemd_e2e.py.)"""
from __future__ import annotations

from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "deploy" / "systemd"


def directives(path: Path) -> set[str]:
    """Every `Key=value` line (comments and blank lines left out)."""
    return {line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and "=" in line}


@pytest.mark.parametrize("name,added,removed", [
    ("polymm-feed", {
        "Description=polymm feed of series %i (Polymarket top of book into shared memory)",
        "EnvironmentFile=-/etc/polymm/series/%i.env", "Environment=POLYMM_SERIES=%i", "UnsetEnvironment=POLYMM_SHM",
        "RestartPreventExitStatus=2",
    }, {"Description=polymm feed (Polymarket top of book into shared memory)"}),
    ("polymm-trader", {
        "Description=polymm trader of series %i (market making on Polymarket Up/Down markets)",
        "Wants=polymm-feed@%i.service", "After=polymm-feed@%i.service",
        "EnvironmentFile=-/etc/polymm/series/%i.env",
        "Environment=POLYMM_CONFIG=/etc/polymm/config.toml POLYMM_SERIES=%i", "UnsetEnvironment=POLYMM_SHM POLYMM_SOCKET",
        "Environment=POLYMM_LOOP_CPU=off",
    }, {
        "Description=polymm trader (market making on Polymarket BTC 15-minute markets)",
        "Wants=polymm-feed.service", "After=polymm-feed.service",
        "Environment=POLYMM_CONFIG=/etc/polymm/config.toml POLYMM_SOCKET=/run/polymm/trader.sock",
    }),
])
def test_a_template_is_its_default_unit_plus_the_series_lines(name, added, removed):
    base, template = directives(UNITS / f"{name}.service"), directives(UNITS / f"{name}@.service")
    assert template - base == added
    assert base - template == removed


def test_every_trader_keeps_the_shared_runtime_directory():
    # systemd removes a RuntimeDirectory when one unit that has it stops, sockets of the others inside or not.
    for name in ("polymm-trader.service", "polymm-trader@.service"):
        assert "RuntimeDirectoryPreserve=yes" in directives(UNITS / name), name
