"""Real SavedModels for tests, TensorFlow's own answers for them, and the simulator serving
them as a subprocess.

TensorFlow never runs in the pytest process: ``tfserving_wire.protos`` registers a bare
``tensorflow`` package there, and the exporters started in process must never map
libtensorflow. So the two real models (half_plus_two, TF Serving's TF1 test model, and the
Keras CNN) are built once per test session in one subprocess, which also records what
TensorFlow itself says about them (``reference``); and the simulator serving them runs as
``python -m tfserving_simulator`` (``SimulatorProcess``), importing TensorFlow itself.

Reuse: the session fixture ``real_models`` (registered in ``tests/conftest.py``) gives the
models' base paths; ``SimulatorProcess(workdir, real_models.models())`` serves them and gives
its ports. ``RealModels.copy_version`` puts a copy of a version into another base path (a
"new version" rolling in); ``ImageClassifierBuild`` trains another CNN (a retrained version)
in a subprocess of its own, started at once so it overlaps other work.

This module imports neither TensorFlow nor the protos at module level (the build subprocess
imports it, for ``reference_inputs``, next to the real TensorFlow).
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.exporter_process import ExporterProcess
from tests.helpers import free_port, in_ci, wait_until

REPO = Path(__file__).resolve().parent.parent
HALF_PLUS_TWO = "half_plus_two"
IMAGE_CLASSIFIER = "image_classifier"
VERSIONS = {HALF_PLUS_TWO: 123, IMAGE_CLASSIFIER: 1}
MODELS = tuple(VERSIONS)
# For every process that imports TensorFlow: no GPU probing, quieter C++ logs, and oneDNN off
# (as the simulator turns it off, so TensorFlow's reference numbers come from the same kernels).
TF_ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
          "TF_ENABLE_ONEDNN_OPTS": "0", "PYTHONUNBUFFERED": "1"}
BUILD_TIMEOUT_SECONDS = 300
START_TIMEOUT_SECONDS = 120


def reference_inputs() -> dict[str, dict[str, np.ndarray]]:
    """The Predict inputs TensorFlow's reference outputs are computed for, per model."""
    images = np.random.default_rng(7).random((4, 32, 32, 3), dtype=np.float32)
    return {HALF_PLUS_TWO: {"x": np.array([[1.0], [2.0], [5.0], [-3.5]], np.float32)},
            IMAGE_CLASSIFIER: {"image": images}}


# x values of the tf.Examples that classify_x_to_y / regress_x_to_y2 are asked about.
REFERENCE_EXAMPLES = (2.0, 80.0, -1.25)

# Runs in a subprocess, with the repository as working directory: builds both models, then
# asks TensorFlow about them. SignatureDefs come from TF's SavedModel loader
# (tf.compat.v1.saved_model.loader, the Python twin of the C++ loader TF Serving uses);
# outputs from the TF2 API (tf.saved_model.load), another path than the simulator's session.
_BUILD_SCRIPT = r"""
import base64, json, os, sys
import tensorflow as tf  # first: nothing here may register the protos' bare package before
import numpy as np
from tests import real_models as spec
from tfserving_simulator import savedmodel_builders as builders

root = sys.argv[1]
paths = {
    spec.HALF_PLUS_TWO: builders.write_half_plus_two(
        os.path.join(root, spec.HALF_PLUS_TWO, str(spec.VERSIONS[spec.HALF_PLUS_TWO]))),
    spec.IMAGE_CLASSIFIER: builders.write_image_classifier(
        os.path.join(root, spec.IMAGE_CLASSIFIER, str(spec.VERSIONS[spec.IMAGE_CLASSIFIER]))),
}

reference = {"signature_defs": {}, "tf2_signatures": {}, "predict": {}}
for model, path in paths.items():
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    reference["signature_defs"][model] = {
        name: base64.b64encode(signature.SerializeToString()).decode()
        for name, signature in meta_graph.signature_def.items()}
    loaded = tf.saved_model.load(path)
    reference["tf2_signatures"][model] = sorted(loaded.signatures)
    inputs = spec.reference_inputs()[model]
    outputs = loaded.signatures["serving_default"](
        **{alias: tf.constant(value) for alias, value in inputs.items()})
    reference["predict"][model] = {alias: {"dtype": tensor.dtype.name,
                                           "value": tensor.numpy().tolist()}
                                   for alias, tensor in outputs.items()}
    if model == spec.HALF_PLUS_TWO:
        examples = []
        for x in spec.REFERENCE_EXAMPLES:
            example = tf.train.Example()
            example.features.feature["x"].float_list.value.append(x)
            examples.append(example.SerializeToString())
        for name, alias in (("classify_x_to_y", "scores"), ("regress_x_to_y", "outputs"),
                            ("regress_x_to_y2", "outputs")):
            result = loaded.signatures[name](inputs=tf.constant(examples))
            reference[name] = result[alias].numpy().reshape(-1).tolist()
with open(os.path.join(root, "reference.json"), "w") as file:
    json.dump(reference, file)
"""


# Runs in a subprocess: one CNN, trained from another seed (a "retrained" version).
_CLASSIFIER_SCRIPT = r"""
import sys
import tensorflow as tf  # first, as in _BUILD_SCRIPT
from tfserving_simulator import savedmodel_builders as builders

builders.write_image_classifier(sys.argv[1], seed=int(sys.argv[2]), epochs=int(sys.argv[3]))
"""


_SAVE_AGAIN_SCRIPT = r"""
import sys
import tensorflow as tf  # first, as in _BUILD_SCRIPT
from tfserving_simulator import savedmodel_builders as builders

builders.save_again(sys.argv[1], sys.argv[2])
"""


def save_again(source_dir, version_dir) -> str:
    """``savedmodel_builders.save_again`` by TensorFlow in a subprocess: ``source_dir``'s
    model serialized anew as ``version_dir``."""
    require_tensorflow()
    done = subprocess.run([sys.executable, "-c", _SAVE_AGAIN_SCRIPT, str(source_dir),
                           str(version_dir)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS)
    assert done.returncode == 0, f"saving {source_dir} again failed:\n{done.stderr[-4000:]}"
    return str(version_dir)


def require_tensorflow() -> None:
    """TensorFlow's runtime must be installed (checked on disk: importing it here would load
    it into the pytest process). Under CI=true its absence fails the test, never skips it."""
    spec = importlib.util.find_spec("tensorflow")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if any(os.path.isfile(os.path.join(location, "python", "__init__.py"))
           for location in locations):
        return
    if in_ci():
        pytest.fail("TensorFlow is required in CI (pip install -e .[test] brings it)")
    pytest.skip("TensorFlow's runtime is not installed")


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **TF_ENV, **extra}


@dataclass(frozen=True)
class RealModels:
    """Where the session's real models are, and what TensorFlow said about them."""

    root: str
    reference: dict

    def base_path(self, model: str) -> str:
        return os.path.join(self.root, model)

    def version_dir(self, model: str) -> str:
        return os.path.join(self.root, model, str(VERSIONS[model]))

    def models(self, *names: str) -> dict[str, str]:
        """Model name -> base path, for ``SimulatorProcess`` (all models by default)."""
        return {name: self.base_path(name) for name in names or MODELS}

    def copy_version(self, model: str, base_path: str, version: int | str) -> str:
        """Copy the model's version into ``base_path/<version>``, renamed into place whole so
        a polling server never sees half of it; returns the new version directory."""
        os.makedirs(base_path, exist_ok=True)
        target = os.path.join(base_path, str(version))
        staging = os.path.join(base_path, f".copy-{uuid.uuid4().hex[:8]}")
        shutil.copytree(self.version_dir(model), staging)
        os.rename(staging, target)
        return target

    def signature_defs(self, model: str) -> dict:
        """TensorFlow's SignatureDefs of the model, as ``tensorflow.SignatureDef`` messages."""
        from tfserving_wire import protos

        return {name: protos.meta_graph_pb2.SignatureDef.FromString(base64.b64decode(data))
                for name, data in self.reference["signature_defs"][model].items()}

    def predict_outputs(self, model: str) -> dict[str, np.ndarray]:
        """TensorFlow's Predict outputs for ``reference_inputs()[model]``."""
        return {alias: np.array(entry["value"], dtype=entry["dtype"])
                for alias, entry in self.reference["predict"][model].items()}


class ImageClassifierBuild:
    """``savedmodel_builders.write_image_classifier(version_dir, seed=, epochs=)`` run by
    TensorFlow in a subprocess, started by the constructor; ``wait()`` returns the version
    directory once it is written (renamed into place whole, as the builder does)."""

    def __init__(self, version_dir, *, seed: int, epochs: int = 8) -> None:
        require_tensorflow()
        self.version_dir = str(version_dir)
        # TensorFlow writes plenty to stderr; a file, not a pipe nobody reads until wait(),
        # so the build never stalls on a full pipe.
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CLASSIFIER_SCRIPT, self.version_dir, str(seed), str(epochs)],
            cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=self._log,
            stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = BUILD_TIMEOUT_SECONDS) -> str:
        self.process.wait(timeout=timeout)
        self._log.seek(0)
        stderr = self._log.read().decode("utf-8", "replace")
        assert self.process.returncode == 0, \
            f"building {self.version_dir} failed:\n{stderr[-4000:]}"
        return self.version_dir

    def stop(self) -> None:
        """Kill the build if it still runs (a test that failed before waiting for it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def real_models(tmp_path_factory) -> RealModels:
    """half_plus_two (version 123) and the CNN image_classifier (version 1), built once per
    session with TensorFlow in a subprocess (about 10 s), read-only for the tests."""
    require_tensorflow()
    root = tmp_path_factory.mktemp("real_models")
    out = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, str(root)], cwd=REPO,
                         env=subprocess_env(), capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_SECONDS)
    assert out.returncode == 0, f"building the real models failed:\n{out.stderr[-4000:]}"
    with open(root / "reference.json", encoding="utf-8") as file:
        return RealModels(str(root), json.load(file))


# --- the simulator as a subprocess ----------------------------------------------------------

class NoTensorFlowRuntime(importlib.abc.MetaPathFinder):
    """Makes ``tensorflow.python`` (TensorFlow's runtime) unimportable; TensorFlow's generated
    protos (``tensorflow.core``) stay importable, as in the container image's slim set."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow.python" or name.startswith("tensorflow.python."):
            raise ModuleNotFoundError(self.reason or f"No module named {name!r}", name=name)
        return None


@pytest.fixture(scope="session", autouse=True)
def no_tensorflow_in_this_process():
    """TensorFlow's runtime cannot load into the pytest process (it runs exporters, which
    must never map libtensorflow): an in-process simulator given a real SavedModel fails that
    load with this reason instead."""
    finder = NoTensorFlowRuntime("TensorFlow's runtime is blocked in the pytest process: "
                                 "serve real SavedModels with tests.real_models.SimulatorProcess")
    sys.meta_path.insert(0, finder)
    yield
    sys.meta_path.remove(finder)


# ``python -c`` code for an environment that has TensorFlow's generated protos but not its
# runtime; ``HIDE_TENSORFLOW`` then runs ``python -m tfserving_simulator`` unchanged.
WITHOUT_TENSORFLOW_RUNTIME = ("import sys\nfrom tests.real_models import NoTensorFlowRuntime\n"
                              "sys.meta_path.insert(0, NoTensorFlowRuntime())\n")
HIDE_TENSORFLOW = WITHOUT_TENSORFLOW_RUNTIME + (
    "import runpy\nrunpy.run_module('tfserving_simulator', run_name='__main__', alter_sys=True)\n")

MONITORING_CONFIG = 'prometheus_config {\n  enable: true\n  path: "%s"\n}\n'
METRICS_PATH = "/monitoring/prometheus/metrics"


def model_config_text(models: dict[str, str], version_policy: str | None = None) -> str:
    """models.config for ``models``; ``version_policy`` (a ``model_version_policy`` body, e.g.
    ``"all {}"``) for every model, else TF Serving's default (the latest version)."""
    policy = f" model_version_policy {{ {version_policy} }}" if version_policy else ""
    entries = "".join(f'  config {{ name: "{name}" base_path: "{path}" '
                      f'model_platform: "tensorflow"{policy} }}\n'
                      for name, path in models.items())
    return "model_config_list {\n" + entries + "}\n"


def mapped_libraries(pid: int | str = "self", fragment: str = "libtensorflow") -> list[str]:
    """Files mapped into a process whose path contains ``fragment``."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        return sorted({line.split()[-1] for line in maps if fragment in line})


class SimulatorProcess:
    """``python -m tfserving_simulator`` with TF Serving's flags on 127.0.0.1, serving
    ``models`` (name -> base path) through a models.config in ``workdir``; its output goes to
    ``workdir/simulator.log``. Ports open only once the initial models loaded, so the
    constructor polls REST until it answers (``wait=False`` to watch a failing start).
    ``version_policy`` is every model's ``model_version_policy`` (``model_config_text``)."""

    def __init__(self, workdir, models: dict[str, str], *, flags: tuple[str, ...] = (),
                 fault_config_file: str | None = None, monitoring: bool = False,
                 hide_tensorflow: bool = False, wait: bool = True,
                 timeout: float = START_TIMEOUT_SECONDS,
                 version_policy: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.models = dict(models)
        self.grpc_port = free_port()
        self.rest_port = free_port()
        while self.rest_port == self.grpc_port:
            self.rest_port = free_port()
        self.model_config_file = self.workdir / "models.config"
        self.model_config_file.write_text(model_config_text(self.models, version_policy))
        args = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
                "--bind_address=127.0.0.1", f"--model_config_file={self.model_config_file}",
                "--file_system_poll_wait_seconds=1", "--max_num_load_retries=0", *flags]
        if fault_config_file:
            args.append(f"--fault_config_file={fault_config_file}")
        if monitoring:
            monitoring_file = self.workdir / "monitoring.config"
            monitoring_file.write_text(MONITORING_CONFIG % METRICS_PATH)
            args.append(f"--monitoring_config_file={monitoring_file}")
        command = ["-c", HIDE_TENSORFLOW] if hide_tensorflow else ["-m", "tfserving_simulator"]
        self.log_path = self.workdir / "simulator.log"
        self._log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.startup_seconds: float | None = None
        self.process = subprocess.Popen([sys.executable, *command, *args], cwd=REPO,
                                        env=subprocess_env(), stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Poll REST until the first model answers; fail at once if the process exits."""
        probe = f"{self.rest_url}/v1/models/{next(iter(self.models))}"

        def ready():
            if self.process.poll() is not None:
                return "exited"
            return requests.get(probe, timeout=2).status_code == 200

        if wait_until(ready, timeout=timeout, interval=0.05,
                      message=f"the simulator on {self.rest_url} ({self.log_path})") == "exited":
            raise AssertionError(f"the simulator exited with {self.process.returncode}:\n"
                                 + self.log_text()[-3000:])
        self.startup_seconds = time.monotonic() - self.started_at

    def wait_exit(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mapped_libraries(self, fragment: str = "libtensorflow") -> list[str]:
        return mapped_libraries(self.pid, fragment)

    # Process handling as for the exporter's process: same attributes (process, _log).
    pid = ExporterProcess.pid
    rss_mib = ExporterProcess.rss_mib
    stop = ExporterProcess.stop

    def __enter__(self) -> "SimulatorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
