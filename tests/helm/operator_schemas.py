"""The Prometheus Operator's own schemas for the chart's monitoring objects, made strict.

The schemas come from ``cloudcoil-models-prometheus-operator``: pydantic v2 models generated from
the Operator's CRDs, one package release per Operator release (the package's version is the
Operator's plus a build number). Pinned in pyproject.toml's ``test`` extra at 0.80.1.0, that is
**Prometheus Operator v0.80.1**; ``test_operator_schemas_come_from_the_pinned_operator_version``
fails when another release gets installed, so an upgrade is a deliberate change of both.

``Model.model_json_schema(by_alias=True)`` gives the CRD's fields, types, enums, patterns,
``minItems``/``minLength`` and required fields. It is made strict here:

- ``additionalProperties: false`` on every object schema with declared fields, ``$defs`` too, so
  a misspelt or stray field (``intervall``, ``spec.foo``, ``metadata.lables``) is an error. The
  API server would prune such a field without a word, and the setting it was meant to be would
  be silently lost.
- No ``null``: pydantic lets every optional field be ``null``, and the CRDs declare none
  ``nullable``, so the API server drops a null as if the key were absent. In a rendered chart a
  null is an empty template expression: an error here.
- ``apiVersion``, ``kind`` and ``metadata`` are required (pydantic defaults them).
- Go regexes that Python spells differently are rewritten (``^(?i)x`` to ``(?i)^x``), and every
  pattern must compile.

What the CRD states as CEL rules or list types (``x-kubernetes-validations``,
``x-kubernetes-list-type: set``), pydantic drops; tests/helm/operator_objects.py keeps those
checks, with the ones that relate an object to the rest of the chart.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import re
from typing import Any

from tests.helm.rendering import require_module

PACKAGE = "cloudcoil-models-prometheus-operator"
PACKAGE_VERSION = "0.80.1.0"
OPERATOR_VERSION = "v0.80.1"
MODULE = "cloudcoil.models.prometheus_operator"
# kind -> the package's module for its API version (the schema holds the apiVersion as a const).
# Every monitoring.coreos.com kind the chart renders must be here.
KINDS = {"ServiceMonitor": "v1", "PodMonitor": "v1", "PrometheusRule": "v1",
         "ScrapeConfig": "v1alpha1"}


def installed_package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def operator_version_of(package_version: str) -> str:
    """``0.80.1.0`` -> ``v0.80.1``: cloudcoil appends a build number to the Operator's."""
    return "v" + ".".join(package_version.split(".")[:3])


def _go_pattern(pattern: str) -> str:
    # RE2 takes flags anywhere; Python (3.11+) only at the start of the expression.
    match = re.match(r"^\^(\(\?[a-zA-Z]+\))", pattern)
    return match.group(1) + "^" + pattern[len(match.group(0)):] if match else pattern


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: (value if key in ("properties", "$defs") else _strict(value))
            for key, value in node.items()}
    for key in ("properties", "$defs"):
        if key in node:
            node[key] = {name: _strict(value) for name, value in node[key].items()}
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option != {"type": "null"}]
        if node.get("default", ...) is None:
            del node["default"]
        if len(options) == 1:
            del node["anyOf"]
            node.update(options[0])
        else:
            node["anyOf"] = options
    if node.get("properties") and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if "pattern" in node:
        node["pattern"] = _go_pattern(node["pattern"])
        re.compile(node["pattern"])
    return node


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pydantic JSON schema of a Kubernetes object, made strict (see the module)."""
    result = _strict(copy.deepcopy(schema))
    result["required"] = sorted(set(result.get("required", [])) |
                                {"apiVersion", "kind", "metadata"})
    return result


def operator_schema(kind: str) -> dict[str, Any]:
    """The Operator's JSON schema for a kind, as the package generates it (not strict)."""
    require_module(MODULE)
    module = require_module(f"{MODULE}.{KINDS[kind]}")
    return getattr(module, kind).model_json_schema(by_alias=True)


@functools.lru_cache(maxsize=None)
def _validator(kind: str, strict_schema: bool):
    jsonschema = require_module("jsonschema")
    schema = operator_schema(kind)
    if strict_schema:
        schema = strict(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def _message(error) -> str:
    if error.context:  # an anyOf/oneOf: say why the closest alternative failed
        error = require_module("jsonschema").exceptions.best_match(error.context)
    path = ".".join(str(part) for part in error.absolute_path) or "(top)"
    return f"at {path}: {error.message} ({error.validator})"


def problems(obj: dict[str, Any], strict_schema: bool = True) -> list[str]:
    """What the Operator's (strict) schema finds wrong with a rendered object; empty if none."""
    name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    if obj.get("kind") not in KINDS:
        return [f"{name}: no Operator schema for kind {obj.get('kind')!r} "
                f"({obj.get('apiVersion')}): add it to operator_schemas.KINDS"]
    validator = _validator(obj["kind"], strict_schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{name} {_message(error)}" for error in errors]
