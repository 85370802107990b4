"""A real SavedModel in TensorFlow's runtime, loaded and run as TF Serving's SavedModelBundle is.

TensorFlow is imported here, and only when the first real SavedModel loads
(``protos.import_tensorflow_runtime``: the protos this process already uses stay the same
modules). Where it cannot be imported, every such load fails with FAILED_PRECONDITION, as a
version TF Serving cannot load ends in END with its status; the stand-ins never need it.

Loading follows ``tensorflow/cc/saved_model/loader.cc`` (``LoadSavedModelInternal``): the
MetaGraphDef chosen by ``saved_model.read_meta_graph``, its GraphDef in a new session, the
variables restored by running ``saver_def.restore_op_name`` with ``variables/variables`` fed
to ``filename_tensor_name`` (skipped when ``variables/variables.index`` is absent), then the
init op (``GetInitOp``: the ``__saved_model_init_op`` signature's output, else the
``saved_model_main_op`` / ``legacy_init_op`` collection), asset paths fed to both.

Inference is ``Session::Run`` with the signature's tensor names, through TensorFlow's C API
(``TF_SessionRun_wrapper``) rather than Python's ``Session.run``, which would convert feeds to
the placeholder's dtype and check shapes in Python; here a wrong dtype is the runtime's own
"Expects arg[0] to be float but int32 is provided" and the graph reports bad shapes, as in TF
Serving (``predict_util.cc``, ``util.cc`` ``PerformOneShotTensorComputation``).

oneDNN is turned off (``TF_ENABLE_ONEDNN_OPTS=0`` unless the environment sets it): with it,
some malformed inputs (a rank-3 image into a Conv2D) abort the whole process in a CHECK, where
TensorFlow's own kernels answer INVALID_ARGUMENT.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time

import numpy as np

from tfserving_simulator import inference
from tfserving_simulator.errors import TF_CODES, ServingError
from tfserving_simulator.models import ModelProgram, SignatureDef
from tfserving_simulator.saved_model import (
    INIT_OP_SIGNATURE_KEY, SERVE_TAGS, VARIABLES_DIR, read_meta_graph, signatures_of)
from tfserving_wire import protos

log = logging.getLogger(__name__)

_runtime_lock = threading.Lock()
_runtime: dict[str, object] = {}  # "tf", "c_api" once imported; "error" once it failed
_ASSETS_DIR = "assets"
_ASSETS_COLLECTION = "saved_model_assets"  # kSavedModelAssetsKey
_INIT_OP_COLLECTIONS = ("saved_model_main_op", "legacy_init_op")  # main op first, as GetInitOp


def _tensorflow():
    """(tf, its C API module), importing them on first use; a cached failure after that."""
    with _runtime_lock:
        if "tf" not in _runtime and "error" not in _runtime:
            os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
            started = time.monotonic()
            try:
                tf = protos.import_tensorflow_runtime()
                c_api = importlib.import_module("tensorflow.python.client.pywrap_tf_session")
            except Exception as err:  # noqa: BLE001 - ImportError and whatever a broken TF raises
                _runtime["error"] = f"{type(err).__name__}: {err}"
            else:
                _runtime.update(tf=tf, c_api=c_api)
                log.info("imported TensorFlow %s in %.1fs", tf.__version__,
                         time.monotonic() - started)
        return _runtime.get("tf"), _runtime.get("c_api"), _runtime.get("error")


def _status_error(err) -> ServingError:
    """A TF runtime error (``tf.errors.OpError``) as the status TF Serving would return."""
    code = TF_CODES[err.error_code] if 0 < err.error_code < len(TF_CODES) else "UNKNOWN"
    return ServingError(code, err.message)


def load_program(version_dir: str, tags=SERVE_TAGS) -> "SessionProgram":
    """Load a real SavedModel (its read and tag errors come before TensorFlow is needed)."""
    started = time.monotonic()
    meta_graph = read_meta_graph(version_dir, tags)
    tf, c_api, failure = _tensorflow()
    if failure is not None:
        raise ServingError(
            "FAILED_PRECONDITION",
            f"cannot load the SavedModel in {version_dir}: TensorFlow cannot be imported in the "
            f"simulator process ({failure}). A SavedModel version directory (saved_model.pb or "
            "saved_model.pbtxt, with variables/) runs in TensorFlow's runtime: install "
            "tensorflow, or serve a stand-in version directory (simulator_model.json) instead")
    try:
        program = SessionProgram(version_dir, meta_graph, tf, c_api)
    except tf.errors.OpError as err:
        raise _status_error(err) from None
    # loader.cc, LoadSavedModel's closing line.
    log.info("SavedModel load for tags { %s }; Status: success: OK. Took %d microseconds.",
             " ".join(sorted(tags)), (time.monotonic() - started) * 1e6)
    return program


class SessionProgram(ModelProgram):
    """A SavedModel's graph in a TensorFlow session; ``run`` is one ``Session::Run``."""

    kind = "saved_model"
    emulated = False

    def __init__(self, version_dir: str, meta_graph, tf, c_api) -> None:
        self.version_dir = version_dir
        self.signatures: dict[str, SignatureDef] = signatures_of(meta_graph)
        self._tf = tf
        self._c_api = c_api
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.graph_util.import_graph_def(meta_graph.graph_def, name="")
        self._graph.finalize()
        self._session = tf.compat.v1.Session(graph=self._graph)
        self._tensors: dict[str, object] = {}
        self._tensors_lock = threading.Lock()
        assets = self._asset_feeds(meta_graph)
        self._restore(meta_graph, assets)
        self._run_init_op(meta_graph, assets)

    # --- loading (loader.cc) ---

    def _asset_feeds(self, meta_graph) -> dict[str, np.ndarray]:
        """GetAssetFileDefs + AddAssetsTensorsToInputs: each asset tensor gets its file's path."""
        asset_file_defs = list(meta_graph.asset_file_def)
        if not asset_file_defs and _ASSETS_COLLECTION in meta_graph.collection_def:
            for packed in meta_graph.collection_def[_ASSETS_COLLECTION].any_list.value:
                asset = protos.meta_graph_pb2.AssetFileDef()
                packed.Unpack(asset)
                asset_file_defs.append(asset)
        return {asset.tensor_info.name: _string_scalar(
                    os.path.join(self.version_dir, _ASSETS_DIR, asset.filename))
                for asset in asset_file_defs}

    def _restore(self, meta_graph, assets: dict[str, np.ndarray]) -> None:
        log.info("Restoring SavedModel bundle.")
        prefix = os.path.join(self.version_dir, VARIABLES_DIR, "variables")
        saver = meta_graph.saver_def
        if not os.path.exists(prefix + ".index") or not saver.restore_op_name:
            log.info("The specified SavedModel has no variables; no checkpoints were restored. "
                     "File does not exist: %s.index", prefix)
            return
        self._session_run({saver.filename_tensor_name: _string_scalar(prefix), **assets}, [],
                          [saver.restore_op_name])

    def _run_init_op(self, meta_graph, assets: dict[str, np.ndarray]) -> None:
        name = ""
        init_signature = meta_graph.signature_def.get(INIT_OP_SIGNATURE_KEY)
        if init_signature is not None:
            name = init_signature.outputs[INIT_OP_SIGNATURE_KEY].name
        else:
            for key in _INIT_OP_COLLECTIONS:
                if key in meta_graph.collection_def:
                    nodes = meta_graph.collection_def[key].node_list.value
                    if len(nodes) != 1:
                        raise ServingError("FAILED_PRECONDITION",
                                           f"Expected exactly one main op in : {self.version_dir}")
                    name = nodes[0]
                    break
        if name:
            log.info("Running initialization op on SavedModel bundle at path: %s",
                     self.version_dir)
            self._session_run(assets, [], [name.split(":")[0]])

    # --- inference ---

    def run(self, feeds: dict[str, object], fetches: list[str]) -> dict[str, np.ndarray]:
        try:
            values = self._session_run(feeds, fetches, [])
        except self._tf.errors.OpError as err:
            raise _status_error(err) from None
        except UnicodeDecodeError as err:
            # A status message quoting bytes that are not UTF-8 (an unparsable serialized
            # Example): TF Serving passes the bytes on; here they are replaced. Such messages
            # come from the graph's parsing ops, which fail with INVALID_ARGUMENT.
            raw = err.object if isinstance(err.object, bytes) else str(err).encode()
            raise ServingError("INVALID_ARGUMENT", raw.decode("utf-8", "replace")) from None
        return {name: np.asarray(value) for name, value in zip(fetches, values)}

    def _session_run(self, feeds: dict[str, object], fetches: list[str], targets: list[str]):
        graph = self._graph
        try:
            feed_dict = {self._tensor(name)._as_tf_output(): value
                         for name, value in feeds.items()}
            fetch_list = [self._tensor(name)._as_tf_output() for name in fetches]
            target_list = [graph.get_operation_by_name(name)._c_op for name in targets]
        except (KeyError, ValueError) as err:
            # A name the graph does not have: let the C++ session say so, in its words, by
            # building the same feeds and fetches. Should it accept them after all, the
            # callable is dropped at once (its handle is released with it).
            options = protos.load_module("tensorflow.core.protobuf.config_pb2").CallableOptions(
                feed=list(feeds), fetch=list(fetches), target=list(targets))
            self._session._make_callable_from_options(options)
            raise ServingError("INVALID_ARGUMENT", str(err)) from None
        options = self._run_options()
        try:
            return self._c_api.TF_SessionRun_wrapper(self._session._session, options, feed_dict,
                                                     fetch_list, target_list, None)
        finally:
            if options is not None:
                self._c_api.TF_DeleteBuffer(options)

    def _run_options(self):
        """RunOptions with the request's deadline, or None without one."""
        remaining = inference.remaining_seconds()
        if remaining is None:
            return None
        options = protos.load_module("tensorflow.core.protobuf.config_pb2").RunOptions(
            timeout_in_ms=max(1, int(remaining * 1000)))
        return self._c_api.TF_NewBufferFromString(options.SerializeToString())

    def _tensor(self, name: str):
        # A TensorInfo name without an output index means output 0, as Session::Run reads it.
        name = name if ":" in name else f"{name}:0"
        tensor = self._tensors.get(name)
        if tensor is None:
            tensor = self._graph.get_tensor_by_name(name)
            with self._tensors_lock:
                self._tensors[name] = tensor
        return tensor


def _string_scalar(text: str) -> np.ndarray:
    return np.array(text.encode("utf-8", "surrogateescape"), dtype=object)
