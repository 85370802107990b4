"""The chart lints, renders valid Kubernetes objects for every ci/ values file, and fails
clearly on bad values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.helm import operator_objects, operator_schemas
from tests.helm.rendering import (CHART_DIR, CI_VALUES, EXPORTER_CONTAINER, KUBERNETES_VERSIONS,
                                  NAMESPACE, RELEASE, ROOT, ci_id, container, example_chart,
                                  exporter_pods, helm, load_chart, render, render_error,
                                  require_module, values_file)

CASES = [pytest.param(None, id="defaults")] + [pytest.param(path, id=ci_id(path))
                                               for path in CI_VALUES]


def values_of(path: str | None) -> dict:
    return values_file(path) if path else {}


def test_there_is_a_ci_values_file_per_feature():
    names = {ci_id(path) for path in CI_VALUES}
    for feature in ("default", "sidecar-only", "servicemonitor", "podmonitor", "prometheusrule",
                    "dashboards", "networkpolicy", "pdb", "canary-golden-inline",
                    "canary-existing-configmap", "canary-volume", "custom-config", "fleet",
                    "fleet-canary"):
        assert feature in names


@pytest.mark.parametrize("values_path", CASES)
def test_lint_strict_passes(values_path):
    report = helm().lint(CHART_DIR, values_of(values_path), strict=True, namespace=NAMESPACE)
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not serious, report


@pytest.mark.parametrize("values_path", CASES)
def test_every_object_is_valid_for_kubernetes(values_path):
    validator = require_module("kubernetes_validate")
    rendered = render(values_of(values_path))
    assert rendered.objects
    problems = []
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # no schema in kubernetes-validate: checked in the tests below
        assert obj["metadata"].get("namespace"), f"{obj['kind']} without namespace"
        for version in KUBERNETES_VERSIONS:
            try:
                validator.validate(obj, version, strict=True)
            except validator.ValidationError as err:
                path = "/".join(str(p) for p in err.absolute_path)
                problems.append(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version})"
                                f" at {path}: {err.message}")
    assert not problems, "\n".join(problems)


def _operator_objects(rendered) -> list[dict]:
    return [obj for obj in rendered.objects
            if obj["apiVersion"].startswith("monitoring.coreos.com/")]


@pytest.mark.parametrize("values_path", CASES)
def test_operator_objects_validate_against_the_operators_strict_schema(values_path):
    problems = []
    for obj in _operator_objects(render(values_of(values_path))):
        problems += operator_schemas.problems(obj)
    assert not problems, "\n".join(problems)


def test_every_operator_kind_is_rendered_and_schema_checked_by_some_case():
    kinds = {obj["kind"] for path in CASES for obj in _operator_objects(
        render(values_of(path.values[0])))}
    assert kinds == set(operator_schemas.KINDS)


def test_operator_schemas_come_from_the_pinned_operator_version():
    require_module(operator_schemas.MODULE)
    installed = operator_schemas.installed_package_version()
    assert installed == operator_schemas.PACKAGE_VERSION, (
        f"{operator_schemas.PACKAGE} {installed} is installed, the tests name "
        f"{operator_schemas.PACKAGE_VERSION}: update PACKAGE_VERSION/OPERATOR_VERSION with the pin")
    assert operator_schemas.operator_version_of(installed) == operator_schemas.OPERATOR_VERSION
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as handle:
        assert f'"{operator_schemas.PACKAGE}=={operator_schemas.PACKAGE_VERSION}"' in handle.read()


def test_strict_operator_schema_catches_typos_the_plain_one_lets_through():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))

    def problems(kind, change, strict=True) -> str:
        obj = json.loads(json.dumps(rendered.one(kind)))
        change(obj)
        return "\n".join(operator_schemas.problems(obj, strict_schema=strict))

    def intervall(obj):
        obj["spec"]["endpoints"][0]["intervall"] = obj["spec"]["endpoints"][0].pop("interval")

    def lables(obj):
        obj["metadata"]["lables"] = obj["metadata"].pop("labels")

    typos = [("ServiceMonitor", intervall, "spec.endpoints.0: Additional properties are not "
              "allowed ('intervall' was unexpected)"),
             ("ScrapeConfig", lambda o: o["spec"].update(foo=1),
              "at spec: Additional properties are not allowed ('foo' was unexpected)"),
             ("ScrapeConfig", lables, "at metadata: Additional properties are not allowed "
              "('lables' was unexpected)"),
             ("ScrapeConfig", lambda o: o["spec"]["relabelings"][0].update(source_labels=["a"]),
              "('source_labels' was unexpected)"),
             ("ScrapeConfig", lambda o: o["spec"]["kubernetesSDConfigs"][0].update(
                 namespace="ml"), "('namespace' was unexpected)"),
             ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval=None),
              "at spec.endpoints.0.interval: None is not of type 'string'")]
    for kind, change, message in typos:
        assert message in problems(kind, change), (kind, message)
        assert not problems(kind, change, strict=False), (kind, message)
    rule = render(values_file(os.path.join(CHART_DIR, "ci", "prometheusrule-values.yaml")))
    obj = json.loads(json.dumps(rule.one("PrometheusRule")))
    obj["spec"]["groups"][0]["rules"][0]["expresion"] = "up"
    assert "('expresion' was unexpected)" in "\n".join(operator_schemas.problems(obj))
    pod_monitor = json.loads(json.dumps(render(values_file(os.path.join(
        CHART_DIR, "ci", "podmonitor-values.yaml"))).one("PodMonitor")))
    pod_monitor["spec"]["podMetricsEndpoints"][0]["scrapeTimout"] = "10s"
    assert "('scrapeTimout' was unexpected)" in "\n".join(operator_schemas.problems(pod_monitor))
    assert "no Operator schema for kind 'Probe'" in "\n".join(operator_schemas.problems(
        {**obj, "kind": "Probe"}))


@pytest.mark.parametrize("values_path", CASES)
def test_operator_objects_fit_the_rest_of_the_render(values_path):
    values = values_of(values_path)
    rendered = render(values)
    merged = load_chart().merge_values(values)
    problems = []
    for obj in rendered.of_kind("ServiceMonitor"):
        problems += operator_objects.check_service_monitor(obj, rendered, NAMESPACE)
    for obj in rendered.of_kind("PodMonitor"):
        if merged["mode"] in ("serving", "fleet"):
            pod = exporter_pods(rendered)[0]
            labels = pod["metadata"]["labels"]
            ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        else:  # the user's pods carry sidecarOnly.podSelector and the sidecar's port
            labels, ports = merged["sidecarOnly"]["podSelector"], {"metrics"}
        problems += operator_objects.check_pod_monitor(obj, labels, ports, NAMESPACE)
    for obj in rendered.of_kind("PrometheusRule"):
        problems += operator_objects.check_prometheus_rule(obj)
    for obj in rendered.of_kind("ScrapeConfig"):
        problems += operator_objects.check_scrape_config(obj, rendered)
    assert not problems, "\n".join(problems)


def test_optional_objects_are_off_by_default():
    kinds = sorted(obj["kind"] for obj in render().objects)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Service"]


@pytest.mark.parametrize("toggle, kind", [
    ("serviceMonitor", "ServiceMonitor"), ("podMonitor", "PodMonitor"),
    ("prometheusRule", "PrometheusRule"), ("networkPolicy", "NetworkPolicy"),
    ("podDisruptionBudget", "PodDisruptionBudget")])
def test_each_optional_object_renders_when_enabled(toggle, kind):
    assert len(render({toggle: {"enabled": True}}).of_kind(kind)) == 1
    # The same objects in fleet mode, for the fleet exporter's own pods.
    assert len(render({**FLEET, toggle: {"enabled": True}}).of_kind(kind)) == 1


def test_prometheus_rule_ships_the_charts_rules_file_with_labels():
    with open(os.path.join(CHART_DIR, "files", "tfserving.rules.yaml"), encoding="utf-8") as f:
        shipped = yaml.safe_load(f)
    rule = render({"prometheusRule": {"enabled": True, "additionalLabels": {"release": "kps"},
                                      "ruleLabels": {"team": "ml"}}}).one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    expected = [r["alert"] for g in shipped["groups"] for r in g["rules"] if "alert" in r]
    assert [a["alert"] for a in alerts] == expected and alerts
    assert all(a["labels"]["team"] == "ml" for a in alerts)
    # Template text such as {{ $labels.instance }} reaches Prometheus untouched.
    shipped_rules = {r.get("alert") or r["record"]: r for g in shipped["groups"] for r in g["rules"]}
    for alert in alerts:
        assert alert["annotations"] == shipped_rules[alert["alert"]]["annotations"]
        assert alert["expr"] == shipped_rules[alert["alert"]]["expr"]


def test_prometheus_rule_leaves_out_disabled_alerts():
    first = render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")
    names = [r["alert"] for g in first["spec"]["groups"] for r in g["rules"] if "alert" in r]
    rule = render({"prometheusRule": {"enabled": True, "disabledAlerts": names[:1]}})
    kept = [r["alert"] for g in rule.one("PrometheusRule")["spec"]["groups"]
            for r in g["rules"] if "alert" in r]
    assert kept == names[1:]
    assert all(g["rules"] for g in rule.one("PrometheusRule")["spec"]["groups"])


def test_prometheus_rule_passes_promtool(tmp_path, promtool):
    rule = render({"prometheusRule": {"enabled": True}}).one("PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_config_map_holds_every_dashboard():
    rendered = render({"grafanaDashboards": {"enabled": True, "folder": "TF Serving"}})
    config_map = rendered.one("ConfigMap", f"{RELEASE}-tfserving-exporter-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "TF Serving"
    files = sorted(os.listdir(os.path.join(CHART_DIR, "files", "dashboards")))
    assert sorted(config_map["data"]) == files and files
    for name, text in config_map["data"].items():
        with open(os.path.join(CHART_DIR, "files", "dashboards", name), encoding="utf-8") as f:
            assert json.loads(text) == json.load(f)
    assert sum(len(text.encode()) for text in config_map["data"].values()) < 1024 * 1024


def test_dashboard_label_is_configurable():
    rendered = render({"grafanaDashboards": {"enabled": True, "label": "dashboards",
                                             "labelValue": "tfserving"}})
    labels = rendered.one("ConfigMap", f"{RELEASE}-tfserving-exporter-dashboards")["metadata"]["labels"]
    assert labels["dashboards"] == "tfserving" and "grafana_dashboard" not in labels


# ---------------------------------------------------------------------------------------------
# The pod.
# ---------------------------------------------------------------------------------------------

def test_serving_mode_runs_tfserving_with_its_monitoring_config():
    rendered = render()
    pod = next(iter(rendered.pod_specs()))
    tfserving = container(pod, "tfserving")
    assert tfserving["image"] == "tensorflow/serving:2.19.0"
    assert tfserving["args"][:6] == [
        "--port=8500", "--rest_api_port=8501", "--model_config_file=/config/models.config",
        "--model_config_file_poll_wait_seconds=0", "--file_system_poll_wait_seconds=1",
        "--monitoring_config_file=/config/monitoring.config"]
    assert tfserving["readinessProbe"]["httpGet"] == {"path": "/v1/models/half_plus_two",
                                                      "port": "rest"}
    exporter = container(pod, EXPORTER_CONTAINER)
    assert "--tfserving.grpc-address=127.0.0.1:8500" in exporter["args"]
    assert "--tfserving.rest-address=http://127.0.0.1:8501" in exporter["args"]
    assert "--tfserving.model-config-file=/config/models.config" in exporter["args"]
    assert exporter["image"] == "ghcr.io/tfserving-exporter/tfserving-exporter:0.1.0"
    # Both containers read the same models.config, from the same ConfigMap volume.
    for item in (tfserving, exporter):
        assert {"name": "tfserving-config", "mountPath": "/config", "readOnly": True} in \
            item["volumeMounts"]
    service = rendered.one("Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 8500, "rest": 8501, "metrics": 9850}
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_models_config_parses_as_tfserving_model_server_config():
    from tfserving_wire import protos
    from google.protobuf import text_format

    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "model-pvc-values.yaml")))
    data = rendered.one("ConfigMap", f"{RELEASE}-tfserving-exporter-tfserving")["data"]
    config = protos.model_server_config_pb2.ModelServerConfig()
    text_format.Parse(data["models.config"], config)
    models = {m.name: m for m in config.model_config_list.config}
    assert list(models) == ["half_plus_two", "resnet", "bert"]
    assert list(models["half_plus_two"].model_version_policy.specific.versions) == [1, 2]
    assert dict(models["half_plus_two"].version_labels) == {"stable": 1, "canary": 2}
    assert models["resnet"].model_version_policy.latest.num_versions == 2
    assert models["bert"].model_version_policy.HasField("all")
    assert models["bert"].base_path == "/models/bert"
    assert 'prometheus_config {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}' \
        in data["monitoring.config"]


def test_without_monitoring_config_the_native_collector_is_off():
    pod = next(iter(render({"tfserving": {"monitoring": {"enabled": False}}}).pod_specs()))
    assert not any("monitoring_config" in arg for arg in container(pod, "tfserving")["args"])
    assert "--no-collector.native" in container(pod, EXPORTER_CONTAINER)["args"]


@pytest.mark.parametrize("values_path", CASES)
def test_containers_are_hardened(values_path):
    rendered = render(values_of(values_path))
    for pod in rendered.pod_specs():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is (
            values_of(values_path).get("serviceAccount", {}).get("automountServiceAccountToken",
                                                                 False))
        assert spec["securityContext"]["runAsNonRoot"] is True
        for item in spec["containers"]:
            context = item["securityContext"]
            assert context["runAsNonRoot"] is True, item["name"]
            assert context["readOnlyRootFilesystem"] is True, item["name"]
            assert context["allowPrivilegeEscalation"] is False, item["name"]
            assert context["capabilities"]["drop"] == ["ALL"], item["name"]
            assert context["seccompProfile"]["type"] == "RuntimeDefault", item["name"]
            assert context["runAsUser"] != 0, item["name"]
        assert container(pod, EXPORTER_CONTAINER)["securityContext"]["runAsUser"] == 65534


def test_default_pod_mounts_no_service_account_token():
    pod = next(iter(render().pod_specs()))
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["serviceAccountName"] == "default"


def test_exporter_probes_use_health_and_ready_endpoints():
    exporter = container(next(iter(render().pod_specs())), EXPORTER_CONTAINER)
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9850, "protocol": "TCP"}]


def _annotations(values: dict) -> dict[str, str]:
    return next(iter(render(values).pod_specs()))["metadata"]["annotations"]


def test_checksum_changes_when_the_config_changes():
    base = _annotations({})
    changed = _annotations({"exporter": {"config": {"log": {"level": "debug"}}}})
    assert base["checksum/config"] != changed["checksum/config"]
    golden = _annotations({"canary": {"goldenSets": {"m.json": '{"format": 1}'}}})
    assert golden["checksum/config"] != base["checksum/config"]
    models = _annotations({"tfserving": {"models": [{"name": "m", "basePath": "/models/m"}]}})
    assert models["checksum/tfserving-config"] != base["checksum/tfserving-config"]


def test_config_settings_next_to_flag_owned_ones_are_accepted():
    config = {"collectors": {"status": {"enabled": False}, "native": {"max_passthrough_series": 5}},
              "canary": {"interval": "30s"}, "tfserving": {"timeout": "5s"}}
    rendered = render({"exporter": {"config": config}})
    text = rendered.one("ConfigMap", f"{RELEASE}-tfserving-exporter")["data"]["config.yaml"]
    assert yaml.safe_load(text) == config


def test_checksum_stays_when_nothing_the_pods_read_changes():
    base = _annotations({})
    assert _annotations({"service": {"type": "NodePort"}}) == base
    assert _annotations({"exporter": {"config": {}}}) == base


def test_names_are_truncated_to_63_characters():
    long_name = "a-release-name-that-is-long-enough-to-need-truncating-x"[:53]
    rendered = render({"grafanaDashboards": {"enabled": True}}, name=long_name)
    for obj in rendered.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert not obj["metadata"]["name"].endswith("-")
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63
    rendered = render({"fullnameOverride": "x" * 70})
    assert {obj["metadata"]["name"] for obj in rendered.of_kind("ConfigMap")} == {
        "x" * 63, "x" * 53 + "-tfserving"}


def test_common_labels_reach_every_object():
    rendered = render({"commonLabels": {"team": "ml"}, "serviceMonitor": {"enabled": True}})
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["team"] == "ml"
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "tfserving-exporter"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_sidecar_only_renders_no_tfserving():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "sidecar-only-values.yaml")))
    assert not rendered.of_kind("Deployment")
    assert rendered.config_map(f"{RELEASE}-tfserving-exporter-tfserving") is None
    service = rendered.one("Service")
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "my-tfserving"}


def test_network_policy_admits_metrics_and_tfserving_ports():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "networkpolicy-values.yaml")))
    policy = rendered.one("NetworkPolicy")
    rules = policy["spec"]["ingress"]
    assert [[p["port"] for p in rule["ports"]] for rule in rules] == [["metrics"],
                                                                     ["grpc", "rest"]]
    assert rules[0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    pod = next(iter(rendered.pod_specs()))
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


# ---------------------------------------------------------------------------------------------
# Fleet mode.
# ---------------------------------------------------------------------------------------------

FLEET = {"mode": "fleet", "fleet": {"allowedTargets": ["10.0.0.0/8"]}}
FLEET_SCRAPE = {"mode": "fleet", "fleet": {
    "allowedTargets": ["10.0.0.0/8"], "podSelector": {"app.kubernetes.io/name": "tfserving"},
    "scrapeConfig": {"enabled": True}}}


def test_fleet_mode_runs_the_exporter_alone_behind_a_metrics_service():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))
    assert sorted(obj["kind"] for obj in rendered.objects) == [
        "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "ScrapeConfig",
        "Service", "ServiceMonitor"]
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert [c["name"] for c in pod["spec"]["containers"]] == [EXPORTER_CONTAINER]
    assert "initContainers" not in pod["spec"]
    exporter = container(pod, EXPORTER_CONTAINER)
    # The exporter container of serving mode: image, probes, resources, env, security.
    serving = container(next(iter(render().pod_specs())), EXPORTER_CONTAINER)
    for key in ("image", "ports", "livenessProbe", "readinessProbe", "resources", "env",
                "securityContext"):
        assert exporter[key] == serving[key], key
    assert exporter["args"] == [
        "--config.file=/etc/tfserving-exporter/config.yaml", "--web.listen-address=:9850",
        "--web.telemetry-path=/metrics", "--tfserving.grpc-address=",
        "--tfserving.rest-address=", "--probe.allowed-target=10.0.0.0/8",
        "--probe.allowed-target=*.tfserving.svc.cluster.local", "--probe.rest-port=8501",
        "--fleet.max-targets=50", "--fleet.target-expiry=15m", "--collector.native",
        "--collector.native.passthrough=false"]
    assert [m["mountPath"] for m in exporter["volumeMounts"]] == ["/etc/tfserving-exporter"]
    assert "checksum/config" in pod["metadata"]["annotations"]
    service = rendered.one("Service")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("metrics", 9850)]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert rendered.config_map(f"{RELEASE}-tfserving-exporter-tfserving") is None


def test_fleet_mode_renders_only_the_exporter_by_default():
    kinds = sorted(obj["kind"] for obj in render(FLEET).objects)
    assert kinds == ["ConfigMap", "Deployment", "Service"]


def test_fleet_modules_are_merged_into_the_exporters_config():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))
    text = rendered.one("ConfigMap", f"{RELEASE}-tfserving-exporter")["data"]["config.yaml"]
    config = yaml.safe_load(text)
    assert sorted(config["fleet"]["modules"]) == ["default", "many-models", "tls"]
    assert config["fleet"]["max_concurrent_probes"] == 8
    assert config["fleet"]["modules"]["tls"]["probe"] == {"rest_port": 0}
    assert config["canary"] == {"interval": "2m"}
    # Values are not changed by the merge: a second render gives the same text.
    again = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))
    assert again.one("ConfigMap", f"{RELEASE}-tfserving-exporter")["data"]["config.yaml"] == text
    # Outside fleet mode fleet.modules are not rendered.
    serving = render({"fleet": {"modules": {"tls": {"probe": {"rest_port": 0}}}}})
    assert "fleet" not in serving.one("ConfigMap", f"{RELEASE}-tfserving-exporter")["data"][
        "config.yaml"]


def test_fleet_module_changes_roll_the_fleet_pods():
    def checksum(values):
        return next(iter(render(values).pod_specs()))["metadata"]["annotations"]["checksum/config"]

    with_module = {**FLEET, "fleet": {**FLEET["fleet"], "modules": {"m": {"models": ["a"]}}}}
    assert checksum(FLEET) != checksum(with_module)


def _relabelings(values) -> list[dict]:
    return render(values).one("ScrapeConfig")["spec"]["relabelings"]


def test_fleet_scrape_config_probes_the_selected_tfserving_pods():
    rendered = render(FLEET_SCRAPE)
    scrape = rendered.one("ScrapeConfig")
    assert scrape["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    assert scrape["metadata"]["name"] == f"{RELEASE}-tfserving-exporter"
    assert scrape["metadata"]["namespace"] == NAMESPACE
    spec = scrape["spec"]
    assert spec["kubernetesSDConfigs"] == [{"role": "Pod", "namespaces": {"names": [NAMESPACE]}}]
    assert spec["metricsPath"] == "/probe"
    assert "params" not in spec and "jobName" not in spec
    assert (spec["scrapeInterval"], spec["scrapeTimeout"]) == ("30s", "10s")
    assert spec["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
         "regex": "tfserving", "action": "keep"},
        {"sourceLabels": ["__meta_kubernetes_pod_container_port_name"], "regex": "grpc",
         "action": "keep"},
        {"sourceLabels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {"sourceLabels": ["__address__"], "targetLabel": "__param_target", "action": "replace"},
        {"sourceLabels": ["__param_target"], "targetLabel": "instance", "action": "replace"},
        {"sourceLabels": ["__meta_kubernetes_pod_annotation_tfserving_exporter_models"],
         "regex": "(.+)", "targetLabel": "__param_model", "action": "replace"},
        {"sourceLabels": ["__meta_kubernetes_namespace"], "targetLabel": "namespace",
         "action": "replace"},
        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod",
         "action": "replace"},
        {"targetLabel": "__address__", "replacement": f"{RELEASE}-tfserving-exporter."
         f"{NAMESPACE}.svc:9850", "action": "replace"}]
    # The scrapes reach the exporter's Service, whose pods are the fleet exporter's.
    assert operator_objects.scrape_target_service(scrape, rendered) == (
        f"{RELEASE}-tfserving-exporter", "metrics")
    assert not operator_objects.check_scrape_config(scrape, rendered)
    assert not operator_schemas.problems(scrape)


def test_fleet_scrape_config_values_reach_the_spec():
    values = values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml"))
    rendered = render(values)
    scrape = rendered.one("ScrapeConfig")
    assert scrape["metadata"]["namespace"] == "monitoring"
    assert scrape["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = scrape["spec"]
    assert spec["params"] == {"module": ["many-models"]}
    assert spec["kubernetesSDConfigs"][0]["namespaces"]["names"] == ["ml", "kserve-models"]
    assert (spec["scrapeInterval"], spec["scrapeTimeout"]) == ("1m", "20s")
    keeps = [r["sourceLabels"][0] for r in spec["relabelings"] if r.get("action") == "keep"]
    assert keeps == ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                     "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
                     "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_phase"]
    # The user's relabelings come after the chart's, before the scrape is sent to the exporter.
    assert spec["relabelings"][-2] == values["fleet"]["scrapeConfig"]["relabelings"][0]
    assert spec["relabelings"][-1]["targetLabel"] == "__address__"
    # In another namespace, the address still names the Service in the release namespace.
    assert spec["relabelings"][-1]["replacement"] == f"{RELEASE}-tfserving-exporter.{NAMESPACE}.svc:9850"
    assert spec["metricRelabelings"] == values["fleet"]["scrapeConfig"]["metricRelabelings"]


def test_fleet_scrape_config_quotes_selector_values_and_port_names_as_regexes():
    relabelings = _relabelings({**FLEET_SCRAPE, "fleet": {
        **FLEET_SCRAPE["fleet"], "podSelector": {"example.com/tier": "v1.2+gpu"},
        "grpcPortName": "grpc", "modelsAnnotation": "models.example.com/served"}})
    assert relabelings[0] == {"sourceLabels": ["__meta_kubernetes_pod_label_example_com_tier"],
                              "regex": r"v1\.2\+gpu", "action": "keep"}
    assert relabelings[5]["sourceLabels"] == [
        "__meta_kubernetes_pod_annotation_models_example_com_served"]


def test_fleet_scrape_config_without_models_annotation_sets_no_model_parameter():
    relabelings = _relabelings({**FLEET_SCRAPE, "fleet": {**FLEET_SCRAPE["fleet"],
                                                           "modelsAnnotation": ""}})
    assert not [r for r in relabelings if r.get("targetLabel") == "__param_model"]


def test_fleet_job_name_contains_tfserving_exporter_or_the_notes_warn():
    notes = render(FLEET_SCRAPE).notes
    assert f'job "scrapeConfig/{NAMESPACE}/{RELEASE}-tfserving-exporter"' in notes
    assert "WARNING: the probes' job" not in notes
    dropped = render({**FLEET_SCRAPE, "fullnameOverride": "tfs"})
    assert 'WARNING: the probes\' job "scrapeConfig/ml/tfs" does not contain ' \
        '"tfserving-exporter"' in dropped.notes
    named = render({**FLEET_SCRAPE, "fullnameOverride": "tfs", "fleet": {
        **FLEET_SCRAPE["fleet"], "scrapeConfig": {"enabled": True,
                                                  "jobName": "tfserving-exporter-fleet"}}})
    assert named.one("ScrapeConfig")["spec"]["jobName"] == "tfserving-exporter-fleet"
    assert "WARNING: the probes' job" not in named.notes


def test_notes_in_fleet_mode_say_how_to_probe():
    notes = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml"))).notes
    assert "mode: fleet" in notes
    assert "/probe connects only to targets matching 10.0.0.0/8, " \
           "*.tfserving.svc.cluster.local" in notes
    assert "curl -s 'http://127.0.0.1:9850/probe?target=<pod IP>:8500'" in notes
    assert "Modules (module=NAME): default, many-models, tls." in notes
    assert "ScrapeConfig tfs-tfserving-exporter in namespace monitoring probes" in notes
    assert "app.kubernetes.io/name=tfserving, app.kubernetes.io/part-of=ml-platform" in notes
    assert "ServiceMonitor tfs-tfserving-exporter" in notes
    assert "No ScrapeConfig" in render(FLEET).notes
    assert "examples/prometheus-fleet.yml" in render(FLEET).notes


def test_scrape_config_checks_find_what_the_operator_rejects():
    rendered = render(FLEET_SCRAPE)
    good = rendered.one("ScrapeConfig")
    assert not operator_objects.check_scrape_config(good, rendered)
    assert not operator_schemas.problems(good)

    def problems(change) -> str:
        """What the strict schema and the checks beyond it find, together."""
        obj = json.loads(json.dumps(good))
        change(obj["spec"])
        return "\n".join(operator_schemas.problems(obj) +
                         operator_objects.check_scrape_config(obj, rendered))

    # The Operator's schema, made strict:
    assert "('interval' was unexpected)" in problems(lambda s: s.update(interval="30s"))
    assert "role" not in problems(lambda s: s["kubernetesSDConfigs"][0].update(role="Pod"))
    assert "'Pods' is not one of ['Pod'," in problems(
        lambda s: s["kubernetesSDConfigs"][0].update(role="Pods"))
    assert "('namespace' was unexpected)" in problems(
        lambda s: s["kubernetesSDConfigs"][0].update(namespace="ml"))
    assert "('source_labels' was unexpected)" in problems(
        lambda s: s["relabelings"][0].update(source_labels=["a"]))
    assert "relabelings.0.action: 'KEEP' is not one of" in problems(
        lambda s: s["relabelings"][0].update(action="KEEP"))
    assert "relabelings.0.sourceLabels.0: 'app.kubernetes.io/name' does not match" in problems(
        lambda s: s["relabelings"][0].update(sourceLabels=["app.kubernetes.io/name"]))
    assert "spec.metricRelabelings: [] should be non-empty (minItems)" in problems(
        lambda s: s.update(metricRelabelings=[]))
    assert "spec.params.m: 'x' is not of type 'array'" in problems(
        lambda s: s.update(params={"m": "x"}))
    assert "spec.scrapeInterval: '30 s' does not match" in problems(
        lambda s: s.update(scrapeInterval="30 s"))
    assert "spec.scheme: 'http' is not one of ['HTTP', 'HTTPS']" in problems(
        lambda s: s.update(scheme="http"))
    assert "spec.honorLabels: 'true' is not of type 'boolean'" in problems(
        lambda s: s.update(honorLabels="true"))
    assert "apiVersion: 'monitoring.coreos.com/v1alpha1' was expected" in "\n".join(
        operator_schemas.problems({**good, "apiVersion": "monitoring.coreos.com/v1"}))
    # Beyond the schema (CEL rules and list types it drops, what Prometheus rejects, the render):
    assert "needs a targetLabel" in problems(lambda s: s["relabelings"][3].pop("targetLabel"))
    assert "regex '(': missing )" in problems(lambda s: s["relabelings"][0].update(regex="("))
    assert "must not repeat a name" in problems(
        lambda s: s["kubernetesSDConfigs"][0]["namespaces"].update(names=["ml", "ml"]))
    assert "scrapeTimeout 1m is longer" in problems(lambda s: s.update(scrapeTimeout="1m"))
    assert "scrapeInterval '0' is empty or zero" in problems(
        lambda s: s.update(scrapeInterval="0"))
    assert "metricsPath 'probe' must start with /" in problems(
        lambda s: s.update(metricsPath="probe"))
    assert "has no targets" in problems(lambda s: s.pop("kubernetesSDConfigs"))
    assert "does not send the scrapes to a port of a rendered Service" in problems(
        lambda s: s["relabelings"][-1].update(replacement="elsewhere.ml.svc:9850"))
    # Each problem is found once, by the schema or by the checks: the two do not overlap.
    assert problems(lambda s: s.update(interval="30s")).count("\n") == 0


def test_monitor_and_rule_checks_find_what_the_schema_cannot():
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))
    good = rendered.one("ServiceMonitor")
    assert not operator_objects.check_service_monitor(good, rendered, NAMESPACE)

    def problems(change) -> str:
        obj = json.loads(json.dumps(good))
        change(obj)
        return "\n".join(operator_schemas.problems(obj) +
                         operator_objects.check_service_monitor(obj, rendered, NAMESPACE))

    endpoint = lambda o: o["spec"]["endpoints"][0]  # noqa: E731
    assert "port 'http' is not one of the target's named ports" in problems(
        lambda o: endpoint(o).update(port="http"))
    assert "selects 0 rendered Services" in problems(
        lambda o: o["spec"]["selector"]["matchLabels"].update(extra="x"))
    assert "does not select the release namespace" in problems(
        lambda o: (o["metadata"].update(namespace="monitoring"),
                   o["spec"].update(namespaceSelector={"matchNames": ["other"]})))
    assert "endpoints is empty" in problems(lambda o: o["spec"].update(endpoints=[]))
    assert "scrapeTimeout 2m is longer than interval" in problems(
        lambda o: endpoint(o).update(scrapeTimeout="2m"))
    assert "path must start with /" in problems(lambda o: endpoint(o).update(path="metrics"))
    assert "metadata needs name and namespace" in problems(lambda o: o["metadata"].pop(
        "namespace"))
    rule = render(values_file(os.path.join(CHART_DIR, "ci", "prometheusrule-values.yaml")))
    good_rule = rule.one("PrometheusRule")
    assert not operator_objects.check_prometheus_rule(good_rule)

    def rule_problems(change) -> str:
        obj = json.loads(json.dumps(good_rule))
        change(obj["spec"]["groups"])
        return "\n".join(operator_schemas.problems(obj) +
                         operator_objects.check_prometheus_rule(obj))

    first = lambda groups, key: next(  # noqa: E731
        r for g in groups for r in g["rules"] if key in r)
    first_alert = lambda groups: first(groups, "alert")  # noqa: E731
    alert = first_alert(good_rule["spec"]["groups"])
    assert "group names must be unique" in rule_problems(lambda g: g.append(g[0]))
    assert "no rules" in rule_problems(lambda g: g[0].update(rules=[]))
    assert "needs exactly one of alert and record" in rule_problems(
        lambda g: first_alert(g).update(record="x"))
    assert f"{alert['alert']}: needs a for: duration" in rule_problems(
        lambda g: first_alert(g).pop("for"))
    assert "a recording rule takes no for/annotations" in rule_problems(
        lambda g: first(g, "record").update(annotations={"summary": "x"}))
    assert "expr must be a non-empty string" in rule_problems(
        lambda g: first(g, "record").update(expr=" "))
    assert "severity label must be" in rule_problems(
        lambda g: first_alert(g)["labels"].update(severity="page"))
    assert "for: '5 m' does not match" in rule_problems(
        lambda g: first_alert(g).update({"for": "5 m"}))


# ---------------------------------------------------------------------------------------------
# NOTES.txt
# ---------------------------------------------------------------------------------------------

def test_notes_tell_how_to_reach_metrics():
    notes = render({"serviceMonitor": {"enabled": True}}).notes
    assert "mode: serving" in notes
    assert f"kubectl --namespace {NAMESPACE} port-forward service/{RELEASE}-tfserving-exporter " \
           "9850:9850" in notes
    assert "curl -s http://127.0.0.1:9850/metrics" in notes
    assert f"ServiceMonitor {RELEASE}-tfserving-exporter in namespace {NAMESPACE}" in notes
    assert "WARNING: the models volume is an empty emptyDir" in notes


def test_notes_in_sidecar_only_mode_show_the_includes():
    notes = render(values_file(os.path.join(CHART_DIR, "ci", "sidecar-only-values.yaml"))).notes
    assert "mode: sidecar-only" in notes
    for template in ("sidecarContainer", "sidecarVolumes", "sidecarPodAnnotations"):
        assert f'include "tfserving-exporter.{template}" (index .Subcharts "tfserving-exporter")' \
            in notes
    assert "No ServiceMonitor or PodMonitor" in notes


# ---------------------------------------------------------------------------------------------
# Bad values fail, and say why.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"servicemonitor": {"enabled": True}}, "additional properties 'servicemonitor' not allowed"),
    ({"serviceMonitor": {"intervall": "30s"}}, "additional properties 'intervall' not allowed"),
    ({"mode": "sidecar"}, "/mode"),
    ({"tfserving": {"modelVolume": {"type": "hostPath"}}}, "/tfserving/modelVolume/type"),
    ({"exporter": {"port": "9850"}}, "got string, want integer"),
    ({"serviceMonitor": {"interval": "30 seconds"}}, "/serviceMonitor/interval"),
    ({"exporter": {"config": {"canary": {"intervall": "30s"}}}},
     "additional properties 'intervall' not allowed"),
    ({"exporter": {"config": {"log": {"level": "verbose"}}}}, "/exporter/config/log/level"),
    ({"exporter": {"config": {"limits": {"max_models": 0}}}}, "/exporter/config/limits/max_models"),
    ({"canary": {"goldenSets": {"golden.yaml": "{}"}}}, "invalid propertyName 'golden.yaml'"),
    ({"tfserving": {"models": [{"name": "a/b", "basePath": "/models/a"}]}},
     "/tfserving/models/0/name"),
    ({"tfserving": {"models": [{"name": "m", "basePath": "models/m"}]}},
     "/tfserving/models/0/basePath"),
    ({"tfserving": {"models": [{"name": "m"}]}}, "missing property 'basePath'"),
    ({"tfserving": {"models": [{"name": "m", "basePath": "/m", "versionPolicy": {"newest": {}}}]}},
     "/tfserving/models/0/versionPolicy"),
    ({"exporter": {"telemetryPath": "/-/metrics"}}, "/exporter/telemetryPath"),
    ({"mode": "fleet", "fleet": {"allowedTargets": ["10.0.0.0/8"], "maxTarget": 5}},
     "additional properties 'maxTarget' not allowed"),
    ({"fleet": {"allowedTargets": ["10.0.0.0/8 *.svc"]}}, "/fleet/allowedTargets/0"),
    ({"fleet": {"restPort": 70000}}, "/fleet/restPort"),
    ({"fleet": {"targetExpiry": "10 minutes"}}, "/fleet/targetExpiry"),
    ({"fleet": {"modules": {"tls": {"probe": {"rest_prt": 0}}}}},
     "additional properties 'rest_prt' not allowed"),
    ({"fleet": {"modules": {"tls": {"tfserving": {"grpc_address": "tfs:8500"}}}}},
     "additional properties 'grpc_address' not allowed"),
    ({"fleet": {"modules": {"tls": {"web": {"listen_address": ":1"}}}}},
     "additional properties 'web' not allowed"),
    ({"fleet": {"modules": {"bad name": {}}}}, "invalid propertyName 'bad name'"),
    ({"exporter": {"config": {"fleet": {"modules": {"m": {"models": "a"}}}}}},
     "/exporter/config/fleet/modules/m/models"),
    ({"fleet": {"podSelector": {"app": ""}}}, "/fleet/podSelector/app"),
    ({"fleet": {"scrapeConfig": {"interval": "30 seconds"}}}, "/fleet/scrapeConfig/interval"),
    ({"fleet": {"scrapeConfig": {"intervall": "30s"}}},
     "additional properties 'intervall' not allowed"),
])
def test_schema_rejects_bad_values(values, message):
    errors = helm().errors
    with pytest.raises(errors.HelmValuesError) as caught:
        load_chart().validate_schema(values)
    assert message in str(caught.value)
    assert message in render_error(values)


@pytest.mark.parametrize("values, message", [
    ({"mode": "sidecar-only", "podMonitor": {"enabled": True}},
     "sidecarOnly.podSelector is required in sidecar-only mode for the PodMonitor"),
    ({"mode": "sidecar-only", "sidecarOnly": {"service": {"enabled": True}}},
     "sidecarOnly.podSelector is required in sidecar-only mode for the metrics Service"),
    ({"mode": "sidecar-only", "networkPolicy": {"enabled": True}},
     "sidecarOnly.podSelector is required in sidecar-only mode for the NetworkPolicy"),
    ({"mode": "sidecar-only", "serviceMonitor": {"enabled": True}},
     "serviceMonitor.enabled needs a Service to select"),
    ({"tfserving": {"models": []}}, "tfserving.models must list at least one model"),
    ({"tfserving": {"models": [{"name": "m", "basePath": "/a"}, {"name": "m", "basePath": "/b"}]}},
     'tfserving.models[1]: duplicate model name "m"'),
    ({"tfserving": {"modelVolume": {"type": "persistentVolumeClaim"}}},
     "tfserving.modelVolume.claimName is required"),
    ({"canary": {"goldenSets": {"a.json": "{}"}, "existingConfigMap": "golden"}},
     "golden sets come from one source at most, got canary.goldenSets, canary.existingConfigMap"),
    ({"canary": {"goldenSets": {"big.json": "0" * 1_100_000}}},
     "canary.goldenSets holds 1100000 bytes, more than a ConfigMap can (1 MiB)"),
    ({"exporter": {"config": {"tfserving": {"grpc_address": "tfs:8500"}}}},
     "exporter.config.tfserving.grpc_address is set by the chart with a command-line flag: "
     "set exporter.tfserving.grpcAddress instead"),
    ({"exporter": {"config": {"canary": {"golden_dir": "/golden"}}}},
     "exporter.config.canary.golden_dir is set by the chart"),
    ({"exporter": {"config": {"collectors": {"native": {"passthrough": True}}}}},
     "exporter.config.collectors.native.passthrough is set by the chart with a command-line "
     "flag: set exporter.nativeCollector.passthrough instead"),
    ({"mode": "fleet"},
     "fleet.allowedTargets is required in fleet mode: list the targets /probe may connect to"),
    ({"mode": "fleet", "fleet": {"allowedTargets": []}},
     "With an empty list /probe refuses every target."),
    ({**FLEET, "exporter": {"config": {"probe": {"allowed_targets": ["10.0.0.0/8"]}}}},
     "exporter.config.probe.allowed_targets is set by the chart with a command-line flag: "
     "set fleet.allowedTargets instead"),
    ({**FLEET, "exporter": {"config": {"fleet": {"target_expiry": "1h"}}}},
     "exporter.config.fleet.target_expiry is set by the chart with a command-line flag: "
     "set fleet.targetExpiry instead"),
    ({**FLEET, "exporter": {"tfserving": {"grpcAddress": "tfs:8500"}}},
     "exporter.tfserving.grpcAddress is not used in fleet mode"),
    ({"mode": "fleet", "fleet": {"allowedTargets": ["10.0.0.0/8"], "modules": {"m": {}}},
      "exporter": {"config": {"fleet": {"modules": {"m": {}}}}}},
     "fleet.modules.m is also defined in exporter.config.fleet.modules: define each module "
     "in one place"),
    ({**FLEET, "fleet": {"allowedTargets": ["10.0.0.0/8"], "scrapeConfig": {"enabled": True}}},
     "fleet.podSelector is required for the ScrapeConfig (fleet.scrapeConfig.enabled)"),
    ({"fleet": {"scrapeConfig": {"enabled": True}, "podSelector": {"app": "tfserving"}}},
     "fleet.scrapeConfig.enabled is for mode fleet"),
    ({"mode": "sidecar-only", "podDisruptionBudget": {"enabled": True},
      "sidecarOnly": {"podSelector": {"app": "x"}}},
     "podDisruptionBudget is for the chart's own pods (modes serving and fleet)"),
])
def test_missing_or_conflicting_values_fail_with_a_clear_message(values, message):
    assert message in render_error(values)


def test_disabling_every_rule_fails_instead_of_shipping_empty_groups(tmp_path):
    chart_dir = str(tmp_path / "tfserving-exporter")
    shutil.copytree(CHART_DIR, chart_dir)
    rules = {"groups": [{"name": "g", "rules": [
        {"alert": "A", "expr": "up == 0", "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": "s", "description": "d"}}]}]}
    with open(os.path.join(chart_dir, "files", "tfserving.rules.yaml"), "w") as handle:
        yaml.safe_dump(rules, handle)
    errors = helm().errors
    with pytest.raises(errors.HelmRenderError) as caught:
        render({"prometheusRule": {"enabled": True, "disabledAlerts": ["A"]}}, chart_dir=chart_dir)
    assert "prometheusRule.disabledAlerts leaves no rule to ship" in str(caught.value)


def test_lint_passes_values_that_only_render_can_reject():
    # Helm lint does not evaluate `required`; render does (see the test above).
    report = helm().lint(CHART_DIR, {"tfserving": {"modelVolume": {"type": "persistentVolumeClaim"}}},
                         strict=True)
    assert not report["errors"], report


def test_example_chart_renders_valid_objects(tmp_path):
    validator = require_module("kubernetes_validate")
    rendered = render(chart_dir=example_chart(tmp_path))
    pods = exporter_pods(rendered)
    assert len(pods) == 1
    names = {v["name"] for v in pods[0]["spec"]["volumes"]}
    assert {"tfserving-exporter-config", "tfserving-exporter-golden", "tfserving-config"} <= names
    assert "checksum/config" in pods[0]["metadata"]["annotations"]
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert not operator_schemas.problems(obj)
            assert not operator_objects.check_service_monitor(obj, rendered, NAMESPACE)
            continue
        for version in KUBERNETES_VERSIONS:
            validator.validate(obj, version, strict=True)
    service = rendered.one("Service")
    assert service["spec"]["selector"].items() <= pods[0]["metadata"]["labels"].items()


def _example_passing_context(tmp_path, context: str) -> str:
    """The parent-chart example, its deployment handing ``context`` to the sidecar templates."""
    chart_dir = example_chart(tmp_path)
    path = os.path.join(chart_dir, "templates", "deployment.yaml")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace('{{- $exporter := index .Subcharts "tfserving-exporter" }}',
                                  "{{- $exporter := %s }}" % context))
    return chart_dir


def test_sidecar_templates_refuse_a_context_without_the_charts_values(tmp_path):
    chart_dir = _example_passing_context(tmp_path, 'dict "Values" dict')
    errors = helm().errors
    with pytest.raises(errors.HelmRenderError) as caught:
        render(chart_dir=chart_dir)
    assert "pass the tfserving-exporter chart's context" in str(caught.value)


def test_sidecar_templates_accept_the_parents_own_context(tmp_path):
    chart_dir = _example_passing_context(tmp_path, ".")
    with_parent = render(chart_dir=chart_dir)
    assert [c["name"] for c in exporter_pods(with_parent)[0]["spec"]["containers"]] == [
        "tfserving", EXPORTER_CONTAINER]


def test_a_missing_helm_library_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        require_module("helm_python_that_is_not_installed")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_module("helm_python_that_is_not_installed")
