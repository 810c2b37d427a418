"""Helpers for the metrics tests: a free loopback port, a scrape parsed with prometheus_client's own parser."""
from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scrape:
    """One scrape: `value(name, **labels)` of a sample, `names()` of every metric family."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def names(self) -> set[str]:
        """Every sample name (counters with _total, histograms with _bucket/_sum/_count) and family name."""
        return {s.name for s in self.samples} | set(self.families)

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
        if len(found) != 1:
            raise KeyError(f"{name}{labels}: {len(found)} samples in the scrape")
        return found[0]

    def maybe(self, name: str, **labels: str) -> float | None:
        try:
            return self.value(name, **labels)
        except KeyError:
            return None

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.samples if s.name == name]


def scrape(port: int, timeout_s: float = 5.0) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
        return Scrape(r.read().decode())
