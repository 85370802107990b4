"""The gRPC port through the official stubs: codes, messages, responses, reload."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import text_format

from tfserving_simulator.faults import FaultRule
from tfserving_wire import protos

TIMEOUT = 5


@pytest.fixture(scope="module")
def channel(simulator):
    with grpc.insecure_channel(f"127.0.0.1:{simulator.grpc_port}") as chan:
        yield chan


@pytest.fixture
def prediction(channel):
    return protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture
def model_service(channel):
    return protos.model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(name="half_plus_two", x=(2.0,), **spec):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    tensor = request.inputs["x"]
    tensor.dtype = protos.types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add().size = len(x)
    tensor.float_val.extend(x)
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


def test_predict_canonical_pair(prediction):
    request = predict_request(signature_name="serving_default")
    request.output_filter.append("y")
    response = prediction.Predict(request, timeout=TIMEOUT)
    output = response.outputs["y"]
    assert output.dtype == protos.types_pb2.DT_FLOAT
    assert [d.size for d in output.tensor_shape.dim] == [1]
    assert list(output.float_val) == [3.0]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_predict_resolves_empty_signature_name(prediction):
    response = prediction.Predict(predict_request(x=(1.0, 2.0, 5.0)), timeout=TIMEOUT)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert response.model_spec.signature_name == "serving_default"


def _missing_spec():
    request = predict_request()
    request.ClearField("model_spec")
    return request


def _extra_input():
    request = predict_request()
    request.inputs["z"].CopyFrom(request.inputs["x"])
    return request


def _wrong_alias():
    request = predict_request()
    request.inputs["q"].CopyFrom(request.inputs["x"])
    del request.inputs["x"]
    return request


def _bad_filter():
    request = predict_request()
    request.output_filter.append("nope")
    return request


def _too_many_dimensions():
    request = predict_request()
    tensor = request.inputs["x"]
    del tensor.tensor_shape.dim[:]
    tensor.tensor_shape.dim.extend([protos.tensor_shape_pb2.TensorShapeProto.Dim(size=1)] * 65)
    return request


def _duplicate_filter():
    request = predict_request()
    request.output_filter.extend(["y", "y"])
    return request


@pytest.mark.parametrize("make_request, code, message", [
    (_missing_spec, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    (lambda: predict_request(name=""), grpc.StatusCode.INVALID_ARGUMENT,
     "ModelSpec has no name specified."),
    (lambda: predict_request(name="foo"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(foo)"),
    (lambda: predict_request(version=9), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(half_plus_two, 9)"),
    (lambda: predict_request(version_label="stable"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: stable"),
    (lambda: predict_request(signature_name="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (_extra_input, grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: {z}. "
     "Missing but required: {}."),
    # TensorFlow's saved_model::GetInputValues (cc/saved_model/util.cc) lists the keys the
    # request has ({q}), not the signature's.
    (_wrong_alias, grpc.StatusCode.INVALID_ARGUMENT,
     "Signature input alias: x(feed name: x:0) not found in request and no default value "
     "provided. Inputs expected to be in the request {q}, or default input alias set: "),
    (_bad_filter, grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: nope Outputs expected to be in the set {y}."),
    (_duplicate_filter, grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: y"),
    # More dimensions than numpy holds: refused as a tensor that cannot be decoded, not a crash.
    (_too_many_dimensions, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x"),
])
def test_predict_error_codes_and_messages(prediction, make_request, code, message):
    error = rpc_error(prediction.Predict, make_request())
    assert (error.code(), error.details()) == (code, message)


def test_long_messages_are_truncated(prediction):
    error = rpc_error(prediction.Predict, predict_request(name="m" * 2000))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(error.details()) == 1024 + len("...TRUNCATED")
    assert error.details().endswith("...TRUNCATED")


def _examples_input(message, values, key="x"):
    for value in values:
        example = message.input.example_list.examples.add()
        example.features.feature[key].float_list.value.append(value)
    return message


def test_classify_and_regress(prediction):
    classify = protos.classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    response = prediction.Classify(_examples_input(classify, [2.0, 20.0]), timeout=TIMEOUT)
    assert [[(c.label, c.score) for c in r.classes] for r in response.result.classifications] \
        == [[("", 3.0)], [("", 12.0)]]
    assert response.model_spec.version.value == 123
    regress = protos.regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y2"
    response = prediction.Regress(_examples_input(regress, [2.0]), timeout=TIMEOUT)
    assert [r.value for r in response.result.regressions] == [4.0]
    assert response.model_spec.signature_name == "regress_x_to_y2"


def test_classify_unknown_signature_is_invalid_argument(prediction):
    request = protos.classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "nope"
    error = rpc_error(prediction.Classify, _examples_input(request, [1.0]))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "No signature was found with the name: nope")


REGRESS_X_TO_Y_DEBUG_STRING = """inputs {
  key: "inputs"
  value {
    name: "tf_example:0"
    dtype: DT_STRING
    tensor_shape {
      unknown_rank: true
    }
  }
}
outputs {
  key: "outputs"
  value {
    name: "y:0"
    dtype: DT_FLOAT
    tensor_shape {
      dim {
        size: -1
      }
      dim {
        size: 1
      }
    }
  }
}
method_name: "tensorflow/serving/regress"
"""


def test_classify_on_a_regress_signature_names_the_outputs_it_needs(prediction):
    # classifier.cc, PreProcessClassification: the text quotes the output aliases and ends
    # with the signature's DebugString().
    request = protos.classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    error = rpc_error(prediction.Classify, _examples_input(request, [1.0]))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        'Expected classification signature outputs to contain at least one of "classes" or '
        '"scores". Signature was: ' + REGRESS_X_TO_Y_DEBUG_STRING)


def test_metadata_packs_a_signature_def_map(prediction):
    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, timeout=TIMEOUT)
    assert (response.model_spec.name, response.model_spec.version.value) == ("half_plus_two", 123)
    signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    serving = signature_map.signature_def["serving_default"]
    assert serving.method_name == "tensorflow/serving/predict"
    assert serving.inputs["x"].name == "x:0"
    assert [d.size for d in serving.inputs["x"].tensor_shape.dim] == [-1, 1]
    assert signature_map.signature_def["classify_x_to_y"].inputs["inputs"].tensor_shape.unknown_rank


# get_model_metadata_impl.cc, ValidateGetModelMetadataRequest runs before the model lookup, so
# a bad field is INVALID_ARGUMENT even for an unknown model, and whatever the field order.
@pytest.mark.parametrize("model, fields, message", [
    ("half_plus_two", [], "GetModelMetadataRequest must specify at least one metadata_field"),
    ("half_plus_two", ["other"], "Metadata field other is not supported"),
    ("nope", ["other"], "Metadata field other is not supported"),
    ("nope", ["signature_def", "other"], "Metadata field other is not supported"),
])
def test_metadata_field_errors(prediction, model, fields, message):
    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.extend(fields)
    error = rpc_error(prediction.GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def status_request(name="half_plus_two", **spec):
    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "version_label" in spec:
        request.model_spec.version_label = spec["version_label"]
    return request


def test_model_status_ignores_labels(model_service):
    for request in (status_request(), status_request(version_label="unknown"),
                    status_request(version=123)):
        response = model_service.GetModelStatus(request, timeout=TIMEOUT)
        assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] \
            == [(123, 30, 0)]


@pytest.mark.parametrize("request_factory, message", [
    (lambda: status_request(name="foo"), "Could not find any versions of model foo"),
    (lambda: status_request(name=""), "Could not find any versions of model "),
    (lambda: status_request(version=5), "Could not find version 5 of model half_plus_two"),
])
def test_model_status_not_found(model_service, request_factory, message):
    error = rpc_error(model_service.GetModelStatus, request_factory())
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, message)


def test_model_status_without_spec(model_service):
    error = rpc_error(model_service.GetModelStatus,
                      protos.get_model_status_pb2.GetModelStatusRequest())
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "Missing ModelSpec")


def test_client_deadline_ends_a_hung_predict(fresh_simulator):
    fresh_simulator.faults.add(FaultRule(operations={"predict"}, protocols={"grpc"}, hang=True))
    with grpc.insecure_channel(f"127.0.0.1:{fresh_simulator.grpc_port}") as chan:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(chan)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(predict_request(), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_reload_config_adds_and_removes_models(fresh_simulator, tmp_path):
    config = protos.model_server_config_pb2.ModelServerConfig()
    text_format.Parse('model_config_list { config { name: "image_classifier" base_path: "%s" '
                      'model_platform: "tensorflow" } }' % (tmp_path / "image_classifier"),
                      config)
    with grpc.insecure_channel(f"127.0.0.1:{fresh_simulator.grpc_port}") as chan:
        models = protos.model_service_pb2_grpc.ModelServiceStub(chan)
        request = protos.model_management_pb2.ReloadConfigRequest(config=config)
        response = models.HandleReloadConfigRequest(request, timeout=15)
        assert response.status.error_code == 0
        status = models.GetModelStatus(status_request("image_classifier"), timeout=TIMEOUT)
        assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]
        removed = models.GetModelStatus(status_request("half_plus_two"), timeout=TIMEOUT)
        assert [s.state for s in removed.model_version_status] in ([40], [50])
        empty = protos.model_management_pb2.ReloadConfigRequest()
        error = rpc_error(models.HandleReloadConfigRequest, empty)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == ("ServerModelConfig type not supported by "
                                   "HandleReloadConfigRequest. Only ModelConfigList is "
                                   "currently supported")
