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

from tests.conftest import require_tool
from tests.test_rules import (PROMETHEUS_SERIES, ROOT, is_documented, metric_names,
                              recording_names, selectors)

DASHBOARD_DIR = os.path.join(ROOT, "grafana", "dashboards")
DASHBOARD_FILES = sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))
EXPECTED = {"tfserving-overview.json", "tfserving-models-canaries.json", "tfserving-exporter.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24


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
        for metric in metric_names(variable["query"][len("label_values("):-1].rsplit(",", 1)[0]):
            assert is_documented(metric), metric
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
