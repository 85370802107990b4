"""The Prometheus rules: promtool accepts and unit-tests them; alerts follow the conventions.

Also home of two helpers the dashboard tests share: the metric names README documents, and the
metric names a PromQL expression uses.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache

import pytest
import yaml


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "prometheus", "rules", "tfserving.rules.yaml")
RULES_TEST = os.path.join(ROOT, "prometheus", "rules", "tfserving.rules.test.yaml")
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks.md")
README = os.path.join(ROOT, "README.md")

# Kept in one place in the rules file (see its header); every alert must use exactly this.
RUNBOOK_BASE = ("https://github.com/tfserving-exporter/tfserving-exporter/blob/main/"
                "docs/runbooks.md")
JOB_MATCHER = 'job=~".*tfserving-exporter.*"'
SEVERITIES = {"warning", "critical"}
# Series Prometheus writes itself for every target.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds"}
# Scrape job names the job matcher must cover: the sidecar's (chart, plain), the fleet probe
# job (the Operator names a ScrapeConfig's job scrapeConfig/<namespace>/<name>, a Probe's
# probe/<namespace>/<name>; the plain prometheus.yml snippet tfserving-exporter-fleet), and the
# fleet exporter's own /metrics.
SIDECAR_JOBS = ("tfserving-exporter", "serving-tfserving-exporter")
FLEET_PROBE_JOBS = ("scrapeConfig/ml/serving-tfserving-exporter",
                    "probe/ml/serving-tfserving-exporter", "tfserving-exporter-fleet")
FLEET_PREFIX = "fleet: "

PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "offset", "bool", "inf", "nan", "atan2"}


# ---- helpers shared with test_dashboards / test_monitoring_e2e ---------------------------------

@lru_cache(maxsize=None)
def documented_metrics() -> tuple[frozenset, tuple[str, ...]]:
    """(names, prefixes) from README's metric table; histograms with their three series."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names, prefixes = set(), []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([a-z0-9_:*]+)`", cells[0]):
            if name.endswith("*"):
                prefixes.append(name[:-1])
            elif cells[1] == "histogram":
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
    return frozenset(names), tuple(prefixes)


def is_documented(name: str, extra: set | frozenset = frozenset()) -> bool:
    names, prefixes = documented_metrics()
    return name in names or name in extra or name.startswith(prefixes)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)          # strings (label values, args)
    text = re.sub(r"\{[^}]*\}", "", text)                    # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                   # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for found in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = found.group(1), found.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str, names) -> list[tuple[str, str]]:
    """(metric, matcher text) for every selector of one of ``names`` in ``expr``."""
    if not names:
        return []
    return [(m.group(1), m.group(2) or "") for m in
            re.finditer(r"(?<![\w:])(%s)(?![\w:])\s*(\{[^}]*\})?"
                        % "|".join(map(re.escape, sorted(names, key=len, reverse=True))), expr)]


@lru_cache(maxsize=None)
def load_rules() -> dict:
    with open(RULES, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def all_rules() -> list[dict]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict]:
    return [rule for rule in all_rules() if "alert" in rule]


def recording_names() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook headings."""
    with open(RUNBOOKS, encoding="utf-8") as handle:
        headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", handle.read(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


# ---- promtool ----------------------------------------------------------------------------------

def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    """``promtool *args`` in the rules' folder; ``promtool`` is the fixture's path (2.x, 3.x)."""
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(RULES))


def test_promtool_check_rules_accepts_the_rules(promtool):
    done = run_promtool(promtool, "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass(promtool):
    done = run_promtool(promtool, "test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_unit_tests_show_every_alert_firing_and_silent():
    firing, silent = set(), set()
    for case in unit_tests():
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            (firing if expected else silent).add(check["alertname"])
            for alert in expected:
                # labels and all three annotations asserted, not just the name
                assert "severity" in alert["exp_labels"], (case["name"], check)
                assert set(alert["exp_annotations"]) == {"summary", "description",
                                                         "runbook_url"}, (case["name"], check)
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


def unit_tests() -> list[dict]:
    with open(RULES_TEST, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["tests"]


def input_jobs(case: dict) -> dict[str, set[str]]:
    """job -> instances of a unit test's input series."""
    found: dict[str, set[str]] = {}
    for series in case["input_series"]:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', series["series"]))
        found.setdefault(labels["job"], set()).add(labels["instance"])
    return found


def test_job_matcher_matches_sidecar_and_fleet_jobs():
    value = re.fullmatch(r'job=~"(.*)"', JOB_MATCHER).group(1)
    for job in SIDECAR_JOBS + FLEET_PROBE_JOBS:
        assert re.fullmatch(value, job), job     # Prometheus anchors regex matchers
    assert not re.fullmatch(value, "node")


def test_every_alert_works_on_fleet_series():
    """Fleet mode: each alert is shown firing in a "fleet: ..." unit test, where the series of
    several TF Serving targets share one probe job and instance is the target, for exactly
    the faulty target; and silent while a healthy fleet runs."""
    fleet = [case for case in unit_tests() if case["name"].startswith(FLEET_PREFIX)]
    names = {rule["alert"] for rule in alert_rules()}
    firing, silent_when_healthy = set(), set()
    for case in fleet:
        jobs = input_jobs(case)
        probe_jobs = set(jobs) & set(FLEET_PROBE_JOBS)
        assert probe_jobs, case["name"]
        targets = set().union(*(jobs[job] for job in probe_jobs))
        assert len(targets) >= 2, (case["name"], "several targets under one probe job")
        assert all(target.endswith(":8500") for target in targets), case["name"]
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            for alert in expected:
                labels = alert["exp_labels"]
                assert labels["instance"] in jobs.get(labels["job"], ()), (case["name"], labels)
                if labels["job"] in probe_jobs:
                    firing.add(check["alertname"])
            if "healthy" in case["name"] and not expected:
                silent_when_healthy.add(check["alertname"])
    assert names - firing == set(), "alerts never shown firing for a fleet target"
    assert names - silent_when_healthy == set(), "alerts not shown silent on a healthy fleet"


def test_annotations_do_not_assume_a_sidecar():
    """In fleet mode `instance` is the TF Serving target and there is no sidecar."""
    for rule in alert_rules():
        text = " ".join(rule["annotations"].values()).lower()
        assert "sidecar" not in text, rule["alert"]


# ---- conventions -------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_follows_the_conventions(rule):
    name = rule["alert"]
    assert re.fullmatch(r"TFServing(?:[A-Z][a-z0-9]+|\d+)+", name), "PascalCase, TFServing prefix"
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), "every alert needs a for:"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "summary is fixed text"
    assert "{{ $labels." in annotations["description"], "description is templated"
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"


def test_every_runbook_anchor_exists():
    anchors = runbook_anchors()
    missing = [rule["alert"] for rule in alert_rules()
               if rule["annotations"]["runbook_url"].split("#", 1)[1] not in anchors]
    assert missing == []


def test_every_runbook_section_belongs_to_an_alert():
    with open(RUNBOOKS, encoding="utf-8") as handle:
        sections = set(re.findall(r"^## (\S+)\s*$", handle.read(), re.M))
    assert sections == {rule["alert"].lower() for rule in alert_rules()}


def test_alert_names_are_unique():
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", sorted(recording_names()))
def test_recording_rule_names_are_level_metric_operation(name):
    level, metric, operation = name.split(":")
    assert re.fullmatch(r"[a-z][a-z_]*", level)
    assert re.fullmatch(r"tfserving_[a-z0-9_]+", metric)
    assert re.fullmatch(r"[a-z0-9_]+", operation)


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule.get("alert") or rule["record"])
def test_rules_use_only_documented_metrics(rule):
    used = metric_names(rule["expr"])
    assert used, rule["expr"]
    undocumented = {name for name in used
                    if not is_documented(name, PROMETHEUS_SERIES | recording_names())}
    assert undocumented == set(), "not in README's metric table"


@pytest.mark.parametrize("rule", all_rules(), ids=lambda rule: rule.get("alert") or rule["record"])
def test_every_raw_selector_carries_the_job_matcher(rule):
    raw = metric_names(rule["expr"]) - recording_names()
    for metric, matchers in selectors(rule["expr"], raw):
        assert JOB_MATCHER in matchers, f"{metric}{matchers} lacks {JOB_MATCHER}"


def test_metric_name_parser():
    expr = ('histogram_quantile(0.99, sum by (job, le) (rate(tfserving_x_bucket{job=~"a|b", '
            'le!="1e3"}[5m]))) > 1e-3 and on (job) count_values without () ("version", '
            'tfserving_y) or time() - tfserving_z offset 1h unless model:tfserving_w:rate5m'
            '[$__rate_interval]')
    assert metric_names(expr) == {"tfserving_x_bucket", "tfserving_y", "tfserving_z",
                                  "model:tfserving_w:rate5m"}
