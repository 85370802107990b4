"""The demo's files: model versions, models.config and monitoring.config under one root.

Used by ``tfserving-exporter demo`` (real SavedModels), the tests and the benchmarks (numpy
stand-ins, or the real models). The golden sets beside them were recorded from each with
README's ``tfserving-exporter golden record`` commands, so canaries run from the first minute:
``demo_data/golden`` from the real models, ``demo_data/standin_golden`` from the stand-ins.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from tfserving_simulator.demo_models import write_demo_models

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data")
DEMO_GOLDEN_DIR = os.path.join(_DATA, "golden")
# Real SavedModels (scripts/build_demo_models.py writes them): what the demo serves.
DEMO_MODELS_DIR = os.path.join(_DATA, "models")
# Golden sets recorded the same way from the numpy stand-ins (write_demo_files without
# ``real``), which tests and benchmarks run on: a CNN and a linear stand-in answer differently.
STANDIN_GOLDEN_DIR = os.path.join(_DATA, "standin_golden")

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


def write_demo_files(root: str, real: bool = False) -> DemoFiles:
    """Demo model version directories plus models.config and monitoring.config under root:
    the numpy stand-ins (fast, for tests), or with ``real`` a copy of the shipped
    SavedModels, which the simulator runs with TensorFlow."""
    models_root = os.path.join(root, "models")
    if real:
        shutil.copytree(DEMO_MODELS_DIR, models_root)
        models = [(name, os.path.join(models_root, name))
                  for name in sorted(os.listdir(DEMO_MODELS_DIR))]
    else:
        models = [(c.name, c.base_path) for c in write_demo_models(models_root)]
    model_config_file = os.path.join(root, "models.config")
    with open(model_config_file, "w", encoding="utf-8") as handle:
        handle.write(models_config_text(models))
    monitoring_config_file = os.path.join(root, "monitoring.config")
    with open(monitoring_config_file, "w", encoding="utf-8") as handle:
        handle.write(MONITORING_CONFIG)
    return DemoFiles(root, model_config_file, monitoring_config_file,
                     tuple(name for name, _ in models), tuple(path for _, path in models))
