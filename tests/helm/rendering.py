"""Rendering the chart with real Helm (helm-python-sdk) and reading what came out."""

from __future__ import annotations

import functools
import glob
import importlib
import os
import re
import shutil
from types import ModuleType
from typing import Any, Iterator

import pytest
import yaml
from tests.helpers import in_ci

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART_DIR = os.path.join(ROOT, "helm", "tfserving-exporter")
EXAMPLE_DIR = os.path.join(ROOT, "helm", "examples", "sidecar-only")
CI_VALUES = sorted(glob.glob(os.path.join(CHART_DIR, "ci", "*-values.yaml")))
RELEASE, NAMESPACE = "tfs", "ml"
# The chart's minimum (kubeVersion >=1.25), one in the middle and a recent one.
KUBERNETES_VERSIONS = ("1.25.0", "1.29.0", "1.33.0")
EXPORTER_CONTAINER = "tfserving-exporter"
# Prometheus' duration syntax (model/time.ParseDuration).
PROMETHEUS_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def require_module(name: str) -> ModuleType:
    """Import a test dependency. Under CI=true a missing one fails the test, never skips it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        if in_ci():
            pytest.fail(f"{name} is required in CI but cannot be imported ({err}); "
                        "pip install -e '.[test]'")
        pytest.skip(f"{name} not installed")


def helm() -> ModuleType:
    return require_module("helm_python")


@functools.lru_cache(maxsize=None)
def _chart(path: str):
    return helm().Chart.load(path)


def load_chart(path: str = CHART_DIR):
    """The loaded chart; charts are immutable, so each directory is loaded once."""
    return _chart(path)


def values_file(path: str) -> dict[str, Any]:
    """A values file parsed the way `helm -f` parses it."""
    with open(path, encoding="utf-8") as handle:
        return helm().values_from_yaml(handle.read())


def ci_id(path: str) -> str:
    return os.path.basename(path).removesuffix("-values.yaml")


class Rendered:
    """The objects of one render, and the NOTES."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            self.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind)
                 if name is None or obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    def config_map(self, name: str) -> dict[str, Any] | None:
        for obj in self.of_kind("ConfigMap"):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def pod_specs(self) -> Iterator[dict[str, Any]]:
        for deployment in self.of_kind("Deployment"):
            yield deployment["spec"]["template"]


def render(values: dict[str, Any] | None = None, chart_dir: str = CHART_DIR,
           name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    if chart_dir == CHART_DIR:
        return Rendered(load_chart().render(values or {}, name=name, namespace=namespace))
    with helm().Chart.load(chart_dir) as chart:  # a scratch copy: load it fresh, then release
        return Rendered(chart.render(values or {}, name=name, namespace=namespace))


def render_error(values: dict[str, Any]) -> str:
    """The message of a render that must fail."""
    errors = helm().errors
    with pytest.raises((errors.HelmValuesError, errors.HelmRenderError)) as caught:
        render(values)
    return str(caught.value)


def example_chart(tmp_path) -> str:
    """The sidecar-only example chart with this chart in its charts/ directory."""
    target = os.path.join(str(tmp_path), "sidecar-only")
    shutil.copytree(EXAMPLE_DIR, target)
    shutil.copytree(CHART_DIR, os.path.join(target, "charts", "tfserving-exporter"))
    return target


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for item in pod["spec"]["containers"]:
        if item["name"] == name:
            return item
    raise AssertionError(f"no container {name} in {[c['name'] for c in pod['spec']['containers']]}")


def exporter_pods(rendered: Rendered) -> list[dict[str, Any]]:
    return [pod for pod in rendered.pod_specs()
            if any(c["name"] == EXPORTER_CONTAINER for c in pod["spec"]["containers"])]


def read_values_yaml() -> tuple[str, dict[str, Any]]:
    with open(os.path.join(CHART_DIR, "values.yaml"), encoding="utf-8") as handle:
        text = handle.read()
    return text, yaml.safe_load(text)
