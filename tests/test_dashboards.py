"""The Grafana dashboards: valid against Grafana's own published types, and well built.

The schema is generated from the npm package @grafana/schema by
scripts/grafana_dashboard_schema.py (cached under .cache/grafana-schema/); without npm the
schema test skips, except under CI=true where it fails. The structural checks need nothing.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re

import jsonschema
import pytest
import yaml

from tests.conftest import require_tool
from tests.test_rules import (PROMETHEUS_SERIES, ROOT, all_rules, is_documented, metric_names,
                              recording_names, run_promtool, selectors)

DASHBOARD_DIR = os.path.join(ROOT, "grafana", "dashboards")
DASHBOARD_FILES = sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))
EXPECTED = {"tfserving-overview.json", "tfserving-models-canaries.json", "tfserving-exporter.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
EXPORTER_DASHBOARD = "tfserving-exporter.json"

# What each kind of scrape carries (issue 15). Sidecar mode: one /metrics per TF Serving pod with
# everything. Fleet mode: a probe (/probe?target=...) returns the TF Serving families of one
# target under instance = the target, and the fleet exporter's own /metrics has the rest and no
# tfserving_up.
EVERY_PROBE = {"tfserving_up", "tfserving_exporter_collector_success",
               "tfserving_exporter_collector_duration_seconds",
               "tfserving_exporter_scrape_timeout_seconds"}
EXPORTER_OWN_ONLY = {"tfserving_exporter_build_info", "tfserving_exporter_scrape_errors_total",
                     "tfserving_exporter_config_last_reload_successful",
                     "tfserving_exporter_config_last_reload_success_timestamp_seconds",
                     "tfserving_exporter_fleet_targets", "python_info"}


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def schema_module():
    path = os.path.join(ROOT, "scripts", "grafana_dashboard_schema.py")
    spec = importlib.util.spec_from_file_location("grafana_dashboard_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, rows and the panels inside collapsed rows included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def data_panels(dashboard: dict) -> list[dict]:
    return [panel for panel in all_panels(dashboard) if panel["type"] != "row"]


def exprs(dashboard: dict) -> list[tuple[dict, str]]:
    return [(panel, target["expr"]) for panel in data_panels(dashboard)
            for target in panel.get("targets", [])]


@pytest.fixture(scope="module")
def dashboard_schema():
    require_tool("node")
    require_tool("npm")
    module = schema_module()
    path = module.ensure_schema()
    return load(path), module.schema_version()


def ids(path: str) -> str:
    return os.path.basename(path)


def test_the_three_dashboards_exist_with_fixed_unique_uids():
    assert {os.path.basename(path) for path in DASHBOARD_FILES} == EXPECTED
    uids = [load(path)["uid"] for path in DASHBOARD_FILES]
    titles = [load(path)["title"] for path in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        # the file name is the uid; a fixed uid keeps links and provisioning stable
        assert dashboard["uid"] == os.path.basename(path)[:-len(".json")]
        assert re.fullmatch(r"[a-z0-9-]{8,40}", dashboard["uid"])
        assert dashboard.get("id") is None, "an instance-specific id breaks imports"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_dashboard_validates_against_grafanas_schema(path, dashboard_schema):
    schema, schema_version = dashboard_schema
    dashboard = load(path)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(dashboard),
                    key=lambda error: list(error.absolute_path))
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []
    assert dashboard["schemaVersion"] == schema_version


def test_schema_rejects_a_broken_dashboard(dashboard_schema):
    """The generated schema is strict enough to matter."""
    schema, _ = dashboard_schema
    dashboard = load(DASHBOARD_FILES[0])
    dashboard["panels"][1]["gridPos"] = {"x": 0, "y": 0, "w": "wide"}   # no h, w a string
    dashboard["panels"][1]["unknownField"] = True
    messages = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(dashboard)]
    assert messages, "the schema accepted a broken panel"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_templating_has_datasource_job_instance_model(path):
    variables = {variable["name"]: variable for variable in load(path)["templating"]["list"]}
    assert set(variables) >= {"datasource", "job", "instance", "model"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance", "model"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert re.fullmatch(r"label_values\((.+), %s\)" % name, variable["query"])
        metrics = selected_metrics(variable_selector(variable))
        assert metrics and all(is_documented(metric) for metric in metrics), metrics
    # each variable narrows by the ones before it
    assert '$job' in variables["instance"]["query"]
    assert '$instance' in variables["model"]["query"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_panel_ids_are_unique(path):
    panel_ids = [panel["id"] for panel in all_panels(load(path))]
    assert len(panel_ids) == len(set(panel_ids))


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_grid_positions_do_not_overlap(path):
    dashboard = load(path)
    # Top level: panels and row headers share one grid. The panels of a collapsed row are laid
    # out when it opens, so they are checked among themselves.
    layers = [dashboard["panels"]] + [row["panels"] for row in dashboard["panels"]
                                      if row["type"] == "row" and row.get("panels")]
    for layer in layers:
        for panel in layer:
            grid = panel["gridPos"]
            assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for i, first in enumerate(layer):
            for second in layer[i + 1:]:
                assert not overlaps(first["gridPos"], second["gridPos"]), \
                    f"{first['title']!r} overlaps {second['title']!r}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_every_panel_has_unit_description_and_the_datasource_variable(path):
    for panel in data_panels(load(path)):
        assert panel.get("description", "").strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_queries_use_only_documented_metrics(path):
    allowed = PROMETHEUS_SERIES | recording_names()
    for panel, expr in exprs(load(path)):
        used = metric_names(expr)
        assert used, (panel["title"], expr)
        assert {name for name in used if not is_documented(name, allowed)} == set(), \
            (panel["title"], expr)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_every_range_is_the_rate_interval_and_every_selector_is_filtered(path):
    for panel, expr in exprs(load(path)):
        assert set(re.findall(r"\[([^\]]*)\]", expr)) <= {"$__rate_interval"}, (panel["title"], expr)
        if re.search(r"\b(rate|increase|irate)\(", expr):
            assert "[$__rate_interval]" in expr
        for metric, matchers in selectors(expr, metric_names(expr)):
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, \
                (panel["title"], metric, matchers)
            if metric.startswith(("tfserving_model", "tfserving_canary", "tfserving_request",
                                  "tfserving_runtime")) or metric.startswith("model"):
                assert 'model=~"$model"' in matchers, (panel["title"], metric)


# ---- fleet mode: instance is the TF Serving target ---------------------------------------------

def variables(dashboard: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def variable_selector(variable: dict) -> str:
    """The series selector of a ``label_values(<selector>, <label>)`` query."""
    return variable["query"][len("label_values("):-1].rsplit(",", 1)[0].strip()


def selected_metrics(selector: str) -> set[str]:
    """Metric names a selector can match: its name, or the names of a __name__ matcher, which
    must then be a plain alternation of names (so the set is exact)."""
    names = metric_names(selector)
    for op, value in re.findall(r'__name__\s*(=~|=)\s*"([^"]*)"', selector):
        alternatives = value.split("|") if op == "=~" else [value]
        assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) for name in alternatives), \
            selector
        names |= set(alternatives)
    return names


def is_exporter_own(name: str) -> bool:
    return name in EXPORTER_OWN_ONLY or name.startswith("process_")


def test_selected_metrics_reads_name_matchers():
    assert selected_metrics('tfserving_up{job=~"$job"}') == {"tfserving_up"}
    assert selected_metrics('{__name__=~"tfserving_up|tfserving_exporter_build_info", '
                            'job=~"$job"}') == {"tfserving_up", "tfserving_exporter_build_info"}
    with pytest.raises(AssertionError):
        selected_metrics('{__name__=~"tfserving_.+"}')


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_job_and_instance_variables_find_fleet_targets(path):
    """Every probe carries a metric the variables select, so a fleet target (instance = the
    target, job = the probe job) is offered like a sidecar. The TF Serving dashboards offer
    only instances with TF Serving series (not the fleet exporter's own /metrics); the Exporter
    dashboard also offers the exporters' own instances, for its process panels."""
    dashboard = load(path)
    for name in ("job", "instance"):
        selected = selected_metrics(variable_selector(variables(dashboard)[name]))
        assert selected, name
        assert all(is_documented(metric) for metric in selected), (name, selected)
        assert selected & EVERY_PROBE, f"{name}: selects nothing a fleet probe returns"
        if os.path.basename(path) == EXPORTER_DASHBOARD:
            assert "tfserving_exporter_build_info" in selected, \
                f"{name}: the fleet exporter's own instance (process panels) is not offered"
        else:
            assert selected <= EVERY_PROBE, \
                f"{name}: offers instances without TF Serving series ({selected - EVERY_PROBE})"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=ids)
def test_job_all_means_the_listed_jobs(path):
    """With All, $job must be the jobs the variable found, not `.+`: `up` and
    `scrape_duration_seconds` exist for every target of every job Prometheus scrapes."""
    assert "allValue" not in variables(load(path))["job"]


def test_exporter_own_metrics_only_on_the_exporter_dashboard():
    """Panels on the TF Serving dashboards must not need the exporter's own /metrics: in fleet
    mode those series are under the fleet exporter's instance, not the TF Serving target's."""
    for path in DASHBOARD_FILES:
        if os.path.basename(path) == EXPORTER_DASHBOARD:
            continue
        for panel, expr in exprs(load(path)):
            assert not {name for name in metric_names(expr) if is_exporter_own(name)}, \
                (panel["title"], expr)


# A fleet and a sidecar in one Prometheus, as promtool input series: a sidecar job with one pod;
# a probe job (chart ScrapeConfig naming) with targets T1, T2 answering and T3 whose probe fails
# (only `up` 0); the fleet exporter's own job; and an unrelated job that must never show.
SIDECAR_JOB, SIDECAR = "tfserving-exporter", "10.2.0.7:9850"
PROBE_JOB = "scrapeConfig/ml/serving-tfserving-exporter"
TARGETS = ("10.0.0.1:8500", "10.0.0.2:8500")
FAILING_TARGET = "10.0.0.3:8500"
FLEET_JOB, FLEET_EXPORTER = "serving-tfserving-exporter", "10.1.0.9:9850"
OTHER_JOB, OTHER = "node", "10.3.0.1:9100"


def _series(name: str, job: str, instance: str, value: str = "1", **labels) -> dict:
    text = ",".join([f'job="{job}"', f'instance="{instance}"']
                    + [f'{key}="{val}"' for key, val in labels.items()])
    return {"series": f"{name}{{{text}}}", "values": f"{value}+0x10"}


def mixed_fleet_series() -> list[dict]:
    series = []
    for job, instance in [(SIDECAR_JOB, SIDECAR)] + [(PROBE_JOB, t) for t in TARGETS]:
        series += [_series("up", job, instance),
                   _series("tfserving_up", job, instance, protocol="grpc"),
                   _series("tfserving_exporter_collector_success", job, instance,
                           collector="status"),
                   _series("tfserving_model_available_versions", job, instance,
                           model="half_plus_two")]
    for job, instance in ((SIDECAR_JOB, SIDECAR), (FLEET_JOB, FLEET_EXPORTER)):
        series += [_series("tfserving_exporter_build_info", job, instance, version="0.2.0",
                           python_version="3.11.7"),
                   _series("process_resident_memory_bytes", job, instance, "60000000")]
    # the fleet exporter tracks its probed targets; a sidecar exports 0
    series += [_series("tfserving_exporter_fleet_targets", FLEET_JOB, FLEET_EXPORTER,
                       str(len(TARGETS) + 1)),
               _series("tfserving_exporter_fleet_targets", SIDECAR_JOB, SIDECAR, "0")]
    series += [_series("up", PROBE_JOB, FAILING_TARGET, "0"),
               _series("up", FLEET_JOB, FLEET_EXPORTER),
               _series("up", OTHER_JOB, OTHER),
               _series("process_resident_memory_bytes", OTHER_JOB, OTHER, "20000000")]
    return series


def grafana_all(values) -> str:
    """How Grafana writes a multi-value variable with All selected (and no allValue) into a
    Prometheus query: the values, regex-escaped, as one alternation."""
    return "(" + "|".join(re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)
                          for value in sorted(values)) + ")"


def substitute(dashboard: dict, expr: str, jobs) -> str:
    """Grafana's interpolation with All selected everywhere: a variable's allValue when it has
    one, else the values the variable found (``jobs`` for $job)."""
    found = {"job": jobs}
    values = {"$__rate_interval": "1m"}
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            all_value = variable.get("allValue")
            assert all_value or name in found, f"${name}: no allValue, and its values unknown"
            values["$" + name] = all_value or grafana_all(found[name])
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    assert "$" not in expr, expr
    return expr


def panel_expr(dashboard: dict, title: str, ref_id: str = "A") -> str:
    [panel] = [panel for panel in data_panels(dashboard) if panel["title"] == title]
    [target] = [target for target in panel["targets"] if target["refId"] == ref_id]
    return target["expr"]


def grouped(expr: str, label: str, values, eval_time: str = "5m") -> dict:
    """promtool check: ``group by (label) (expr)`` has exactly one sample per value."""
    return {"expr": f"group by ({label}) ({expr})", "eval_time": eval_time,
            "exp_samples": [{"labels": f'{{{label}="{value}"}}', "value": 1}
                            for value in sorted(values)]}


def scalar(expr: str, value: float, eval_time: str = "5m") -> dict:
    return {"expr": expr, "eval_time": eval_time, "exp_samples": [{"labels": "{}",
                                                                    "value": value}]}


def test_variables_and_exporter_panels_on_fleet_and_sidecar_series(tmp_path, promtool):
    """The variable queries and the panels that depend on what an instance is, evaluated by
    promtool on a sidecar and a fleet side by side, with $job/$instance as Grafana fills them in
    with All. (The full fleet e2e, with a real fleet exporter, is in tests/test_fleet*.py.)"""
    tfserving_jobs = {SIDECAR_JOB, PROBE_JOB}
    tfserving_instances = {SIDECAR, *TARGETS}
    checks = []
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        exporter = os.path.basename(path) == EXPORTER_DASHBOARD
        jobs = tfserving_jobs | ({FLEET_JOB} if exporter else set())
        instances = tfserving_instances | ({FLEET_EXPORTER} if exporter else set())

        def query(expr: str) -> str:
            return substitute(dashboard, expr, jobs)

        def panel(title: str, ref_id: str = "A") -> str:
            return query(panel_expr(dashboard, title, ref_id))

        variable = variables(dashboard)
        checks += [grouped(query(variable_selector(variable["job"])), "job", jobs),
                   grouped(query(variable_selector(variable["instance"])), "instance",
                           instances),
                   grouped(query(variable_selector(variable["model"])), "model",
                           {"half_plus_two"})]
        if exporter:
            checks += [
                # scraped: every target of the jobs, the failing probe and the fleet exporter
                grouped(panel("Exporter scraped"), "instance", instances | {FAILING_TARGET}),
                # per target: the collectors of each probe
                grouped(panel("Collector success"), "instance", tfserving_instances),
                # the process: the exporters' own instances in both modes, no other job's
                grouped(panel("Resident memory"), "instance", {SIDECAR, FLEET_EXPORTER}),
                grouped(panel("Exporter versions"), "instance", {SIDECAR, FLEET_EXPORTER}),
                # targets tracked: per exporter, the fleet's count and a sidecar's 0
                {"expr": panel("Fleet targets tracked"), "eval_time": "5m",
                 "exp_samples": [
                     {"labels": f'tfserving_exporter_fleet_targets{{job="{FLEET_JOB}", '
                                f'instance="{FLEET_EXPORTER}"}}', "value": len(TARGETS) + 1},
                     {"labels": f'tfserving_exporter_fleet_targets{{job="{SIDECAR_JOB}", '
                                f'instance="{SIDECAR}"}}', "value": 0}]},
            ]
        elif dashboard["uid"] == "tfserving-overview":
            # one scrape target per TF Serving: the sidecar and each probe, the failing one down
            checks += [scalar(panel("Targets scraped", "A"), 3),
                       scalar(panel("Targets scraped", "B"), 4),
                       scalar(panel("TF Serving instances reachable", "A"), 3)]
    test_file = tmp_path / "dashboards.test.yaml"
    test_file.write_text(yaml.safe_dump({
        "rule_files": [], "evaluation_interval": "1m",
        "tests": [{"name": "dashboards on fleet and sidecar series", "interval": "1m",
                   "input_series": mixed_fleet_series(), "promql_expr_test": checks}]},
        sort_keys=False, width=1000))
    done = run_promtool(promtool, "test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_exporter_dashboard_shows_fleet_targets_and_target_drops():
    """Fleet mode's own series (issue 15): the targets tracked, per exporter instance, next to
    the other exporter-process panels, and drops of kind target explained."""
    dashboard = load(os.path.join(DASHBOARD_DIR, EXPORTER_DASHBOARD))
    [panel] = [panel for panel in data_panels(dashboard)
               if "tfserving_exporter_fleet_targets" in metric_names(
                   " ".join(target["expr"] for target in panel["targets"]))]
    assert panel["title"] == "Fleet targets tracked"
    assert [target["legendFormat"] for target in panel["targets"]] == ["{{instance}}"]
    assert "fleet.max_targets" in panel["description"]
    # in the row of the process panels (the exporter's own instances)
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    row_of = {p["title"]: max((r for r in rows if r["gridPos"]["y"] < p["gridPos"]["y"]),
                              key=lambda r: r["gridPos"]["y"])["title"]
              for p in dashboard["panels"] if p["type"] != "row"}
    assert row_of[panel["title"]] == row_of["Resident memory"]
    dropped = [p for p in data_panels(dashboard) if p["title"] == "Dropped items by kind"]
    assert dropped and "kind target" in dropped[0]["description"]
    assert "fleet.max_targets" in dropped[0]["description"]


# ---- Prometheus 2.x and 3.x --------------------------------------------------------------------
# The end-to-end and promtool tests run every query on both (tests/prometheus_versions.py);
# these catch, without a Prometheus, what only shows on data neither test happens to have.

# Prometheus 3 stores a classic histogram's ``le`` and a summary's ``quantile`` as float text
# (``le="1"`` from the text format becomes ``le="1.0"``; 2.x keeps what was exposed), so an
# equality or regex matcher on them matches on one version only. histogram_quantile and
# ``by (le)`` read them as numbers and work on both.
FLOAT_LABEL_MATCHER = re.compile(r'\b(le|quantile)\s*(=|!=|=~|!~)\s*"')
# PromQL that one of the two versions does not parse: holt_winters is gone in 3.x (renamed
# double_exponential_smoothing, which 2.x lacks, behind a feature flag); quoted UTF-8 metric
# names ({"a.b"}) and the info() function are 3.x only.
NOT_ON_BOTH = re.compile(r'\b(holt_winters|double_exponential_smoothing|info)\s*\(|\{\s*"')


def every_promql() -> list[tuple[str, str]]:
    """(where, expression) of every rule, panel query and variable query."""
    found = [(f"rule {rule.get('record') or rule.get('alert')}", rule["expr"])
             for rule in all_rules()]
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        name = os.path.basename(path)
        found += [(f"{name} / {panel['title']}", expr) for panel, expr in exprs(dashboard)]
        for variable in dashboard["templating"]["list"]:
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if variable.get("type") == "query" and query:
                found.append((f"{name} / variable {variable['name']}", query))
    return found


def test_queries_work_alike_on_prometheus_2_and_3():
    promql = every_promql()
    assert len(promql) > 50
    assert [(where, expr) for where, expr in promql if FLOAT_LABEL_MATCHER.search(expr)] == []
    assert [(where, expr) for where, expr in promql if NOT_ON_BOTH.search(expr)] == []


def test_the_guards_see_what_they_guard_against():
    for expr in ('x_bucket{le="1"}', 'x{quantile=~"0.9"}', 'sum(x_bucket{job="a", le != "+Inf"})'):
        assert FLOAT_LABEL_MATCHER.search(expr), expr
    for expr in ('histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))',
                 'x{handle="1"}', 'x{file="a"}'):
        assert not FLOAT_LABEL_MATCHER.search(expr), expr
    for expr in ('holt_winters(x[5m], 0.5, 0.5)', '{"a.b"}', 'info(x)'):
        assert NOT_ON_BOTH.search(expr), expr
    assert not NOT_ON_BOTH.search('sum by (model) (x{job="a"})')
