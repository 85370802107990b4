"""Version directories: stand-in or real SavedModel, and a SavedModel read the way TF reads it.

``detect`` is the one place that decides what a version directory is. ``read_meta_graph``
reads ``saved_model.pb`` (or ``saved_model.pbtxt``) with the protos alone, no TensorFlow, and
picks the MetaGraphDef like TF Serving's loader, so the SignatureDefs served as metadata are
the file's own. Running the graph is ``tf_session.py``'s business.

What TF Serving does, by source file (TF Serving ``tensorflow_serving/``, TensorFlow
``tensorflow/``):

- ``session_bundle/oss/session_bundle_util.cc``, ``LoadSessionBundleOrSavedModelBundle``: an
  ``export.meta`` file is a SessionBundle, refused with UNIMPLEMENTED; a directory that
  ``MaybeSavedModelDirectory`` (``cc/saved_model/loader.cc``) rejects gets NOT_FOUND
  "Specified file path does not appear to contain a SavedModel bundle ...".
- ``servables/tensorflow/saved_model_bundle_factory.cc``: the tag set is ``--saved_model_tags``,
  ``{serve}`` when empty; after loading, only ``signature_def`` of the MetaGraphDef is kept
  (``remove_unused_fields_from_bundle_metagraph``, true by default), all of it.
- ``cc/saved_model/reader.cc``: ``saved_model.pb`` is read if it exists (``ReadBinaryProto``:
  DATA_LOSS "Can't parse <file> as binary proto"), else ``saved_model.pbtxt``; the first
  MetaGraphDef whose tag *set* equals the requested one is taken, else NOT_FOUND "Could not
  find meta graph def matching supplied tags: { serve }. ...".
- ``servables/tensorflow/get_model_metadata_impl.cc``, ``SavedModelGetSignatureDef``: metadata
  is every entry of that ``signature_def`` map, TF2's ``__saved_model_init_op`` included (TF's
  Python loader hides it from ``.signatures``; TF Serving does not).
"""

from __future__ import annotations

import errno
import logging
import os

from google.protobuf import text_format

from tfserving_simulator.errors import ServingError
from tfserving_simulator.models import (
    PLACEHOLDER_PREFIX, SAVED_MODEL_FILE, SPEC_FILE, SignatureDef, TensorInfo,
    missing_saved_model_error)
from tfserving_wire import protos

log = logging.getLogger(__name__)

STAND_IN = "stand-in"
SAVED_MODEL = "SavedModel"

SAVED_MODEL_PBTXT = "saved_model.pbtxt"
VARIABLES_DIR = "variables"
SESSION_BUNDLE_FILE = "export.meta"
SERVE_TAGS = frozenset({"serve"})  # kSavedModelTagServe, the default --saved_model_tags
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"  # kSavedModelInitOpSignatureKey
_SAVED_MODEL_MODULE = "tensorflow.core.protobuf.saved_model_pb2"


def detect(version_dir: str) -> str:
    """``STAND_IN`` or ``SAVED_MODEL``; a ``ServingError`` for anything that is neither.

    - ``simulator_model.json`` is there: a stand-in, unless the directory also holds a real
      SavedModel's files (``variables/``, ``saved_model.pbtxt``, or a ``saved_model.pb`` that
      is neither empty nor the stand-in placeholder): then it is ambiguous and refused.
    - otherwise ``saved_model.pb`` or ``saved_model.pbtxt``: a real SavedModel (a placeholder
      ``saved_model.pb`` without its ``simulator_model.json`` is refused);
    - neither: TF Serving's own NOT_FOUND (its ``export.meta`` check comes first).
    """
    if os.path.isfile(os.path.join(version_dir, SPEC_FILE)):
        found = _real_saved_model_files(version_dir)
        if found:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"version directory {version_dir} is ambiguous: it holds a real SavedModel "
                f"({', '.join(found)}) and the simulator's stand-in file {SPEC_FILE}; expected "
                f"one of the two (remove {SPEC_FILE} to serve the SavedModel with TensorFlow, "
                f"or the SavedModel's files to serve the stand-in)")
        return STAND_IN
    if os.path.exists(os.path.join(version_dir, SESSION_BUNDLE_FILE)):
        raise ServingError("UNIMPLEMENTED", "Session Bundle is deprecated and removed.")
    pb_path = os.path.join(version_dir, SAVED_MODEL_FILE)
    if not (os.path.exists(pb_path)
            or os.path.exists(os.path.join(version_dir, SAVED_MODEL_PBTXT))):
        raise missing_saved_model_error(version_dir)
    if _is_placeholder(pb_path, allow_empty=False):
        raise ServingError(
            "NOT_FOUND",
            f"simulated model file {os.path.join(version_dir, SPEC_FILE)} is missing: "
            f"{pb_path} is the simulator's placeholder, not a SavedModel")
    return SAVED_MODEL


def _real_saved_model_files(version_dir: str) -> list[str]:
    found = []
    pb_path = os.path.join(version_dir, SAVED_MODEL_FILE)
    if os.path.exists(pb_path) and not _is_placeholder(pb_path, allow_empty=True):
        found.append(SAVED_MODEL_FILE)
    if os.path.exists(os.path.join(version_dir, SAVED_MODEL_PBTXT)):
        found.append(SAVED_MODEL_PBTXT)
    if os.path.isdir(os.path.join(version_dir, VARIABLES_DIR)):
        found.append(VARIABLES_DIR + "/")
    return found


def _is_placeholder(path: str, *, allow_empty: bool) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(len(PLACEHOLDER_PREFIX))
    except OSError:
        return False
    return head == PLACEHOLDER_PREFIX or (allow_empty and head == b"")


# --- reading -------------------------------------------------------------------------------

# TSL's errno -> status code mapping (tsl/platform/errors.cc, ErrnoToCode) for what opening a
# file can fail with; its message is "<file>; <strerror>" (IOError).
_ERRNO_CODES = {errno.ENOENT: "NOT_FOUND", errno.EACCES: "PERMISSION_DENIED",
                errno.EPERM: "PERMISSION_DENIED", errno.EISDIR: "FAILED_PRECONDITION",
                errno.ENOTDIR: "FAILED_PRECONDITION", errno.ENAMETOOLONG: "INVALID_ARGUMENT"}


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        code = _ERRNO_CODES.get(err.errno, "UNKNOWN")
        raise ServingError(code, f"{path}; {err.strerror or err}") from None


def read_saved_model(version_dir: str):
    """``reader.cc``, ReadSavedModel: the ``tensorflow.SavedModel`` proto of the directory."""
    saved_model_pb2 = protos.load_module(_SAVED_MODEL_MODULE)
    log.info("Reading SavedModel from: %s", version_dir)
    proto = saved_model_pb2.SavedModel()
    pb_path = os.path.join(version_dir, SAVED_MODEL_FILE)
    if os.path.exists(pb_path):
        try:
            proto.ParseFromString(_read_file(pb_path))
        except ServingError:
            raise
        except Exception:  # protobuf's DecodeError (and the C++ parser's refusals)
            raise ServingError("DATA_LOSS", f"Can't parse {pb_path} as binary proto") from None
        return proto
    pbtxt_path = os.path.join(version_dir, SAVED_MODEL_PBTXT)
    if os.path.exists(pbtxt_path):
        try:
            text_format.Parse(_read_file(pbtxt_path).decode("utf-8", "replace"), proto)
        except ServingError:
            raise
        except Exception:  # text_format.ParseError
            raise ServingError("DATA_LOSS", f"Can't parse {pbtxt_path} as text proto") from None
        return proto
    raise ServingError(
        "NOT_FOUND", "Could not find SavedModel .pb or .pbtxt at supplied export directory "
                     f"path: {version_dir}. Check that the directory exists and that you have "
                     "the right permissions for accessing it.")


def read_meta_graph(version_dir: str, tags=SERVE_TAGS):
    """``reader.cc``, FindMetaGraphDef: the MetaGraphDef whose tag set equals ``tags``."""
    saved_model = read_saved_model(version_dir)
    wanted = " ".join(sorted(tags))
    log.info("Reading meta graph with tags { %s }", wanted)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return meta_graph
    raise ServingError(
        "NOT_FOUND", f"Could not find meta graph def matching supplied tags: {{ {wanted} }}. "
                     "To inspect available tag-sets in the SavedModel, please use the "
                     "SavedModel CLI: `saved_model_cli`")


def _tensor_info(proto) -> TensorInfo:
    shape = None if proto.tensor_shape.unknown_rank else tuple(
        dim.size for dim in proto.tensor_shape.dim)
    return TensorInfo(proto.name, protos.types_pb2.DataType.Name(proto.dtype), shape)


def signatures_of(meta_graph) -> dict[str, SignatureDef]:
    """Every SignatureDef of the MetaGraphDef, each carrying its proto (for exact metadata)."""
    return {
        name: SignatureDef(
            signature.method_name,
            {alias: _tensor_info(info) for alias, info in signature.inputs.items()},
            {alias: _tensor_info(info) for alias, info in signature.outputs.items()},
            proto=signature)
        for name, signature in meta_graph.signature_def.items()}


def read_signatures(version_dir: str, tags=SERVE_TAGS) -> dict[str, SignatureDef]:
    """What GetModelMetadata reports for the directory (no TensorFlow needed)."""
    return signatures_of(read_meta_graph(version_dir, tags))
