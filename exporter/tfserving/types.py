"""Protocol-neutral views of what TF Serving reports, shared by the gRPC and REST clients."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from exporter.textclip import clip_text

# Error codes that mean "TF Serving answered": anything else is a transport-level failure.
_UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CONNECTION", "TIMEOUT"})


# TF Serving's versions are int64 (ServableId.version), taken from non-negative integer
# directory names.
MAX_VERSION = (1 << 63) - 1


def parse_version(raw: object) -> int:
    """A version as a reply carries it (an int over gRPC, a decimal string in REST's JSON)
    -> int; ValueError for anything TF Serving could not have sent."""
    if isinstance(raw, bool):
        raise ValueError(f"version {raw!r} is not an integer")
    if isinstance(raw, str):
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
            raise ValueError(f"version {clip_text(raw, 40)!r} is not a decimal int64")
        raw = int(raw)
    if not isinstance(raw, int):
        raise ValueError(f"version of type {type(raw).__name__} is not an integer")
    if not 0 <= raw <= MAX_VERSION:
        shown = raw if raw.bit_length() <= 64 else f"of {raw.bit_length()} bits"
        raise ValueError(f"version {shown} is outside 0..2^63-1")
    return raw


@dataclass(frozen=True)
class TensorSpec:
    alias: str
    dtype: str  # TF enum name, e.g. "DT_FLOAT"
    shape: tuple[int, ...] | None  # None = unknown rank


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


# Ceilings on what one metadata reply is turned into, whatever the configured limits: a reply
# with 1e5 signatures fits in a few MiB on the wire but would take hundreds of MiB as objects.
# The configured limits (limits.max_signatures_per_version, ...) cut further when exporting.
MAX_SIGNATURES_PER_REPLY = 1000
MAX_TENSORS_PER_REPLY = 10_000


class SignatureMap(dict):
    """Signatures by name, as converted from one metadata reply; ``left_out`` counts the
    signatures and tensors that the reply ceilings above kept out."""

    def __init__(self, *args, left_out_signatures: int = 0, left_out_tensors: int = 0) -> None:
        super().__init__(*args)
        self.left_out_signatures = left_out_signatures
        self.left_out_tensors = left_out_tensors


def first_names(names, count: int) -> list:
    """The ``count`` smallest of ``names`` (a mapping's keys, or any iterable), in order,
    without listing all of them."""
    return heapq.nsmallest(max(count, 0), names, key=str)


# TF2 SavedModels carry their variable initialiser as a "signature" with no method and no
# inputs. TF Serving reports it in metadata (get_model_metadata_impl.cc keeps every entry of
# the signature map), but nothing can call it: it is not exported as a signature.
SAVED_MODEL_INIT_OP = "__saved_model_init_op"


def convert_signatures(raw: dict, convert_tensors) -> SignatureMap:
    """``raw``: name -> a protocol's signature object; ``convert_tensors(sig, budget)`` ->
    (method_name, inputs, outputs, tensors left out), taking at most ``budget`` tensors.
    Signatures are taken in name order, so what fits is the same on every call."""
    callable_names = (name for name in raw if name != SAVED_MODEL_INIT_OP)
    count = len(raw) - (SAVED_MODEL_INIT_OP in raw)
    # nsmallest, not sorted: a reply with 1e5 signatures must not become a list of 1e5 names.
    taken = first_names(callable_names, MAX_SIGNATURES_PER_REPLY)
    result = SignatureMap(left_out_signatures=count - len(taken))
    budget = MAX_TENSORS_PER_REPLY
    for name in taken:
        method, inputs, outputs, left_out = convert_tensors(raw[name], budget)
        budget -= len(inputs) + len(outputs)
        result.left_out_tensors += left_out
        result[str(name)] = Signature(name=str(name), method_name=method, inputs=inputs,
                                      outputs=outputs)
    return result


class TFServingError(Exception):
    """A call to TF Serving failed. ``code`` is a TF/gRPC code name (``NOT_FOUND``), or
    ``BAD_REPLY`` when TF Serving answered with something we cannot parse. The code and the
    message come from the peer, so both are clipped here, once for every path that reports
    them (logs, collector errors, canary failures)."""

    def __init__(self, protocol: str, operation: str, code: str, message: str,
                 reached: bool | None = None) -> None:
        code, message = clip_text(code, 64), clip_text(message)
        super().__init__(f"{protocol} {operation}: {code}: {message}")
        self.protocol = protocol
        self.operation = operation
        self.code = code
        self.message = message
        self._reached = reached

    @property
    def reached_server(self) -> bool:
        """True when the failure is an answer from TF Serving rather than silence."""
        if self._reached is not None:
            return self._reached
        return self.code not in _UNREACHABLE_CODES
