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

Everything else in the exporter imports the proto modules from here, never directly.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types

_lock = threading.Lock()


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


def load_all() -> None:
    """Import every proto module now (fails fast at startup instead of on first scrape)."""
    for value in list(globals().values()):
        if isinstance(value, _LazyModule):
            value._get()
