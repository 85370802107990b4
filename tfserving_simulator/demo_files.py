"""The demo's files: model versions, models.config and monitoring.config under one root.

Used by ``tfserving-exporter demo``, the tests and the benchmarks. The golden sets beside
them (``demo_data/golden``) were recorded from these models with
``tfserving-exporter golden record``, so canaries run from the first minute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tfserving_simulator.demo_models import write_demo_models

DEMO_GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data", "golden")

MONITORING_CONFIG = 'prometheus_config {\n  enable: true,\n  path: "/monitoring/prometheus/metrics"\n}\n'


@dataclass(frozen=True)
class DemoFiles:
    root: str
    model_config_file: str
    monitoring_config_file: str
    model_names: tuple[str, ...]
    base_paths: tuple[str, ...] = ()  # of model_names, in the same order


def models_config_text(models) -> str:
    """Text-format ModelServerConfig for (name, base_path) pairs, as TF Serving reads it."""
    entries = "".join(
        "  config {\n"
        f"    name: {json.dumps(name)}\n"
        f"    base_path: {json.dumps(base_path)}\n"
        '    model_platform: "tensorflow"\n'
        "  }\n" for name, base_path in models)
    return "model_config_list {\n" + entries + "}\n"


def write_demo_files(root: str) -> DemoFiles:
    """Demo model version directories plus models.config and monitoring.config under root."""
    configs = write_demo_models(os.path.join(root, "models"))
    model_config_file = os.path.join(root, "models.config")
    with open(model_config_file, "w", encoding="utf-8") as handle:
        handle.write(models_config_text((c.name, c.base_path) for c in configs))
    monitoring_config_file = os.path.join(root, "monitoring.config")
    with open(monitoring_config_file, "w", encoding="utf-8") as handle:
        handle.write(MONITORING_CONFIG)
    return DemoFiles(root, model_config_file, monitoring_config_file,
                     tuple(c.name for c in configs), tuple(c.base_path for c in configs))
