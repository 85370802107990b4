"""Reply shapes of TF Serving's REST predict that a canary must take (issue 12).

From ``tensorflow_serving/util/json_tensor.cc`` (``MakeJsonFromTensors`` and the functions it
calls) and its tests, with rapidjson 1.1.0's ``PrettyWriter`` layout (4-space indent; arrays
on one line inside row items):

- zero rows: ``{"predictions": []}`` for any number of outputs (``FromJsonSingleZeroBatchTensor``,
  ``FromJsonMultipleZeroBatchTensors``), ``[]`` per output in columnar replies;
- a rank-0 output in a columnar reply: the bare value, ``{"outputs": 2.5}``;
- a DT_STRING output whose alias does not end in ``_bytes``: its bytes as they are, so the reply
  is not UTF-8 when they are not (only control characters, ``"`` and ``\\`` are escaped).

First the parser with those exact bytes, then a fake TF Serving on 127.0.0.1 answering them to
``golden record`` (the command line) and to a real exporter's canary.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.canary.golden import (GoldenError, Provenance, SchemaError, golden_document,
                                    load_golden, parse_rest_predict_reply, write_golden)
from exporter.canary.probe import join_batches
from exporter.tfserving.rest_client import PREDICT_MAX_BYTES
from tests.conftest import ExporterHandle
from tests.hostile_fakes import RawHttpServer, serve_model
from tests.helpers import sample_value
from tests.test_cli import run_cli

# ---- exact bytes ----------------------------------------------------------------------------

ZERO_ROWS = b'{\n    "predictions": []\n}'
ZERO_ROWS_COLUMNAR = b'{\n    "outputs": {\n        "a": [],\n        "b": []\n    }\n}'


def rapidjson_string(raw: bytes) -> bytes:
    """A DT_STRING value as rapidjson's Writer::String writes it with default flags: the
    escapes of its table (writer.h, 1.1.0) for 0x00-0x1F, '"' and '\\', every other byte as
    it is."""
    short = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r",
             0x22: b'\\"', 0x5C: b"\\\\"}
    out = bytearray(b'"')
    for byte in raw:
        if byte in short:
            out += short[byte]
        elif byte < 0x20:
            out += b"\\u00%02X" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def row_reply(values: list[bytes]) -> bytes:
    """``{"predictions": [...]}`` of one DT_STRING output with one value per example."""
    return (b'{\n    "predictions": [' + b", ".join(rapidjson_string(v) for v in values)
            + b"\n    ]\n}")


@pytest.mark.parametrize("body, request_format, aliases", [
    (ZERO_ROWS, "instances", ["int_tensor"]),                   # FromJsonSingleZeroBatchTensor
    (ZERO_ROWS, "instances", ["float_tensor", "str_tensor"]),   # FromJsonMultipleZeroBatchTensors
    (b'{\n    "outputs": []\n}', "inputs", ["y"]),
    (ZERO_ROWS_COLUMNAR, "inputs", ["a", "b"]),
])
def test_zero_rows_parse_to_arrays_without_rows(body, request_format, aliases):
    arrays = parse_rest_predict_reply(body, request_format, aliases)
    assert list(arrays) == aliases
    assert all(array.shape == (0,) for array in arrays.values())


@pytest.mark.parametrize("body, aliases, expected", [
    (b'{\n    "outputs": 2.5\n}', ["y"], {"y": 2.5}),
    (b'{\n    "outputs": 7\n}', ["y"], {"y": 7}),
    (b'{\n    "outputs": true\n}', ["y"], {"y": True}),
    (b'{\n    "outputs": NaN\n}', ["y"], {"y": float("nan")}),
    (b'{\n    "outputs": "\xff\xfe"\n}', ["y"], {"y": b"\xff\xfe"}),
    (b'{\n    "outputs": {\n        "b64": "//4="\n    }\n}', ["y_bytes"],
     {"y_bytes": b"\xff\xfe"}),
    (b'{\n    "outputs": {\n        "total": 8.0,\n        "y": [\n            2.5,\n'
     b'            3.0\n        ]\n    }\n}', ["total", "y"], {"total": 8.0, "y": [2.5, 3.0]}),
])
def test_a_scalar_in_a_columnar_reply_parses_to_a_0d_array(body, aliases, expected):
    arrays = parse_rest_predict_reply(body, "inputs", aliases)
    for alias, value in expected.items():
        want = np.array(value, dtype=object if isinstance(value, bytes) else None)
        assert arrays[alias].shape == want.shape
        np.testing.assert_array_equal(arrays[alias], want)


def test_row_replies_hold_no_scalars():
    # MakeRowFormatJsonFromTensors refuses a rank-0 output ("has no shape information")
    with pytest.raises(SchemaError, match='^"predictions" is a number, expected a list$'):
        parse_rest_predict_reply(b'{\n    "predictions": 2.5\n}', "instances", ["y"])


EVERY_BYTE = [bytes([value]) for value in range(256)]


@pytest.mark.parametrize("values", [
    [b"\xff\xfe", b"caf\xc3\xa9"],
    [b"\x00\x01\x1f\x7f\x80\xff", b'"\\\n\r\t\x08\x0c', b""],
    EVERY_BYTE,
    [bytes(random.Random(seed).randrange(256) for _ in range(64)) for seed in range(50)],
])
def test_raw_string_bytes_come_back_exactly(values):
    body = row_reply(values)
    arrays = parse_rest_predict_reply(body, "instances", ["label"])
    assert arrays["label"].tolist() == values
    columnar = (b'{\n    "outputs": [\n' + b",\n".join(b"        " + rapidjson_string(v)
                                                      for v in values) + b"\n    ]\n}")
    assert parse_rest_predict_reply(columnar, "inputs", ["label"])["label"].tolist() == values


def test_raw_strings_beside_a_b64_output():
    # FromJsonMultipleNamedTensors' layout, with a value that is not UTF-8
    body = (b'{\n    "predictions": [\n        {\n            "label": "\xff\xfe",\n'
            b'            "label_bytes": {\n                "b64": "//4="\n            }\n'
            b'        },\n        {\n            "label": "caf\xc3\xa9",\n'
            b'            "label_bytes": {\n                "b64": "Y2Fmw6k="\n            }\n'
            b'        }\n    ]\n}')
    arrays = parse_rest_predict_reply(body, "instances", ["label", "label_bytes"])
    assert arrays["label"].tolist() == arrays["label_bytes"].tolist() == [b"\xff\xfe",
                                                                          b"caf\xc3\xa9"]


def test_an_escaped_lone_surrogate_keeps_its_utf8_form_in_a_raw_reply():
    arrays = parse_rest_predict_reply(b'{"outputs": ["\xff", "\\ud800"]}', "inputs", ["y"])
    assert arrays["y"].tolist() == [b"\xff", b"\xed\xa0\x80"]


@pytest.mark.parametrize("body, message", [
    (b'{"predictions": ["\xff', "reply is not valid JSON: Unterminated string starting at "
                               "line 1 column 18"),
    (b'{"predictions": ["\xff\x01"]}', "reply is not valid JSON: Invalid control character "
                                       "at line 1 column 20"),
    (b'\xff\xfe{', "reply is not valid JSON: Expecting value at line 1 column 1"),
])
def test_raw_replies_that_are_still_not_json_name_the_problem(body, message):
    with pytest.raises(SchemaError) as caught:
        parse_rest_predict_reply(body, "instances", ["y"])
    assert str(caught.value) == message


def test_a_raw_reply_as_large_as_the_cap_parses():
    # The transport refuses more than PREDICT_MAX_BYTES; up to it, a raw reply costs one more
    # decoding pass than a UTF-8 one.
    item = rapidjson_string(b"\xff\xfe\x80abc") + b", "
    count = (PREDICT_MAX_BYTES - 64) // len(item)
    body = b'{\n    "predictions": [' + item * (count - 1) + b'"\xff"\n    ]\n}'
    assert len(body) <= PREDICT_MAX_BYTES
    label = parse_rest_predict_reply(body, "instances", ["label"])["label"]
    assert label.shape == (count,)
    assert (label[0], label[-1]) == (b"\xff\xfe\x80abc", b"\xff")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=6))
def test_any_string_bytes_come_back_exactly(values):
    assert parse_rest_predict_reply(row_reply(values), "instances", ["s"])["s"].tolist() == values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64).map(lambda tail: b'{"outputs": ' + tail))
def test_any_reply_parses_or_raises_schema_error(body):
    try:
        parse_rest_predict_reply(body, "inputs", ["y"])
    except SchemaError:
        pass


# ---- joining the answers to several batches -------------------------------------------------

HINT = "set canary.batch_size to 8 or more"


def test_zero_row_batches_add_no_rows():
    parts = [np.ones((3, 1)), np.zeros(0), np.ones((2, 1))]
    assert join_batches("y", parts, HINT).shape == (5, 1)
    assert join_batches("y", [np.zeros(0), np.zeros(0)], HINT).shape == (0,)


def test_a_scalar_of_one_request_is_kept_and_of_several_refused():
    assert join_batches("total", [np.float64(8.0)], HINT).shape == ()
    with pytest.raises(SchemaError) as caught:
        join_batches("total", [np.float64(3.5), np.float64(4.5)], HINT)
    assert str(caught.value) == (
        'output "total" is a scalar (one value per request, no example axis): the answers to 2 '
        "batches cannot be joined, so the examples must go in one request; " + HINT)


def test_batches_of_other_shapes_cannot_be_joined():
    with pytest.raises(SchemaError, match='^output "y": batches cannot be joined: '):
        join_batches("y", [np.ones((3, 1)), np.ones((2, 2))], HINT)


# ---- scalar expectations in golden files -----------------------------------------------------

PROVENANCE = Provenance(model="m", version=1, recorded_at="2026-11-22T13:00:00Z",
                        protocol="rest", tool="tfserving-exporter 0.1.0")


@pytest.mark.parametrize("npz", [False, True])
def test_a_scalar_expectation_round_trips(tmp_path, npz):
    document = golden_document(model="m", signature_name="", provenance=PROVENANCE,
                               request={"inputs": {"x": [1.0, 2.0, 5.0]}},
                               outputs={"total": np.float64(8.0), "name": np.array(b"\xff"),
                                        "y": np.array([2.5, 3.0, 4.5])})
    assert document["expected"]["total"] == 8.0
    path = str(tmp_path / "g.json")
    write_golden(path, document, npz=npz)
    golden = load_golden(path)
    assert golden.expected["total"].shape == golden.expected["name"].shape == ()
    assert (golden.expected["total"], golden.expected["name"]) == (8.0, b"\xff")
    assert golden.expected["y"].shape == (3,)


def test_a_scalar_expectation_needs_a_columnar_request(tmp_path):
    document = golden_document(model="m", signature_name="", provenance=PROVENANCE,
                               request={"instances": [[1.0], [2.0]]},
                               outputs={"total": np.float64(3.0)})
    path = str(tmp_path / "g.json")
    with pytest.raises(GoldenError) as caught:
        write_golden(path, document)
    assert caught.value.problems == [
        f'{path}: expected.total: a scalar (no example axis) needs a columnar request ("inputs"): '
        'TF Serving refuses to answer a row request ("instances") with one']


# ---- a fake TF Serving, golden record and a real exporter ----------------------------------

HALF_PLUS_TWO = b'{\n    "predictions": [[2.5], [3.0], [4.5]\n    ]\n}'
SUM_AND_HALF = (b'{\n    "outputs": {\n        "total": 8.0,\n        "y": [\n            2.5,\n'
                b'            3.0,\n            4.5\n        ]\n    }\n}')
LABELS = row_reply([b"\xff\xfe", b"caf\xc3\xa9"])

MODELS = {  # model -> request, inputs and outputs of its signature, and a right answer
    "zero_rows": ({"instances": [[1.0], [2.0], [5.0]]}, {"x": "DT_FLOAT"}, {"y": "DT_FLOAT"},
                  HALF_PLUS_TWO),
    "scalar_sum": ({"inputs": {"x": [1.0, 2.0, 5.0]}}, {"x": "DT_FLOAT"},
                   {"total": "DT_FLOAT", "y": "DT_FLOAT"}, SUM_AND_HALF),
    "raw_labels": ({"instances": [{"b64": "/w=="}, {"b64": "Y2Fm"}]}, {"x": "DT_STRING"},
                   {"label": "DT_STRING"}, LABELS),
}


@pytest.fixture
def fake():
    server = RawHttpServer()
    for model, (_, inputs, outputs, answer) in MODELS.items():
        serve_model(server, model, 1, answer, inputs, outputs)
    yield server
    server.close()


def answer(fake: RawHttpServer, model: str, body: bytes) -> None:
    _, inputs, outputs, _ = MODELS[model]
    serve_model(fake, model, 1, body, inputs, outputs)


def record(fake, tmp_path, model: str, *extra: str):
    requests = tmp_path / f"{model}.requests.json"
    requests.write_text(json.dumps(MODELS[model][0]))
    output = tmp_path / f"{model}.golden.json"
    result = run_cli("golden", "record", "--model", model, "--requests", str(requests),
                     "--output", str(output), "--protocol", "rest",
                     f"--tfserving.rest-address={fake.url}", *extra)
    return result, output


@pytest.fixture
def start_exporter_on(start_exporter_with):
    """Factory: an exporter whose only TF Serving is ``fake`` (REST), canaries on."""
    def start(fake: RawHttpServer, golden_files: list[str], **canary) -> ExporterHandle:
        values = {"tfserving.grpc_address": "", "tfserving.rest_address": fake.url,
                  "tfserving.model_config_file": "", "models": list(MODELS),
                  "collectors.status.protocol": "rest", "collectors.metadata.protocol": "rest",
                  "collectors.native.enabled": False, "canary.golden_files": golden_files,
                  "canary.protocol": "rest", "canary.interval": "100ms", "canary.jitter": 0.0,
                  "canary.timeout": "5s"}
        values.update({f"canary.{key}": value for key, value in canary.items()})
        return start_exporter_with(values)

    return start


def canary(text: str, name: str, model: str, **labels) -> float | None:
    return sample_value(text, f"tfserving_canary_{name}", model=model, version="1", **labels)


def last_outcome(exporter: ExporterHandle, model: str):
    records, _ = exporter.running.canary.store.snapshot()
    return records[(model, 1)].last


def wait_for_run(exporter: ExporterHandle, model: str, success: int) -> str:
    """Scrapes until the model's canary shows ``success`` after a run that started after the
    call (the counter of runs moves on), so an older result cannot satisfy it."""
    before = canary(exporter.metrics(), "runs_total", model) or 0
    return exporter.metrics_until(
        lambda t: (canary(t, "runs_total", model) or 0) > before + 1
        and canary(t, "success", model) == success,
        message=f"canary of {model} to give success={success}")


def test_recorded_shapes_pass_and_changed_answers_fail_with_their_reason(
        fake, tmp_path, start_exporter_on):
    golden = {}
    for model in MODELS:
        result, path = record(fake, tmp_path, model)
        assert result.returncode == 0, result.stderr
        golden[model] = str(path)
    document = json.loads((tmp_path / "scalar_sum.golden.json").read_text())
    assert document["expected"] == {"total": 8.0, "y": [2.5, 3.0, 4.5]}
    document = json.loads((tmp_path / "raw_labels.golden.json").read_text())
    assert document["expected"] == {"label": [{"b64": "//4="}, "café"]}
    assert load_golden(golden["raw_labels"]).expected["label"].tolist() == [b"\xff\xfe",
                                                                            b"caf\xc3\xa9"]

    exporter = start_exporter_on(fake, list(golden.values()))
    for model in MODELS:
        text = wait_for_run(exporter, model, 1)
        assert last_outcome(exporter, model).reason is None
    assert canary(text, "max_abs_error", "scalar_sum", output="total") == 0

    answer(fake, "zero_rows", ZERO_ROWS)
    answer(fake, "scalar_sum", SUM_AND_HALF.replace(b"8.0", b"8.5"))
    answer(fake, "raw_labels", row_reply([b"\xff\xfd", b"caf\xc3\xa9"]))
    expected = {
        "zero_rows": ("y", 3, "y: 0 rows, expected 3 (one per example)"),
        "scalar_sum": ("total", 1, "total: 1 of 1 examples outside atol=1e-06 + "
                                   "rtol=1e-06*|expected| (max abs error 0.5)"),
        "raw_labels": ("label", 1, "label: 1 of 2 examples differ"),
    }
    for model, (output, mismatched, detail) in expected.items():
        text = wait_for_run(exporter, model, 0)
        outcome = last_outcome(exporter, model)
        assert (outcome.reason, outcome.detail) == ("mismatch", detail)
        assert canary(text, "failures_total", model, reason="mismatch") >= 1
        assert canary(text, "failures_total", model, reason="schema") == 0
        assert canary(text, "mismatched_examples", model, output=output) == mismatched
    assert canary(text, "max_abs_error", "zero_rows", output="y") == float("inf")

    answer(fake, "zero_rows", HALF_PLUS_TWO)  # the right answer again
    wait_for_run(exporter, "zero_rows", 1)


def test_a_scalar_output_needs_the_golden_set_in_one_request(fake, tmp_path, start_exporter_on):
    result, path = record(fake, tmp_path, "scalar_sum", "--batch-size", "2")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'tfserving-exporter golden record: cannot record: output "total" is a scalar (one value '
        "per request, no example axis): the answers to 2 batches cannot be joined, so the "
        "examples must go in one request; record with --batch-size 3 or more")
    assert not path.exists()

    result, path = record(fake, tmp_path, "scalar_sum")
    assert result.returncode == 0, result.stderr
    exporter = start_exporter_on(fake, [str(path)], batch_size=2)
    text = wait_for_run(exporter, "scalar_sum", 0)
    outcome = last_outcome(exporter, "scalar_sum")
    assert (outcome.reason, outcome.detail) == ("schema", (
        'output "total" is a scalar (one value per request, no example axis): the answers to 2 '
        "batches cannot be joined, so the examples must go in one request; set "
        "canary.batch_size to 3 or more"))
    assert canary(text, "failures_total", "scalar_sum", reason="schema") >= 1


def test_record_refuses_zero_rows(fake, tmp_path):
    answer(fake, "zero_rows", ZERO_ROWS)
    result, path = record(fake, tmp_path, "zero_rows")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'tfserving-exporter golden record: cannot record output "y": version 1 answered 0 rows, '
        "expected 3 (one per example)")
    assert not path.exists()


def test_a_reply_that_is_still_not_json_fails_as_schema(fake, tmp_path, start_exporter_on):
    result, path = record(fake, tmp_path, "raw_labels")
    assert result.returncode == 0, result.stderr
    exporter = start_exporter_on(fake, [str(path)])
    wait_for_run(exporter, "raw_labels", 1)
    answer(fake, "raw_labels", b'{\n    "predictions": ["\xff\xfe", "\xff\x01"\n    ]\n}')
    wait_for_run(exporter, "raw_labels", 0)
    outcome = last_outcome(exporter, "raw_labels")
    assert (outcome.reason, outcome.detail) == (
        "schema", "reply is not valid JSON: Invalid control character at line 2 column 29")
