"""Validation of a parsed golden document (format 1): every problem at once, each naming the
field and, where it applies, the example index.

Rules that need another field's value stay silent when that field is itself invalid: its own
problem is already reported, and judging against a value that is not there only adds noise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import numpy as np

from exporter.canary.golden_npz import check_example_axis
from exporter.canary.golden_types import Calibration, OutputNoise, Provenance, Tolerance
from exporter.canary.json_arrays import (
    NUMBER, canonical_strings, json_to_array, json_type_name, kind_of_array,
    shape_text)
from exporter.canary.request_json import (
    BARE, INPUTS, INSTANCES, RequestTensors, check_example_counts, parse_request, unknown_key)
from exporter.suggest import suggestion

FORMAT_VERSION = 1
TOP_KEYS = ("format", "model", "signature_name", "request", "expected", "labels",
            "label_output", "min_accuracy", "tolerances", "data", "provenance")
TOLERANCE_KEYS = ("atol", "rtol", "top1")
PROVENANCE_KEYS = ("model", "version", "recorded_at", "protocol", "tool")
# Optional: files recorded with --calibrate carry the measured noise; no other key is
# optional, so a reader that predates it refuses such a file by naming the key.
CALIBRATION = "calibration"
CALIBRATION_KEYS = ("runs", "batch_size", "factor", "min_atol", "outputs")
NOISE_KEYS = ("between_runs", "between_batch_sizes", "atol")
PROTOCOLS = ("grpc", "rest")
ALL_OUTPUTS = "*"
# TF Serving refuses a rank-0 output in a row reply (util/json_tensor.cc,
# MakeRowFormatJsonFromTensors: "has no shape information"); over gRPC the request's format
# does not matter, so a columnar request costs nothing and works over both protocols.
_ROW_REQUEST_SCALAR = ("a scalar (no example axis) needs a columnar request (\"inputs\"): TF "
                      "Serving refuses to answer a row request (\"instances\") with one")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)


@dataclass
class ValidGolden:
    model: str
    signature_name: str
    request: RequestTensors
    expected: dict[str, np.ndarray]
    labels: np.ndarray | None
    label_output: str | None
    min_accuracy: float | None
    tolerances: dict[str, Tolerance]
    provenance: Provenance


def show(value) -> str:
    """A value quoted for a message, cut short so one huge string cannot flood the output."""
    text = json.dumps(value) if isinstance(value, (str, int, float)) else json_type_name(value)
    return text if len(text) <= 60 else text[:45] + '..."'


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value) -> bool:
    """A finite number >= 0: a tolerance, or a measured difference."""
    return _is_number(value) and math.isfinite(value) and value >= 0


class _Validator:
    def __init__(self, document: dict, read_data: Callable[[str], tuple[dict, list[str]]]):
        self.doc = document
        self.read_data = read_data
        self.problems: list[str] = []
        self.data: dict[str, np.ndarray] = {}
        # An unreadable data file would also make request/expected/labels look "missing".
        self.data_failed = False

    def add(self, field: str, message: str) -> None:
        self.problems.append(f"{field}: {message}")

    def keys(self, field: str, value: dict, known: tuple, required: tuple) -> None:
        for key in value:
            if key not in known:
                self.problems.append(unknown_key(f"{field}.{key}", key, known))
        for key in required:
            if key not in value:
                self.add(f"{field}.{key}", "required")

    def string(self, field: str, value, *, required: bool = True) -> str | None:
        if isinstance(value, str):
            return value
        if value is not None or required:
            self.add(field, f"expected a string, got {json_type_name(value)}")
        return None

    # ---- the whole document --------------------------------------------------------------

    def run(self) -> ValidGolden | None:
        doc = self.doc
        if not self._format_is_readable():
            return None
        for key in doc:
            if key not in TOP_KEYS:
                self.problems.append(unknown_key(key, key, TOP_KEYS))
        model = self._model()
        signature_name = self.string("signature_name", doc.get("signature_name"), required=False)
        self._data()
        request = self._request(signature_name)
        n_examples = request.n_examples if request else None
        expected = self._expected(request)
        labels = self._labels(n_examples)
        tolerances = self._tolerances(expected)
        label_output = self._label_output(expected, tolerances, labels)
        min_accuracy = self._min_accuracy(labels)
        provenance = self._provenance(model, expected)
        if self.problems:
            return None
        if signature_name is None:
            signature_name = request.signature_name or ""
        return ValidGolden(model, signature_name, request, expected, labels, label_output,
                           min_accuracy, tolerances, provenance)

    def _format_is_readable(self) -> bool:
        if "format" not in self.doc:
            self.add("format", f"required (this tfserving-exporter writes format {FORMAT_VERSION})")
            return True
        value = self.doc["format"]
        if not _is_int(value):
            self.add("format", f"expected an integer, got {json_type_name(value)}")
        elif value > FORMAT_VERSION:
            # Keys of a newer format would show up as "unknown": say the one thing that matters.
            self.add("format", f"format {value} was written by a newer tfserving-exporter "
                               f"(this one reads format {FORMAT_VERSION}); upgrade to load it")
            return False
        elif value != FORMAT_VERSION:
            self.add("format", f"unsupported format {value} (expected {FORMAT_VERSION})")
        return True

    def _model(self) -> str | None:
        if "model" not in self.doc:
            self.add("model", "required")
            return None
        model = self.string("model", self.doc["model"])
        if model == "":
            self.add("model", "must not be empty")
            return None
        return model

    def _data(self) -> None:
        if "data" not in self.doc:
            return
        name = self.string("data", self.doc["data"])
        if name is None:
            return
        if not name:
            self.add("data", "must not be empty")
            return
        arrays, problems = self.read_data(name)
        self.problems += problems
        self.data_failed = bool(problems)
        for key in arrays:
            section, _, alias = key.partition("/")
            if not ((key in (INPUTS, "labels")) or (section in (INPUTS, "expected") and alias)):
                self.add(f"data[{key}]", "unknown array (expected inputs/<alias>, "
                                         "expected/<alias> or labels)")
        self.data = arrays

    # ---- request -------------------------------------------------------------------------

    def _request(self, signature_name: str | None) -> RequestTensors | None:
        inputs = {key: array for key, array in self.data.items()
                  if key == INPUTS or key.startswith(INPUTS + "/")}
        if inputs:
            if "request" in self.doc:
                self.add("request", "must be absent when data holds the inputs "
                                    "(inputs/<alias> arrays)")
                return None
            return self._request_from_data(inputs)
        if "request" not in self.doc:
            if not self.data_failed:
                self.add("request", "required (or inputs/<alias> arrays in data)")
            return None
        request = parse_request(self.doc["request"], "request", self.problems)
        if request is None:
            return None
        if (signature_name is not None and request.signature_name is not None
                and request.signature_name != signature_name):
            self.add("request.signature_name", f"{show(request.signature_name)} differs from "
                                               f"signature_name {show(signature_name)}")
            return None
        return request

    def _request_from_data(self, inputs: dict[str, np.ndarray]) -> RequestTensors | None:
        if INPUTS in inputs and len(inputs) > 1:
            self.add("data[inputs]", "an unnamed input cannot be combined with inputs/<alias>")
            return None
        arrays = {key.partition("/")[2]: array for key, array in inputs.items()}
        if not all(check_example_axis(key, array, self.problems) for key, array in inputs.items()):
            return None
        if not check_example_counts(inputs, "data", self.problems):
            return None
        named = BARE not in arrays
        return RequestTensors(INPUTS, named, arrays, None)

    # ---- expectations --------------------------------------------------------------------

    def _expected(self, request: RequestTensors | None) -> dict[str, np.ndarray] | None:
        from_data = {key.partition("/")[2]: array for key, array in self.data.items()
                     if key.startswith("expected/")}
        if from_data:
            if "expected" in self.doc:
                self.add("expected", "must be absent when data holds expected/<alias> arrays")
                return None
            fields = {alias: f"data[expected/{alias}]" for alias in from_data}
            if not all(check_example_axis(f"expected/{alias}", array, self.problems)
                       for alias, array in from_data.items() if array.ndim):
                return None
            expected = {alias: canonical_strings(array) for alias, array in from_data.items()}
        else:
            expected, fields = self._expected_from_json()
            if expected is None:
                return None
        if request is not None:
            for alias, array in expected.items():
                if not array.ndim:
                    if request.format == INSTANCES:
                        self.add(fields[alias], _ROW_REQUEST_SCALAR)
                elif array.shape[0] != request.n_examples:
                    self.add(fields[alias], f"{array.shape[0]} examples, the request has "
                                            f"{request.n_examples}")
        return expected

    def _expected_from_json(self):
        if "expected" not in self.doc:
            if not self.data_failed:
                self.add("expected", "required (or expected/<alias> arrays in data)")
            return None, None
        value = self.doc["expected"]
        if not isinstance(value, dict):
            self.add("expected", f"expected an object of outputs, got {json_type_name(value)}")
            return None, None
        if not value:
            self.add("expected", "needs at least one output")
            return None, None
        expected, fields = {}, {}
        for alias, tensor in value.items():
            fields[alias] = f"expected.{alias}"
            if alias == "":
                self.add("expected", "output alias must not be empty")
                continue
            # scalar: an output without example axis (shape []), one value for the request
            array = json_to_array(tensor, fields[alias], self.problems, scalar=True)
            if array is not None:
                expected[alias] = array
        if len(expected) != len(value):
            return None, None
        return expected, fields

    def _labels(self, n_examples: int | None) -> np.ndarray | None:
        if "labels" in self.data:
            if "labels" in self.doc:
                self.add("labels", "must be absent when data holds a labels array")
                return None
            labels, field = self.data["labels"], "data[labels]"
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                self.add(field, f"expected a 1-D array of integers, got {labels.dtype} of shape "
                                f"{shape_text(labels.shape)}")
                return None
            if labels.size and labels.min() < 0:
                self.add(field, "class ids must not be negative")
                return None
            labels = labels.astype(np.int64)
        elif "labels" in self.doc:
            labels, field = self._labels_from_json(self.doc["labels"]), "labels"
            if labels is None:
                return None
        else:
            return None
        if n_examples is not None and labels.shape[0] != n_examples:
            self.add(field, f"{labels.shape[0]} labels for {n_examples} examples")
            return None
        return labels

    def _labels_from_json(self, value) -> np.ndarray | None:
        if not isinstance(value, list):
            self.add("labels", f"expected a list of integers, got {json_type_name(value)}")
            return None
        ok = True
        for index, label in enumerate(value):
            if not _is_int(label):
                self.add(f"labels[{index}]", f"expected an integer, got {json_type_name(label)}")
                ok = False
            elif not 0 <= label < 1 << 63:
                self.add(f"labels[{index}]", f"class ids must be between 0 and 2^63-1, got {show(label)}")
                ok = False
        return np.array(value, dtype=np.int64) if ok else None

    # ---- tolerances and classes ----------------------------------------------------------

    def _tolerances(self, expected: dict | None) -> dict[str, Tolerance] | None:
        value = self.doc.get("tolerances", {})
        if not isinstance(value, dict):
            self.add("tolerances", f"expected an object, got {json_type_name(value)}")
            return None
        given: dict[str, dict] = {}
        for alias, settings in value.items():
            field = f"tolerances.{alias}"
            if alias != ALL_OUTPUTS and expected is not None and alias not in expected:
                self.add(field, "not an expected output"
                         + suggestion(alias, list(expected), "expected outputs"))
                continue
            parsed = self._tolerance(field, settings)
            if parsed is not None:
                given[alias] = parsed
        if expected is None or len(given) != len(value):
            return None
        defaults = given.get(ALL_OUTPUTS, {})
        tolerances = {alias: Tolerance(**{**defaults, **given.get(alias, {})}) for alias in expected}
        return tolerances if self._top1_shapes(expected, tolerances) else None

    def _tolerance(self, field: str, settings) -> dict | None:
        if not isinstance(settings, dict):
            self.add(field, f"expected an object with atol, rtol, top1, got {json_type_name(settings)}")
            return None
        result, ok = {}, True
        for key, value in settings.items():
            if key not in TOLERANCE_KEYS:
                self.problems.append(unknown_key(f"{field}.{key}", key, TOLERANCE_KEYS))
                ok = False
            elif key == "top1":
                if isinstance(value, bool):
                    result[key] = value
                else:
                    self.add(f"{field}.top1", f"expected a boolean, got {json_type_name(value)}")
                    ok = False
            elif not _is_size(value):
                self.add(f"{field}.{key}", f"expected a finite number >= 0, got {show(value)}")
                ok = False
            else:
                result[key] = float(value)
        return result if ok else None

    def _top1_shapes(self, expected: dict, tolerances: dict[str, Tolerance]) -> bool:
        ok = True
        for alias, tolerance in tolerances.items():
            array = expected[alias]
            if tolerance.top1 is not None and not (
                    kind_of_array(array) == NUMBER and array.ndim >= 2 and array.shape[-1] >= 2):
                self.add(f"tolerances.{alias}.top1", "needs numeric class scores of shape "
                         f"[examples, ..., classes >= 2], got {_describe(array)}")
                ok = False
        return ok

    def _label_output(self, expected, tolerances, labels) -> str | None:
        value = self.doc.get("label_output")
        if value is None and "label_output" not in self.doc:
            if labels is None or tolerances is None:
                return None
            flagged = [alias for alias, tolerance in tolerances.items() if tolerance.top1 is not None]
            if len(flagged) != 1:
                which = f"{len(flagged)} outputs have top1 ({', '.join(flagged)})" if flagged \
                    else "no output has top1"
                self.add("labels", f"set label_output or mark exactly one output with top1; {which}")
                return None
            value = flagged[0]
        elif not isinstance(value, str):
            self.add("label_output", f"expected a string, got {json_type_name(value)}")
            return None
        elif "labels" not in self.doc and "labels" not in self.data:
            self.add("label_output", "needs labels")
            return None
        elif expected is not None and value not in expected:
            self.add("label_output", f"{show(value)} is not an expected output"
                     + suggestion(value, list(expected), "expected outputs"))
            return None
        if expected is None or labels is None:
            return None
        array = expected[value]
        field = "data[labels]" if "labels" in self.data else "labels"
        if (kind_of_array(array) == NUMBER and array.dtype.kind in "iu" and array.ndim
                and array[0].size == 1):
            return value
        if kind_of_array(array) == NUMBER and array.ndim == 2 and array.shape[1] >= 2:
            classes = array.shape[1]
            for index in np.flatnonzero(labels >= classes)[:5]:
                self.add(f"{field}[{index}]", f"class {labels[index]} out of range for "
                                              f"{show(value)} with {classes} classes")
            return value
        self.add("label_output", f"{show(value)} cannot give one class per example: needs "
                 "integers with one value per example or scores of shape [examples, classes], "
                 f"got {_describe(array)}")
        return None

    def _min_accuracy(self, labels) -> float | None:
        if "min_accuracy" not in self.doc:
            return None
        value = self.doc["min_accuracy"]
        if not _is_number(value) or not (0 <= value <= 1):
            self.add("min_accuracy", f"expected a number between 0 and 1, got {show(value)}")
            return None
        if "labels" not in self.doc and "labels" not in self.data:
            self.add("min_accuracy", "needs labels")
            return None
        return float(value)

    # ---- provenance ----------------------------------------------------------------------

    def _provenance(self, model: str | None, expected: dict | None) -> Provenance | None:
        if "provenance" not in self.doc:
            self.add("provenance", "required (model, version, recorded_at, protocol, tool)")
            return None
        value = self.doc["provenance"]
        if not isinstance(value, dict):
            self.add("provenance", f"expected an object, got {json_type_name(value)}")
            return None
        before = len(self.problems)
        self.keys("provenance", value, PROVENANCE_KEYS + (CALIBRATION,), PROVENANCE_KEYS)
        recorded_model = self.string("provenance.model", value.get("model"), required=False)
        if recorded_model is not None and model is not None and recorded_model != model:
            self.add("provenance.model", f"{show(recorded_model)} differs from model {show(model)}")
        version = value.get("version")
        if version is not None and not _is_int(version):
            self.add("provenance.version", f"expected an integer or null, got {json_type_name(version)}")
        recorded_at = self.string("provenance.recorded_at", value.get("recorded_at"), required=False)
        if recorded_at is not None and not _is_rfc3339(recorded_at):
            self.add("provenance.recorded_at", "expected an RFC 3339 timestamp such as "
                     f'"2026-11-22T13:00:00Z", got {show(recorded_at)}')
        protocol = self.string("provenance.protocol", value.get("protocol"), required=False)
        if protocol is not None and protocol not in PROTOCOLS:
            self.add("provenance.protocol", f"must be one of grpc, rest, got {show(protocol)}")
        self.string("provenance.tool", value.get("tool"), required=False)
        calibration = None
        if CALIBRATION in value:
            calibration = self._calibration(value[CALIBRATION], expected)
        if len(self.problems) > before:
            return None
        return Provenance(value["model"], version, recorded_at, protocol, value["tool"],
                          calibration)

    def _calibration(self, value, expected: dict | None) -> Calibration | None:
        field = f"provenance.{CALIBRATION}"
        if not isinstance(value, dict):
            self.add(field, f"expected an object, got {json_type_name(value)}")
            return None
        before = len(self.problems)
        self.keys(field, value, CALIBRATION_KEYS, CALIBRATION_KEYS)
        for key in ("runs", "batch_size"):
            if key in value and not (_is_int(value[key]) and value[key] >= 1):
                self.add(f"{field}.{key}", f"expected an integer >= 1, got {show(value[key])}")
        if "factor" in value and not (_is_size(value["factor"]) and value["factor"] > 0):
            self.add(f"{field}.factor", f"expected a finite number > 0, got {show(value['factor'])}")
        if "min_atol" in value and not _is_size(value["min_atol"]):
            self.add(f"{field}.min_atol", f"expected a finite number >= 0, got "
                                          f"{show(value['min_atol'])}")
        outputs = value.get("outputs", {})
        if not isinstance(outputs, dict):
            self.add(f"{field}.outputs", f"expected an object, got {json_type_name(outputs)}")
            return None
        noise = {alias: self._noise(f"{field}.outputs.{alias}", alias, settings, expected)
                 for alias, settings in outputs.items()}
        if len(self.problems) > before:
            return None
        return Calibration(value["runs"], value["batch_size"], float(value["factor"]),
                           float(value["min_atol"]), noise)

    def _noise(self, field: str, alias: str, value, expected: dict | None) -> OutputNoise | None:
        if expected is not None and alias not in expected:
            self.add(field, "not an expected output"
                     + suggestion(alias, list(expected), "expected outputs"))
            return None
        if not isinstance(value, dict):
            self.add(field, f"expected an object with {', '.join(NOISE_KEYS)}, got "
                            f"{json_type_name(value)}")
            return None
        before = len(self.problems)
        self.keys(field, value, NOISE_KEYS, NOISE_KEYS)
        for key in NOISE_KEYS:
            # null: no runs at batch size 1 (the set goes in one request of one example, or
            # must go whole)
            nullable = key == "between_batch_sizes"
            if key in value and not (_is_size(value[key]) or (nullable and value[key] is None)):
                self.add(f"{field}.{key}", "expected a finite number >= 0"
                         + (" or null" if nullable else "") + f", got {show(value[key])}")
        if len(self.problems) > before:
            return None
        return OutputNoise(float(value["between_runs"]),
                           None if value["between_batch_sizes"] is None
                           else float(value["between_batch_sizes"]), float(value["atol"]))


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.fullmatch(text):
        return False
    try:  # the pattern admits month 13 or hour 25; the calendar does not
        datetime.fromisoformat(text[:19])
    except ValueError:
        return False
    return True


def _describe(array: np.ndarray) -> str:
    return f"{kind_of_array(array) or array.dtype}s of shape {shape_text(array.shape)}"


def validate_document(document, read_data: Callable[[str], tuple[dict, list[str]]]
                      ) -> tuple[ValidGolden | None, list[str]]:
    """The golden set a parsed document describes, or its problems (without the file name).
    ``read_data(name)`` returns the arrays of the ``data`` file and problems reading it."""
    if not isinstance(document, dict):
        return None, [f"top level must be a JSON object, got {json_type_name(document)}"]
    validator = _Validator(document, read_data)
    result = validator.run()
    return result, validator.problems
