"""Request semantics shared by the REST and gRPC front ends.

Both front ends resolve classify/regress signatures with the same checks and texts
(``classifier.cc`` / ``regressor.cc``), render signatures as ``SignatureDef`` protos (gRPC
metadata, REST metadata JSON, and ``DebugString()`` inside error messages), and bound inference
by a deadline (REST ``--rest_api_timeout_in_ms``, gRPC the client's deadline).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from google.protobuf import text_format

from tfserving_simulator.errors import ServingError
from tfserving_simulator.models import SignatureDef, TensorInfo
from tfserving_wire import protos
from tfserving_wire.model_status import DEFAULT_SIGNATURE

T = TypeVar("T")

# TensorFlow's DirectSession wording when RunOptions.timeout_in_ms expires.
SESSION_TIMEOUT_MESSAGE = "Timed out waiting for notification"


def signature_name_or_default(name: str) -> str:
    return name or DEFAULT_SIGNATURE


def tensor_info_proto(info: TensorInfo):
    proto = protos.meta_graph_pb2.TensorInfo()
    proto.name = info.name
    proto.dtype = protos.types_pb2.DataType.Value(info.dtype)
    if info.shape is None:
        proto.tensor_shape.unknown_rank = True
    else:
        for size in info.shape:
            proto.tensor_shape.dim.add().size = -1 if size is None else int(size)
    return proto


def signature_def_proto(signature: SignatureDef):
    """The SignatureDef as TF Serving holds it: a real SavedModel's own proto as read from the
    file (so metadata is exactly the file's), else one built from the stand-in's fields."""
    if signature.proto is not None:
        return signature.proto
    proto = protos.meta_graph_pb2.SignatureDef()
    proto.method_name = signature.method_name
    for alias, info in signature.inputs.items():
        proto.inputs[alias].CopyFrom(tensor_info_proto(info))
    for alias, info in signature.outputs.items():
        proto.outputs[alias].CopyFrom(tensor_info_proto(info))
    return proto


def signature_def_map_proto(signatures: dict[str, SignatureDef]):
    proto = protos.get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signatures.items():
        proto.signature_def[name].CopyFrom(signature_def_proto(signature))
    return proto


def _debug_string(signature: SignatureDef) -> str:
    return text_format.MessageToString(signature_def_proto(signature))


def _lookup(signatures: dict[str, SignatureDef], name: str) -> SignatureDef:
    name = signature_name_or_default(name)
    if name not in signatures:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {name}")
    return signatures[name]


def classification_signature(signatures: dict[str, SignatureDef], name: str) -> SignatureDef:
    """``PreProcessClassification``: one ``inputs`` input, ``classes`` and/or ``scores``."""
    signature = _lookup(signatures, name)
    if len(signature.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise ServingError("INVALID_ARGUMENT", "Expected one or two output Tensors, found "
                                               f"{len(signature.outputs)}")
    if "inputs" not in signature.inputs:
        raise ServingError("INVALID_ARGUMENT", "No classification inputs found in SignatureDef: "
                                               + _debug_string(signature))
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        # classifier.cc, PreProcessClassification (what classify on a regress signature gets).
        raise ServingError("INVALID_ARGUMENT", "Expected classification signature outputs to "
                                               "contain at least one of \"classes\" or "
                                               "\"scores\". Signature was: "
                                               + _debug_string(signature))
    return signature


def regression_signature(signatures: dict[str, SignatureDef], name: str) -> SignatureDef:
    """``PreProcessRegression``: exactly one ``inputs`` input and one ``outputs`` output."""
    signature = _lookup(signatures, name)
    if len(signature.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise ServingError("INVALID_ARGUMENT", "No regression inputs found in SignatureDef: "
                                               + _debug_string(signature))
    if "outputs" not in signature.outputs:
        raise ServingError("INVALID_ARGUMENT", "No regression outputs found in SignatureDef: "
                                               + _debug_string(signature))
    return signature


# The deadline of the inference running on this thread, for work that can be told about it:
# a real graph's Session::Run gets it as RunOptions.timeout_in_ms (as TF Serving passes its
# own), so a run the caller gave up on also stops instead of going on in the background.
_deadline = threading.local()


def remaining_seconds() -> float | None:
    """Seconds left for the inference on this thread; None when it has no deadline."""
    at = getattr(_deadline, "at", None)
    return None if at is None else at - time.monotonic()


def run_with_deadline(work: Callable[[], T], timeout_seconds: float | None) -> T:
    """Run ``work`` but give up with DEADLINE_EXCEEDED after ``timeout_seconds``.

    Injected hangs and latency cannot be interrupted from outside, so the work runs on a
    daemon thread; an abandoned thread ends when its fault is cleared, the simulator stops, or
    the fault module's own bound expires.
    """
    if timeout_seconds is None:
        return work()
    if timeout_seconds <= 0:
        raise ServingError("DEADLINE_EXCEEDED", SESSION_TIMEOUT_MESSAGE)
    outcome: dict[str, object] = {}
    finished = threading.Event()
    deadline = time.monotonic() + timeout_seconds

    def target() -> None:
        _deadline.at = deadline
        try:
            outcome["value"] = work()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = err
        finally:
            finished.set()

    threading.Thread(target=target, name="simulator-inference", daemon=True).start()
    if not finished.wait(timeout_seconds):
        raise ServingError("DEADLINE_EXCEEDED", SESSION_TIMEOUT_MESSAGE)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
