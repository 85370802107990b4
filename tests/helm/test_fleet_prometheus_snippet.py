"""examples/prometheus-fleet.yml, fleet mode for a Prometheus without the Operator: it passes
promtool, its relabelling is the chart's ScrapeConfig's, and a real Prometheus turns discovered
TF Serving pods into /probe scrapes of the exporter with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse

import pytest
import yaml

from tests.helm.rendering import EXPORTER_CONTAINER, ROOT, container, exporter_pods, render
from tests.helpers import free_port, wait_until
from tests.prometheus_harness import PrometheusServer

SNIPPET = os.path.join(ROOT, "examples", "prometheus-fleet.yml")
PROBE_JOB, SELF_JOB = "tfserving-exporter-fleet", "tfserving-exporter"
# The install the snippet's header describes (release tfs in namespace ml).
SNIPPET_RELEASE, SNIPPET_NAMESPACE = "tfs", "ml"
SNIPPET_VALUES = {"mode": "fleet", "fleet": {
    "allowedTargets": ["10.0.0.0/8"], "podSelector": {"app.kubernetes.io/name": "tfserving"},
    "scrapeConfig": {"enabled": True}}}
# Prometheus' kubernetes_sd_config fields (discovery/kubernetes/kubernetes.go SDConfig).
KUBERNETES_SD_FIELDS = {"api_server", "role", "kubeconfig_file", "namespaces", "selectors",
                        "attach_metadata", "basic_auth", "authorization", "oauth2",
                        "proxy_url", "no_proxy", "proxy_from_environment",
                        "proxy_connect_header", "follow_redirects", "enable_http2",
                        "tls_config", "http_headers"}
KUBERNETES_ROLES = {"pod", "endpoints", "endpointslice", "service", "node", "ingress"}
# What a promtool built without Kubernetes discovery (Debian's prometheus package) says.
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"


def snippet() -> dict:
    with open(SNIPPET, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def job(config: dict, name: str) -> dict:
    [found] = [j for j in config["scrape_configs"] if j["job_name"] == name]
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m[1].lower(), name)


def as_prometheus_relabel_configs(relabelings: list[dict]) -> list[dict]:
    """The Operator's RelabelConfigs as prometheus.yml writes them (sourceLabels ->
    source_labels, ...; actions in lower case, as the Operator renders them)."""
    converted = []
    for rule in relabelings:
        item = {_snake(key): value for key, value in rule.items()}
        if "action" in item:
            item["action"] = item["action"].lower()
        converted.append(item)
    return converted


def rendered_scrape_config(values: dict = SNIPPET_VALUES) -> dict:
    return render(values, name=SNIPPET_RELEASE, namespace=SNIPPET_NAMESPACE).one("ScrapeConfig")


def operator_job(scrape: dict) -> dict:
    """The scrape_config the Operator generates from the ScrapeConfig (pkg/prometheus/
    promcfg.go generateScrapeConfig), limited to the fields the chart sets; the Kubernetes
    discovery is left to the caller."""
    spec = scrape["spec"]
    meta = scrape["metadata"]
    relabel = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    if "jobName" in spec:
        relabel.append({"target_label": "job", "action": "replace",
                        "replacement": spec["jobName"]})
    result = {"job_name": f"scrapeConfig/{meta['namespace']}/{meta['name']}",
              "metrics_path": spec["metricsPath"],
              "scrape_interval": spec["scrapeInterval"], "scrape_timeout": spec["scrapeTimeout"],
              "relabel_configs": relabel + as_prometheus_relabel_configs(spec["relabelings"])}
    if "params" in spec:
        result["params"] = spec["params"]
    return result


# ---------------------------------------------------------------------------------------------
# promtool
# ---------------------------------------------------------------------------------------------

def _with_file_discovery(config: dict, directory: str) -> dict:
    """The config with each kubernetes_sd_configs replaced by a file_sd_configs, the rest as
    it was: for Prometheus builds without Kubernetes discovery."""
    config = yaml.safe_load(yaml.safe_dump(config))
    for index, item in enumerate(config["scrape_configs"]):
        if item.pop("kubernetes_sd_configs", None) is not None:
            item["file_sd_configs"] = [{"files": [os.path.join(directory, f"{index}.json")]}]
    return config


def _promtool(promtool: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, "check", "config", path], capture_output=True, text=True,
                          timeout=60)


def test_snippet_passes_promtool(tmp_path, promtool):
    result = _promtool(promtool, SNIPPET)
    if NO_KUBERNETES_SD in result.stdout + result.stderr:
        # This promtool has no Kubernetes discovery (Debian builds it without): check the rest
        # of the file with file discovery in its place, and the discovery block below.
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(_with_file_discovery(snippet(), str(tmp_path))))
        result = _promtool(promtool, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for item in snippet()["scrape_configs"]:
        [discovery] = item["kubernetes_sd_configs"]
        assert set(discovery) <= KUBERNETES_SD_FIELDS, discovery
        assert discovery["role"] in KUBERNETES_ROLES
        assert set(discovery["namespaces"]) <= {"names", "own_namespace"}
        assert all(isinstance(n, str) for n in discovery["namespaces"]["names"])


# ---------------------------------------------------------------------------------------------
# The snippet and the chart agree.
# ---------------------------------------------------------------------------------------------

def test_snippet_probe_job_relabels_as_the_charts_scrape_config():
    scrape = rendered_scrape_config()
    spec = scrape["spec"]
    probe = job(snippet(), PROBE_JOB)
    # Same keep rules, target and instance from the pod's address, model parameter, copied
    # labels, and the scrape sent to the exporter's Service: rule for rule.
    assert probe["relabel_configs"] == as_prometheus_relabel_configs(spec["relabelings"])
    assert probe["metrics_path"] == spec["metricsPath"] == "/probe"
    assert probe.get("params") == spec.get("params")
    assert (probe["scrape_interval"], probe["scrape_timeout"]) == (
        spec["scrapeInterval"], spec["scrapeTimeout"])
    [discovery] = probe["kubernetes_sd_configs"]
    [operator_discovery] = spec["kubernetesSDConfigs"]
    assert discovery["role"] == operator_discovery["role"].lower() == "pod"
    assert discovery["namespaces"] == operator_discovery["namespaces"]
    # The project's rules and dashboards select job=~".*tfserving-exporter.*".
    for name in (probe["job_name"], operator_job(scrape)["job_name"]):
        assert "tfserving-exporter" in name


def test_snippet_self_job_scrapes_the_fleet_exporter_pods():
    rendered = render(SNIPPET_VALUES, name=SNIPPET_RELEASE, namespace=SNIPPET_NAMESPACE)
    [pod] = exporter_pods(rendered)
    labels = pod["metadata"]["labels"]
    exporter = container(pod, EXPORTER_CONTAINER)
    own = job(snippet(), SELF_JOB)
    keeps = {tuple(r["source_labels"]): r["regex"] for r in own["relabel_configs"]
             if r.get("action") == "keep"}
    selector = rendered.one("Deployment")["spec"]["selector"]["matchLabels"]
    for name, value in selector.items():
        meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)
        # A plain name: the regex is the value itself (no character to quote).
        assert keeps.pop((meta,)) == value and re.fullmatch(value, value)
        assert labels[name] == value
    assert keeps.pop(("__meta_kubernetes_pod_container_port_name",)) == "metrics"
    assert [p["name"] for p in exporter["ports"]] == ["metrics"]
    assert keeps.pop(("__meta_kubernetes_pod_phase",)) == "Running"
    assert not keeps
    assert own["metrics_path"] == "/metrics"
    assert own["kubernetes_sd_configs"][0]["namespaces"]["names"] == [SNIPPET_NAMESPACE]
    # Its own pods have no gRPC port, so the probe job never probes the exporter itself.
    assert "grpc" not in {p["name"] for p in exporter["ports"]}


# ---------------------------------------------------------------------------------------------
# A real Prometheus applies the relabelling to discovered pods.
# ---------------------------------------------------------------------------------------------

class _PrometheusWithConfig(PrometheusServer):
    """The harness' Prometheus with a whole prometheus.yml of the test's (file discovery and
    relabelling, which the harness' static jobs do not take)."""

    def __init__(self, binary: str, workdir: str, config: dict) -> None:
        self._config = config
        super().__init__(binary, workdir, [])

    def write_config(self, jobs, rule_files=(), evaluation_interval=None) -> None:
        with open(self.config_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(self._config, handle, sort_keys=False)


def _pod_target(ip: str, port: int, port_name: str, labels: dict[str, str],
                phase: str = "Running", annotations: dict[str, str] | None = None,
                name: str = "tfserving-0", namespace: str = SNIPPET_NAMESPACE) -> dict:
    """One file_sd target carrying the meta labels Kubernetes pod discovery gives a container
    port (discovery/kubernetes/pod.go)."""
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_ip": ip, "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_container_name": "tfserving",
            "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_container_port_number": str(port),
            "__meta_kubernetes_pod_container_port_protocol": "TCP"}
    for key, value in labels.items():
        safe = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        meta[f"__meta_kubernetes_pod_label_{safe}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{safe}"] = "true"
    for key, value in (annotations or {}).items():
        safe = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        meta[f"__meta_kubernetes_pod_annotation_{safe}"] = value
        meta[f"__meta_kubernetes_pod_annotationpresent_{safe}"] = "true"
    return {"targets": [f"{ip}:{port}"], "labels": meta}


def _probe_job(source: str, exporter_address: str) -> tuple[dict, dict]:
    """(the probe job, the chart values it was rendered from) with file discovery and the
    final __address__ pointing at ``exporter_address``."""
    values = {"mode": "fleet", "fleet": {
        "allowedTargets": ["127.0.0.0/8"],
        # A dotted value and a module: quoting and params reach Prometheus as rendered.
        "podSelector": {"app.kubernetes.io/name": "tfserving", "tier": "v1.2"},
        "scrapeConfig": {"enabled": True, "module": "tls", "interval": "1m",
                         "scrapeTimeout": "10s"}}}
    if source == "snippet":
        values = SNIPPET_VALUES
        item = yaml.safe_load(yaml.safe_dump(job(snippet(), PROBE_JOB)))
        item.pop("kubernetes_sd_configs")
    else:
        item = operator_job(rendered_scrape_config(values))
    last = item["relabel_configs"][-1]
    assert last["target_label"] == "__address__" and last["replacement"].endswith(".svc:9850")
    last["replacement"] = exporter_address
    return item, values


@pytest.mark.parametrize("source", ["snippet", "scrapeconfig"])
def test_prometheus_turns_discovered_tfserving_pods_into_probes(source, tmp_path,
                                                                prometheus_binary):
    """Pods as Kubernetes discovery reports them (served through file discovery, since the
    relabelling only sees labels): the selected, running pods' gRPC ports become one /probe
    scrape each of the exporter, with target, instance, model, namespace and pod; every
    other port and pod is dropped. Addresses are loopback ones and nothing listens there."""
    binary = prometheus_binary
    exporter_address = f"127.0.0.1:{free_port()}"
    item, values = _probe_job(source, exporter_address)
    selected = values["fleet"]["podSelector"]
    other = {**selected, "app.kubernetes.io/name": "something-else"}
    annotation = "tfserving-exporter/models"
    pods = [
        _pod_target("127.0.0.2", 8500, "grpc", selected, annotations={annotation: "a,b"},
                    name="tfs-0"),
        _pod_target("127.0.0.2", 8501, "rest", selected, name="tfs-0"),
        _pod_target("127.0.0.3", 8500, "grpc", selected, name="tfs-1"),
        _pod_target("127.0.0.4", 8500, "grpc", selected, phase="Pending", name="tfs-2"),
        _pod_target("127.0.0.5", 8500, "grpc", other, name="other-0"),
    ]
    if len(selected) > 1:  # a pod lacking one of the selector's labels
        pods.append(_pod_target("127.0.0.6", 8500, "grpc",
                                {"app.kubernetes.io/name": "tfserving"}, name="half-0"))
    sd_file = tmp_path / "pods.json"
    sd_file.write_text(json.dumps(pods))
    item = {**item, "file_sd_configs": [{"files": [str(sd_file)]}],
            "scrape_interval": "1m", "scrape_timeout": "10s"}
    server = _PrometheusWithConfig(binary, str(tmp_path / "prometheus"), {
        "global": {"scrape_interval": "1m"}, "scrape_configs": [item]}).start()
    try:
        def settled():
            data = server.api("targets")
            active, dropped = data["activeTargets"], data["droppedTargets"]
            return (active, dropped) if len(active) + len(dropped) == len(pods) else None

        active, dropped = wait_until(settled, timeout=30, interval=0.2,
                                     message="Prometheus to discover the pods")
    finally:
        server.stop()
    by_instance = {t["labels"]["instance"]: t for t in active}
    assert sorted(by_instance) == ["127.0.0.2:8500", "127.0.0.3:8500"]
    module = (values["fleet"]["scrapeConfig"].get("module") or None)
    for instance, pod_name, models in (("127.0.0.2:8500", "tfs-0", "a,b"),
                                       ("127.0.0.3:8500", "tfs-1", None)):
        target = by_instance[instance]
        url = urllib.parse.urlsplit(target["scrapeUrl"])
        assert f"{url.hostname}:{url.port}" == exporter_address
        assert url.path == "/probe"
        params = urllib.parse.parse_qs(url.query)
        expected = {"target": [instance]}
        if models:
            expected["model"] = [models]
        if module:
            expected["module"] = [module]
        assert params == expected, target["scrapeUrl"]
        labels = target["labels"]
        assert labels["job"] == item["job_name"]
        assert (labels["namespace"], labels["pod"]) == (SNIPPET_NAMESPACE, pod_name)
        assert not {k for k in labels if k.startswith("__")}
    dropped_addresses = sorted(t["discoveredLabels"]["__address__"] for t in dropped)
    assert "127.0.0.2:8501" in dropped_addresses  # the REST port
    assert "127.0.0.4:8500" in dropped_addresses  # not running
    assert "127.0.0.5:8500" in dropped_addresses  # not selected


def test_chart_readme_shows_the_scrape_config_the_chart_renders():
    from tests.helm.rendering import CHART_DIR

    with open(os.path.join(CHART_DIR, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)
              if "kind: ScrapeConfig" in b]
    assert len(blocks) == 1, "the README's Fleet mode section shows one ScrapeConfig"
    [shown] = blocks
    rendered = rendered_scrape_config()
    assert {k: rendered[k] for k in ("apiVersion", "kind")} == {
        k: shown[k] for k in ("apiVersion", "kind")}
    assert {k: rendered["metadata"][k] for k in ("name", "namespace")} == shown["metadata"]
    assert shown["spec"] == rendered["spec"]
