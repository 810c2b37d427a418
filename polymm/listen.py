"""Listen addresses of the services' Prometheus endpoints: parsed and checked here, with no I/O, so the trader's
config schema (imported by the pure decision pipeline) can validate `metrics.listen` without importing the
exporter. polymm/metrics.py serves them.

`HOST:PORT` (`[::1]:PORT` for IPv6) or `off`. The defaults are loopback only: the trader's endpoint shows
positions and P&L, so exposing it beyond the host is the operator's explicit choice.
"""
from __future__ import annotations

import ipaddress

# Documented in README "Monitoring" and deploy/monitoring/scrape.yml; when another exporter on the host has
# them, set POLYMM_FEED_METRICS / metrics.listen.
DEFAULT_FEED_LISTEN = "127.0.0.1:9891"
DEFAULT_TRADER_LISTEN = "127.0.0.1:9892"
OFF = "off"


class MetricsError(Exception):
    """A listen address that cannot be used, in words (the service prints it as one line and exits 2)."""


def parse_listen(text: str | None, *, source: str) -> tuple[str, int] | None:
    """`HOST:PORT`, `[V6]:PORT` or `off` -> (host, port), or None for off. `source` names where the value came
    from (an option, a variable, a config key) for the error message."""
    value = (text or "").strip()
    if value.lower() == OFF:
        return None
    hint = f"{source}={text!r}: expected HOST:PORT (e.g. 127.0.0.1:9892, [::1]:9892) or off"
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise MetricsError(hint)
    else:
        host, sep, port = value.rpartition(":")
        if not sep or ":" in host:
            raise MetricsError(hint + (" (write an IPv6 address in brackets)" if ":" in host else ""))
    if not host or any(c.isspace() for c in host):
        raise MetricsError(hint)
    try:
        port_n = int(port)
    except ValueError:
        raise MetricsError(hint) from None
    if not 0 <= port_n <= 65535:
        raise MetricsError(f"{source}={text!r}: port {port_n} is not in 0-65535")
    return host, port_n


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
