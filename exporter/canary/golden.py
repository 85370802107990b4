"""Golden sets: a fixed batch of predict requests with recorded answers (file format 1).

A golden file is JSON (``golden_validate`` states every rule):

    {"format": 1, "model": "half_plus_two", "signature_name": "serving_default",
     "request": {"instances": [[1.0], [2.0], [5.0]]},
     "expected": {"y": [[2.5], [3.0], [4.5]]},
     "tolerances": {"y": {"atol": 1e-6, "rtol": 1e-6}},
     "provenance": {"model": "half_plus_two", "version": 123, "recorded_at": "...",
                    "protocol": "grpc", "tool": "tfserving-exporter 0.1.0"}}

with large arrays optionally in a ``data`` .npz beside it. This package does no network I/O:
the runner sends ``GoldenBatch.rest_body()`` or ``GoldenBatch.tensors()``, maps the reply with
``parse_rest_predict_reply`` (REST) and compares with ``exporter.canary.compare``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np

from exporter.canary.errors import GoldenError, SchemaError
from exporter.canary.golden_npz import read_npz
from exporter.canary.golden_types import Provenance, Tolerance
from exporter.canary.golden_validate import ValidGolden, validate_document
from exporter.canary.golden_write import golden_document, write_golden
from exporter.canary.json_arrays import dumps_compact
from exporter.canary.reply_json import parse_rest_predict_reply
from exporter.canary.request_json import merge_requests
from exporter.files import FileReadError, read_regular_file
from exporter.tfserving.types import TensorSpec

__all__ = [
    "GoldenBatch", "GoldenError", "GoldenSet", "Provenance", "SchemaError", "Tolerance",
    "golden_document", "load_golden", "merge_requests", "parse_rest_predict_reply",
    "write_golden",
]

# Golden files are meant to be read by people; big arrays belong in the data .npz.
MAX_FILE_BYTES = 32 << 20


class GoldenSet:
    """A validated golden set. Arrays have the example axis first; strings in ``expected`` are
    ``bytes`` (TF Serving's DT_STRING), whether the file wrote them as text or b64."""

    def __init__(self, path: str, valid: ValidGolden) -> None:
        self.path = path
        self.model = valid.model
        self.signature_name = valid.signature_name
        self.request_format = valid.request.format  # "instances" | "inputs"
        self.n_examples = valid.request.n_examples
        # None when the request has one unnamed input (single-input signatures only).
        self.input_aliases: tuple[str, ...] | None = (
            tuple(valid.request.arrays) if valid.request.named else None)
        self.expected = valid.expected
        self.labels = valid.labels
        self.label_output = valid.label_output
        self.min_accuracy = valid.min_accuracy
        self.tolerances = valid.tolerances
        self.provenance = valid.provenance
        self._request = valid.request
        arrays = [*valid.request.arrays.values(), *valid.expected.values()]
        arrays += [valid.labels] if valid.labels is not None else []
        self.nbytes = sum(_array_bytes(array) for array in arrays)

    def batches(self, batch_size: int) -> list["GoldenBatch"]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return [GoldenBatch(self, start, min(start + batch_size, self.n_examples))
                for start in range(0, self.n_examples, batch_size)]

    def __repr__(self) -> str:
        return (f"GoldenSet({self.path!r}, model={self.model!r}, examples={self.n_examples}, "
                f"outputs={list(self.expected)})")


class GoldenBatch:
    """Examples [start, stop) of a golden set, as a request and its expectations."""

    def __init__(self, golden: GoldenSet, start: int, stop: int) -> None:
        self.golden = golden
        self.start = start
        self.stop = stop

    def rest_body(self) -> bytes:
        """TF Serving REST predict JSON in the file's own format, signature name included when
        set; floats round-trip exactly, NaN/Infinity as bare tokens, bytes as {"b64": ...}."""
        body = self.golden._request.body(self.start, self.stop, self.golden.signature_name)
        return dumps_compact(body).encode("utf-8")

    def tensors(self, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """Arrays per input alias for gRPC, typed from the signature; SchemaError when the
        request does not fit the signature's inputs."""
        return self.golden._request.tensors(self.start, self.stop, inputs)

    def labels(self) -> np.ndarray | None:
        labels = self.golden.labels
        return None if labels is None else labels[self.start:self.stop]

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        return f"GoldenBatch({self.golden.model!r}, {self.start}:{self.stop})"


def load_golden(path: str) -> GoldenSet:
    """Read and validate a golden file; GoldenError lists every problem, one per line."""
    document = parse_golden_json(_read_capped(path), path)
    base_dir = os.path.dirname(path)
    valid, problems = validate_document(document, lambda name: read_npz(os.path.join(base_dir, name)))
    if problems:
        raise GoldenError([f"{path}: {problem}" for problem in problems])
    return GoldenSet(path, valid)


def _read_capped(path: str) -> bytes:
    try:
        return read_regular_file(path, MAX_FILE_BYTES, consistent=True)
    except FileReadError as error:
        if error.too_large:
            raise GoldenError([f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; put large "
                               "arrays in a data .npz (write_golden(..., npz=True))"]) from None
        raise GoldenError([f"{path}: cannot read golden file: {error.reason}"]) from None


def parse_golden_json(raw: bytes, path: str):
    """JSON with its NaN/Infinity tokens; syntax errors carry line and column, and duplicate
    keys are errors (json would silently keep the last one)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise GoldenError([f"{path}: not UTF-8 text (invalid byte at offset {error.start})"]) from None
    duplicates: list[str] = []

    def no_duplicates(pairs):
        document = {}
        for key, value in pairs:
            if key in document and key not in duplicates:
                duplicates.append(key)
            document[key] = value
        return document

    try:
        document = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as error:
        raise GoldenError([f"{path}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"]) from None
    except RecursionError:
        raise GoldenError([f"{path}: invalid JSON: nested too deeply"]) from None
    except ValueError as error:  # e.g. an integer literal with more than 4300 digits
        raise GoldenError([f"{path}: invalid JSON: {error}"]) from None
    if duplicates:
        raise GoldenError([f'{path}: duplicate key "{key}"' for key in duplicates])
    return document


def _array_bytes(array: np.ndarray) -> int:
    """Memory an array holds: its buffer, plus the objects of an object array."""
    if array.dtype.kind != "O":
        return int(array.nbytes)
    return int(array.nbytes) + sum(sys.getsizeof(item) for item in array.reshape(-1))
