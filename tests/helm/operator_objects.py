"""Checks of the Prometheus Operator objects that the Operator's schema cannot express.

Fields, types, enums, patterns and required fields are checked against the Operator's own
schema, made strict, in tests/helm/operator_schemas.py. What is left here:

- how an object relates to the rest of the render: the selector matches the Service or the
  pods, the endpoint's port is one of their named ports, the namespace selector covers the
  release namespace, a ScrapeConfig's scrapes end up at a rendered Service;
- what the CRDs say as CEL rules or list types, which the generated schema drops: a relabeling
  that writes a label names it, ``namespaces.names`` is a set; and what Prometheus rejects
  when it loads the generated config: a scrape timeout longer than the interval, a regex that
  does not compile;
- what the chart promises: objects name their namespace, selectors and lists are not empty,
  alerts carry ``for``, a severity and summary/description annotations.

Each check returns a list of problems (empty when the object is fine).
"""

from __future__ import annotations

import re
from typing import Any

from tests.helm.rendering import PROMETHEUS_DURATION, Rendered

# Relabeling actions that write targetLabel, which the Operator requires for them.
TARGET_LABEL_ACTIONS = {"replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"}


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


def _durations(where: str, interval: Any, timeout: Any, interval_key: str) -> list[str]:
    """Interval and timeout (their syntax is the schema's): neither empty nor zero, and the
    timeout no longer than the interval."""
    problems, valid = [], []
    for key, value in ((interval_key, interval), ("scrapeTimeout", timeout)):
        if isinstance(value, str) and PROMETHEUS_DURATION.match(value):  # else the schema's
            valid.append(value)
            if not _seconds(value):
                problems.append(f"{where}: {key} {value!r} is empty or zero")
    if not problems and len(valid) == 2 and _seconds(timeout) > _seconds(interval):
        problems.append(f"{where}: scrapeTimeout {timeout} is longer than {interval_key} "
                        f"{interval} (Prometheus rejects it)")
    return problems


def _metadata(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        return [f"{obj.get('kind')}: metadata needs name and namespace, got {meta}"]
    return []


def _relabelings(where: str, items: Any) -> list[str]:
    """The RelabelConfig rules the CRD states as CEL (and Prometheus' regex check)."""
    if not isinstance(items, list):
        return []
    problems = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        action = str(item.get("action", "replace"))
        if action.lower() in TARGET_LABEL_ACTIONS and not item.get("targetLabel"):
            problems.append(f"{where}[{index}]: action {action} needs a targetLabel")
        if isinstance(item.get("regex"), str):
            try:
                re.compile(item["regex"])
            except re.error as err:
                problems.append(f"{where}[{index}]: regex {item['regex']!r}: {err}")
    return problems


def _endpoint(where: str, endpoint: dict[str, Any], ports: set[str]) -> list[str]:
    problems = []
    if endpoint.get("port") not in ports:
        problems.append(f"{where}: port {endpoint.get('port')!r} is not one of the target's "
                        f"named ports {sorted(ports)}")
    problems += _durations(where, endpoint.get("interval"), endpoint.get("scrapeTimeout"),
                           "interval")
    if not str(endpoint.get("path", "/")).startswith("/"):
        problems.append(f"{where}: path must start with /")
    problems += _relabelings(f"{where}.relabelings", endpoint.get("relabelings"))
    problems += _relabelings(f"{where}.metricRelabelings", endpoint.get("metricRelabelings"))
    return problems


def _selector_and_namespace(kind: str, obj: dict[str, Any], release_namespace: str) -> list[str]:
    spec = obj["spec"]
    problems = []
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.append(f"{kind}.spec.selector.matchLabels must not be empty (it would select "
                        "every target in the namespace)")
    if obj["metadata"].get("namespace") != release_namespace:
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or []
        if release_namespace not in names:
            problems.append(f"{kind} in {obj['metadata'].get('namespace')} does not select the "
                            f"release namespace {release_namespace} (namespaceSelector)")
    return problems


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _endpoints(obj: dict[str, Any], kind: str, key: str, ports: set[str]) -> list[str]:
    endpoints = obj["spec"].get(key) or []
    problems = [] if endpoints else [f"{kind}.spec.{key} is empty"]
    for index, endpoint in enumerate(endpoints):
        problems += _endpoint(f"{kind}.spec.{key}[{index}]", endpoint, ports)
    return problems


def check_service_monitor(obj: dict[str, Any], rendered: Rendered,
                          release_namespace: str) -> list[str]:
    problems = _metadata(obj)
    problems += _selector_and_namespace("ServiceMonitor", obj, release_namespace)
    selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
    services = [svc for svc in rendered.of_kind("Service")
                if _matches(selector, svc["metadata"].get("labels", {}))]
    if len(services) != 1:
        problems.append(f"ServiceMonitor selects {len(services)} rendered Services, want 1")
        return problems
    ports = {port["name"] for port in services[0]["spec"]["ports"]}
    return problems + _endpoints(obj, "ServiceMonitor", "endpoints", ports)


def check_pod_monitor(obj: dict[str, Any], pod_labels: dict[str, str], pod_ports: set[str],
                      release_namespace: str) -> list[str]:
    """``pod_labels``/``pod_ports``: labels and container port names of the exporter's pods."""
    problems = _metadata(obj)
    problems += _selector_and_namespace("PodMonitor", obj, release_namespace)
    selector = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
    if not _matches(selector, pod_labels):
        problems.append(f"PodMonitor selector {selector} does not match the pods' labels "
                        f"{pod_labels}")
    return problems + _endpoints(obj, "PodMonitor", "podMetricsEndpoints", pod_ports)


def check_prometheus_rule(obj: dict[str, Any]) -> list[str]:
    problems = _metadata(obj)
    groups = (obj.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append("PrometheusRule.spec.groups is empty")
    names = [group.get("name") for group in groups]
    if len(set(names)) != len(names):
        problems.append(f"group names must be unique: {names}")
    for group in groups:
        where = f"group {group.get('name')}"
        if not group.get("rules"):
            problems.append(f"{where}: no rules (an empty group ships nothing)")
        for index, rule in enumerate(group.get("rules") or []):
            problems += _rule(f"{where} rule {index}", rule)
    return problems


def _rule(where: str, rule: dict[str, Any]) -> list[str]:
    problems = []
    if ("alert" in rule) == ("record" in rule):
        return problems + [f"{where}: needs exactly one of alert and record"]
    if not str(rule.get("expr", "")).strip():
        problems.append(f"{where}: expr must be a non-empty string")
    if "record" in rule:
        if {"for", "annotations", "keep_firing_for"} & set(rule):
            problems.append(f"{where}: a recording rule takes no for/annotations")
        return problems
    name = rule["alert"]
    if "for" not in rule:
        problems.append(f"{name}: needs a for: duration")
    if (rule.get("labels") or {}).get("severity") not in ("warning", "critical", "info"):
        problems.append(f"{name}: severity label must be warning, critical or info")
    for annotation in ("summary", "description"):
        if not (rule.get("annotations") or {}).get(annotation):
            problems.append(f"{name}: needs a {annotation} annotation")
    return problems


def _kubernetes_sd(where: str, config: Any) -> list[str]:
    """``namespaces.names`` is ``x-kubernetes-list-type: set`` in the CRD."""
    names = ((config or {}).get("namespaces") or {}).get("names") if isinstance(config, dict) \
        else None
    if not isinstance(names, list):
        return []
    if not all(names):
        return [f"{where}.namespaces.names must be a list of namespace names"]
    if len(set(map(str, names))) != len(names):
        return [f"{where}.namespaces.names must not repeat a name (a set)"]
    return []


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
    """A ScrapeConfig, beyond its schema. With ``rendered``, its scrapes must end up at a port
    of a rendered Service (the __address__ rewrite of a probe job)."""
    problems = _metadata(obj)
    spec = obj.get("spec") or {}
    if not any(spec.get(key) for key in spec if key.endswith("SDConfigs") or
               key == "staticConfigs"):
        problems.append("ScrapeConfig.spec has no targets: no staticConfigs or *SDConfigs")
    for index, config in enumerate(spec.get("kubernetesSDConfigs") or []):
        problems += _kubernetes_sd(f"ScrapeConfig.spec.kubernetesSDConfigs[{index}]", config)
    if not str(spec.get("metricsPath", "/")).startswith("/"):
        problems.append(f"ScrapeConfig.spec.metricsPath {spec['metricsPath']!r} must start "
                        "with /")
    problems += _durations("ScrapeConfig", spec.get("scrapeInterval"), spec.get("scrapeTimeout"),
                           "scrapeInterval")
    problems += _relabelings("ScrapeConfig.spec.relabelings", spec.get("relabelings"))
    problems += _relabelings("ScrapeConfig.spec.metricRelabelings", spec.get("metricRelabelings"))
    if rendered is not None and scrape_target_service(obj, rendered) is None:
        problems.append("ScrapeConfig: the last relabeling writing __address__ does not send "
                        "the scrapes to a port of a rendered Service (<name>.<namespace>.svc:"
                        "<port>)")
    return problems
