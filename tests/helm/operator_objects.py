"""Checks of the Prometheus Operator objects, which kubernetes-validate has no schema for.

Each check returns a list of problems (empty when the object is fine). Field names follow the
operator's monitoring.coreos.com/v1 API (ServiceMonitor, PodMonitor, PrometheusRule).
"""

from __future__ import annotations

from typing import Any

from tests.helm.rendering import PROMETHEUS_DURATION, Rendered

API_VERSION = "monitoring.coreos.com/v1"
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


def _metadata(obj: dict[str, Any], kind: str) -> list[str]:
    problems = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(f"{kind}: apiVersion {obj.get('apiVersion')!r}, want {API_VERSION}")
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
