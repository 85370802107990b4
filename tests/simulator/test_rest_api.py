"""The REST port over real HTTP: canonical pairs, error catalogue, URL grammar, transport."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.simulator.conftest import start_simulator
from tfserving_simulator.faults import FaultRule

TIMEOUT = 5


def raw_request(port: int, method: str, path: str, body: bytes = b"", headers=None):
    """One request on its own connection; returns (status, reason, headers dict, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.reason, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def error_json(message: str) -> bytes:
    return ('{\n    "error": ' + json.dumps(message) + "\n}").encode()


HP2 = "/v1/models/half_plus_two"
# Requests to half_plus_two and the exact bytes TF Serving answers them with (its REST API's
# rapidjson layout), as data: path, request body, reply body.
CANONICAL_PAIRS = json.loads((Path(__file__).parent.parent / "testdata" / "simulator"
                              / "rest_canonical_pairs.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path, body, expected", [
    pytest.param(pair["path"], pair["body"].encode(), pair["reply"].encode(), id=str(index))
    for index, pair in enumerate(CANONICAL_PAIRS)])
def test_canonical_pairs_have_exact_bytes(simulator, path, body, expected):
    status, reason, headers, payload = raw_request(simulator.rest_port, "POST", path, body)
    assert (status, reason, payload) == (200, "OK", expected)
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(expected))
    assert "Server" not in headers and "Date" in headers


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/foo:predict", b'{"instances": [1.0]}', 404,
     "Servable not found for request: Latest(foo)"),
    ("POST", HP2 + "/versions/7:predict", b'{"instances": [1.0]}', 404,
     "Servable not found for request: Specific(half_plus_two, 7)"),
    ("POST", HP2 + "/labels/stable:predict", b'{"instances": [1.0]}', 400,
     "Unrecognized servable version label: stable"),
    ("POST", HP2 + ":predict", b"", 400, "JSON Parse error: The document is empty"),
    ("POST", HP2 + ":predict", b"{", 400,
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("POST", "/v1/models/foo:predict", b"{", 400,
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("POST", HP2 + ":predict", b"[]", 400, "JSON Value: [] Is not object"),
    ("POST", HP2 + ":predict", b'{"signature_name": "nope", "instances": [1.0]}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", HP2 + ":predict", b'{"instances": ["a"]}', 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "\"a\" Type: String is not of expected type: float"),
    ("POST", HP2 + ":classify", b'{"signature_name": "nope", "examples": [{"x": 1.0}]}', 400,
     "No signature was found with the name: nope"),
    ("GET", "/v1/models", b"", 400, "Missing model name in request."),
    ("GET", "/v1/models/metadata", b"", 404, "Could not find any versions of model metadata"),
    ("GET", "/v1/models/foo", b"", 404, "Could not find any versions of model foo"),
    ("GET", HP2 + "/versions/9", b"", 404, "Could not find version 9 of model half_plus_two"),
    ("GET", "/v1/models/foo/metadata", b"", 404, "Servable not found for request: Latest(foo)"),
    ("GET", HP2 + "/labels/x/metadata", b"", 400, "Unrecognized servable version label: x"),
    ("GET", HP2 + "?x=1", b"", 404, "Could not find any versions of model half_plus_two?x=1"),
    ("GET", "/v1/", b"", 400, "Malformed request: GET /v1/"),
    ("GET", HP2 + "/", b"", 400, "Malformed request: GET /v1/models/half_plus_two/"),
    ("GET", HP2 + ":predict", b"", 400, "Malformed request: GET /v1/models/half_plus_two:predict"),
    ("POST", HP2, b"{}", 400, "Malformed request: POST /v1/models/half_plus_two"),
    ("POST", HP2 + ":PREDICT", b"{}", 400, "Malformed request: POST /v1/models/half_plus_two:PREDICT"),
    ("GET", HP2 + "/version/5", b"", 400, "Malformed request: GET /v1/models/half_plus_two/version/5"),
    ("GET", HP2 + "/versions/abc", b"", 400,
     "Malformed request: GET /v1/models/half_plus_two/versions/abc"),
    ("GET", HP2 + "/versions/1/labels/x", b"", 400,
     "Malformed request: GET /v1/models/half_plus_two/versions/1/labels/x"),
    ("PUT", HP2, b"", 400, "Malformed request: PUT /v1/models/half_plus_two"),
])
def test_error_catalogue(simulator, method, path, body, status, message):
    got_status, _, headers, payload = raw_request(simulator.rest_port, method, path, body)
    assert (got_status, payload) == (status, error_json(message))
    assert headers["Content-Type"] == "application/json"


def test_id_like_integer_inputs_are_served_like_tf_serving(simulator):
    # json_tensor_test.cc FloatTensorWithPrecisionLoss: a float input given as an integer no
    # float holds exactly is rounded, not refused (a golden set of ID-like inputs works).
    status, _, _, payload = raw_request(simulator.rest_port, "POST", HP2 + ":predict",
                                        b'{"instances": [1435774380, 1e39]}')
    expected = np.float32(0.5) * np.float32([1435774380, np.inf]) + np.float32(2)
    assert status == 200
    assert json.loads(payload) == {"predictions": [float(expected[0]), float("inf")]}


def test_bodies_parse_as_tf_serving_reads_them_since_2_18(simulator):
    # ParseJson's kParseStopWhenDoneFlag: what follows the document is never read; and its
    # iterative parsing takes any depth (json_tensor_test.cc DeeplyNestedWellFormed).
    for body in (b'{"instances": [2.0]}  trailing bytes {',
                 b'{"instances": [2.0], "n": ' + b"[" * 100000 + b"]" * 100000 + b"}"):
        status, _, _, payload = raw_request(simulator.rest_port, "POST", HP2 + ":predict", body)
        assert (status, payload) == (200, b'{\n    "predictions": [3.0\n    ]\n}')


def test_classify_on_a_regress_signature_is_refused_with_classifier_cc_text(simulator):
    status, _, _, payload = raw_request(
        simulator.rest_port, "POST", HP2 + ":classify",
        b'{"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}')
    assert status == 400
    assert json.loads(payload)["error"].startswith(
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: inputs {\n')


def test_version_too_large_for_int64_has_an_empty_body(simulator):
    status, _, headers, payload = raw_request(simulator.rest_port, "GET",
                                              HP2 + "/versions/99999999999999999999")
    assert (status, payload, headers["Content-Type"]) == (400, b"", "application/json")


def test_status_json_shape(simulator, rest_url):
    response = requests.get(rest_url + "/V1/MODELS/half_plus_two", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]}
    assert response.text.startswith('{\n "model_version_status": [\n  {\n   "version": "123"')
    labelled = requests.get(rest_url + HP2 + "/labels/anything", timeout=TIMEOUT)
    assert labelled.json() == response.json()  # labels are ignored by status


def test_metadata_json_has_doubled_signature_def_key(simulator, rest_url):
    response = requests.get(rest_url + HP2 + "/versions/123/metadata", timeout=TIMEOUT)
    assert response.status_code == 200
    document = response.json()
    assert document["model_spec"] == {"name": "half_plus_two", "version": "123",
                                      "signature_name": ""}
    signatures = document["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"serving_default", "classify_x_to_y", "regress_x_to_y",
                               "regress_x_to_y2", "regress_x2_to_y3"}
    assert signatures["serving_default"]["inputs"]["x"] == {
        "name": "x:0", "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                         "unknown_rank": False}}
    assert signatures["classify_x_to_y"]["inputs"]["inputs"]["tensor_shape"] == {
        "dim": [], "unknown_rank": True}
    assert signatures["classify_x_to_y"]["method_name"] == "tensorflow/serving/classify"


@pytest.mark.parametrize("path", ["/", "/v1", "/v2/models/half_plus_two", "/metrics"])
def test_non_v1_paths_get_libevents_html_404(simulator, path):
    status, reason, headers, payload = raw_request(simulator.rest_port, "GET", path)
    assert (status, reason) == (404, "Not Found")
    assert payload == (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                       b"<H1>Not Found</H1>\n</BODY></HTML>\n")
    assert headers["Content-Type"] == "text/html" and headers["Connection"] == "close"


@pytest.mark.parametrize("origin, status", [("http://example.com", 200),
                                            ("https://example.com", 200), ("", 400),
                                            ("example.com", 400)])
def test_options_preflight(simulator, origin, status):
    headers = {"Origin": origin} if origin else {}
    got_status, _, _, payload = raw_request(simulator.rest_port, "OPTIONS", HP2 + ":predict",
                                            headers=headers)
    assert (got_status, payload) == (status, b"")


def test_gzip_request_bodies_are_decoded(simulator):
    body = gzip.compress(b'{"instances": [2.0]}')
    status, _, _, payload = raw_request(simulator.rest_port, "POST", HP2 + ":predict", body,
                                        {"Content-Encoding": "gzip"})
    assert (status, payload) == (200, b'{\n    "predictions": [3.0\n    ]\n}')


def test_url_escaped_names_are_decoded(simulator):
    status, _, _, payload = raw_request(simulator.rest_port, "GET", "/v1/models/half%5Fplus_two")
    assert status == 200 and b'"version": "123"' in payload


def test_keep_alive_serves_several_requests_on_one_connection(simulator):
    connection = http.client.HTTPConnection("127.0.0.1", simulator.rest_port, timeout=TIMEOUT)
    try:
        for _ in range(3):
            connection.request("POST", HP2 + ":predict", body=b'{"instances": [2.0]}')
            response = connection.getresponse()
            assert response.read() == b'{\n    "predictions": [3.0\n    ]\n}'
    finally:
        connection.close()


def test_rest_timeout_turns_a_hang_into_504(tmp_path):
    sim = start_simulator(tmp_path, rest_api_timeout_in_ms=300)
    try:
        sim.faults.add(FaultRule(model="half_plus_two", operations={"predict"}, hang=True))
        status, reason, _, payload = raw_request(sim.rest_port, "POST", HP2 + ":predict",
                                                 b'{"instances": [2.0]}')
        assert (status, reason) == (504, "Gateway Time-out")
        assert payload == error_json("Timed out waiting for notification")
        page = requests.get(f"http://127.0.0.1:{sim.rest_port}/monitoring/prometheus/metrics",
                            timeout=TIMEOUT).text
        assert ':tensorflow:serving:request_count{model_name="half_plus_two",' \
               'status="DEADLINE_EXCEEDED"} 1' in page
    finally:
        sim.stop()


def test_injected_error_uses_the_code_mapping(fresh_simulator):
    fresh_simulator.faults.add(FaultRule(operations={"predict"}, error_code="CANCELLED",
                                         error_message="boom"))
    status, reason, _, payload = raw_request(fresh_simulator.rest_port, "POST", HP2 + ":predict",
                                             b'{"instances": [2.0]}')
    assert (status, reason, payload) == (499, "Client Error", error_json("boom"))


def test_cors_headers_when_enabled(tmp_path):
    sim = start_simulator(tmp_path, rest_api_enable_cors_support=True)
    try:
        _, _, headers, _ = raw_request(sim.rest_port, "GET", HP2)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Access-Control-Allow-Methods"] == "POST, GET"
        assert headers["Access-Control-Allow-Headers"] == "Content-Type"
    finally:
        sim.stop()
