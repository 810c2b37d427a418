"""polymm/metrics.py: listen addresses, the exporter's bind (a second one is refused in words), the hot-path
histogram against prometheus_client's own, a failing collector that does not take the endpoint down."""
from __future__ import annotations

import logging
import socket

import pytest
from tests.support.metrics import Scrape, free_port, scrape
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from polymm import metrics as prom


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9892", ("127.0.0.1", 9892)),
    (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
    ("[::1]:9892", ("::1", 9892)),
    ("localhost:80", ("localhost", 80)),
    ("off", None),
    ("OFF", None),
])
def test_listen_addresses(text, expected):
    assert prom.parse_listen(text, source="x") == expected


@pytest.mark.parametrize("text, words", [
    ("9892", "expected HOST:PORT"),
    (":9892", "expected HOST:PORT"),
    ("127.0.0.1:", "expected HOST:PORT"),
    ("127.0.0.1:http", "expected HOST:PORT"),
    ("::1:9892", "write an IPv6 address in brackets"),
    ("[::1]9892", "expected HOST:PORT"),
    ("127.0.0.1:70000", "port 70000 is not in 0-65535"),
    ("", "expected HOST:PORT"),
])
def test_bad_listen_addresses_are_refused_in_words(text, words):
    with pytest.raises(prom.MetricsError) as err:
        prom.parse_listen(text, source="metrics.listen")
    assert str(err.value).startswith(f"metrics.listen={text!r}") and words in str(err.value)


def test_defaults_are_loopback():
    for default in (prom.DEFAULT_FEED_LISTEN, prom.DEFAULT_TRADER_LISTEN):
        host, _port = prom.parse_listen(default, source="default")
        assert prom.is_loopback(host)
    assert prom.DEFAULT_FEED_LISTEN != prom.DEFAULT_TRADER_LISTEN
    assert not prom.is_loopback("0.0.0.0") and not prom.is_loopback("example.org")


def _gauge():
    yield GaugeMetricFamily("polymm_test_value", "a test value", value=42)


def test_exporter_serves_and_a_second_bind_is_refused_naming_the_address():
    port = free_port()
    first = prom.serve(f"127.0.0.1:{port}", source="t", collectors=[prom.CallbackCollector("t", _gauge)])
    try:
        assert first.address == ("127.0.0.1", port) and first.url == f"http://127.0.0.1:{port}/metrics"
        assert scrape(port).value("polymm_test_value") == 42
        with pytest.raises(prom.MetricsError) as err:
            prom.serve(f"127.0.0.1:{port}", source="t", collectors=[])
        assert str(err.value) == (f"cannot serve metrics on 127.0.0.1:{port}: Address already in use (is another "
                                  "polymm service or exporter using it?); choose another address or `off`")
        assert scrape(port).value("polymm_test_value") == 42  # the first one is untouched
    finally:
        first.stop()
    with socket.socket() as s:  # stop() released the port (SO_REUSEADDR: the scrape's TIME_WAIT is not a listener)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_port_zero_reports_the_bound_port_and_off_serves_nothing():
    exporter = prom.serve("127.0.0.1:0", source="t", collectors=[prom.CallbackCollector("t", _gauge)])
    try:
        assert exporter.address[1] > 0 and scrape(exporter.address[1]).value("polymm_test_value") == 42
    finally:
        exporter.stop()
    assert prom.serve("off", source="t", collectors=[]) is None


def test_a_public_address_is_logged_as_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger="polymm.metrics"):
        exporter = prom.serve("0.0.0.0:0", source="t", collectors=[])
    exporter.stop()
    assert any(r.levelno == logging.WARNING and "not a loopback address" in r.getMessage() for r in caplog.records)


def test_a_failing_collector_yields_nothing_and_the_rest_is_served(caplog):
    def broken():
        raise RuntimeError("boom")
    registry = prom.new_registry(prom.CallbackCollector("broken", broken), prom.CallbackCollector("t", _gauge))
    with caplog.at_level(logging.ERROR, logger="polymm.metrics"):
        m = Scrape(generate_latest(registry).decode())
    assert m.value("polymm_test_value") == 42 and m.value("process_resident_memory_bytes") > 0
    assert "collecting broken failed" in caplog.text


def test_fast_histogram_matches_prometheus_clients_histogram():
    values = [0.00001, 0.00005, 0.00007, 0.0001, 0.0003, 0.002, 0.02, 0.3, 0.99, 1.0, 2.5, 7.0]
    ours = prom.FastHistogram()
    registry = CollectorRegistry()
    theirs = Histogram("lat_seconds", "x", buckets=prom.LATENCY_BUCKETS_S, registry=registry)
    for v in values:
        ours.observe(v)
        theirs.observe(v)
    expected = Scrape(generate_latest(registry).decode())
    got = Scrape(generate_latest(_registry_of(ours.family("lat_seconds", "x"))).decode())
    want = {(s.name, s.labels.get("le")): s.value for s in expected.samples if not s.name.endswith("_created")}
    assert {(s.name, s.labels.get("le")): s.value for s in got.samples} == pytest.approx(want)
    with pytest.raises(ValueError):
        prom.FastHistogram((1.0, 0.5))


def _registry_of(family):
    registry = CollectorRegistry()
    registry.register(prom.CallbackCollector("h", lambda: [family]))
    return registry


def test_process_metrics_match_prometheus_clients_without_needing_proc_stat():
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    theirs = Scrape(generate_latest(registry).decode())
    ours = Scrape(generate_latest(prom.new_registry()).decode())
    names = {s.name for s in theirs.samples}
    assert names and names <= {s.name for s in ours.samples}
    assert ours.value("process_start_time_seconds") == pytest.approx(theirs.value("process_start_time_seconds"), abs=1.0)
    assert ours.value("process_resident_memory_bytes") == pytest.approx(theirs.value("process_resident_memory_bytes"), rel=0.2)
    assert ours.value("process_max_fds") == theirs.value("process_max_fds")


def test_a_collector_s_labels_are_on_every_sample():
    def families():
        family = GaugeMetricFamily("polymm_x", "x", labels=["scope"])
        family.add_metric(["total"], 1.0)
        family.add_metric(["s1"], 2.0)
        return [family]

    registry = CollectorRegistry(auto_describe=True)
    registry.register(prom.CallbackCollector("t", families, labels={"series": "eth-5m"}))
    text = generate_latest(registry).decode()
    assert 'polymm_x{scope="total",series="eth-5m"} 1.0' in text and 'polymm_x{scope="s1",series="eth-5m"} 2.0' in text
