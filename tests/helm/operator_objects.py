"""Checks of the Prometheus Operator objects, which kubernetes-validate has no schema for.

Each check returns a list of problems (empty when the object is fine). Field names follow the
operator's monitoring.coreos.com/v1 API (ServiceMonitor, PodMonitor, PrometheusRule) and its
v1alpha1 ScrapeConfig (pkg/apis/monitoring/v1alpha1/scrapeconfig_types.go).
"""

from __future__ import annotations

import re
from typing import Any

from tests.helm.rendering import PROMETHEUS_DURATION, Rendered

API_VERSION = "monitoring.coreos.com/v1"
ALPHA_API_VERSION = "monitoring.coreos.com/v1alpha1"
ENDPOINT_FIELDS = {"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
                   "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings",
                   "tlsConfig", "bearerTokenSecret", "authorization", "basicAuth", "oauth2",
                   "followRedirects", "enableHttp2", "filterRunning", "proxyUrl",
                   "trackTimestampsStaleness"}
POD_ENDPOINT_FIELDS = (ENDPOINT_FIELDS - {"targetPort", "bearerTokenSecret"}) | {"portNumber"}
MONITOR_SPEC_FIELDS = {"jobLabel", "targetLabels", "podTargetLabels", "selector",
                       "namespaceSelector", "sampleLimit", "targetLimit", "labelLimit",
                       "labelNameLengthLimit", "labelValueLengthLimit", "attachMetadata",
                       "scrapeProtocols", "scrapeClass"}
RELABEL_FIELDS = {"sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement",
                  "action"}
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                   "lowercase", "uppercase", "keepequal", "dropequal"}
# ScrapeConfigSpec, with the inlined NativeHistogramConfig and ProxyConfig fields.
SCRAPE_CONFIG_SPEC_FIELDS = {
    "jobName", "staticConfigs", "fileSDConfigs", "httpSDConfigs", "kubernetesSDConfigs",
    "consulSDConfigs", "dnsSDConfigs", "ec2SDConfigs", "azureSDConfigs", "gceSDConfigs",
    "openstackSDConfigs", "digitalOceanSDConfigs", "kumaSDConfigs", "eurekaSDConfigs",
    "dockerSDConfigs", "linodeSDConfigs", "hetznerSDConfigs", "nomadSDConfigs",
    "dockerSwarmSDConfigs", "puppetDBSDConfigs", "lightSailSDConfigs", "ovhcloudSDConfigs",
    "scalewaySDConfigs", "ionosSDConfigs", "relabelings", "metricsPath", "scrapeInterval",
    "scrapeTimeout", "scrapeProtocols", "fallbackScrapeProtocol", "honorTimestamps",
    "trackTimestampsStaleness", "honorLabels", "params", "scheme", "enableCompression",
    "enableHTTP2", "basicAuth", "authorization", "oauth2", "tlsConfig", "sampleLimit",
    "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "bodySizeLimit", "scrapeNativeHistograms", "scrapeClassicHistograms",
    "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
    "convertClassicHistogramsToNHCB", "keepDroppedTargets", "metricRelabelings", "proxyUrl",
    "noProxy", "proxyFromEnvironment", "proxyConnectHeader", "nameValidationScheme",
    "nameEscapingScheme", "scrapeClass"}
KUBERNETES_SD_FIELDS = {"apiServer", "role", "namespaces", "attachMetadata", "selectors",
                        "basicAuth", "authorization", "oauth2", "proxyUrl", "noProxy",
                        "proxyFromEnvironment", "proxyConnectHeader", "followRedirects",
                        "enableHTTP2", "tlsConfig"}
# KubernetesRole: the current enum; v0.70 to v0.8x also took the lower-case forms.
KUBERNETES_ROLES = {"Pod", "Endpoints", "Ingress", "Service", "Node", "EndpointSlice"}
NAMESPACE_DISCOVERY_FIELDS = {"ownNamespace", "names"}
# RelabelConfig.action's enum: lower case or the Operator's CamelCase, nothing else.
OPERATOR_RELABEL_ACTIONS = RELABEL_ACTIONS | {
    "Replace", "Keep", "Drop", "HashMod", "LabelMap", "LabelDrop", "LabelKeep", "Lowercase",
    "Uppercase", "KeepEqual", "DropEqual"}
# Actions that write targetLabel, which the Operator requires for them.
TARGET_LABEL_ACTIONS = {"replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"}
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SCRAPE_SCHEMES = {"http", "https", "HTTP", "HTTPS"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy",
                "query_offset", "labels"}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total, number = 0.0, ""
    index = 0
    while index < len(duration):
        char = duration[index]
        if char.isdigit():
            number += char
            index += 1
            continue
        unit = "ms" if duration.startswith("ms", index) else char
        total += int(number) * units[unit]
        number, index = "", index + len(unit)
    return total


def _metadata(obj: dict[str, Any], kind: str, api_version: str = API_VERSION) -> list[str]:
    problems = []
    if obj.get("apiVersion") != api_version:
        problems.append(f"{kind}: apiVersion {obj.get('apiVersion')!r}, want {api_version}")
    if obj.get("kind") != kind:
        problems.append(f"kind {obj.get('kind')!r}, want {kind}")
    meta = obj.get("metadata", {})
    if not meta.get("name") or not meta.get("namespace"):
        problems.append(f"{kind}: metadata needs name and namespace, got {meta}")
    for key, value in {**meta.get("labels", {}), **meta.get("annotations", {})}.items():
        if not isinstance(value, str):
            problems.append(f"{kind}: label/annotation {key} must be a string, got {value!r}")
    return problems


def _relabelings(where: str, items: Any) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"{where}: must be a list"]
    problems = []
    for index, item in enumerate(items):
        unknown = set(item) - RELABEL_FIELDS
        if unknown:
            problems.append(f"{where}[{index}]: unknown fields {sorted(unknown)}")
        action = item.get("action", "replace")
        if action.lower() not in RELABEL_ACTIONS:
            problems.append(f"{where}[{index}]: unknown action {action!r}")
        if not isinstance(item.get("sourceLabels", []), list):
            problems.append(f"{where}[{index}]: sourceLabels must be a list")
    return problems


def _endpoint(where: str, endpoint: dict[str, Any], fields: set[str], ports: set[str]) -> list[str]:
    problems = []
    unknown = set(endpoint) - fields
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    if endpoint.get("port") not in ports:
        problems.append(f"{where}: port {endpoint.get('port')!r} is not one of the target's "
                        f"named ports {sorted(ports)}")
    for key in ("interval", "scrapeTimeout"):
        value = endpoint.get(key)
        if value is not None and not (isinstance(value, str) and PROMETHEUS_DURATION.match(value)
                                      and value != "0"):
            problems.append(f"{where}: {key} {value!r} is not a Prometheus duration")
    interval, timeout = endpoint.get("interval"), endpoint.get("scrapeTimeout")
    if interval and timeout and _seconds(timeout) > _seconds(interval):
        problems.append(f"{where}: scrapeTimeout {timeout} is longer than interval {interval}")
    if not str(endpoint.get("path", "/")).startswith("/"):
        problems.append(f"{where}: path must start with /")
    if endpoint.get("scheme", "http") not in ("http", "https"):
        problems.append(f"{where}: scheme must be http or https")
    if not isinstance(endpoint.get("honorLabels", False), bool):
        problems.append(f"{where}: honorLabels must be a boolean")
    problems += _relabelings(f"{where}.relabelings", endpoint.get("relabelings"))
    problems += _relabelings(f"{where}.metricRelabelings", endpoint.get("metricRelabelings"))
    return problems


def _selector_and_namespace(kind: str, obj: dict[str, Any], release_namespace: str) -> list[str]:
    spec = obj["spec"]
    problems = []
    unknown = set(spec) - MONITOR_SPEC_FIELDS - {"endpoints", "podMetricsEndpoints"}
    if unknown:
        problems.append(f"{kind}.spec: unknown fields {sorted(unknown)}")
    labels = spec.get("selector", {}).get("matchLabels")
    if not labels or not all(isinstance(v, str) for v in labels.values()):
        problems.append(f"{kind}.spec.selector.matchLabels must be a non-empty map of strings")
    if obj["metadata"]["namespace"] != release_namespace:
        names = spec.get("namespaceSelector", {}).get("matchNames", [])
        if release_namespace not in names:
            problems.append(f"{kind} in {obj['metadata']['namespace']} does not select the "
                            f"release namespace {release_namespace} (namespaceSelector)")
    return problems


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def check_service_monitor(obj: dict[str, Any], rendered: Rendered,
                          release_namespace: str) -> list[str]:
    problems = _metadata(obj, "ServiceMonitor")
    problems += _selector_and_namespace("ServiceMonitor", obj, release_namespace)
    selector = obj["spec"].get("selector", {}).get("matchLabels", {})
    services = [svc for svc in rendered.of_kind("Service")
                if _matches(selector, svc["metadata"].get("labels", {}))]
    if len(services) != 1:
        problems.append(f"ServiceMonitor selects {len(services)} rendered Services, want 1")
        return problems
    ports = {port["name"] for port in services[0]["spec"]["ports"]}
    return problems + _endpoints(obj, "ServiceMonitor", "endpoints", ENDPOINT_FIELDS, ports)


def _endpoints(obj: dict[str, Any], kind: str, key: str, fields, ports: set[str]) -> list[str]:
    endpoints = obj["spec"].get(key) or []
    problems = [] if endpoints else [f"{kind}.spec.{key} is empty"]
    for index, endpoint in enumerate(endpoints):
        problems += _endpoint(f"{kind}.spec.{key}[{index}]", endpoint, fields, ports)
    return problems


def check_pod_monitor(obj: dict[str, Any], pod_labels: dict[str, str], pod_ports: set[str],
                      release_namespace: str) -> list[str]:
    """``pod_labels``/``pod_ports``: labels and container port names of the exporter's pods."""
    problems = _metadata(obj, "PodMonitor")
    problems += _selector_and_namespace("PodMonitor", obj, release_namespace)
    selector = obj["spec"].get("selector", {}).get("matchLabels", {})
    if not _matches(selector, pod_labels):
        problems.append(f"PodMonitor selector {selector} does not match the pods' labels "
                        f"{pod_labels}")
    return problems + _endpoints(obj, "PodMonitor", "podMetricsEndpoints", POD_ENDPOINT_FIELDS,
                                 pod_ports)


def check_prometheus_rule(obj: dict[str, Any]) -> list[str]:
    problems = _metadata(obj, "PrometheusRule")
    spec = obj.get("spec", {})
    if set(spec) != {"groups"}:
        problems.append(f"PrometheusRule.spec must hold groups only, got {sorted(spec)}")
    groups = spec.get("groups") or []
    if not groups:
        problems.append("PrometheusRule.spec.groups is empty")
    names = [group.get("name") for group in groups]
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"group names must be present and unique: {names}")
    for group in groups:
        where = f"group {group.get('name')}"
        unknown = set(group) - GROUP_FIELDS
        if unknown:
            problems.append(f"{where}: unknown fields {sorted(unknown)}")
        if not group.get("rules"):
            problems.append(f"{where}: no rules (an empty group ships nothing)")
        for index, rule in enumerate(group.get("rules") or []):
            problems += _rule(f"{where} rule {index}", rule)
    return problems


def _rule(where: str, rule: dict[str, Any]) -> list[str]:
    problems = []
    unknown = set(rule) - RULE_FIELDS
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    if ("alert" in rule) == ("record" in rule):
        return problems + [f"{where}: needs exactly one of alert and record"]
    expr = rule.get("expr")
    if not isinstance(expr, (str, int)) or not str(expr).strip():
        problems.append(f"{where}: expr must be a non-empty string")
    for key in ("labels", "annotations"):
        value = rule.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            problems.append(f"{where}: {key} must map names to strings")
    if "record" in rule:
        if {"for", "annotations", "keep_firing_for"} & set(rule):
            problems.append(f"{where}: a recording rule takes no for/annotations")
        return problems
    name = rule["alert"]
    if not PROMETHEUS_DURATION.match(str(rule.get("for", ""))) or "for" not in rule:
        problems.append(f"{name}: needs a for: duration")
    if rule.get("labels", {}).get("severity") not in ("warning", "critical", "info"):
        problems.append(f"{name}: severity label must be warning, critical or info")
    for annotation in ("summary", "description"):
        if not rule.get("annotations", {}).get(annotation):
            problems.append(f"{name}: needs a {annotation} annotation")
    return problems


def _operator_relabelings(where: str, items: Any) -> list[str]:
    """RelabelConfigs as the Operator's CRD validates them (beyond the field names)."""
    problems = _relabelings(where, items)
    if items is None or not isinstance(items, list):
        return problems
    if not items:
        problems.append(f"{where}: an empty list is invalid (minItems 1): leave it out")
    for index, item in enumerate(items):
        action = item.get("action", "replace")
        if action not in OPERATOR_RELABEL_ACTIONS:
            problems.append(f"{where}[{index}]: action {action!r} is neither lower case nor "
                            "the Operator's CamelCase")
        for name in item.get("sourceLabels") or []:
            if not isinstance(name, str) or not LABEL_NAME.match(name):
                problems.append(f"{where}[{index}]: source label {name!r} is not a label name")
        if action.lower() in TARGET_LABEL_ACTIONS and not item.get("targetLabel"):
            problems.append(f"{where}[{index}]: action {action} needs a targetLabel")
        for key in ("regex", "replacement", "separator", "targetLabel"):
            if key in item and not isinstance(item[key], str):
                problems.append(f"{where}[{index}]: {key} must be a string, got {item[key]!r}")
        if "regex" in item:
            try:
                re.compile(item["regex"])
            except re.error as err:
                problems.append(f"{where}[{index}]: regex {item['regex']!r}: {err}")
    return problems


def _kubernetes_sd(where: str, config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"{where}: must be a mapping"]
    problems = []
    unknown = set(config) - KUBERNETES_SD_FIELDS
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    if config.get("role") not in KUBERNETES_ROLES:
        problems.append(f"{where}: role {config.get('role')!r} is not one of "
                        f"{sorted(KUBERNETES_ROLES)}")
    namespaces = config.get("namespaces")
    if namespaces is not None:
        if not isinstance(namespaces, dict):
            return problems + [f"{where}.namespaces: must be a mapping"]
        unknown = set(namespaces) - NAMESPACE_DISCOVERY_FIELDS
        if unknown:
            problems.append(f"{where}.namespaces: unknown fields {sorted(unknown)}")
        names = namespaces.get("names", [])
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            problems.append(f"{where}.namespaces.names must be a list of namespace names")
        elif len(set(names)) != len(names):
            problems.append(f"{where}.namespaces.names must not repeat a name (a set)")
        if not isinstance(namespaces.get("ownNamespace", False), bool):
            problems.append(f"{where}.namespaces.ownNamespace must be a boolean")
    return problems


def _duration(where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) and PROMETHEUS_DURATION.match(value) and value not in ("", "0"):
        return []
    return [f"{where} {value!r} is not a Prometheus duration"]


def scrape_target_service(obj: dict[str, Any], rendered: Rendered) -> tuple[str, str] | None:
    """(Service name, port name) of the rendered Service the ScrapeConfig's last
    ``__address__`` rewrite sends the scrapes to, or None."""
    rewrites = [r for r in obj["spec"].get("relabelings") or []
                if r.get("targetLabel") == "__address__"]
    if not rewrites or rewrites[-1].get("sourceLabels"):
        return None
    host, _, port = str(rewrites[-1].get("replacement", "")).rpartition(":")
    for service in rendered.of_kind("Service"):
        meta = service["metadata"]
        if host in (f"{meta['name']}.{meta['namespace']}.svc",
                    f"{meta['name']}.{meta['namespace']}.svc.cluster.local"):
            for item in service["spec"]["ports"]:
                if str(item["port"]) == port:
                    return meta["name"], item.get("name", "")
    return None


def check_scrape_config(obj: dict[str, Any], rendered: Rendered | None = None) -> list[str]:
    """A ScrapeConfig: known fields with the Operator's types. With ``rendered``, its scrapes
    must end up at a port of a rendered Service (the __address__ rewrite of a probe job)."""
    problems = _metadata(obj, "ScrapeConfig", ALPHA_API_VERSION)
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec:
        return problems + ["ScrapeConfig.spec must be a non-empty mapping"]
    unknown = set(spec) - SCRAPE_CONFIG_SPEC_FIELDS
    if unknown:
        problems.append(f"ScrapeConfig.spec: unknown fields {sorted(unknown)}")
    if "jobName" in spec and not (isinstance(spec["jobName"], str) and spec["jobName"]):
        problems.append("ScrapeConfig.spec.jobName must be a non-empty string")
    if not any(spec.get(key) for key in spec if key.endswith("SDConfigs") or
               key == "staticConfigs"):
        problems.append("ScrapeConfig.spec has no targets: no staticConfigs or *SDConfigs")
    configs = spec.get("kubernetesSDConfigs")
    if configs is not None:
        if not isinstance(configs, list):
            problems.append("ScrapeConfig.spec.kubernetesSDConfigs must be a list")
        else:
            for index, config in enumerate(configs):
                problems += _kubernetes_sd(f"ScrapeConfig.spec.kubernetesSDConfigs[{index}]",
                                           config)
    path = spec.get("metricsPath")
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        problems.append(f"ScrapeConfig.spec.metricsPath {path!r} must start with /")
    params = spec.get("params")
    if params is not None and not (
            isinstance(params, dict) and all(
                isinstance(key, str) and isinstance(values, list) and values
                and all(isinstance(v, str) for v in values) for key, values in params.items())):
        problems.append(f"ScrapeConfig.spec.params must map names to lists of strings, got "
                        f"{params!r}")
    problems += _duration("ScrapeConfig.spec.scrapeInterval", spec.get("scrapeInterval"))
    problems += _duration("ScrapeConfig.spec.scrapeTimeout", spec.get("scrapeTimeout"))
    interval, timeout = spec.get("scrapeInterval"), spec.get("scrapeTimeout")
    if not problems and interval and timeout and _seconds(timeout) > _seconds(interval):
        problems.append(f"ScrapeConfig: scrapeTimeout {timeout} is longer than scrapeInterval "
                        f"{interval} (the Operator rejects it)")
    if spec.get("scheme", "http") not in SCRAPE_SCHEMES:
        problems.append(f"ScrapeConfig.spec.scheme {spec.get('scheme')!r} is not http or https")
    for key in ("honorLabels", "honorTimestamps", "enableCompression", "enableHTTP2"):
        if key in spec and not isinstance(spec[key], bool):
            problems.append(f"ScrapeConfig.spec.{key} must be a boolean")
    problems += _operator_relabelings("ScrapeConfig.spec.relabelings", spec.get("relabelings"))
    problems += _operator_relabelings("ScrapeConfig.spec.metricRelabelings",
                                      spec.get("metricRelabelings"))
    if rendered is not None and scrape_target_service(obj, rendered) is None:
        problems.append("ScrapeConfig: the last relabeling writing __address__ does not send "
                        "the scrapes to a port of a rendered Service (<name>.<namespace>.svc:"
                        "<port>)")
    return problems
