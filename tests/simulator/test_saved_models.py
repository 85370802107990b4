"""The simulator serving real SavedModels (issue 13): loaded like TF Serving, metadata exactly
the file's SignatureDefs, Predict/Classify/Regress run in TensorFlow's runtime, failed loads
reported like TF Serving's, faults on real models, and TensorFlow only where it belongs.

TensorFlow runs in subprocesses only (tests/real_models.py): the model builder, the simulator
serving the real models, and nowhere in this process (the last test checks it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format, text_format

from tests.exporter_process import ExporterProcess
from tests.helpers import sample_value, samples, wait_until
from tests.real_models import (
    HALF_PLUS_TWO, IMAGE_CLASSIFIER, METRICS_PATH, MODELS, REFERENCE_EXAMPLES,
    REPO, VERSIONS, WITHOUT_TENSORFLOW_RUNTIME, SimulatorProcess, mapped_libraries,
    reference_inputs, require_tensorflow, subprocess_env)
from tfserving_simulator import demo_models, saved_model
from tfserving_simulator.app import Simulator, SimulatorOptions, SimulatorStartError
from tfserving_simulator.errors import ServingError
from tfserving_simulator.server_config import ModelConfig
from tfserving_wire import protos, tensor_proto

TIMEOUT = 30
INIT_OP = "__saved_model_init_op"


PBTXT_MODEL = "half_plus_two_pbtxt"


def _pbtxt_copy(real_models, base_path: str) -> None:
    """half_plus_two again, its SavedModel as saved_model.pbtxt (TF reads it when no .pb)."""
    version_dir = real_models.copy_version(HALF_PLUS_TWO, base_path, VERSIONS[HALF_PLUS_TWO])
    proto = saved_model.read_saved_model(version_dir)
    os.remove(os.path.join(version_dir, "saved_model.pb"))
    with open(os.path.join(version_dir, "saved_model.pbtxt"), "w", encoding="utf-8") as file:
        file.write(text_format.MessageToString(proto))


@pytest.fixture(scope="module")
def served(real_models, tmp_path_factory):
    """One simulator subprocess serving the real models (and half_plus_two from a .pbtxt),
    with a fault file and metrics."""
    workdir = tmp_path_factory.mktemp("served")
    faults = workdir / "faults.json"
    faults.write_text('{"rules": []}')
    pbtxt_base = str(workdir / PBTXT_MODEL)
    _pbtxt_copy(real_models, pbtxt_base)
    models = {**real_models.models(), PBTXT_MODEL: pbtxt_base}
    with SimulatorProcess(workdir, models, fault_config_file=str(faults),
                          monitoring=True) as simulator:
        simulator.fault_file = faults
        yield simulator


@pytest.fixture(scope="module")
def prediction(served):
    with grpc.insecure_channel(served.grpc_target) as channel:
        yield protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)


def rest(served, model: str, verb: str, body: dict) -> requests.Response:
    return requests.post(f"{served.rest_url}/v1/models/{model}:{verb}", json=body,
                         timeout=TIMEOUT)


def signature_map_dict(signatures: dict) -> dict:
    """A name -> SignatureDef map as TF Serving's REST metadata renders it (parsed)."""
    message = protos.get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signatures.items():
        message.signature_def[name].CopyFrom(signature)
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


# --- metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_grpc_metadata_is_the_signature_defs_tensorflow_reads(served, prediction, real_models,
                                                              model):
    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, timeout=TIMEOUT)
    signatures = protos.get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert dict(signatures.signature_def) == real_models.signature_defs(model)
    assert (response.model_spec.name, response.model_spec.version.value) == (
        model, VERSIONS[model])


@pytest.mark.parametrize("model", MODELS)
def test_rest_metadata_is_the_signature_defs_tensorflow_reads(served, real_models, model):
    reply = requests.get(f"{served.rest_url}/v1/models/{model}/metadata", timeout=TIMEOUT)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_spec"] == {"name": model, "signature_name": "",
                                  "version": str(VERSIONS[model])}
    assert body["metadata"]["signature_def"] == signature_map_dict(
        real_models.signature_defs(model))


def test_a_text_savedmodel_serves_like_the_binary_one(served, real_models):
    reply = requests.get(f"{served.rest_url}/v1/models/{PBTXT_MODEL}/metadata", timeout=TIMEOUT)
    assert reply.json()["metadata"]["signature_def"] == signature_map_dict(
        real_models.signature_defs(HALF_PLUS_TWO))
    reply = rest(served, PBTXT_MODEL, "predict", {"instances": [[1.0], [2.0], [5.0], [-3.5]]})
    assert reply.json()["predictions"] == \
        real_models.predict_outputs(HALF_PLUS_TWO)["y"].tolist()


def test_the_tf2_init_op_signature_is_reported_as_tf_serving_does(served, real_models):
    # TF Serving reports every SignatureDef of the MetaGraphDef; TF's Python loader hides the
    # init op from .signatures.
    assert real_models.reference["tf2_signatures"][IMAGE_CLASSIFIER] == ["serving_default"]
    reply = requests.get(f"{served.rest_url}/v1/models/{IMAGE_CLASSIFIER}/metadata",
                         timeout=TIMEOUT)
    signatures = reply.json()["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == [INIT_OP, "serving_default"]
    assert signatures[INIT_OP] == {
        "inputs": {}, "method_name": "", "defaults": {},
        "outputs": {INIT_OP: {"name": "NoOp", "dtype": "DT_INVALID",
                              "tensor_shape": {"dim": [], "unknown_rank": True}}}}


def test_signatures_are_read_from_the_file_without_tensorflow(real_models):
    for model in MODELS:
        read = saved_model.read_signatures(real_models.version_dir(model))
        assert {name: s.proto for name, s in read.items()} == real_models.signature_defs(model)
    hp2 = saved_model.read_signatures(real_models.version_dir(HALF_PLUS_TWO))
    # docs/tfserving-behaviour.md §6.2: the signatures of TF Serving's own test model.
    assert {name: (s.method_name, {a: (i.name, i.dtype, i.shape) for a, i in s.inputs.items()},
                   {a: (i.name, i.shape) for a, i in s.outputs.items()})
            for name, s in hp2.items()} == {
        "serving_default": ("tensorflow/serving/predict", {"x": ("x:0", "DT_FLOAT", (-1, 1))},
                            {"y": ("y:0", (-1, 1))}),
        "classify_x_to_y": ("tensorflow/serving/classify",
                            {"inputs": ("tf_example:0", "DT_STRING", None)},
                            {"scores": ("y:0", (-1, 1))}),
        "regress_x_to_y": ("tensorflow/serving/regress",
                           {"inputs": ("tf_example:0", "DT_STRING", None)},
                           {"outputs": ("y:0", (-1, 1))}),
        "regress_x_to_y2": ("tensorflow/serving/regress",
                            {"inputs": ("tf_example:0", "DT_STRING", None)},
                            {"outputs": ("y2:0", (-1, 1))}),
        "regress_x2_to_y3": ("tensorflow/serving/regress",
                             {"inputs": ("x2:0", "DT_FLOAT", (-1, 1))},
                             {"outputs": ("y3:0", (-1, 1))}),
    }


# --- inference in TensorFlow's runtime --------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_grpc_predict_outputs_equal_tensorflows(served, prediction, real_models, model):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = model
    for alias, value in reference_inputs()[model].items():
        request.inputs[alias].CopyFrom(tensor_proto.from_numpy(value, False))
    response = prediction.Predict(request, timeout=TIMEOUT)
    expected = real_models.predict_outputs(model)
    assert set(response.outputs) == set(expected)
    for alias, want in expected.items():
        got = tensor_proto.to_numpy(response.outputs[alias], alias)
        assert got.dtype == want.dtype and np.array_equal(got, want), alias
    assert response.model_spec.version.value == VERSIONS[model]


@pytest.mark.parametrize("model", MODELS)
def test_rest_predict_outputs_equal_tensorflows(served, real_models, model):
    inputs = {alias: value.tolist() for alias, value in reference_inputs()[model].items()}
    reply = rest(served, model, "predict", {"inputs": inputs})
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    expected = real_models.predict_outputs(model)
    if len(expected) == 1:
        outputs = {next(iter(expected)): outputs}
    for alias, want in expected.items():
        assert np.array_equal(np.array(outputs[alias], dtype=want.dtype), want), alias


def test_output_filter_fetches_only_the_named_outputs(served, prediction, real_models):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = IMAGE_CLASSIFIER
    request.inputs["image"].CopyFrom(tensor_proto.from_numpy(
        reference_inputs()[IMAGE_CLASSIFIER]["image"], True))
    request.output_filter.append("classes")
    response = prediction.Predict(request, timeout=TIMEOUT)
    assert list(response.outputs) == ["classes"]
    assert tensor_proto.to_numpy(response.outputs["classes"], "classes").tolist() == \
        real_models.predict_outputs(IMAGE_CLASSIFIER)["classes"].tolist()


def test_classify_and_regress_run_the_graph(served, prediction, real_models):
    examples = [{"x": x} for x in REFERENCE_EXAMPLES]
    reply = rest(served, HALF_PLUS_TWO, "classify",
                 {"signature_name": "classify_x_to_y", "examples": examples})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"] == [[["", score]]
                                       for score in real_models.reference["classify_x_to_y"]]
    reply = rest(served, HALF_PLUS_TWO, "regress",
                 {"signature_name": "regress_x_to_y", "examples": examples})
    assert reply.json()["results"] == real_models.reference["regress_x_to_y"]

    request = protos.regression_pb2.RegressionRequest()
    request.model_spec.name = HALF_PLUS_TWO
    request.model_spec.signature_name = "regress_x_to_y2"
    for x in REFERENCE_EXAMPLES:
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    response = prediction.Regress(request, timeout=TIMEOUT)
    assert [r.value for r in response.result.regressions] == \
        real_models.reference["regress_x_to_y2"]


def test_context_features_come_first_and_an_examples_own_win(served, prediction):
    # util.cc: context bytes, then the example's, parsed by the graph as one tf.Example.
    request = protos.regression_pb2.RegressionRequest()
    request.model_spec.name = HALF_PLUS_TWO
    request.model_spec.signature_name = "regress_x_to_y2"
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(1.0)
    with_context.examples.add().features.feature["x"].float_list.value.append(2.0)
    with_context.examples.add()
    response = prediction.Regress(request, timeout=TIMEOUT)
    assert [r.value for r in response.result.regressions] == [4.0, 3.5]


@pytest.mark.parametrize("verb, body, status, message", [
    # classifier.cc / regressor.cc: the signature rules, checked before anything runs.
    ("classify", {"examples": [{"x": 1.0}]}, 400,
     "No classification inputs found in SignatureDef: "),
    ("regress", {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]}, 400,
     "No regression outputs found in SignatureDef: "),
    ("classify", {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}, 400,
     'Expected classification signature outputs to contain at least one of "classes" or '
     '"scores". Signature was: '),
    # A float input is still fed the serialized examples: the runtime refuses them.
    ("regress", {"signature_name": "regress_x2_to_y3", "examples": [{"x2": 1.0}]}, 400,
     "Expects arg[0] to be float but string is provided"),
    # The graph's own ParseExample.
    ("regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]}, 400,
     "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but "
     "expected type: float\n\t [[{{node ParseExample/ParseExampleV2}}]]"),
])
def test_classify_and_regress_follow_tf_servings_rules(served, verb, body, status, message):
    reply = rest(served, HALF_PLUS_TWO, verb, body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"].startswith(message), reply.json()["error"]


def test_signature_texts_in_errors_are_the_files_own(served):
    reply = rest(served, IMAGE_CLASSIFIER, "classify", {"examples": [{"x": 1.0}]})
    error = reply.json()["error"]
    assert error.startswith("No classification inputs found in SignatureDef: ")
    assert 'name: "serving_default_image:0"' in error and "size: 32" in error


def test_wrong_dtypes_and_shapes_are_refused_by_tensorflow(served, prediction):
    request = protos.predict_pb2.PredictRequest()
    request.model_spec.name = HALF_PLUS_TWO
    request.inputs["x"].CopyFrom(tensor_proto.from_numpy(np.array([[1], [2]], np.int32), False))
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Expects arg[0] to be float but int32 is provided"

    reply = rest(served, IMAGE_CLASSIFIER, "predict",
                 {"instances": np.zeros((1, 32, 32)).tolist()})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith(
        "convolution input must be 4-dimensional: [1,32,32]\n\t [[{{function_node ")


def test_faults_apply_to_real_models(served):
    image = reference_inputs()[IMAGE_CLASSIFIER]["image"][:1].tolist()
    served.fault_file.write_text(json.dumps({"rules": [
        {"model": IMAGE_CLASSIFIER, "nan_outputs": True},
        {"model": HALF_PLUS_TWO, "operations": ["predict"], "error_code": "UNAVAILABLE",
         "error_message": "injected outage"},
    ]}))
    try:
        def faulted():
            reply = rest(served, IMAGE_CLASSIFIER, "predict", {"instances": image})
            first = reply.json()["predictions"][0]
            return first if np.isnan(first["probabilities"]).all() else None
        prediction = wait_until(faulted, timeout=15, message="the fault file to apply")
        assert isinstance(prediction["classes"], int)  # int64 outputs are left alone
        reply = rest(served, HALF_PLUS_TWO, "predict", {"instances": [1.0]})
        assert (reply.status_code, reply.json()) == (503, {"error": "injected outage"})
    finally:
        served.fault_file.write_text('{"rules": []}')
    wait_until(lambda: rest(served, HALF_PLUS_TWO, "predict",
                            {"instances": [1.0]}).status_code == 200,
               timeout=15, message="the faults to clear")


def test_runtime_latency_is_recorded_for_real_models(served):
    rest(served, IMAGE_CLASSIFIER, "predict",
         {"instances": reference_inputs()[IMAGE_CLASSIFIER]["image"][:1].tolist()})
    page = requests.get(served.rest_url + METRICS_PATH, timeout=TIMEOUT).text
    counts = [line for line in page.splitlines()
              if line.startswith(":tensorflow:serving:runtime_latency_count")
              and 'model_name="image_classifier"' in line]
    assert any('API="Predict"' in line and 'runtime="TF1"' in line for line in counts), counts


# --- loads that fail -------------------------------------------------------------------------

def test_without_tensorflow_a_savedmodel_fails_to_start_the_server(real_models, tmp_path):
    simulator = SimulatorProcess(tmp_path, real_models.models(HALF_PLUS_TWO),
                                 hide_tensorflow=True, wait=False)
    try:
        assert simulator.wait_exit(60) == 255
    finally:
        simulator.stop()
    version_dir = real_models.version_dir(HALF_PLUS_TWO)
    assert ("Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: "
            "{{{name: half_plus_two version: 123} due to error: FAILED_PRECONDITION: cannot "
            f"load the SavedModel in {version_dir}: TensorFlow cannot be imported in the "
            "simulator process (ModuleNotFoundError: ") in simulator.log_text()


def test_without_tensorflow_a_new_savedmodel_version_ends_with_the_error(real_models,
                                                                          tmp_path):
    # Stand-ins still serve; the real version fails like a version TF Serving cannot load.
    base = str(tmp_path / "models" / HALF_PLUS_TWO)
    demo_models.write_half_plus_two(base, 1)
    with SimulatorProcess(tmp_path / "sim", {HALF_PLUS_TWO: base},
                          hide_tensorflow=True) as simulator:
        version_dir = real_models.copy_version(HALF_PLUS_TWO, base, 2)

        def settled():
            statuses = requests.get(f"{simulator.rest_url}/v1/models/{HALF_PLUS_TWO}",
                                    timeout=TIMEOUT).json()["model_version_status"]
            return statuses if statuses[0]["state"] == "END" else None
        statuses = wait_until(settled, timeout=30, message="version 2 to fail")
        assert [(s["version"], s["state"]) for s in statuses] == [("2", "END"),
                                                                  ("1", "AVAILABLE")]
        status = statuses[0]["status"]
        assert status["error_code"] == "FAILED_PRECONDITION"
        assert status["error_message"].startswith(
            f"cannot load the SavedModel in {version_dir}: TensorFlow cannot be imported")
        assert rest(simulator, HALF_PLUS_TWO, "predict",
                    {"instances": [2.0]}).json() == {"predictions": [3.0]}
        assert simulator.mapped_libraries() == []


def _copy_real(real_models, tmp_path, name="1") -> str:
    target = str(tmp_path / "base" / name)
    shutil.copytree(real_models.version_dir(HALF_PLUS_TWO), target)
    return target


def _write(path: str, content: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(content)
    return path


def test_detect_tells_stand_ins_from_savedmodels(real_models, tmp_path):
    stand_in = demo_models.write_half_plus_two(str(tmp_path / "stand_in"), 1)
    assert saved_model.detect(stand_in) == saved_model.STAND_IN
    assert saved_model.detect(real_models.version_dir(HALF_PLUS_TWO)) == saved_model.SAVED_MODEL
    empty_pb = str(tmp_path / "empty_pb")
    _write(os.path.join(empty_pb, "saved_model.pb"), b"")
    _write(os.path.join(empty_pb, "simulator_model.json"), b"{}")
    assert saved_model.detect(empty_pb) == saved_model.STAND_IN


def _detect_error(version_dir: str) -> ServingError:
    with pytest.raises(ServingError) as caught:
        saved_model.detect(version_dir)
    return caught.value


def test_a_savedmodel_beside_a_stand_in_file_is_ambiguous(real_models, tmp_path):
    both = _copy_real(real_models, tmp_path)
    _write(os.path.join(both, "simulator_model.json"), b'{"format": 1, "kind": "half_plus_two"}')
    error = _detect_error(both)
    assert error.code == "INVALID_ARGUMENT"
    assert error.message.startswith(
        f"version directory {both} is ambiguous: it holds a real SavedModel (saved_model.pb, "
        "variables/) and the simulator's stand-in file simulator_model.json; expected one of "
        "the two")
    stand_in = demo_models.write_half_plus_two(str(tmp_path / "stand_in"), 1)
    os.mkdir(os.path.join(stand_in, "variables"))
    assert "(variables/)" in _detect_error(stand_in).message


def test_neither_savedmodel_nor_stand_in_is_tf_servings_not_found(tmp_path):
    empty = str(tmp_path / "7")
    os.makedirs(empty)
    error = _detect_error(empty)
    assert (error.code, error.message) == (
        "NOT_FOUND", "Specified file path does not appear to contain a SavedModel bundle "
                     f"(should have a file called `saved_model.pb`)\nSpecified file path: {empty}")
    placeholder = str(tmp_path / "8")
    _write(os.path.join(placeholder, "saved_model.pb"), b"simulated SavedModel: see ...\n")
    error = _detect_error(placeholder)
    assert error.code == "NOT_FOUND"
    assert error.message.startswith(
        f"simulated model file {placeholder}/simulator_model.json is missing")
    session_bundle = str(tmp_path / "9")
    _write(os.path.join(session_bundle, "export.meta"), b"")
    _write(os.path.join(session_bundle, "saved_model.pb"), b"")
    assert (_detect_error(session_bundle).code, _detect_error(session_bundle).message) == (
        "UNIMPLEMENTED", "Session Bundle is deprecated and removed.")


def test_unreadable_savedmodels_give_tensorflows_errors(tmp_path):
    garbage = _write(str(tmp_path / "1" / "saved_model.pb"), b"\xff\xff not a proto")
    with pytest.raises(ServingError) as caught:
        saved_model.read_meta_graph(str(tmp_path / "1"))
    assert (caught.value.code, caught.value.message) == (
        "DATA_LOSS", f"Can't parse {garbage} as binary proto")
    text = _write(str(tmp_path / "2" / "saved_model.pbtxt"), b"meta_graphs { nope: 1 }")
    with pytest.raises(ServingError) as caught:
        saved_model.read_meta_graph(str(tmp_path / "2"))
    assert (caught.value.code, caught.value.message) == (
        "DATA_LOSS", f"Can't parse {text} as text proto")
    saved_model_pb2 = protos.load_module("tensorflow.core.protobuf.saved_model_pb2")
    proto = saved_model_pb2.SavedModel()
    proto.meta_graphs.add().meta_info_def.tags.extend(["serve", "gpu"])
    proto.meta_graphs.add().meta_info_def.tags.append("train")
    _write(str(tmp_path / "3" / "saved_model.pb"), proto.SerializeToString())
    with pytest.raises(ServingError) as caught:
        saved_model.read_meta_graph(str(tmp_path / "3"))
    assert (caught.value.code, caught.value.message) == (
        "NOT_FOUND", "Could not find meta graph def matching supplied tags: { serve }. To "
                     "inspect available tag-sets in the SavedModel, please use the SavedModel "
                     "CLI: `saved_model_cli`")


def test_failed_loads_in_a_running_simulator_are_reported_like_tf_serving(real_models,
                                                                           tmp_path):
    # Each of these fails before TensorFlow would be needed, so this runs in process.
    base = str(tmp_path / "base")
    demo_models.write_half_plus_two(base, 1)
    options = SimulatorOptions(models=[ModelConfig(HALF_PLUS_TWO, base)], grpc_port=0,
                               rest_api_port=None, bind_address="127.0.0.1",
                               file_system_poll_wait_seconds=0.1, max_num_load_retries=0)
    simulator = Simulator(options)
    simulator.start(timeout=30)
    try:
        ambiguous = _copy_real(real_models, tmp_path, "staging")
        _write(os.path.join(ambiguous, "simulator_model.json"), b"{}")
        os.rename(ambiguous, os.path.join(base, "2"))
        wait_until(lambda: simulator.core.model_status(HALF_PLUS_TWO, 2)[0].state == "END",
                   timeout=15, message="the ambiguous version to fail")
        status = simulator.core.model_status(HALF_PLUS_TWO, 2)[0]
        assert status.error_code == "INVALID_ARGUMENT"
        assert status.error_message.startswith(f"version directory {base}/2 is ambiguous")
        assert simulator.core.get_servable(HALF_PLUS_TWO).version == 1
    finally:
        simulator.stop()
    assert "tensorflow.python" not in sys.modules


def test_an_in_process_simulator_cannot_bring_tensorflow_into_this_process(real_models):
    # tests/real_models.py's guard: here the load fails the way a missing runtime does.
    options = SimulatorOptions(models=[ModelConfig(IMAGE_CLASSIFIER,
                                                   real_models.base_path(IMAGE_CLASSIFIER))],
                               grpc_port=0, rest_api_port=None, bind_address="127.0.0.1",
                               max_num_load_retries=0)
    with pytest.raises(SimulatorStartError) as caught:
        Simulator(options).start(timeout=30)
    assert "due to error: FAILED_PRECONDITION: cannot load the SavedModel in " in str(caught.value)
    assert "TensorFlow's runtime is blocked in the pytest process" in str(caught.value)
    assert mapped_libraries() == []


def test_a_failed_initial_savedmodel_load_stops_the_start(tmp_path):
    base = tmp_path / "base"
    _write(str(base / "5" / "saved_model.pb"), b"\xff\xff not a proto")
    options = SimulatorOptions(models=[ModelConfig(HALF_PLUS_TWO, str(base))], grpc_port=0,
                               rest_api_port=None, bind_address="127.0.0.1",
                               max_num_load_retries=0)
    with pytest.raises(SimulatorStartError) as caught:
        Simulator(options).start(timeout=30)
    assert str(caught.value) == (
        "UNKNOWN: 1 servable(s) did not become available: {{{name: half_plus_two version: 5} "
        f"due to error: DATA_LOSS: Can't parse {base}/5/saved_model.pb as binary proto}}, }}")


# --- the bare proto package, then the real TensorFlow ------------------------------------------

_RUNTIME_AFTER_PROTOS = r"""
import json, sys
from tfserving_wire import protos
protos.load_all()
saved_model_pb2 = protos.load_module("tensorflow.core.protobuf.saved_model_pb2")
bare = sys.modules["tensorflow"]
try:
    protos.import_tensorflow_runtime()
    imported = True
except ImportError:
    imported = False
tf = sys.modules["tensorflow"]
tensor = protos.tensor_pb2.TensorProto(dtype=protos.types_pb2.DT_FLOAT)
report = {"imported": imported, "bare_kept": tf is bare,
          "protos_work": protos.predict_pb2.PredictRequest.FromString(
              protos.predict_pb2.PredictRequest(inputs={"x": tensor}).SerializeToString()
          ).inputs["x"].dtype == protos.types_pb2.DT_FLOAT}
if imported:
    from tensorflow.core.protobuf import saved_model_pb2 as tfs_saved_model_pb2
    report.update(
        same_classes=tf.make_tensor_proto([1.5]).__class__ is protos.tensor_pb2.TensorProto
        and tfs_saved_model_pb2 is saved_model_pb2,
        runs=float(tf.constant(2.0) * 3), again=protos.import_tensorflow_runtime() is tf)
print(json.dumps(report))
"""


@pytest.mark.parametrize("hidden", [False, True], ids=["with-tensorflow", "runtime-hidden"])
def test_the_runtime_imports_after_the_bare_proto_package(hidden):
    require_tensorflow()
    code = _RUNTIME_AFTER_PROTOS
    if hidden:
        code = WITHOUT_TENSORFLOW_RUNTIME + code
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if hidden:
        assert report == {"imported": False, "bare_kept": True, "protos_work": True}
    else:
        assert report == {"imported": True, "bare_kept": False, "protos_work": True,
                          "same_classes": True, "runs": 6.0, "again": True}


# --- the exporter stays slim -----------------------------------------------------------------

def test_exporters_scraping_real_models_never_map_tensorflow(served, start_exporter_with,
                                                             tmp_path):
    assert served.mapped_libraries(), "the simulator itself runs TensorFlow"
    settings = {"tfserving.grpc_address": served.grpc_target,
                "tfserving.rest_address": served.rest_url,
                "tfserving.model_config_file": str(served.model_config_file)}
    in_process = start_exporter_with(settings)
    text = in_process.metrics_until(lambda t: sample_value(
        t, "tfserving_model_signature_info", model=IMAGE_CLASSIFIER, version="1",
        signature="serving_default", method="predict") == 1, message="the CNN's signature")
    assert sample_value(text, "tfserving_model_signature_info", model=HALF_PLUS_TWO,
                        version="123", signature="regress_x2_to_y3", method="regress") == 1
    # The CNN's metadata lists TF2's __saved_model_init_op too; no client can call it, so the
    # exporter shows the one real signature.
    cnn_signatures = {dict(labels)["signature"] for (name, labels) in samples(text)
                      if name == "tfserving_model_signature_info"
                      and dict(labels)["model"] == IMAGE_CLASSIFIER}
    assert cnn_signatures == {"serving_default"}
    exporter = ExporterProcess(str(tmp_path / "exporter.log"),
                               f"--tfserving.grpc-address={served.grpc_target}",
                               f"--tfserving.rest-address={served.rest_url}",
                               f"--tfserving.model-config-file={served.model_config_file}")
    try:
        reply, _ = exporter.scrape()
        assert reply.status_code == 200
        assert 'model="image_classifier"' in reply.text
        assert mapped_libraries(exporter.pid) == []
    finally:
        exporter.stop()
    assert mapped_libraries() == []


def test_this_process_never_mapped_tensorflow():
    # Last in the module: after every test above ran in this process.
    assert mapped_libraries() == []
    assert "tensorflow.python" not in sys.modules
