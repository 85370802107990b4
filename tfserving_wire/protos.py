"""TF Serving's protobuf messages and gRPC stubs, without TensorFlow's runtime.

``tensorflow_serving.apis`` imports TensorFlow's generated ``*_pb2`` modules
(``tensorflow.core.framework.tensor_pb2`` and friends). Importing them the normal way runs
``tensorflow/__init__.py``, which loads the whole TensorFlow runtime: about 2.5 s and
500 MiB of RSS for a sidecar that only needs a few message classes.

Python resolves ``tensorflow.core.framework`` through the ``tensorflow`` entry in
``sys.modules``. Registering a bare package object there, whose ``__path__`` points at the
installed ``tensorflow`` directory, lets those submodules import from disk while
``tensorflow/__init__.py`` never runs. This works with the full wheel installed and in a slim
environment that holds only the generated modules (the container image).

Everything else in the exporter imports the proto modules from here, never directly. Two
more entry points serve the simulator only: ``load_module`` (a generated module the exporter
does not need, such as ``saved_model_pb2``) and ``import_tensorflow_runtime`` (the real
TensorFlow, in a process that may already hold the bare package). The exporter calls neither.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types

_lock = threading.Lock()
# Set on the bare package object, so the runtime import can tell it from a real TensorFlow.
_BARE_MARKER = "__tfserving_wire_bare__"


class ProtosUnavailable(ImportError):
    """The generated TensorFlow / TF Serving protobuf modules cannot be found."""


def _register_bare_tensorflow_package() -> None:
    if "tensorflow" in sys.modules:
        # Either a real TensorFlow the host application imported (fine: its submodules are the
        # same files) or our own bare package from an earlier call.
        return
    spec = importlib.util.find_spec("tensorflow")  # locates the package, does not execute it
    if spec is None or not spec.submodule_search_locations:
        raise ProtosUnavailable(
            "the 'tensorflow' package holding TF's generated protobuf modules is not installed; "
            "install tensorflow-serving-api (it brings them), or the slim proto set of the "
            "container image"
        )
    package = types.ModuleType("tensorflow", "Bare package: TensorFlow protos only, no runtime.")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = importlib.machinery.ModuleSpec(
        "tensorflow", loader=None, is_package=True
    )
    package.__spec__.submodule_search_locations = package.__path__
    package.__file__ = None
    package.__package__ = "tensorflow"
    setattr(package, _BARE_MARKER, True)
    sys.modules["tensorflow"] = package


def _load(module: str) -> types.ModuleType:
    with _lock:
        _register_bare_tensorflow_package()
        try:
            return importlib.import_module(module)
        except ImportError as err:
            raise ProtosUnavailable(f"cannot import {module}: {err}") from err


class _LazyModule:
    """Attribute access imports the proto module on first use, so that importing the exporter
    costs nothing until a TF Serving message is actually needed."""

    def __init__(self, module: str) -> None:
        self._module_name = module
        self._module: types.ModuleType | None = None

    def _get(self) -> types.ModuleType:
        if self._module is None:
            self._module = _load(self._module_name)
        return self._module

    def __getattr__(self, name: str):
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return f"<lazy proto module {self._module_name}>"


# The modules this project uses, by package; each becomes an attribute of this module
# (``protos.predict_pb2``) that imports on first use.
_MODULES_BY_PACKAGE = {
    "tensorflow_serving.apis": (
        "predict_pb2", "classification_pb2", "regression_pb2", "inference_pb2", "input_pb2",
        "model_pb2", "get_model_status_pb2", "get_model_metadata_pb2", "model_management_pb2",
        "status_pb2", "prediction_service_pb2_grpc", "model_service_pb2_grpc"),
    "tensorflow_serving.config": ("model_server_config_pb2",),
    "tensorflow.core.framework": ("tensor_pb2", "tensor_shape_pb2", "types_pb2"),
    "tensorflow.core.example": ("example_pb2", "feature_pb2"),
    "tensorflow.core.protobuf": ("meta_graph_pb2", "error_codes_pb2"),
}
globals().update({name: _LazyModule(f"{package}.{name}")
                  for package, names in _MODULES_BY_PACKAGE.items() for name in names})


def load_module(module: str) -> types.ModuleType:
    """A generated proto module of TensorFlow or TF Serving that ``load_all`` leaves out (e.g.
    ``tensorflow.core.protobuf.saved_model_pb2``), imported now without TensorFlow's runtime.

    Only ``*_pb2`` modules are accepted: anything else under ``tensorflow`` could be the
    runtime itself. Modules outside the slim image's set (``scripts/tf_proto_files.py``) raise
    ``ProtosUnavailable`` there.
    """
    top = module.split(".")[0]
    if top not in ("tensorflow", "tensorflow_serving") or not module.endswith("_pb2"):
        raise ValueError(f"not a generated TensorFlow/TF Serving proto module: {module!r}")
    return _load(module)


def import_tensorflow_runtime() -> types.ModuleType:
    """Import the real ``tensorflow`` (its runtime included) into this process and return it.

    Safe after the bare package was registered: the bare package object is dropped from
    ``sys.modules`` but every proto submodule already imported stays, so TensorFlow's own
    import reuses those very modules (same message classes, one registration in protobuf's
    descriptor pool; purging them would execute the ``*_pb2`` files a second time). When the
    import fails, the bare package is put back and the error propagates: the protos keep
    working. For the simulator serving real SavedModels; the exporter never calls this.
    """
    with _lock:
        current = sys.modules.get("tensorflow")
        if current is not None and not getattr(current, _BARE_MARKER, False):
            return current  # a real TensorFlow (or a host's own package) is already there
        bare = sys.modules.pop("tensorflow", None)
        try:
            runtime = importlib.import_module("tensorflow")
        except BaseException:
            sys.modules.pop("tensorflow", None)  # a half-initialised package is no use
            if bare is not None:
                sys.modules["tensorflow"] = bare
            raise
        if bare is not None:
            # ``import tensorflow.core.x`` resolves attributes from the top package down;
            # the subpackages imported under the bare package are attributes of it only.
            for name, value in vars(bare).items():
                if isinstance(value, types.ModuleType) and not hasattr(runtime, name):
                    setattr(runtime, name, value)
        return runtime


def load_all() -> None:
    """Import every proto module now (fails fast at startup instead of on first scrape)."""
    for value in list(globals().values()):
        if isinstance(value, _LazyModule):
            value._get()
