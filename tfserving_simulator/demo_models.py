"""Writes simulated model version directories (for the demo and for tests), atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Callable

from tfserving_simulator.models import SAVED_MODEL_FILE, SPEC_FILE, SPEC_FORMAT
from tfserving_simulator.server_config import ModelConfig

# Never parsed by the simulator; real SavedModels start with protobuf bytes, this just marks it.
_SAVED_MODEL_PLACEHOLDER = b"simulated SavedModel: see simulator_model.json\n"


def write_version_dir(version_dir: str, write: Callable[[str], None]) -> str:
    """``write(path)`` creates the version directory at a hidden name beside its final place,
    which is then renamed in: the poller never sees a half-written version (hidden,
    non-numeric names are ignored by discovery). Stand-ins and real SavedModels alike."""
    version_dir = os.path.abspath(version_dir)
    parent, name = os.path.split(version_dir)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(version_dir):
        raise FileExistsError(f"version directory {version_dir} already exists")
    staging = os.path.join(parent, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    try:
        write(staging)
        os.rename(staging, version_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def _write_version(base_path: str, dir_name: str, files: dict[str, bytes]) -> str:
    def write(staging: str) -> None:
        os.makedirs(staging)
        for file_name, content in files.items():
            with open(os.path.join(staging, file_name), "wb") as file:
                file.write(content)

    return write_version_dir(os.path.join(base_path, dir_name), write)


def _spec_bytes(kind: str, params: dict, load_seconds: float, fail_load: dict | None) -> bytes:
    spec = {"format": SPEC_FORMAT, "kind": kind, "params": params,
            "load_seconds": load_seconds, "fail_load": fail_load}
    return (json.dumps(spec, indent=2) + "\n").encode()


def write_model_version(base_path: str, version: int, kind: str, params: dict, *,
                        dir_name: str | None = None, load_seconds: float = 0.0,
                        fail_load: dict | None = None) -> str:
    """A loadable version directory of any model kind; returns its path."""
    return _write_version(base_path, dir_name or str(version), {
        SAVED_MODEL_FILE: _SAVED_MODEL_PLACEHOLDER,
        SPEC_FILE: _spec_bytes(kind, params, load_seconds, fail_load),
    })


def write_half_plus_two(base_path: str, version: int = 123, *, a: float = 0.5, b: float = 2.0,
                        c: float = 3.0, dir_name: str | None = None, load_seconds: float = 0.0,
                        fail_load: dict | None = None) -> str:
    """half_plus_two (y = a·x + b, y2 = a·x + c, y3 = a·x2 + c)."""
    return write_model_version(base_path, version, "half_plus_two", {"a": a, "b": b, "c": c},
                               dir_name=dir_name, load_seconds=load_seconds, fail_load=fail_load)


def write_image_classifier(base_path: str, version: int = 1, *, seed: int = 0,
                           weight_noise: float = 0.0, noise_seed: int = 1,
                           dir_name: str | None = None, load_seconds: float = 0.0,
                           fail_load: dict | None = None) -> str:
    """The 32×32×3 ten-class linear classifier; ``weight_noise`` perturbs it (a "retrained" v2)."""
    params = {"seed": seed, "weight_noise": weight_noise, "noise_seed": noise_seed}
    return write_model_version(base_path, version, "image_classifier", params,
                               dir_name=dir_name, load_seconds=load_seconds, fail_load=fail_load)


def write_broken_version(base_path: str, version: int) -> str:
    """A version directory without ``saved_model.pb``: loading fails with TF's NOT_FOUND."""
    return _write_version(base_path, str(version), {
        "README.txt": b"deliberately broken version: no saved_model.pb\n"})


def write_demo_models(root: str) -> list[ModelConfig]:
    """The demo layout: half_plus_two/00000123 (as in TF Serving's Docker demo) and
    image_classifier/1 under ``root``; returns their configs."""
    root = os.path.abspath(root)
    half_plus_two = os.path.join(root, "half_plus_two")
    image_classifier = os.path.join(root, "image_classifier")
    write_half_plus_two(half_plus_two, 123, dir_name="00000123")
    write_image_classifier(image_classifier, 1)
    return [ModelConfig("half_plus_two", half_plus_two),
            ModelConfig("image_classifier", image_classifier)]
