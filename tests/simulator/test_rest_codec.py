"""JSON <-> tensors: TF Serving's parsing rules, error texts and rapidjson output layout."""

from __future__ import annotations

import numpy as np
import pytest

from tfserving_simulator import rest_codec, rapidjson
from tfserving_simulator.errors import ServingError
from tfserving_simulator.models import TensorInfo

X_ONLY = {"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))}
TWO_INPUTS = {"a": TensorInfo("a:0", "DT_FLOAT", (-1,)), "b": TensorInfo("b:0", "DT_STRING", (-1,))}


def parse(body: bytes, infos=X_ONLY):
    return rest_codec.parse_predict_request(body, lambda signature_name: infos)


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as info:
        call()
    return info.value


@pytest.mark.parametrize("body, message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"  ", "JSON Parse error: The document is empty. at offset: 2"),
    (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b'{"a": 1 "b"}', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8"),
    (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
    (b'{"instances": [1, x]}', "JSON Parse error: Invalid value. at offset: 18"),
    (b"nul", "JSON Parse error: Invalid value. at offset: 3"),
    # rapidjson's iterative parser (kParseIterativeFlag since 2.18) reports a stray closing
    # bracket at the start as an empty document, not as an invalid value.
    (b" ]", "JSON Parse error: The document is empty. at offset: 1"),
    (b"[1,]", "JSON Parse error: Invalid value. at offset: 3"),
    (b'{"a": 1,}', "JSON Parse error: Missing a name for object member. at offset: 8"),
    (b"[}", "JSON Parse error: Invalid value. at offset: 1"),
    (b"1.", "JSON Parse error: Miss fraction part in number. at offset: 2"),
    (b"1e", "JSON Parse error: Miss exponent in number. at offset: 2"),
    (b'"abc', "JSON Parse error: Missing a closing quotation mark in string. at offset: 4"),
    (b'"\\q"', "JSON Parse error: Invalid escape character in string. at offset: 1"),
    # JsonValueToDebugString writes arrays on one line (since 2.18).
    (b"[1, [2]]", "JSON Value: [1, [2]] Is not object"),
])
def test_body_errors_use_rapidjson_wording(body, message):
    error = error_of(lambda: rest_codec.parse_body(body))
    assert (error.code, error.message) == ("INVALID_ARGUMENT", message)


@pytest.mark.parametrize("body, message", [
    (b'{"instances": ["a"]}', "Failed to process element: 0 of 'instances' list. Error: "
     "INVALID_ARGUMENT: JSON Value: \"a\" Type: String is not of expected type: float"),
    (b'{"instances": [{"y": 1.0}]}', "Failed to process element: 0 key: y of 'instances' "
     "list. Error: INVALID_ARGUMENT: JSON object: does not have named input: y"),
    (b'{"inputs": {"y": 1.0}}', "Missing named input: x in 'inputs' object."),
    (b"{}", "Missing 'inputs' or 'instances' key"),
    # Quoted JSON: objects broken over lines, arrays on one, doubles in rapidjson's shortest
    # form (json_tensor.cc, JsonValueToDebugString since 2.18).
    (b'{"instances": [1.0, 1e7], "inputs": [1.0]}', "JSON Value: {\n    \"instances\": "
     "[1.0, 10000000.0],\n    \"inputs\": [1.0]\n} Not formatted correctly expecting "
     "only one of 'inputs' or 'instances' keys to exist "),
    # "Expecting" since 2.5 (older releases wrote "Excepting").
    (b'{"instances": 5}', "JSON Value: {\n    \"instances\": 5\n} Expecting 'instances' to "
     "be an list/array"),
    (b'{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
    (b'{"signature_name": 7, "instances": [1]}', "JSON Value: {\n    \"signature_name\": 7,\n"
     "    \"instances\": [1]\n} not formatted correctly. 'signature_name' key "
     "must be a string value."),
    (b'{"instances": [[1.0], [1.0, 2.0]]}', "Failed to process element: 1 of 'instances' "
     "list. Error: INVALID_ARGUMENT: Expecting tensor size: 1 but got: 2"),
    (b'{"instances": [[1.0, 2.0], [[1.0], [2.0]]]}', "Failed to process element: 1 of "
     "'instances' list. Error: INVALID_ARGUMENT: Expecting shape [2] but got: [2,1]"),
    (b'{"inputs": [[1.0, 2.0], [3.0]]}',
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
])
def test_predict_request_errors(body, message):
    error = error_of(lambda: parse(body))
    assert (error.code, error.message) == ("INVALID_ARGUMENT", message)


INT32_ONLY = {"x": TensorInfo("x:0", "DT_INT32", (-1,))}
DOUBLE_ONLY = {"x": TensorInfo("x:0", "DT_DOUBLE", (-1,))}


def test_float_inputs_take_any_number_and_cast_it_like_get_float():
    # No precision check since 2.5 (json_tensor_test.cc FloatTensorWithPrecisionLoss): an
    # integer a float cannot hold exactly is accepted and rounded, like the same number
    # written with a decimal point.
    for body in (b'{"instances": [1435774380]}', b'{"instances": [1435774380.0]}'):
        assert parse(body).inputs["x"].tolist() == [np.float32(1435774380)]
    # FloatTensorThatExceedsMaxReturnsInf, FloatTensorThatExceedsMinReturnsZero: the double
    # is cast to float.
    values = parse(b'{"instances": [1.7976931348623157e308, -1e39, 2.2250738585072014e-308, '
                   b'-2.2250738585072014e-308, 16777217]}').inputs["x"]
    assert values.dtype == np.float32
    assert values.tolist() == [np.inf, -np.inf, 0.0, 0.0, 16777216.0]
    assert np.signbit(values[3])
    # MixedInputForDoubleTensor: integers and decimals mix in a double tensor as well.
    doubles = parse(b'{"instances": [1.0, 2, 18446744073709551615]}', DOUBLE_ONLY).inputs["x"]
    assert doubles.dtype == np.float64 and doubles.tolist() == [1.0, 2.0, 2.0**64]


def test_float_features_are_cast_unchecked_like_tensors():
    request = rest_codec.parse_examples_request(b'{"examples": [{"x": [1e39, 0.1]}]}')
    assert request.examples == [{"x": ("float", [np.inf, float(np.float32(0.1))])}]


def test_integers_too_long_for_any_number_type_are_refused_not_crashed():
    # rapidjson reads a digit run past uint64 as a double; past the double range it is its
    # kParseErrorNumberTooBig. Python's int() would refuse 5,000 digits with a ValueError.
    for sign in (b"", b"-"):
        error = error_of(lambda sign=sign: rest_codec.parse_body(
            b'{"instances": [' + sign + b"9" * 5000 + b"]}"))
        assert error.code == "INVALID_ARGUMENT"
        assert "Number too big to be stored in double." in error.message
    assert parse(b'{"instances": [123456789012345678901]}', DOUBLE_ONLY
                 ).inputs["x"].tolist() == [1.2345678901234568e20]


def test_trailing_content_after_the_document_is_ignored():
    # ParseJson uses kParseStopWhenDoneFlag since 2.18: nothing after the root is read.
    assert len(rest_codec.parse_body(b"{} {}")) == 0
    request = parse(b'{"instances": [2.0]}\n{"instances": oops')
    assert request.inputs["x"].tolist() == [2.0]


def test_deep_nesting_is_parsed():
    # json_tensor_test.cc DeeplyNestedWellFormed: 500000 levels under a key nobody reads.
    deep = b"[" * 500000 + b"]" * 500000
    request = rest_codec.parse_predict_request(
        b'{"instances": [1], "nested": ' + deep + b"}", lambda name: INT32_ONLY)
    assert request.inputs["x"].tolist() == [1]
    # DeeplyNestedMalformed: the same depth as signature_name is the usual error, quoting
    # the document cut short.
    error = error_of(lambda: parse(b'{"signature_name": ' + deep + b"}"))
    prefix = '{\n    "signature_name": '
    assert error.message == ("JSON Value: " + prefix + "[" * (256 - len(prefix)) +
                             " not formatted correctly. 'signature_name' key must be a string "
                             "value.")


def test_a_tensor_deeper_than_tensorflow_allows_is_a_tensor_parsing_error():
    # TensorShape holds at most 254 dimensions; Tensor::FromProto fails in GetInputValues.
    error = error_of(lambda: parse(b'{"inputs": ' + b"[" * 255 + b"1" + b"]" * 255 + b"}"))
    assert (error.code, error.message) == ("INVALID_ARGUMENT", "tensor parsing error: x")


def test_quoted_json_is_cut_once_it_reaches_256_bytes():
    # json_tensor.cc, JsonWriterWithLimit: each write is refused once the buffer holds 256
    # bytes, so the quote ends with the value that reached the limit.
    numbers = b", ".join(b"%d" % n for n in range(200))
    error = error_of(lambda: parse(b'{"instances": [' + numbers + b'], "inputs": 1}'))
    quoted = '{\n    "instances": [' + ", ".join(str(n) for n in range(62))
    assert len(quoted.encode()) == 256
    assert error.message == ("JSON Value: " + quoted + " Not formatted correctly expecting "
                             "only one of 'inputs' or 'instances' keys to exist ")
    # A long value is written whole before the limit applies.
    error = error_of(lambda: rest_codec.parse_examples_request(
        b'{"pad": "' + b"x" * 1000 + b'", "examples": 1}'))
    assert error.message == ('JSON Value: {\n    "pad": "' + "x" * 1000 + '" Expecting '
                             "'examples' value to be an list/array")


def test_quoted_json_stops_at_nan_or_infinity():
    # rapidjson's Writer::Double refuses them (no kWriteNanAndInfFlag) after the separator.
    error = error_of(lambda: parse(b'{"instances": [1.5, NaN], "inputs": 1}'))
    assert error.message.startswith('JSON Value: {\n    "instances": [1.5,  Not formatted')
    error = error_of(lambda: parse(b'{"instances": [Infinity]}', INT32_ONLY))
    assert error.message == ("Failed to process element: 0 of 'instances' list. Error: "
                             "INVALID_ARGUMENT: JSON Value:  Type: Number is not of expected "
                             "type: int32")


def test_instance_objects_must_have_every_input_and_no_other():
    # FillTensorMapFromInstancesList's wording since 2.3.
    error = error_of(lambda: parse(b'{"instances": [{"a": [1.0]}]}', TWO_INPUTS))
    assert error.message == ("Failed to process element: 0 of 'instances' list. JSON object: "
                             '{\n    "a": [1.0]\n} keys must be equal to: a,b')


def test_plain_instances_need_a_single_input_signature():
    error = error_of(lambda: parse(b'{"instances": [1.0]}', TWO_INPUTS))
    assert error.message == ("instances is a plain list, but expecting list of objects as "
                             "multiple input tensors required as per tensorinfo_map")


def test_row_format_batches_elements_and_columnar_does_not():
    row = parse(b'{"instances": [[1.0], [2.0], [5.0]]}')
    assert row.format == rest_codec.ROW and row.inputs["x"].shape == (3, 1)
    assert row.inputs["x"].dtype == np.float32
    columnar = parse(b'{"inputs": {"x": [[2.0], [3.0]], "ignored": true}}')
    assert columnar.format == rest_codec.COLUMNAR and columnar.inputs["x"].shape == (2, 1)


def test_multi_input_objects_b64_and_special_floats():
    request = parse(b'{"instances": [{"a": NaN, "b": {"b64": "aGk="}}, '
                    b'{"a": -Infinity, "b": "yo"}]}', TWO_INPUTS)
    assert np.isnan(request.inputs["a"][0]) and request.inputs["a"][1] == -np.inf
    assert list(request.inputs["b"]) == [b"hi", b"yo"]


def test_signature_lookup_happens_after_json_checks():
    def lookup(signature_name):
        raise ServingError("NOT_FOUND", "Servable not found for request: Latest(m)")

    assert error_of(lambda: rest_codec.parse_predict_request(b"{", lookup)).code == \
        "INVALID_ARGUMENT"
    assert error_of(lambda: rest_codec.parse_predict_request(
        b'{"instances": [1]}', lookup)).code == "NOT_FOUND"


@pytest.mark.parametrize("outputs, request_format, expected", [
    ({"y": np.array([2.5, 3.0, 4.5], np.float32)}, rest_codec.ROW,
     b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'),
    ({"y": np.array([[2.5], [3.0]], np.float32)}, rest_codec.ROW,
     b'{\n    "predictions": [[2.5], [3.0]\n    ]\n}'),
    ({"y": np.array([2.5, 3.0, 4.5], np.float32)}, rest_codec.COLUMNAR,
     b'{\n    "outputs": [\n        2.5,\n        3.0,\n        4.5\n    ]\n}'),
    ({"y": np.array([1.0], np.float32), "k": np.array([7], np.int64)}, rest_codec.ROW,
     b'{\n    "predictions": [\n        {\n            "k": 7,\n            "y": 1.0\n'
     b'        }\n    ]\n}'),
    ({"x_bytes": np.array([b"hi"], object)}, rest_codec.COLUMNAR,
     b'{\n    "outputs": [\n        {\n            "b64": "aGk="\n        }\n    ]\n}'),
    # Any other DT_STRING alias goes through writer.String(): bytes as they are, only quotes,
    # backslashes and control characters escaped, so the body need not be valid UTF-8
    # (json_tensor.cc, AddSingleValueAndAdvance / IsNamedTensorBytes).
    ({"label": np.array([b"\xff\xfe", b'a"\x01'], object)}, rest_codec.COLUMNAR,
     b'{\n    "outputs": [\n        "\xff\xfe",\n        "a\\"\\u0001"\n    ]\n}'),
])
def test_predict_response_bytes(outputs, request_format, expected):
    assert rest_codec.predict_response(outputs, request_format) == expected


def test_inconsistent_batch_sizes_are_rejected_in_row_format():
    error = error_of(lambda: rest_codec.predict_response(
        {"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}, rest_codec.ROW))
    assert error.message == "Tensor name: b has inconsistent batch size: 3 expecting: 2"


@pytest.mark.parametrize("value, text", [
    (3.0, "3.0"), (2.5, "2.5"), (0.1, "0.1"), (1e7, "1e+07"), (3e-05, "3e-05"),
    (1.0000001, "1.00000012"), (-2.0, "-2.0"), (float("nan"), "NaN"),
    (float("inf"), "Infinity"), (float("-inf"), "-Infinity"), (123456.0, "123456.0"),
])
def test_float32_formatting(value, text):
    assert rapidjson.float_text(value, single_precision=True) == text


def test_double_formatting_uses_17_digits_when_needed():
    assert rapidjson.float_text(0.1 + 0.2, single_precision=False) == "0.30000000000000004"


def test_classify_and_regress_results_layout():
    assert rest_codec.classify_response([[("", 3.0)]]) == \
        b'{\n    "results": [[["", 3.0]]\n    ]\n}'
    assert rest_codec.regress_response([3.0, 42.0]) == b'{\n    "results": [3.0, 42.0]\n}'


def test_example_features_are_typed_by_json_token():
    request = rest_codec.parse_examples_request(
        b'{"signature_name": "s", "context": {"c": "ctx"}, "examples": '
        b'[{"f": 2.0, "i": 2, "b": true, "s": ["a", {"b64": "Yg=="}]}]}')
    assert request.signature_name == "s"
    assert request.context == {"c": ("bytes", [b"ctx"])}
    assert request.examples == [{"f": ("float", [2.0]), "i": ("int64", [2]),
                                 "b": ("int64", [1]), "s": ("bytes", [b"a", b"b"])}]


@pytest.mark.parametrize("body, message", [
    (b"{}", "JSON Value: {} When method is classify, key 'examples' is expected and was not found"),
    (b'{"examples": 1}', "JSON Value: {\n    \"examples\": 1\n} Expecting 'examples' value to "
     "be an list/array"),
    (b'{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    (b'{"examples": [{"x": [1.0, 2]}]}', "Unexpected element type in feature: x expecting type: float"),
    (b'{"examples": [{"x": null}]}', "Feature: x has element with unexpected JSON type: Null"),
    (b'{"examples": [3]}', "Example must be JSON object but got JSON Number"),
    # int64_t/uint64_t since 2.8 (json_tensor_test.cc ClassifyRegressRequestTest.JsonErrors).
    (b'{"examples": [{"x": 18446744073709551615}]}',
     "Feature: x has uint64_t element. Only int64_t is supported."),
])
def test_examples_request_errors(body, message):
    assert error_of(lambda: rest_codec.parse_examples_request(body)).message == message


def test_error_body_is_pretty_printed_without_trailing_newline():
    assert rapidjson.error_body('Servable not found for request: Latest(foo)') == \
        b'{\n    "error": "Servable not found for request: Latest(foo)"\n}'
