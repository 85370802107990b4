"""Golden files: format, validation (exact messages), writing, batches, REST bodies, replies."""

import base64
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from exporter.canary.golden import (
    GoldenError, Provenance, SchemaError, Tolerance, golden_document, load_golden, merge_requests,
    parse_rest_predict_reply, write_golden)
from exporter.canary.golden_types import Calibration, OutputNoise
from exporter.tfserving.types import TensorSpec
from tests.helpers import files_named, problems_raised

TESTDATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "testdata", "golden")
VALID_FILES = {"valid.json", "valid_classifier.json"}
PROVENANCE = Provenance(model="m", version=7, recorded_at="2026-11-22T13:00:00Z",
                        protocol="grpc", tool="tfserving-exporter 0.1.0")

# One file per validation rule, each with the exact problems it must produce. The tests run
# from TESTDATA, so the file name as given is each message's prefix.
INVALID_FILES = {
    'bad_b64.json': [
        'bad_b64.json: request.instances[1]: invalid base64 in {"b64": ...}',
        'bad_b64.json: request.instances[2]: "b64" must be a string, got number',
    ],
    'data_missing_file.json': [
        'data_missing_file.json: data: cannot read "nope.npz": No such file or directory',
    ],
    'data_not_npz.json': [
        'data_not_npz.json: data: "valid.json" is not an .npz file (not a zip archive)',
    ],
    'data_not_string.json': [
        'data_not_string.json: data: expected a string, got list',
    ],
    'duplicate_key.json': [
        'duplicate_key.json: duplicate key "model"',
    ],
    'expected_count.json': [
        'expected_count.json: expected.y: 2 examples, the request has 3',
    ],
    'expected_empty.json': [
        'expected_empty.json: expected: needs at least one output',
    ],
    'expected_missing.json': [
        'expected_missing.json: expected: required (or expected/<alias> arrays in data)',
    ],
    'expected_not_a_list.json': [
        'expected_not_a_list.json: expected.y: a scalar (no example axis) needs a columnar request '
        '("inputs"): TF Serving refuses to answer a row request ("instances") with one',
    ],
    'expected_not_object.json': [
        'expected_not_object.json: expected: expected an object of outputs, got list',
    ],
    'expected_null.json': [
        'expected_null.json: expected.y[1][0]: expected a number, got null',
    ],
    'expected_type.json': [
        'expected_type.json: expected.y[2]: expected a number, got string',
    ],
    'format_missing.json': [
        'format_missing.json: format: required (this tfserving-exporter writes format 1)',
    ],
    'format_newer.json': [
        'format_newer.json: format: format 2 was written by a newer tfserving-exporter (this one reads format 1); upgrade to load it',
    ],
    'format_not_integer.json': [
        'format_not_integer.json: format: expected an integer, got string',
    ],
    'format_unsupported.json': [
        'format_unsupported.json: format: unsupported format 0 (expected 1)',
    ],
    'inputs_counts.json': [
        'inputs_counts.json: request.inputs.b: 2 examples, but request.inputs.a has 3',
    ],
    'inputs_no_names.json': [
        'inputs_no_names.json: request.inputs: has no named inputs',
    ],
    'inputs_scalar.json': [
        'inputs_scalar.json: request.inputs: expected a list with one entry per example, got number',
    ],
    'instances_empty.json': [
        'instances_empty.json: request.instances: must not be empty',
    ],
    'instances_mixed.json': [
        'instances_mixed.json: request.instances[1]: expected an object of named inputs like example 0, got list',
    ],
    'instances_named_keys.json': [
        'instances_named_keys.json: request.instances[1]: inputs "a", "c" differ from example 0\'s "a", "b"',
    ],
    'instances_named_value.json': [
        'instances_named_value.json: request.instances[2].x[0]: expected a number, got string',
    ],
    'instances_ragged.json': [
        'instances_ragged.json: request.instances[0][1]: has 1 elements where its siblings have 2',
    ],
    'instances_shape.json': [
        "instances_shape.json: request.instances[4]: shape [2] differs from example 0's shape [1]",
    ],
    'instances_too_deep.json': [
        'instances_too_deep.json: request.instances: nested deeper than 32 levels',
    ],
    'invalid_json.json': [
        "invalid_json.json:4:3: invalid JSON: Expecting ',' delimiter",
    ],
    'label_output_not_classes.json': [
        'label_output_not_classes.json: label_output: "scores" cannot give one class per example: needs integers with one value per example or scores of shape [examples, classes], got numbers of shape [3, 1]',
    ],
    'label_output_not_string.json': [
        'label_output_not_string.json: label_output: expected a string, got number',
    ],
    'label_output_unknown.json': [
        'label_output_unknown.json: label_output: "probs" is not an expected output (expected outputs: probabilities, classes)',
    ],
    'label_output_without_labels.json': [
        'label_output_without_labels.json: label_output: needs labels',
    ],
    'labels_ambiguous_top1.json': [
        'labels_ambiguous_top1.json: labels: set label_output or mark exactly one output with top1; 2 outputs have top1 (probabilities, logits)',
    ],
    'labels_count.json': [
        'labels_count.json: labels: 4 labels for 3 examples',
    ],
    'labels_negative.json': [
        'labels_negative.json: labels[1]: class ids must be between 0 and 2^63-1, got -1',
    ],
    'labels_not_list.json': [
        'labels_not_list.json: labels: expected a list of integers, got object',
    ],
    'labels_out_of_range.json': [
        'labels_out_of_range.json: labels[1]: class 2 out of range for "probabilities" with 2 classes',
        'labels_out_of_range.json: labels[2]: class 7 out of range for "probabilities" with 2 classes',
    ],
    'labels_type.json': [
        'labels_type.json: labels[1]: expected an integer, got string',
        'labels_type.json: labels[2]: expected an integer, got number',
    ],
    'labels_without_label_output.json': [
        'labels_without_label_output.json: labels: set label_output or mark exactly one output with top1; no output has top1',
    ],
    'min_accuracy_range.json': [
        'min_accuracy_range.json: min_accuracy: expected a number between 0 and 1, got 1.5',
    ],
    'min_accuracy_without_labels.json': [
        'min_accuracy_without_labels.json: min_accuracy: needs labels',
    ],
    'model_empty.json': [
        'model_empty.json: model: must not be empty',
    ],
    'model_missing.json': [
        'model_missing.json: model: required',
        'model_missing.json: provenance.model: required',
    ],
    'nan_in_tolerance.json': [
        'nan_in_tolerance.json: tolerances.y.atol: expected a finite number >= 0, got NaN',
    ],
    'not_an_object.json': [
        'not_an_object.json: top level must be a JSON object, got list',
    ],
    'not_utf8.json': [
        'not_utf8.json: not UTF-8 text (invalid byte at offset 21)',
    ],
    'provenance_missing.json': [
        'provenance_missing.json: provenance: required (model, version, recorded_at, protocol, tool)',
    ],
    'provenance_missing_field.json': [
        'provenance_missing_field.json: provenance.tool: required',
    ],
    'provenance_model_mismatch.json': [
        'provenance_model_mismatch.json: provenance.model: "half_plus_three" differs from model "half_plus_two"',
    ],
    'provenance_not_object.json': [
        'provenance_not_object.json: provenance: expected an object, got string',
    ],
    'provenance_protocol.json': [
        'provenance_protocol.json: provenance.protocol: must be one of grpc, rest, got "http"',
    ],
    'provenance_recorded_at.json': [
        'provenance_recorded_at.json: provenance.recorded_at: expected an RFC 3339 timestamp such as "2026-11-22T13:00:00Z", got "2026-13-22T13:00:00Z"',
    ],
    'provenance_version_type.json': [
        'provenance_version_type.json: provenance.version: expected an integer or null, got string',
    ],
    'request_both_formats.json': [
        'request_both_formats.json: request: has both "instances" and "inputs"; use one',
    ],
    'request_missing.json': [
        'request_missing.json: request: required (or inputs/<alias> arrays in data)',
    ],
    'request_neither_format.json': [
        'request_neither_format.json: request: needs "instances" (rows) or "inputs" (columns)',
    ],
    'request_not_object.json': [
        'request_not_object.json: request: expected an object, got list',
    ],
    'several_mistakes.json': [
        'several_mistakes.json: format: expected an integer, got string',
        'several_mistakes.json: expectd: unknown key (did you mean "expected"?)',
        "several_mistakes.json: request.instances[1]: shape [2] differs from example 0's shape [1]",
        'several_mistakes.json: expected.y[1][0]: expected a number, got string',
        'several_mistakes.json: provenance.protocol: must be one of grpc, rest, got "http"',
    ],
    'signature_mismatch.json': [
        'signature_mismatch.json: request.signature_name: "predict" differs from signature_name "serving_default"',
    ],
    'signature_not_string.json': [
        'signature_not_string.json: signature_name: expected a string, got number',
    ],
    'tolerance_negative.json': [
        'tolerance_negative.json: tolerances.y.atol: expected a finite number >= 0, got -1',
        'tolerance_negative.json: tolerances.y.rtol: expected a finite number >= 0, got "0"',
    ],
    'tolerance_not_object.json': [
        'tolerance_not_object.json: tolerances.y: expected an object with atol, rtol, top1, got number',
    ],
    'tolerance_top1_type.json': [
        'tolerance_top1_type.json: tolerances.probabilities.top1: expected a boolean, got string',
    ],
    'tolerance_unknown_output.json': [
        'tolerance_unknown_output.json: tolerances.yy: not an expected output (did you mean "y"?)',
    ],
    'tolerances_not_object.json': [
        'tolerances_not_object.json: tolerances: expected an object, got list',
    ],
    'top1_shape.json': [
        'top1_shape.json: tolerances.y.top1: needs numeric class scores of shape [examples, ..., classes >= 2], got numbers of shape [3, 1]',
    ],
    'unknown_key.json': [
        'unknown_key.json: tolerance: unknown key (did you mean "tolerances"?)',
    ],
    'unknown_provenance_key.json': [
        'unknown_provenance_key.json: provenance.tools: unknown key (did you mean "tool"?)',
    ],
    'unknown_request_key.json': [
        'unknown_request_key.json: request.signature: unknown key (did you mean "signature_name"?)',
    ],
    'unknown_tolerance_key.json': [
        'unknown_tolerance_key.json: tolerances.y.atoll: unknown key (did you mean "atol"?)',
    ],
}


@pytest.fixture
def in_testdata(monkeypatch):
    monkeypatch.chdir(TESTDATA)


def problems_of(path):
    return problems_raised(GoldenError, load_golden, path)


# ---- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(INVALID_FILES))
def test_invalid_file_reports_exactly_its_problems(in_testdata, name):
    assert problems_of(name) == INVALID_FILES[name]


def test_every_testdata_file_is_covered_by_a_test():
    assert files_named(TESTDATA, ".json") == set(INVALID_FILES) | VALID_FILES


def test_several_problems_are_reported_at_once_one_per_line(in_testdata):
    with pytest.raises(GoldenError) as caught:
        load_golden("several_mistakes.json")
    assert str(caught.value).splitlines() == INVALID_FILES["several_mistakes.json"]
    assert len(caught.value.problems) == 5


def test_missing_file_is_reported(in_testdata):
    assert problems_of("nope.json") == ["nope.json: cannot read golden file: No such file or directory"]


def test_directory_is_reported(tmp_path):
    assert problems_of(str(tmp_path)) == [f"{tmp_path}: cannot read golden file: Is a directory"]


def test_messages_name_the_file_as_given_including_its_directory():
    path = os.path.join(TESTDATA, "expected_type.json")
    assert problems_of(path) == [f"{path}: expected.y[2]: expected a number, got string"]


def test_valid_file_loads_with_defaults_filled_in(in_testdata):
    golden = load_golden("valid.json")
    assert (golden.model, golden.signature_name, golden.request_format) == (
        "half_plus_two", "serving_default", "instances")
    assert golden.n_examples == 3 and golden.input_aliases is None
    np.testing.assert_array_equal(golden.expected["y"], [[2.5], [3.0], [4.5]])
    assert golden.tolerances == {"y": Tolerance(atol=1e-6, rtol=1e-6, top1=None)}
    assert golden.labels is None and golden.label_output is None and golden.min_accuracy is None
    assert golden.provenance == Provenance("half_plus_two", 123, "2026-11-22T13:00:00Z", "grpc",
                                           "tfserving-exporter 0.1.0")
    assert golden.nbytes == 3 * 8 * 2  # inputs and expected, float64


def test_star_tolerance_sets_defaults_that_outputs_refine(in_testdata):
    golden = load_golden("valid_classifier.json")
    assert golden.tolerances == {"probabilities": Tolerance(atol=1e-4, rtol=0.0, top1=True),
                                 "classes": Tolerance(atol=1e-4, rtol=0.0, top1=None)}
    assert golden.label_output == "probabilities" and golden.min_accuracy == 0.5
    np.testing.assert_array_equal(golden.labels, [1, 0, 1])
    assert golden.expected["classes"].dtype == np.int64


def test_labels_without_label_output_use_the_only_top1_output(tmp_path):
    document = json.load(open(os.path.join(TESTDATA, "valid_classifier.json")))
    del document["label_output"]
    path = tmp_path / "g.json"
    path.write_text(json.dumps(document))
    assert load_golden(str(path)).label_output == "probabilities"


def test_signature_name_may_come_from_the_request_alone(tmp_path):
    path = tmp_path / "g.json"
    document = json.load(open(os.path.join(TESTDATA, "valid.json")))
    del document["signature_name"]
    document["request"]["signature_name"] = "predict"
    path.write_text(json.dumps(document))
    assert load_golden(str(path)).signature_name == "predict"
    del document["request"]["signature_name"]
    path.write_text(json.dumps(document))
    assert load_golden(str(path)).signature_name == ""


JSON_VALUES = [None, True, 0, -1, 2 ** 80, 1.5, float("nan"), "", "x", [], {}, [[]], [None],
               {"b64": 1}, {"b64": "YQ"}, [[1], [1, 2]], {"x": [1, 2, 3]}]


@pytest.mark.parametrize("field", ["format", "model", "signature_name", "request", "expected",
                                   "labels", "label_output", "min_accuracy", "tolerances", "data",
                                   "provenance", "request.instances", "request.signature_name",
                                   "expected.y", "tolerances.y", "provenance.version",
                                   "provenance.model"])
def test_any_json_value_in_any_field_gives_golden_error_not_a_crash(tmp_path, field):
    for value in JSON_VALUES:
        document = json.load(open(os.path.join(TESTDATA, "valid_classifier.json")))
        document["expected"]["y"] = [[1.0], [2.0], [3.0]]
        set_field(document, field, value)
        assert_loads_or_reports(tmp_path / "g.json", document)


def set_field(document: dict, field: str, value) -> None:
    """Set a dotted field of a document, or with ``...`` delete it."""
    target = document
    *parents, last = field.split(".")
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value


def assert_loads_or_reports(path, document) -> None:
    """The document loads, or GoldenError names the file in every problem: never a crash."""
    path.write_text(json.dumps(document))
    try:
        load_golden(str(path))
    except GoldenError as error:
        assert error.problems and all(p.startswith(f"{path}: ") for p in error.problems)


@pytest.mark.parametrize("text, problem", [
    ("[" * 100000, "invalid JSON: nested too deeply"),
    ('{"format": 1' + "1" * 5000 + "}", "invalid JSON: Exceeds the limit (4300 digits)"),
    ("", "1:1: invalid JSON: Expecting value"),
])
def test_pathological_json_gives_golden_error(tmp_path, text, problem):
    path = tmp_path / "g.json"
    path.write_text(text)
    (message,) = problems_of(str(path))
    assert message.startswith(f"{path}:") and problem in message


# ---- npz side files -------------------------------------------------------------------------

def write_npz_golden(tmp_path, arrays, **document):
    np.savez(tmp_path / "g.npz", **arrays)
    base = {"format": 1, "model": "m", "data": "g.npz",
            "provenance": {"model": "m", "version": None, "recorded_at": "2026-11-22T13:00:00+01:00",
                           "protocol": "rest", "tool": "t"}}
    path = tmp_path / "g.json"
    path.write_text(json.dumps({**base, **document}))
    return str(path)


def test_npz_holds_inputs_expected_and_labels(tmp_path):
    path = write_npz_golden(tmp_path, {
        "inputs/x": np.arange(6, dtype=np.float32).reshape(3, 2),
        "inputs/name": np.array(["a", "b", "c"]),
        "expected/scores": np.array([[0.1, 0.9], [0.7, 0.3], [0.2, 0.8]], dtype=np.float32),
        "labels": np.array([1, 0, 0])}, tolerances={"scores": {"top1": False}})
    golden = load_golden(path)
    assert golden.request_format == "inputs" and golden.input_aliases == ("x", "name")
    assert golden.label_output == "scores" and golden.expected["scores"].dtype == np.float32
    body = json.loads(golden.batches(2)[1].rest_body())
    assert body == {"inputs": {"x": [[4.0, 5.0]], "name": ["c"]}}


@pytest.mark.parametrize("arrays, document, problems", [
    ({"expected/y": np.ones((3, 1))}, {}, ["request: required (or inputs/<alias> arrays in data)"]),
    ({"inputs/x": np.ones((3, 1)), "expected/y": np.ones((2, 1))}, {},
     ["data[expected/y]: 2 examples, the request has 3"]),
    ({"inputs/x": np.ones((3, 1)), "inputs/z": np.ones((4, 1)), "expected/y": np.ones((3, 1))}, {},
     ["data.inputs/z: 4 examples, but data.inputs/x has 3"]),
    ({"inputs/x": np.ones((3, 1)), "expected/y": np.ones((3, 1))}, {"request": {"instances": [1]}},
     ["request: must be absent when data holds the inputs (inputs/<alias> arrays)"]),
    ({"inputs/x": np.ones((3, 1)), "expected/y": np.ones((3, 1))}, {"expected": {"y": [1, 2, 3]}},
     ["expected: must be absent when data holds expected/<alias> arrays"]),
    ({"inputs/x": np.ones(3), "expected/y": np.ones(3), "labels": np.ones(3)}, {},
     ["data[labels]: expected a 1-D array of integers, got float64 of shape [3]"]),
    ({"inputs/x": np.ones(3), "expected/y": np.ones(3), "labels": np.array([0, 1, 2])}, {"labels": [0, 1, 2]},
     ["labels: must be absent when data holds a labels array"]),
    ({"inputs/x": np.float64(1.0), "expected/y": np.ones(3)}, {},
     ["data[inputs/x]: expected an array with one entry per example, got shape []"]),
    ({"inputs/x": np.ones(3), "expected/y": np.ones(3), "extra": np.ones(3)}, {},
     ["data[extra]: unknown array (expected inputs/<alias>, expected/<alias> or labels)"]),
    ({"inputs/x": np.ones(3), "expected/y": np.ones(3, dtype=np.complex64)}, {},
     ["data[expected/y]: dtype complex64 is not supported (numbers, booleans and strings are)"]),
    ({"inputs/x": np.ones(3), "expected/y": np.array([{"a": 1}, None, 3], dtype=object)}, {},
     ["data[expected/y]: holds pickled Python objects, which golden files refuse to load; "
      "store numbers, booleans or strings"]),
])
def test_invalid_npz_contents_are_reported(tmp_path, arrays, document, problems):
    path = write_npz_golden(tmp_path, arrays, **document)
    assert problems_of(path) == [f"{path}: {problem}" for problem in problems]


def test_corrupt_npz_is_reported(tmp_path):
    path = write_npz_golden(tmp_path, {"inputs/x": np.ones(3), "expected/y": np.ones(3)})
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (message,) = problems_of(path)
    assert message.startswith(f'{path}: data: "{tmp_path / "g.npz"}" is not a valid .npz file: ')


# ---- writing and round trips ----------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
ROUND_TRIPS = {
    "instances_bare": ({"instances": [[1.0], [2.0], [5.0]]}, {"y": np.array([[2.5], [3.0], [4.5]], np.float32)}),
    "instances_named": ({"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]},
                        {"y": np.array([0.1, 1 / 3, 2e-300])}),
    "inputs_bare": ({"inputs": [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5]]}, {"y": np.array([1, 2, 3])}),
    "inputs_named": ({"inputs": {"a": [1.0, 2.0, 3.0], "b": [[True], [False], [True]]}},
                     {"y": np.array([True, False, True]), "z": np.array([[1.0, 2.0]] * 3)}),
    "b64": ({"instances": [{"b64": base64.b64encode(b"\xff\x00\x01").decode()}, "text", {"b64": "YQ=="}]},
            {"label": np.array([b"\xff\xfe", b"cat", "dog"], dtype=object)}),
    "nan_and_infinity": ({"inputs": [[NAN, 1.0], [INF, -INF], [0.0, -0.0]]},
                         {"y": np.array([[NAN, 1.0], [INF, -INF], [1e308, -5e-324]])}),
}


def document_for(request, outputs, **extra):
    return golden_document(model="m", signature_name="serving_default", request=request,
                           outputs=outputs, provenance=PROVENANCE, **extra)


def assert_same_examples(loaded, original):
    assert loaded.n_examples == original.n_examples
    assert loaded.signature_name == original.signature_name
    assert loaded.tolerances == original.tolerances and loaded.provenance == original.provenance
    assert set(loaded.expected) == set(original.expected)
    for alias, array in original.expected.items():
        np.testing.assert_array_equal(loaded.expected[alias], array)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    for ours, theirs in zip(loaded.batches(2), original.batches(2)):
        assert columns_of(ours.rest_body()) == columns_of(theirs.rest_body())


def as_bytes(value):
    """Strings and b64 values as TF Serving sees them (an npz stores mixed strings as bytes)."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return {key: as_bytes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_bytes(item) for item in value]
    return value


def columns_of(body: bytes) -> dict:
    """A REST body's examples per input alias ("" when unnamed), whatever its format."""
    document = as_bytes(json.loads(body))
    if "instances" in document:
        rows = document["instances"]
        if isinstance(rows[0], dict):
            return {alias: [row[alias] for row in rows] for alias in rows[0]}
        return {"": rows}
    inputs = document["inputs"]
    return inputs if isinstance(inputs, dict) else {"": inputs}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_written_file_loads_back_to_the_same_set(tmp_path, case):
    request, outputs = ROUND_TRIPS[case]
    path = str(tmp_path / "g.json")
    assert write_golden(path, document_for(request, outputs)) == [path]
    golden = load_golden(path)
    for alias, array in outputs.items():
        expected = np.array([v.encode() if isinstance(v, str) else v for v in array], dtype=object) \
            if array.dtype == object else array
        np.testing.assert_array_equal(golden.expected[alias], expected)
    # The REST body re-sends the request as written (NaN/Infinity tokens, b64, repr floats).
    assert json.loads(golden.batches(golden.n_examples)[0].rest_body()) == json.loads(
        json.dumps({"signature_name": "serving_default", **request}))


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_npz_written_file_loads_back_to_the_same_examples(tmp_path, case):
    request, outputs = ROUND_TRIPS[case]
    plain = str(tmp_path / "plain.json")
    write_golden(plain, document_for(request, outputs))
    path = str(tmp_path / "big.golden.json")
    written = write_golden(path, document_for(request, outputs), npz=True)
    assert written == [path, str(tmp_path / "big.golden.npz")]
    assert json.load(open(path))["data"] == "big.golden.npz"
    original, loaded = load_golden(plain), load_golden(path)
    assert loaded.request_format == "inputs"
    assert_same_examples(loaded, original)
    specs = [TensorSpec(alias or "x", "DT_STRING" if case == "b64" else "DT_DOUBLE", None)
             for alias in (original.input_aliases or [""])]
    if case == "inputs_named":
        specs = [TensorSpec("a", "DT_DOUBLE", None), TensorSpec("b", "DT_BOOL", None)]
    if case == "instances_named":
        specs = [TensorSpec("a", "DT_INT64", None), TensorSpec("b", "DT_STRING", None)]
    for ours, theirs in zip(loaded.batches(2), original.batches(2)):
        for alias, array in theirs.tensors(specs).items():
            np.testing.assert_array_equal(ours.tensors(specs)[alias], array)


def test_labels_and_tolerances_survive_a_round_trip(tmp_path):
    tolerances = {"p": Tolerance(atol=1e-3, rtol=0.0, top1=True), "q": Tolerance()}
    document = document_for({"instances": [1, 2, 3]},
                            {"p": np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.4]], np.float32),
                             "q": np.array([1, 2, 3], np.int32)},
                            tolerances=tolerances, labels=np.array([1, 0, 0]), min_accuracy=0.6)
    for npz in (False, True):
        path = str(tmp_path / f"g{npz}.json")
        write_golden(path, document, npz=npz)
        golden = load_golden(path)
        assert golden.tolerances == tolerances and golden.label_output == "p"
        assert golden.min_accuracy == 0.6
        np.testing.assert_array_equal(golden.labels, [1, 0, 0])
        np.testing.assert_array_equal(golden.expected["p"].astype(np.float32),
                                      np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.4]], np.float32))


def test_float32_outputs_are_stored_as_float32_in_the_npz(tmp_path):
    path = str(tmp_path / "g.json")
    outputs = {"y": np.array([[0.1], [0.2], [0.3]], np.float32)}
    write_golden(path, document_for({"instances": [1.0, 2.0, 3.0]}, outputs), npz=True)
    golden = load_golden(path)
    assert golden.expected["y"].dtype == np.float32
    np.testing.assert_array_equal(golden.expected["y"], outputs["y"])
    np.testing.assert_array_equal(golden.batches(3)[0].tensors([TensorSpec("x", "DT_FLOAT", None)])["x"],
                                  np.array([1.0, 2.0, 3.0], np.float32))


def test_write_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("keep me")
    document = document_for({"instances": [1.0]}, {"y": np.array([2.5])})
    with pytest.raises(FileExistsError, match=r"g\.json already exists; refusing to overwrite it without force"):
        write_golden(str(path), document)
    assert path.read_text() == "keep me"
    write_golden(str(path), document, force=True)
    assert load_golden(str(path)).n_examples == 1


def test_write_refuses_to_overwrite_an_existing_npz_without_force(tmp_path):
    (tmp_path / "g.npz").write_bytes(b"keep")
    document = document_for({"instances": [1.0]}, {"y": np.array([2.5])})
    with pytest.raises(FileExistsError, match=r"g\.npz already exists"):
        write_golden(str(tmp_path / "g.json"), document, npz=True)
    assert not (tmp_path / "g.json").exists()


def test_invalid_document_is_not_written(tmp_path):
    path = tmp_path / "g.json"
    document = document_for({"instances": [1.0, 2.0]}, {"y": np.array([2.5])})
    with pytest.raises(GoldenError) as caught:
        write_golden(str(path), document)
    assert caught.value.problems == [f"{path}: expected.y: 1 examples, the request has 2"]
    assert os.listdir(tmp_path) == []


def test_npz_refuses_strings_ending_in_nul_which_it_cannot_keep(tmp_path):
    path = str(tmp_path / "g.json")
    document = document_for({"instances": [1.0]}, {"y": np.array([b"ab\x00"], dtype=object)})
    with pytest.raises(GoldenError) as caught:
        write_golden(path, document, npz=True)
    assert caught.value.problems == [
        f"{path}: expected/y: a value ends with a NUL character, which .npz string arrays cannot "
        "keep; write this golden set without npz"]
    assert os.listdir(tmp_path) == []
    write_golden(path, document)
    assert load_golden(path).expected["y"].tolist() == [b"ab\x00"]


def test_write_leaves_no_temporary_files(tmp_path):
    document = document_for({"instances": [1.0]}, {"y": np.array([2.5])})
    write_golden(str(tmp_path / "g.json"), document, npz=True)
    assert sorted(os.listdir(tmp_path)) == ["g.json", "g.npz"]


def test_golden_document_states_the_signature_once_and_writes_strings_readably():
    document = document_for({"signature_name": "serving_default", "instances": np.array([[1.0], [2.0]])},
                            {"name": np.array([b"cat", b"\xff"], dtype=object)})
    assert document["request"] == {"instances": [[1.0], [2.0]]}
    assert document["expected"] == {"name": ["cat", b"\xff"]}
    assert document["provenance"] == {"model": "m", "version": 7, "recorded_at": "2026-11-22T13:00:00Z",
                                      "protocol": "grpc", "tool": "tfserving-exporter 0.1.0"}


# ---- provenance.calibration (golden record --calibrate) -------------------------------------

CALIBRATION = Calibration(runs=5, batch_size=64, factor=10.0, min_atol=1e-6, outputs={
    "y": OutputNoise(between_runs=0.0, between_batch_sizes=1.2e-7, atol=1.2e-6)})


def calibrated_document():
    return golden_document(model="m", signature_name="serving_default",
                           request={"instances": [[1.0], [2.0], [5.0]]},
                           outputs={"y": np.array([[2.5], [3.0], [4.5]]),
                                    "n": np.array([1, 2, 3])},
                           provenance=dataclasses.replace(PROVENANCE, calibration=CALIBRATION))


@pytest.mark.parametrize("npz", [False, True])
def test_calibration_survives_a_round_trip(tmp_path, npz):
    path = str(tmp_path / "g.json")
    write_golden(path, calibrated_document(), npz=npz)
    assert json.load(open(path))["provenance"]["calibration"]["outputs"]["y"] == {
        "between_runs": 0.0, "between_batch_sizes": 1.2e-7, "atol": 1.2e-6}
    assert load_golden(path).provenance == dataclasses.replace(PROVENANCE,
                                                               calibration=CALIBRATION)


def test_a_file_without_calibration_loads_as_before(in_testdata):
    assert "calibration" not in json.load(open("valid.json"))["provenance"]
    assert load_golden("valid.json").provenance.calibration is None


def set_calibration_field(document: dict, field: str, value) -> None:
    set_field(document, "provenance.calibration" + (f".{field}" if field else ""), value)


@pytest.mark.parametrize("field, value, problems", [
    ("", "x", ["provenance.calibration: expected an object, got string"]),
    ("runs", 0, ["provenance.calibration.runs: expected an integer >= 1, got 0"]),
    ("batch_size", 1.5, ["provenance.calibration.batch_size: expected an integer >= 1, got 1.5"]),
    ("factor", 0, ["provenance.calibration.factor: expected a finite number > 0, got 0"]),
    ("min_atol", -1, ["provenance.calibration.min_atol: expected a finite number >= 0, got -1"]),
    ("min_atol", ..., ["provenance.calibration.min_atol: required"]),
    ("factors", 10, ['provenance.calibration.factors: unknown key (did you mean "factor"?)']),
    ("outputs", [], ["provenance.calibration.outputs: expected an object, got list"]),
    ("outputs.yy", {}, ['provenance.calibration.outputs.yy: not an expected output '
                        '(did you mean "y"?)']),
    ("outputs.y", 3, ["provenance.calibration.outputs.y: expected an object with between_runs, "
                      "between_batch_sizes, atol, got number"]),
    ("outputs.y.between_runs", "0", ['provenance.calibration.outputs.y.between_runs: expected '
                                     'a finite number >= 0, got "0"']),
    ("outputs.y.between_runs", None, ["provenance.calibration.outputs.y.between_runs: expected "
                                      "a finite number >= 0, got null"]),
    ("outputs.y.between_batch_sizes", math.inf, [
        "provenance.calibration.outputs.y.between_batch_sizes: expected a finite number >= 0 "
        "or null, got Infinity"]),
    ("outputs.y.atol", ..., ["provenance.calibration.outputs.y.atol: required"]),
    ("outputs.y.atoll", 1, ['provenance.calibration.outputs.y.atoll: unknown key '
                            '(did you mean "atol"?)']),
])
def test_invalid_calibration_is_reported(tmp_path, field, value, problems):
    path = tmp_path / "g.json"
    write_golden(str(path), calibrated_document())
    document = json.load(open(path))
    set_calibration_field(document, field, value)
    path.write_text(json.dumps(document))
    assert problems_of(str(path)) == [f"{path}: {problem}" for problem in problems]


def test_unknown_provenance_keys_suggest_calibration(tmp_path):
    path = tmp_path / "g.json"
    document = json.loads(json.dumps(calibrated_document()))
    document["provenance"]["calibrate"] = document["provenance"].pop("calibration")
    path.write_text(json.dumps(document))
    assert problems_of(str(path)) == [
        f'{path}: provenance.calibrate: unknown key (did you mean "calibration"?)']


def test_between_batch_sizes_may_be_null_and_outputs_empty(tmp_path):
    path = tmp_path / "g.json"
    write_golden(str(path), calibrated_document())
    document = json.load(open(path))
    set_calibration_field(document, "outputs.y.between_batch_sizes", None)
    path.write_text(json.dumps(document))
    assert load_golden(str(path)).provenance.calibration.outputs["y"].between_batch_sizes is None
    set_calibration_field(document, "outputs", {})
    path.write_text(json.dumps(document))
    assert load_golden(str(path)).provenance.calibration.outputs == {}


@pytest.mark.parametrize("field", ["", "runs", "factor", "outputs", "outputs.y",
                                   "outputs.y.atol", "outputs.y.between_batch_sizes"])
def test_any_json_value_in_calibration_gives_golden_error_not_a_crash(tmp_path, field):
    path = tmp_path / "g.json"
    write_golden(str(path), calibrated_document())
    for value in JSON_VALUES:
        document = json.load(open(path))
        set_calibration_field(document, field, value)
        assert_loads_or_reports(tmp_path / "broken.json", document)

# ---- batches --------------------------------------------------------------------------------

@pytest.fixture
def five_examples(tmp_path):
    path = str(tmp_path / "g.json")
    write_golden(path, document_for(
        {"instances": [{"a": [float(i), i + 0.5], "s": f"s{i}"} for i in range(5)]},
        {"y": np.arange(5, dtype=np.float64) * 2}))
    return load_golden(path)


@pytest.mark.parametrize("batch_size, bounds", [
    (1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
    (2, [(0, 2), (2, 4), (4, 5)]),
    (5, [(0, 5)]),
    (8, [(0, 5)]),
])
def test_batches_cover_every_example_once(five_examples, batch_size, bounds):
    batches = five_examples.batches(batch_size)
    assert [(batch.start, batch.stop) for batch in batches] == bounds
    specs = [TensorSpec("a", "DT_FLOAT", (-1, 2)), TensorSpec("s", "DT_STRING", (-1,))]
    tensors = [batch.tensors(specs) for batch in batches]
    np.testing.assert_array_equal(np.concatenate([t["a"] for t in tensors]),
                                  np.array([[i, i + 0.5] for i in range(5)], np.float32))
    assert [t["a"].dtype for t in tensors] == [np.float32] * len(batches)
    assert np.concatenate([t["s"] for t in tensors]).tolist() == [b"s0", b"s1", b"s2", b"s3", b"s4"]
    rows = [row for batch in batches for row in json.loads(batch.rest_body())["instances"]]
    assert rows == [{"a": [float(i), i + 0.5], "s": f"s{i}"} for i in range(5)]


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_batch_size_must_be_a_positive_integer(five_examples, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        five_examples.batches(batch_size)


def test_rest_body_bytes(in_testdata):
    batch = load_golden("valid.json").batches(2)[0]
    assert batch.rest_body() == b'{"signature_name":"serving_default","instances":[[1.0],[2.0]]}'


def test_rest_body_writes_exact_floats_nonfinite_tokens_and_b64(tmp_path):
    path = str(tmp_path / "g.json")
    write_golden(path, document_for({"inputs": {"x": [0.1, 1 / 3, NAN, INF, -INF],
                                                "b": [{"b64": "AAE="}, "t", "u", "v", "w"]}},
                                    {"y": np.zeros(5)}))
    body = load_golden(path).batches(5)[0].rest_body()
    assert body == (b'{"signature_name":"serving_default","inputs":{"x":[0.1,0.3333333333333333,'
                    b'NaN,Infinity,-Infinity],"b":[{"b64":"AAE="},"t","u","v","w"]}}')


def test_rest_body_omits_an_empty_signature_name(tmp_path):
    path = str(tmp_path / "g.json")
    write_golden(path, golden_document(model="m", signature_name="", request={"instances": [1, 2]},
                                       outputs={"y": np.array([3, 4])}, provenance=PROVENANCE))
    assert load_golden(path).batches(1)[1].rest_body() == b'{"instances":[2]}'


# ---- gRPC tensors ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, values, expected", [
    ("DT_FLOAT", [1, 2.5], np.array([1, 2.5], np.float32)),
    ("DT_DOUBLE", [0.1, 2], np.array([0.1, 2.0])),
    ("DT_HALF", [0.5, 1], np.array([0.5, 1], np.float16)),
    ("DT_INT32", [1, -2], np.array([1, -2], np.int32)),
    ("DT_INT64", [1, 2 ** 40], np.array([1, 2 ** 40], np.int64)),
    ("DT_UINT8", [0, 255], np.array([0, 255], np.uint8)),
    ("DT_BOOL", [True, False], np.array([True, False])),
    ("DT_STRING", ["a", {"b64": "/w=="}], np.array([b"a", b"\xff"], dtype=object)),
])
def test_tensors_are_typed_from_the_signature(tmp_path, dtype, values, expected):
    path = str(tmp_path / "g.json")
    write_golden(path, document_for({"inputs": values}, {"y": np.zeros(2)}))
    (array,) = load_golden(path).batches(2)[0].tensors([TensorSpec("only", dtype, None)]).values()
    assert array.dtype == expected.dtype
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("request_body, specs, message", [
    ({"instances": [1.0, 2.0]}, [TensorSpec("a", "DT_FLOAT", None), TensorSpec("b", "DT_FLOAT", None)],
     'the golden request has one unnamed input but the signature has 2 inputs ("a", "b"); '
     "name them in the request"),
    ({"inputs": {"a": [1.0, 2.0], "c": [1, 2]}},
     [TensorSpec("a", "DT_FLOAT", None), TensorSpec("b", "DT_FLOAT", None)],
     'signature inputs missing from the golden request: "b"; '
     'golden request inputs not in the signature: "c"'),
    ({"inputs": [1.5, 2.0]}, [TensorSpec("x", "DT_INT32", None)],
     'input "x" is DT_INT32 but the golden set holds floating-point numbers'),
    ({"inputs": ["a", "b"]}, [TensorSpec("x", "DT_FLOAT", None)],
     'input "x" is DT_FLOAT but the golden set holds strings'),
    ({"inputs": [1, 2]}, [TensorSpec("x", "DT_STRING", None)],
     'input "x" is DT_STRING but the golden set holds integers'),
    ({"inputs": [1, 300]}, [TensorSpec("x", "DT_UINT8", None)],
     'input "x": values outside the range of DT_UINT8'),
    ({"inputs": [1, 0]}, [TensorSpec("x", "DT_BOOL", None)],
     'input "x" is DT_BOOL but the golden set holds integers'),
    ({"inputs": [1, 2]}, [TensorSpec("x", "DT_COMPLEX64", None)],
     'input "x": dtype DT_COMPLEX64 is not supported by canaries'),
])
def test_tensors_that_do_not_fit_the_signature_raise_schema_error(tmp_path, request_body, specs, message):
    path = str(tmp_path / "g.json")
    write_golden(path, document_for(request_body, {"y": np.zeros(2)}))
    with pytest.raises(SchemaError) as caught:
        load_golden(path).batches(2)[0].tensors(specs)
    assert str(caught.value) == message


# ---- REST replies (behaviour notes §2.6) ----------------------------------------------------

@pytest.mark.parametrize("body, request_format, aliases, expected", [
    (b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}', "instances", ["y"], {"y": [2.5, 3.0, 4.5]}),
    (b'{\n    "predictions": [[2.5], [3.0]\n    ]\n}', "instances", ["y"], {"y": [[2.5], [3.0]]}),
    (b'{\n    "outputs": [\n        2.5,\n        3.0,\n        4.5\n    ]\n}', "inputs", ["y"],
     {"y": [2.5, 3.0, 4.5]}),
    (b'{\n    "predictions": [\n        {\n            "a": 1.0,\n            "b": [1, 2]\n        },\n'
     b'        {\n            "a": 2.0,\n            "b": [3, 4]\n        }\n    ]\n}',
     "instances", ["b", "a"], {"b": [[1, 2], [3, 4]], "a": [1.0, 2.0]}),
    (b'{"predictions": [{"a": 1.0, "extra": "x"}, {"a": NaN, "extra": "y"}]}', "instances", ["a"],
     {"a": [1.0, float("nan")]}),
    (b'{"outputs": {"a": [[1, 2]], "b": [true], "c": ["x"]}}', "inputs", ["a", "b"],
     {"a": [[1, 2]], "b": [True]}),
    (b'{"outputs": [Infinity, -Infinity]}', "inputs", ["y"], {"y": [float("inf"), float("-inf")]}),
])
def test_rest_replies_map_to_arrays_per_alias(body, request_format, aliases, expected):
    arrays = parse_rest_predict_reply(body, request_format, aliases)
    assert list(arrays) == aliases
    for alias, values in expected.items():
        np.testing.assert_array_equal(arrays[alias], np.array(values))


def test_rest_reply_strings_and_b64_become_bytes():
    arrays = parse_rest_predict_reply(
        b'{"predictions": [{"label": "cat", "image_bytes": {"b64": "/w=="}},'
        b' {"label": "dog", "image_bytes": {"b64": "AA=="}}]}', "instances", ["label", "image_bytes"])
    assert arrays["label"].tolist() == [b"cat", b"dog"]
    assert arrays["image_bytes"].tolist() == [b"\xff", b"\x00"]


@pytest.mark.parametrize("body, request_format, aliases, message", [
    (b'{"predictions": [1.0, 2.0]}', "instances", ["a", "b"],
     'reply holds one unnamed output in "predictions" but 2 outputs are expected ("a", "b")'),
    (b'{"outputs": [1.0, 2.0]}', "inputs", ["a", "b"],
     'reply holds one unnamed output in "outputs" but 2 outputs are expected ("a", "b")'),
    (b'{"predictions": [{"a": 1}, {"b": 2}]}', "instances", ["a"],
     'predictions[1] has no output "a" (it has "b")'),
    (b'{"outputs": {"a": [1]}}', "inputs", ["a", "z"], 'reply has no output "z" (it has "a")'),
    (b'{"outputs": [1]}', "instances", ["y"], 'reply has no "predictions" (keys: "outputs")'),
    (b'{"predictions": [1.0, 2.0', "instances", ["y"],
     "reply is not valid JSON: Expecting ',' delimiter at line 1 column 26"),
    (b'[1, 2]', "instances", ["y"], "reply is a JSON list, expected an object"),
    (b'{"predictions": [[1, 2], [3]]}', "instances", ["y"],
     "predictions[1]: shape [1] differs from example 0's shape [2]"),
    (b'{"predictions": [1.0, "x"]}', "instances", ["y"], "predictions[1]: expected a number, got string"),
    (b'{"outputs": null}', "inputs", ["y"],
     'outputs: expected a number, boolean, string or {"b64": ...}, got null'),
    (b'{"predictions": 3.0}', "instances", ["y"], '"predictions" is a number, expected a list'),
    (b'\xff', "inputs", ["y"], "reply is not valid JSON: "),
    (b"[" * 100000, "inputs", ["y"], "reply is not valid JSON: "),
])
def test_rest_replies_that_cannot_be_mapped_raise_schema_error(body, request_format, aliases, message):
    with pytest.raises(SchemaError) as caught:
        parse_rest_predict_reply(body, request_format, aliases)
    assert str(caught.value).startswith(message)
    if not message.endswith(": "):
        assert str(caught.value) == message


# ---- merging recorded requests --------------------------------------------------------------

@pytest.mark.parametrize("requests, merged", [
    ([{"instances": [[1.0]]}, {"instances": [[2.0], [5.0]]}], {"instances": [[1.0], [2.0], [5.0]]}),
    ([{"signature_name": "s", "inputs": {"a": [1], "b": ["x"]}}, {"signature_name": "s", "inputs": {"b": ["y"], "a": [2]}}],
     {"signature_name": "s", "inputs": {"a": [1, 2], "b": ["x", "y"]}}),
    ([{"inputs": [[1, 2]]}, {"inputs": [[3, 4]], "signature_name": ""}], {"inputs": [[1, 2], [3, 4]]}),
    ([{"instances": [{"x": 1.0}]}], {"instances": [{"x": 1.0}]}),
])
def test_merge_requests_concatenates_examples(requests, merged):
    assert merge_requests(requests) == merged


@pytest.mark.parametrize("requests, problems", [
    ([], ["requests: need at least one request"]),
    ([{"instances": [1.0]}, {"signature_name": "other", "instances": [2.0]}],
     ['requests[1]: signature_name "other" differs from request 0\'s ""']),
    ([{"instances": [1.0]}, {"inputs": [2.0]}], ['requests[1]: uses "inputs" but request 0 uses "instances"']),
    ([{"inputs": [1.0]}, {"inputs": {"x": [2.0]}}],
     ["requests[1]: has named inputs but request 0 has one unnamed input"]),
    ([{"inputs": {"x": [1.0]}}, {"inputs": {"y": [2.0]}}, {"inputs": {"x": [[2.0]]}}],
     ['requests[1]: inputs "y" differ from request 0\'s "x"',
      'requests[2]: input "x" has example shape [1] but request 0 has []']),
    ([{"instances": [1.0]}, {"instances": ["a"]}],
     ["requests[1]: the input holds strings but request 0 holds numbers"]),
    ([{"instances": [1.0]}, {"instances": []}, "x"],
     ["requests[1].instances: must not be empty", "requests[2]: expected an object, got string"]),
])
def test_merge_requests_names_the_mismatching_request(requests, problems):
    with pytest.raises(GoldenError) as caught:
        merge_requests(requests)
    assert caught.value.problems == problems
