"""deploy/monitoring: the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`: a
stale feed fires PolymmFeedStale, ...), and every metric the rules and the dashboard query is one the services
export (feed/metrics.py and trader/metrics.py NAMES; the live scrape tests check NAMES against real scrapes)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from polymm.feed.metrics import NAMES as FEED_NAMES
from polymm.trader.metrics import NAMES as TRADER_NAMES

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "polymm-alerts.yml"
RULE_TESTS = MONITORING / "polymm-alerts.test.yml"
DASHBOARD = MONITORING / "polymm-dashboard.json"
SCRAPE = MONITORING / "scrape.yml"

# Series every Prometheus target has, or that prometheus_client's default collectors export.
STANDARD = {"up", "process_resident_memory_bytes", "process_cpu_seconds_total", "process_start_time_seconds",
            "process_open_fds"}
# PromQL words that look like metric names but are functions, keywords or label names.
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "unless", "and", "or", "group_left", "group_right", "bool",
                 "offset", "le", "time", "rate", "increase", "sum", "max", "min", "avg", "count", "absent",
                 "max_over_time", "min_over_time", "histogram_quantile", "vector", "scalar", "humanizeDuration",
                 "printf"}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is required in CI (.ci/run installs it from Debian's prometheus package)")
    pytest.skip("promtool not installed (Debian: the prometheus package; .ci/run installs it in CI)")


def test_promtool_check_rules():
    run = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_promtool_rule_unit_tests_including_a_stale_feed():
    run = subprocess.run([_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                         timeout=60, cwd=MONITORING)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PolymmFeedStale" in RULE_TESTS.read_text()


def exported() -> set[str]:
    names = set(FEED_NAMES) | set(TRADER_NAMES) | STANDARD
    return names | {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_sum", "_count")}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, ranges and strings."""
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    return {w for w in words if w not in _PROMQL_WORDS}


def rule_expressions() -> list[tuple[str, str]]:
    text = RULES.read_text()
    return [(m.group(1), m.group(2)) for m in re.finditer(r"- alert: (\w+)\n\s+expr: (.+)", text)]


def dashboard_expressions() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_every_metric_the_rules_query_is_exported():
    exprs = rule_expressions()
    assert len(exprs) == RULES.read_text().count("- alert:") >= 10
    for alert, expr in exprs:
        unknown = metric_names(expr) - exported()
        assert not unknown, f"{alert}: {expr} uses {unknown}, which no polymm service exports"


def test_every_metric_the_dashboard_queries_is_exported():
    exprs = dashboard_expressions()
    assert exprs
    for title, expr in exprs:
        unknown = metric_names(expr) - exported()
        assert not unknown, f"panel {title!r}: {expr} uses {unknown}, which no polymm service exports"


def test_the_name_extraction_sees_through_promql():
    assert metric_names('max by (state) (polymm_trader_state{job="x", state!~"a|b"} == 1)') == {"polymm_trader_state"}
    assert metric_names('histogram_quantile(0.5, sum by (le) (rate(a_bucket{job="f"}[5m])))') == {"a_bucket"}
    assert metric_names("max_over_time(x[1h]) - x > y unless on(job, instance) z == 1") == {"x", "y", "z"}


def test_dashboard_is_importable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "polymm" and dash["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert {"Health", "Latency", "Orders and fills", "Exposure", "P&L"} <= titles
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"] and all(t["expr"] and t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def test_rules_and_dashboard_select_the_jobs_of_the_scrape_config():
    jobs = set(re.findall(r"job_name: (\S+)", SCRAPE.read_text()))
    assert jobs == {"polymm-feed", "polymm-trader"}
    used = set(re.findall(r'job=~?"([^"]+)"', RULES.read_text() + DASHBOARD.read_text()))
    for selector in used:
        assert set(selector.split("|")) <= jobs, selector


def test_every_polymm_series_on_the_dashboard_follows_its_series_selector():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["series"]["multi"] and variables["series"]["includeAll"]
    assert "label_values(" in variables["series"]["definition"] and ", series)" in variables["series"]["definition"]
    for title, expr in dashboard_expressions():
        for selector in re.findall(r"(polymm_\w+)\{([^}]*)\}", expr):
            assert 'series=~"$series"' in selector[1], f"panel {title!r}: {selector[0]} ignores the series selector"
