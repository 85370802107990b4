"""The chart's derived files (rules and dashboard copies, config schema, README) are current,
and every value is documented in values.yaml, the schema and the README."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from typing import Any, Iterator

import pytest

from tests.helm.rendering import (CHART_DIR, EXPORTER_CONTAINER, ROOT, container, example_chart,
                                  exporter_pods, load_chart, read_values_yaml, render,
                                  render_error, values_file)

SCRIPT = os.path.join(ROOT, "scripts", "sync_chart_files.py")


def sync_module():
    spec = importlib.util.spec_from_file_location("sync_chart_files", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema() -> dict[str, Any]:
    with open(os.path.join(CHART_DIR, "values.schema.json"), encoding="utf-8") as handle:
        return json.load(handle)


def test_derived_chart_files_are_in_sync(capsys):
    code = sync_module().main(["--check"])
    assert code == 0, capsys.readouterr().out + "\nrun: python scripts/sync_chart_files.py"


@pytest.mark.parametrize("copy, canonical", [
    ("files/tfserving.rules.yaml", "prometheus/rules/tfserving.rules.yaml"),
    ("files/dashboards", "grafana/dashboards"),
])
def test_chart_copies_equal_the_canonical_files(copy, canonical):
    source = os.path.join(ROOT, canonical)
    if not os.path.exists(source):
        pytest.xfail(f"{canonical} does not exist yet; the chart ships a placeholder")
    target = os.path.join(CHART_DIR, copy)
    if os.path.isdir(source):
        names = sorted(n for n in os.listdir(source) if n.endswith(".json"))
        assert sorted(os.listdir(target)) == names
        pairs = [(os.path.join(source, n), os.path.join(target, n)) for n in names]
    else:
        pairs = [(source, target)]
    for original, duplicate in pairs:
        with open(original, "rb") as a, open(duplicate, "rb") as b:
            assert a.read() == b.read(), f"{duplicate} differs from {original}: " \
                                         "run python scripts/sync_chart_files.py"


def test_sync_script_copies_removes_and_checks(tmp_path, monkeypatch, capsys):
    module = sync_module()
    chart = tmp_path / "helm" / "tfserving-exporter"
    shutil.copytree(CHART_DIR, chart)
    (tmp_path / "prometheus" / "rules").mkdir(parents=True)
    (tmp_path / "grafana" / "dashboards").mkdir(parents=True)
    rules = "groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: up\n"
    (tmp_path / "prometheus" / "rules" / "tfserving.rules.yaml").write_text(rules)
    (tmp_path / "grafana" / "dashboards" / "only.json").write_text('{"uid": "only"}\n')
    (chart / "files" / "dashboards" / "stale.json").write_text("{}")
    monkeypatch.setattr(module, "ROOT", str(tmp_path))
    for name, relative in (("RULES_SOURCE", "prometheus/rules/tfserving.rules.yaml"),
                           ("DASHBOARDS_SOURCE", "grafana/dashboards")):
        monkeypatch.setattr(module, name, str(tmp_path / relative))
    for name, relative in (("CHART", ""), ("RULES_COPY", "files/tfserving.rules.yaml"),
                           ("DASHBOARDS_COPY", "files/dashboards"), ("VALUES", "values.yaml"),
                           ("SCHEMA", "values.schema.json"), ("README", "README.md"),
                           ("HELPERS", "templates/_helpers.tpl")):
        monkeypatch.setattr(module, name, str(chart / relative) if relative else str(chart))
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    monkeypatch.setattr(module, "CONFIG_README", str(tmp_path / "README.md"))
    # The README quotes the example chart by repository path.
    shutil.copytree(os.path.join(ROOT, "helm", "examples"), tmp_path / "helm" / "examples")

    assert module.main(["--check"]) == 1
    assert "files/dashboards/stale.json should not exist" in capsys.readouterr().out
    assert module.main([]) == 0
    assert (chart / "files" / "tfserving.rules.yaml").read_text() == rules
    assert sorted(os.listdir(chart / "files" / "dashboards")) == ["only.json"]
    assert module.main(["--check"]) == 0
    assert module.main([]) == 0 and "in sync" in capsys.readouterr().out.splitlines()[-1]


def _leaves(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else key)
    else:
        yield path


def test_every_value_is_documented_in_values_yaml():
    text, values = read_values_yaml()
    documented = {path for path, _ in sync_module().documented_values(text)}
    undocumented = [leaf for leaf in _leaves(values)
                    if not any(leaf == d or leaf.startswith(d + ".") for d in documented)]
    assert not undocumented, f"values without a '# --' comment above them: {undocumented}"
    for path, description in sync_module().documented_values(text):
        assert len(description) > 10, f"{path}: '{description}' says too little"


def _schema_paths(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict]]:
    for key, child in node.get("properties", {}).items():
        child_path = f"{path}.{key}" if path else key
        yield child_path, child
        yield from _schema_paths(child, child_path)


def test_schema_and_values_yaml_have_the_same_keys():
    text, values = read_values_yaml()
    documented = [path for path, _ in sync_module().documented_values(text)]
    paths = dict(_schema_paths(schema()))
    missing = [p for p in documented if p not in paths]
    assert not missing, f"values.yaml keys without a schema entry: {missing}"
    # Every schema entry outside exporter.config (whose keys are the exporter's settings) is in
    # values.yaml, so the README table covers everything a user can set.
    sections = {".".join(p.split(".")[:i]) for p in documented for i in range(1, p.count(".") + 1)}
    extra = [p for p in paths if p not in documented and p not in sections and p != "global"
             and not p.startswith("exporter.config.") and ".versionPolicy" not in p]
    assert not extra, f"schema entries missing from values.yaml: {extra}"


def test_every_schema_entry_has_a_description():
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        if not node.get("description"):
            yield path or "/"
        for key, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}/{key}")
        for index, child in enumerate(node.get("oneOf", [])):
            yield from walk(child, f"{path}/oneOf/{index}")
        # Items and map values are described by their parent.
        for key in ("items", "additionalProperties"):
            child = node.get(key)
            if isinstance(child, dict):
                for name, grandchild in child.get("properties", {}).items():
                    yield from walk(grandchild, f"{path}/{key}/{name}")

    assert not list(walk(schema(), ""))
    assert schema()["additionalProperties"] is False


def test_schema_config_section_follows_the_exporters_settings():
    from exporter.config import SCHEMA

    config = schema()["properties"]["exporter"]["properties"]["config"]
    paths = {p for p, node in _schema_paths(config) if "properties" not in node}
    assert paths == {setting.path for setting in SCHEMA}


def _settings_passed_as_flags(rendered) -> set[str]:
    from exporter.config import FIELD_FOR_FLAG

    [pod] = exporter_pods(rendered)
    passed = set()
    for arg in container(pod, EXPORTER_CONTAINER)["args"]:
        flag = arg.split("=", 1)[0].replace("--no-", "--", 1)
        if flag != "--config.file":
            passed.add(FIELD_FOR_FLAG[flag])
    return passed


def test_the_chart_refuses_exactly_the_settings_it_passes_as_flags(tmp_path):
    from exporter.config import SCHEMA

    owned = set(sync_module().flag_owned_settings())
    # Every flag-passing branch of the chart's exporter args: every mode, with golden sets,
    # models.config and TF Serving's page path (sidecar-only passes it only when set).
    passed = {
        "serving": _settings_passed_as_flags(render({"canary": {"existingConfigMap": "g"}})),
        "fleet": _settings_passed_as_flags(render({
            "mode": "fleet", "fleet": {"allowedTargets": ["10.0.0.0/8"]},
            "canary": {"existingConfigMap": "g"},
            "exporter": {"nativeCollector": {"metricsPath": "/monitoring/prometheus/metrics"}}})),
        # gRPC TLS with a client certificate and server name, and a web config file.
        "serving-tls": _settings_passed_as_flags(render(values_file(
            os.path.join(CHART_DIR, "ci", "tls-values.yaml")))),
        # The example chart has golden sets and models.config in sidecar-only mode.
        "sidecar-only": _settings_passed_as_flags(render(
            {"tfserving-exporter": {"exporter": {"nativeCollector": {
                "metricsPath": "/monitoring/prometheus/metrics"}}}},
            chart_dir=example_chart(tmp_path))),
    }
    for mode, settings in passed.items():
        assert settings <= owned, f"{mode}: passed as flags but not refused in exporter.config"
    assert set().union(*passed.values()) == owned, "refused in exporter.config, never passed"
    defaults = {setting.path: setting.default for setting in SCHEMA}
    for setting in owned:
        message = render_error({"exporter": {"config": _nested(setting, defaults[setting])}})
        assert f"exporter.config.{setting} is set by the chart with a command-line flag" in \
            message, message


def _nested(path: str, value: Any) -> dict[str, Any]:
    *sections, leaf = path.split(".")
    node: dict[str, Any] = {leaf: value}
    for section in reversed(sections):
        node = {section: node}
    return node


def test_flag_owned_settings_are_read_from_the_template_only(tmp_path, monkeypatch):
    module = sync_module()
    helpers = tmp_path / "_helpers.tpl"
    with open(module.HELPERS, encoding="utf-8") as handle:
        text = handle.read()
    helpers.write_text(text.replace("web.listen_address: exporter.port\n", ""))
    monkeypatch.setattr(module, "HELPERS", str(helpers))
    assert "web.listen_address" not in module.flag_owned_settings()
    listen = module.config_schema()["properties"]["web"]["properties"]["listen_address"]
    assert not listen["description"].startswith("Set by the chart with a flag")
    helpers.write_text(text.replace("web.listen_address: exporter.port",
                                    "web.listen_adress: exporter.port"))
    with pytest.raises(SystemExit, match="names settings the exporter does not have: "
                                         "web.listen_adress"):
        module.config_schema()


def test_readme_lists_every_value_with_its_default():
    text, values = read_values_yaml()
    with open(os.path.join(CHART_DIR, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    for path, _ in sync_module().documented_values(text):
        assert f"| `{path}` |" in readme, path
    assert '| `mode` | `"serving"` |' in readme


def test_chart_metadata():
    from exporter import __version__

    metadata = load_chart().metadata
    assert metadata["name"] == "tfserving-exporter"
    assert metadata["apiVersion"] == "v2"
    assert metadata["appVersion"] == __version__
    assert metadata["kubeVersion"] == ">=1.25.0-0"
    assert metadata["description"] and metadata["keywords"] and metadata["sources"]
